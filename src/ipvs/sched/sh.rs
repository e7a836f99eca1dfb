//! `sh` — source hashing (IPVS `ip_vs_sh.c`).
//!
//! A static 256-bucket table, built by the control plane: walking the real
//! servers in list order, each fills `weight` consecutive buckets (at least
//! one, also at weight 0) and the walk wraps until all 256 are assigned, so
//! weights set the share of source addresses. A new connection goes to
//! bucket `hash_32(fold(saddr) + port, 8)` where `port` is the client's
//! source port with `sh-port` (flag-2) and 0 otherwise.
//!
//! When that server is quiesced or overloaded: "no destination", unless
//! `sh-fallback` (flag-1) is set; then, as IPVS, the buckets
//! `(roffset + hash) mod 256` for `roffset = ihash, ihash + 1, ...` are
//! tried in turn (a deterministic walk from the original bucket) and the
//! first available server wins. No worker state.

use super::util::{addr_fold, hash_32, hashed_pick, Slot, NONE};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Sh;

/// Bits of the bucket index (IPVS's `CONFIG_IP_VS_SH_TAB_BITS`).
pub const SH_TAB_BITS: u32 = 8;
const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;
const SH_TAB_MASK: u32 = SH_TAB_SIZE as u32 - 1;

/// The bucket table and the service's sh flags.
pub struct ShTable {
    buckets: Box<[Slot; SH_TAB_SIZE]>,
    fallback: bool,
    port: bool,
}

impl std::fmt::Debug for ShTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShTable")
            .field("first", &&self.buckets[..8])
            .field("fallback", &self.fallback)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ShTable {
    /// The dest index of bucket `b` (for tests and diagnostics).
    pub fn bucket(&self, b: usize) -> Option<usize> {
        self.buckets
            .get(b)
            .filter(|&&s| s != NONE)
            .map(|&s| s as usize)
    }
}

/// IPVS's `ip_vs_sh_hashkey`.
#[inline]
fn hashkey(fold: u32, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32((port as u32).wrapping_add(fold), SH_TAB_BITS)) & SH_TAB_MASK)
        as usize
}

impl Scheduler for Sh {
    const NAME: &'static str = "sh";
    type Table = ShTable;
    type State = ();

    fn build(dests: &[DestEntry], flags: SchedFlags) -> ShTable {
        let mut buckets = Box::new([NONE; SH_TAB_SIZE]);
        if !dests.is_empty() {
            let (mut p, mut count) = (0usize, 0i64);
            for b in buckets.iter_mut() {
                *b = p as Slot;
                // Stay on this dest until it filled `weight` buckets.
                count += 1;
                if count >= dests[p].weight as i64 {
                    p = (p + 1) % dests.len();
                    count = 0;
                }
            }
        }
        ShTable {
            buckets,
            fallback: flags.has(SchedFlags::FLAG1),
            port: flags.has(SchedFlags::FLAG2),
        }
    }

    fn changed(_t: &ShTable, _s: &mut ()) {}

    fn schedule(t: &ShTable, _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        let fold = addr_fold(ctx.saddr);
        let port = if t.port { ctx.sport } else { 0 };
        hashed_pick(ctx, &t.buckets[..], t.fallback, |roffset| {
            hashkey(fold, port, roffset)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::util::testutil::*;
    use super::super::*;
    use super::*;
    use crate::ipvs::dest::DestLoad;
    use std::net::{IpAddr, Ipv4Addr};

    fn from(
        flags: u8,
        weights: &[i32],
        load: &[DestLoad],
        saddr: IpAddr,
        sport: u16,
    ) -> Option<usize> {
        let d = dests(weights);
        let t = SchedKind::Sh.build(&d, SchedFlags(flags));
        let mut s = t.new_state();
        t.schedule(
            &mut s,
            &SchedCtx {
                saddr,
                sport,
                ..ctx(&d, load)
            },
        )
    }

    #[test]
    fn weights_fill_consecutive_buckets() {
        // 1:2:3 → a, b, b, c, c, c, then again from a.
        let t = Sh::build(&dests(&[1, 2, 3]), SchedFlags::default());
        let pattern = [0, 1, 1, 2, 2, 2];
        assert!((0..256).all(|b| t.bucket(b) == Some(pattern[b % 6])));
        // Weight 0 still takes one bucket (IPVS moves on after it), and is
        // then refused as quiesced.
        let t = Sh::build(&dests(&[0, 2]), SchedFlags::default());
        assert!((0..256).all(|b| t.bucket(b) == Some([0, 1, 1][b % 3])));
    }

    #[test]
    fn source_address_picks_the_bucket() {
        // 192.0.2.1 = 0xC0000201: hash_32 → bucket 50; with 1:2:3 bucket
        // 50 is pattern[50 mod 6 = 2] = b.
        let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let z = loads(&[(0, 0); 3]);
        assert_eq!(from(0, &[1, 2, 3], &z, src, 1), Some(1));
        // Without sh-port the source port is ignored.
        assert_eq!(from(0, &[1, 2, 3], &z, src, 2), Some(1));
    }

    #[test]
    fn sh_port_adds_the_source_port() {
        // hash_32(0xC0000201 + 40000) → bucket 214 → 214 mod 6 = 4 → c;
        // port 40001 → bucket 56 → 56 mod 6 = 2 → b.
        let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let z = loads(&[(0, 0); 3]);
        assert_eq!(from(SchedFlags::FLAG2, &[1, 2, 3], &z, src, 40000), Some(2));
        assert_eq!(from(SchedFlags::FLAG2, &[1, 2, 3], &z, src, 40001), Some(1));
    }

    #[test]
    fn fallback_walks_the_table_from_the_original_bucket() {
        // 1:1 → buckets alternate a, b. Source 192.0.2.1 → bucket 50 → a.
        // With a overloaded: offset 0 gives roffset 50 and bucket
        // (50 + 50) mod 256 = 100 → a again; offset 1 gives bucket 101 → b.
        let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut l = loads(&[(0, 0); 2]);
        assert_eq!(from(0, &[1, 1], &l, src, 0), Some(0));
        l[0].overloaded = true;
        assert_eq!(from(0, &[1, 1], &l, src, 0), None, "no fallback flag");
        assert_eq!(from(SchedFlags::FLAG1, &[1, 1], &l, src, 0), Some(1));
        // Quiesced works the same way.
        let z = loads(&[(0, 0); 2]);
        assert_eq!(from(SchedFlags::FLAG1, &[0, 1], &z, src, 0), Some(1));
        // Nothing available: none, after at most one walk of the table.
        l[1].overloaded = true;
        assert_eq!(from(SchedFlags::FLAG1, &[1, 1], &l, src, 0), None);
        assert_eq!(from(SchedFlags::FLAG1, &[], &[], src, 0), None);
    }

    #[test]
    fn shares_of_sources_follow_weights() {
        // Over many sources the bucket pattern's 1:2:3 shows through:
        // each share within 3 points of 1/6, 2/6, 3/6.
        let d = dests(&[1, 2, 3]);
        let z = loads(&[(0, 0); 3]);
        let t = SchedKind::Sh.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        let mut count = [0usize; 3];
        for k in 0..30_000u32 {
            let saddr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k * 7919));
            count[t
                .schedule(
                    &mut s,
                    &SchedCtx {
                        saddr,
                        ..ctx(&d, &z)
                    },
                )
                .unwrap()] += 1;
        }
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].into_iter().enumerate() {
            let share = count[i] as f64 / 30_000.0;
            assert!((share - want).abs() < 0.03, "server {i}: {share}");
        }
    }
}
