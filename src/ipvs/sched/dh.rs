//! `dh` — destination hashing (IPVS `ip_vs_dh.c`).
//!
//! A static 256-bucket table, built by the control plane, assigns the real
//! servers to the buckets in turn (bucket `i` gets server `i mod N`;
//! weights are not used, as in IPVS). A new connection goes to the bucket
//! of its destination address, `hash_32(fold(daddr), 8)`, where `fold` is
//! the IPv4 address or the XOR of an IPv6 address's four words. When that
//! server is quiesced or overloaded the answer is "no destination" (there
//! is no fallback in IPVS's dh: pair it with a bypass for cache clusters).
//! No worker state.

use super::util::{addr_fold, hash_32, Slot, NONE};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Dh;

/// Bits of the bucket index (IPVS's `CONFIG_IP_VS_DH_TAB_BITS`).
pub const DH_TAB_BITS: u32 = 8;
const DH_TAB_SIZE: usize = 1 << DH_TAB_BITS;

/// The bucket table: a dest index per bucket (none without dests).
pub struct DhTable {
    buckets: Box<[Slot; DH_TAB_SIZE]>,
}

impl std::fmt::Debug for DhTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhTable")
            .field("first", &&self.buckets[..8])
            .finish_non_exhaustive()
    }
}

impl DhTable {
    /// The dest index of bucket `b` (for tests and diagnostics).
    pub fn bucket(&self, b: usize) -> Option<usize> {
        self.buckets
            .get(b)
            .filter(|&&s| s != NONE)
            .map(|&s| s as usize)
    }
}

impl Scheduler for Dh {
    const NAME: &'static str = "dh";
    type Table = DhTable;
    type State = ();

    fn build(dests: &[DestEntry], _flags: SchedFlags) -> DhTable {
        let mut buckets = Box::new([NONE; DH_TAB_SIZE]);
        if !dests.is_empty() {
            for (i, b) in buckets.iter_mut().enumerate() {
                *b = (i % dests.len()) as Slot;
            }
        }
        DhTable { buckets }
    }

    fn changed(_t: &DhTable, _s: &mut ()) {}

    fn schedule(t: &DhTable, _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        let b = hash_32(addr_fold(ctx.daddr), DH_TAB_BITS) as usize;
        let i = t.buckets[b] as usize;
        (i < ctx.dests.len() && ctx.available(i)).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::util::testutil::*;
    use super::super::*;
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn to(daddr: IpAddr, weights: &[i32], load: &[crate::ipvs::dest::DestLoad]) -> Option<usize> {
        let d = dests(weights);
        let t = SchedKind::Dh.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        t.schedule(
            &mut s,
            &SchedCtx {
                daddr,
                ..ctx(&d, load)
            },
        )
    }

    #[test]
    fn buckets_cycle_over_dests_ignoring_weights() {
        let t = Dh::build(&dests(&[1, 5, 0]), SchedFlags::default());
        assert!((0..256).all(|b| t.bucket(b) == Some(b % 3)));
        let empty = Dh::build(&[], SchedFlags::default());
        assert_eq!(empty.bucket(0), None);
    }

    #[test]
    fn destination_address_picks_the_bucket() {
        // 198.51.100.1 = 0xC6336401; hash_32 = (0xC6336401 * 0x61C88647
        // mod 2^32) >> 24 = 96; bucket 96 holds dest 96 mod 3 = 0, and
        // 96 mod 5 = 1 with five dests.
        let vip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let z = loads(&[(0, 0); 5]);
        assert_eq!(to(vip, &[1, 1, 1], &z[..3]), Some(0));
        assert_eq!(to(vip, &[1, 1, 1, 1, 1], &z), Some(1));
        // The source does not matter, the decision is stable.
        assert_eq!(run(SchedKind::Dh, &[1, 1, 1], 3), vec![Some(0); 3]);
    }

    #[test]
    fn unavailable_target_means_no_destination() {
        let vip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let mut l = loads(&[(0, 0); 3]);
        assert_eq!(to(vip, &[0, 1, 1], &l), None, "quiesced, no fallback");
        l[0].overloaded = true;
        assert_eq!(to(vip, &[1, 1, 1], &l), None, "overloaded, no fallback");
        assert_eq!(to(vip, &[], &[]), None);
    }

    #[test]
    fn ipv6_destinations_fold_their_words() {
        // 2001:db8::1 folds to 0x20010db8 ^ 1 = 0x20010db9, the same as
        // the IPv4 address 32.1.13.185, so both land in the same bucket.
        let v6 = IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let v4 = IpAddr::V4(Ipv4Addr::from(0x2001_0db9));
        let z = loads(&[(0, 0); 7]);
        let w = [1; 7];
        assert_eq!(to(v6, &w, &z), to(v4, &w, &z));
        assert!(to(v6, &w, &z).is_some());
    }
}
