//! Pieces several schedulers share, each named after its IPVS original:
//! the connection overhead, the first-minimum scan of the least-load
//! schedulers and the weighted least-connection pick built on it, the
//! highest-weight scan of the failover schedulers, the bucket lookup with
//! fallback of the hashing schedulers, the
//! address fold and the two hashes of the hashing schedulers, and the
//! lookup of a remembered real server after the dests changed.
//!
//! Everything here is allocation-free and cannot panic on any input.

use super::SchedCtx;
use crate::ipvs::dest::DestEntry;
use crate::ipvs::dest::DestLoad;
use std::net::IpAddr;

/// IPVS's `ip_vs_dest_conn_overhead`: an active connection costs 256
/// inactive ones. Widened to `i64` so the cross-multiplications with
/// weights below cannot overflow.
#[inline]
pub fn overhead(l: &DestLoad) -> i64 {
    ((l.active as i64) << 8) + l.inactive as i64
}

/// [`overhead`] of dest `i`.
#[inline]
pub fn conn_overhead(ctx: &SchedCtx<'_>, i: usize) -> i64 {
    overhead(&ctx.load(i))
}

/// The dests with their loads (read from their shared counts as the scan
/// reaches them) and indexes: the scans of the load-aware schedulers run
/// over all of them.
#[inline]
pub fn dests_loads<'a>(
    ctx: &SchedCtx<'a>,
) -> impl Iterator<Item = (usize, &'a DestEntry, DestLoad)> + 'a {
    let due = ctx.due;
    ctx.dests.iter().enumerate().map(move |(i, d)| (i, d, load(d, due.get(i).copied().unwrap_or(0))))
}

/// A dest's director-wide load as the schedulers see it: without a next
/// hop it reads as overloaded ([`SchedCtx::overloaded`]).
#[inline]
pub fn load(d: &DestEntry, due: u64) -> DestLoad {
    let mut l = d.shared.get_with(due);
    l.overloaded |= d.hop.is_none();
    l
}

/// Whether a dest may take a new connection ([`SchedCtx::available`]).
#[inline]
pub fn usable(d: &DestEntry, l: &DestLoad) -> bool {
    d.weight > 0 && !l.overloaded
}

/// A candidate of a least-load pick: dest index, weight, overhead.
pub type Cand = (usize, i64, i64);

/// The least-loaded candidate so far of a scan for the first minimum of
/// `overhead / weight`: the loop of IPVS's lc, wlc, sed, nq, lblc, lblcr
/// (`ip_vs_dest_set_min`) and twos. Ratios are compared without division:
/// a candidate replaces the least so far only when `loh * w > oh * lw`,
/// i.e. it is strictly less loaded, so the first minimum in offer order
/// wins ties. Weights and overheads come widened to `i64`, so the products
/// cannot overflow.
#[derive(Clone, Copy, Debug, Default)]
pub struct Least(Option<Cand>);

impl Least {
    /// Considers one more candidate.
    #[inline]
    pub fn offer(&mut self, c: Cand) {
        let better = match self.0 {
            None => true,
            Some((_, lw, loh)) => loh * c.1 > c.2 * lw,
        };
        if better {
            self.0 = Some(c);
        }
    }

    /// The dest index of the least loaded candidate offered, if any.
    #[inline]
    pub fn index(self) -> Option<usize> {
        self.0.map(|(i, ..)| i)
    }
}

/// The [`Least`] of `cands`, in their order.
#[inline]
pub fn first_least(cands: impl IntoIterator<Item = Cand>) -> Option<usize> {
    let mut least = Least::default();
    for c in cands {
        least.offer(c);
    }
    least.index()
}

/// The [`Least`] of the available dests, each offered with `weight(d)`
/// and `cost(load)` as overhead, in list order. (A plain loop over the
/// dests: the same scan through `filter`/`map` adaptors ran 1.3 to 2.5
/// times slower with 1000 dests.)
#[inline]
pub fn least_by(
    ctx: &SchedCtx<'_>,
    weight: impl Fn(&DestEntry) -> i64,
    cost: impl Fn(&DestLoad) -> i64,
) -> Option<usize> {
    let mut least = Least::default();
    for (i, d, l) in dests_loads(ctx) {
        if usable(d, &l) {
            least.offer((i, weight(d), cost(&l)));
        }
    }
    least.index()
}

/// A dest's weight as [`least_by`] takes it.
#[inline]
pub fn weight(d: &DestEntry) -> i64 {
    d.weight as i64
}

/// The weighted least-connection pick of `ip_vs_wlc.c` (also lblc's and
/// lblcr's `__ip_vs_lblc*_schedule`): the first minimum of
/// [`overhead`] per weight among the available dests.
#[inline]
pub fn weighted_least_conn(ctx: &SchedCtx<'_>) -> Option<usize> {
    // IPVS skips only overloaded dests after the first pick; a weight-0
    // dest can never win the comparison (`loh * 0 > doh * w` is false),
    // and negative weights do not exist, so testing `usable` is the same.
    least_by(ctx, weight, overhead)
}

/// The first dest with the highest positive weight among those
/// `eligible`: the loop of IPVS's fo and ovf, which replace their pick
/// only on a strictly higher weight (from 0, so weight 0 never wins).
#[inline]
pub fn first_heaviest(
    ctx: &SchedCtx<'_>,
    eligible: impl Fn(&DestEntry, &DestLoad) -> bool,
) -> Option<usize> {
    let (mut best, mut hw) = (None, 0);
    for (i, d, l) in dests_loads(ctx) {
        // The weight first: once the top weight is held, that cheap test
        // fails at once (measured 1.5-3x faster than eligibility first).
        if d.weight > hw && eligible(d, &l) {
            (best, hw) = (Some(i), d.weight);
        }
    }
    best
}

/// lblc/lblcr's `is_overloaded`: the dest has more active connections than
/// its weight *and* some dest of the service is under half its weight
/// (`active * 2 < weight`). Distinct from the threshold flag
/// [`SchedCtx::overloaded`].
#[inline]
pub fn locality_overloaded(ctx: &SchedCtx<'_>, i: usize) -> bool {
    if ctx.load(i).active as i64 <= ctx.weight(i) as i64 {
        return false;
    }
    dests_loads(ctx).any(|(_, d, l)| (l.active as i64) * 2 < d.weight as i64)
}

/// Where the dest `uid` remembered at index `idx` is now: `idx` itself in
/// the common case, else a search by uid (only after the service's dests
/// changed). `None` when it was removed (IPVS: no longer
/// `IP_VS_DEST_F_AVAILABLE`).
#[inline]
pub fn locate(ctx: &SchedCtx<'_>, idx: u32, uid: u32) -> Option<usize> {
    let n = ctx.dests.len();
    let i = idx as usize;
    if i < n && ctx.dests[i].uid == uid {
        return Some(i);
    }
    locate_slow(ctx, uid, n)
}

#[cold]
fn locate_slow(ctx: &SchedCtx<'_>, uid: u32, n: usize) -> Option<usize> {
    ctx.dests[..n].iter().position(|d| d.uid == uid)
}

/// The 32-bit fold IPVS hashes addresses with: the IPv4 address in host
/// order, or the XOR of the four 32-bit words of an IPv6 address (XOR and
/// `ntohl` commute, so folding big-endian words is the same).
#[inline]
pub fn addr_fold(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |k: usize| u32::from_be_bytes([o[k], o[k + 1], o[k + 2], o[k + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// The kernel's `hash_32(val, bits)`: multiply by the 32-bit golden ratio
/// and keep the top `bits` bits. `bits` must be in 1..=32.
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// The kernel's `hsiphash` of one `u32` on 64-bit machines, which is
/// SipHash-1-3 keyed by two `u64` and truncated to 32 bits. Used by `mh`
/// with IPVS's fixed keys, so our tables equal a 64-bit kernel's.
#[inline]
pub fn hsiphash_u32(key: [u64; 2], v: u32) -> u32 {
    let mut s = [
        0x736f_6d65_7073_6575 ^ key[0],
        0x646f_7261_6e64_6f6d ^ key[1],
        0x6c79_6765_6e65_7261 ^ key[0],
        0x7465_6462_7974_6573 ^ key[1],
    ];
    // Four input bytes: no full 8-byte block; the tail word carries the
    // length in its top byte and the value (little-endian) below.
    let b = (4u64 << 56) | v as u64;
    s[3] ^= b;
    sipround(&mut s);
    s[0] ^= b;
    s[2] ^= 0xff;
    sipround(&mut s);
    sipround(&mut s);
    sipround(&mut s);
    (s[0] ^ s[1] ^ s[2] ^ s[3]) as u32
}

#[inline(always)]
fn sipround(s: &mut [u64; 4]) {
    s[0] = s[0].wrapping_add(s[1]);
    s[1] = s[1].rotate_left(13) ^ s[0];
    s[0] = s[0].rotate_left(32);
    s[2] = s[2].wrapping_add(s[3]);
    s[3] = s[3].rotate_left(16) ^ s[2];
    s[0] = s[0].wrapping_add(s[3]);
    s[3] = s[3].rotate_left(21) ^ s[0];
    s[2] = s[2].wrapping_add(s[1]);
    s[1] = s[1].rotate_left(17) ^ s[2];
    s[2] = s[2].rotate_left(32);
}

/// A dest index as the hash tables store it; `NONE` marks an empty slot.
pub type Slot = u32;
/// The empty slot (IPVS: a bucket whose `dest` is NULL).
pub const NONE: Slot = u32::MAX;

/// The lookup of the hashing schedulers with a fallback flag, IPVS's
/// `ip_vs_sh_get_fallback`/`ip_vs_mh_get_fallback` with their callers:
/// the dest in slot `ihash = key(0)` if it is available; if not, "no
/// destination" unless `fallback`, in which case the slots
/// `key(roffset)` for `roffset = ihash, ihash + 1, ...` (mod the table
/// size) are tried in turn and the first available dest wins. An empty
/// slot or one naming a dest past the end of `ctx.dests` ends the search
/// with `None`. `key` (the scheduler's hash of the connection plus
/// `roffset`) is called only on a non-empty table; a slot it names past
/// the table's end counts as empty.
#[inline]
pub fn hashed_pick(
    ctx: &SchedCtx<'_>,
    slots: &[Slot],
    fallback: bool,
    key: impl Fn(u32) -> usize,
) -> Option<usize> {
    if slots.is_empty() {
        return None;
    }
    let n = ctx.dests.len();
    let ihash = key(0);
    let i = slot(slots, ihash);
    if i >= n {
        return None;
    }
    if ctx.available(i) {
        return Some(i);
    }
    if !fallback {
        return None;
    }
    hashed_fallback(ctx, slots, ihash, n, key)
}

#[cold]
fn hashed_fallback(
    ctx: &SchedCtx<'_>,
    slots: &[Slot],
    ihash: usize,
    n: usize,
    key: impl Fn(u32) -> usize,
) -> Option<usize> {
    // The walk below can only fail when nothing is available; saying so
    // up front spares up to a table's worth of hashes (mh: 65537) per
    // connection in that case.
    if !(0..n).any(|i| ctx.available(i)) {
        return None;
    }
    let m = slots.len();
    for offset in 0..m {
        let roffset = ((offset + ihash) % m) as u32;
        let i = slot(slots, key(roffset));
        if i >= n {
            return None;
        }
        if ctx.available(i) {
            return Some(i);
        }
    }
    None
}

/// The dest index in slot `k` (`NONE`'s value when `k` is out of range).
#[inline]
fn slot(slots: &[Slot], k: usize) -> usize {
    slots.get(k).copied().unwrap_or(NONE) as usize
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Loads and decision loops for the tests of the load-aware schedulers.
    use super::super::testutil::{ctx, dests};
    use super::super::{SchedFlags, SchedKind};
    use crate::ipvs::dest::DestEntry;
    use crate::ipvs::dest::DestLoad;
    use std::net::{IpAddr, Ipv4Addr};

    /// Like `testutil::dests` for any number of dests: 10.1.x.y, uid i+1.
    pub fn many_dests(weights: &[i32]) -> Vec<DestEntry> {
        let proto = dests(&[1]).remove(0);
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| DestEntry {
                uid: i as u32 + 1,
                addr: IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i as u32)),
                weight,
                // Each its own counts (a clone would share the prototype's).
                shared: Default::default(),
                ..proto.clone()
            })
            .collect()
    }

    /// A load vector from `(active, inactive)` pairs.
    pub fn loads(v: &[(u32, u32)]) -> Vec<DestLoad> {
        v.iter()
            .map(|&(active, inactive)| DestLoad {
                active,
                inactive,
                ..DestLoad::default()
            })
            .collect()
    }

    /// One decision with the given weights and loads.
    pub fn pick(kind: SchedKind, weights: &[i32], load: &[DestLoad]) -> Option<usize> {
        let d = dests(weights);
        let t = kind.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        t.schedule(&mut s, &ctx(&d, load))
    }

    /// `n` decisions where every picked dest gets one more active
    /// connection (long-lived connections piling up), as a worker's
    /// accounting would do. Returns the decisions and the final loads.
    pub fn pile_up(
        kind: SchedKind,
        weights: &[i32],
        start: &[DestLoad],
        n: usize,
    ) -> (Vec<Option<usize>>, Vec<DestLoad>) {
        let d = dests(weights);
        let mut load = start.to_vec();
        let t = kind.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            let g = t.schedule(&mut s, &ctx(&d, &load));
            if let Some(i) = g {
                load[i].active += 1;
            }
            got.push(g);
        }
        (got, load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn fold_v4_is_host_order_and_v6_xors_words() {
        assert_eq!(
            addr_fold(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            0x0a00_0001
        );
        let v6: Ipv6Addr = "2001:db8::1:0:0:1".parse().unwrap();
        // words 0x20010db8, 0x00000000, 0x00010000, 0x00000001
        assert_eq!(addr_fold(IpAddr::V6(v6)), 0x2001_0db8 ^ 0x0001_0000 ^ 1);
    }

    #[test]
    fn first_least_is_the_first_minimum_of_overhead_per_weight() {
        // 512/2 = 256 vs 300/1: the first; then 100/1 is strictly less.
        assert_eq!(
            first_least([(0, 2, 512), (1, 1, 300), (2, 1, 100)]),
            Some(2)
        );
        // 256/1 == 512/2: a tie keeps the first offered.
        assert_eq!(first_least([(4, 1, 256), (3, 2, 512)]), Some(4));
        // Weight 0 never replaces the least so far (`loh * 0 > oh * lw`
        // is false), nor is it replaced once first: callers offer only
        // available dests.
        assert_eq!(first_least([(0, 1, 9), (1, 0, 0)]), Some(0));
        assert_eq!(first_least([(1, 0, 0), (0, 1, 9)]), Some(1));
        assert_eq!(first_least([]), None);
        let mut l = Least::default();
        assert_eq!(l.index(), None);
        l.offer((7, 3, 3));
        l.offer((8, 1, 1));
        assert_eq!(l.index(), Some(7));
    }

    #[test]
    fn hash_32_matches_kernel_definition() {
        // hash_32(1, 8) = 0x61C88647 >> 24 = 0x61
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(2, 32), 0xC391_0C8E);
    }

    /// Textbook SipHash-c-d (message loop, tail word with the length).
    fn siphash(c: usize, d: usize, k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut v = [
            k0 ^ 0x736f6d6570736575,
            k1 ^ 0x646f72616e646f6d,
            k0 ^ 0x6c7967656e657261,
            k1 ^ 0x7465646279746573,
        ];
        let blocks = msg.len() / 8;
        let mut words: Vec<u64> = (0..blocks)
            .map(|b| u64::from_le_bytes(msg[b * 8..b * 8 + 8].try_into().unwrap()))
            .collect();
        let mut tail = [0u8; 8];
        tail[..msg.len() % 8].copy_from_slice(&msg[blocks * 8..]);
        words.push(u64::from_le_bytes(tail) | ((msg.len() as u64) << 56));
        for m in words {
            v[3] ^= m;
            for _ in 0..c {
                sipround(&mut v);
            }
            v[0] ^= m;
        }
        v[2] ^= 0xff;
        for _ in 0..d {
            sipround(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    #[test]
    fn siphash_round_matches_published_vectors() {
        // SipHash-2-4, key 00..0f: the paper's vectors for the empty
        // message and for 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(siphash(2, 4, k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash(2, 4, k0, k1, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn hsiphash_is_siphash13_of_four_bytes_truncated() {
        for v in [0u32, 1, 0xdead_beef, u32::MAX] {
            for k in [
                [2654435761u64, 2654435761],
                [2654446892, 2654446892],
                [1, 2],
            ] {
                let want = siphash(1, 3, k[0], k[1], &v.to_le_bytes()) as u32;
                assert_eq!(hsiphash_u32(k, v), want);
            }
        }
    }
}
