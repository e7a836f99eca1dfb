//! FULLNAT local addresses and their ports (DPVS's `laddr` and `sa_pool`).
//!
//! A FULLNAT connection goes to its real server as (laddr, lport) →
//! (daddr, dport). That 5-tuple must be unique, so a local port needs to
//! be free only towards the same real server: the ports are pooled per
//! (local address, real server address, real server port), as DPVS's
//! `sa_pool` hashes them by destination, and every real server has the
//! whole port space of every local address to itself. (One pool per
//! local address shared by all real servers capped it at about 540 new
//! connections a second with the real servers' TIME_WAIT, and let a SYN
//! flood of 1 k packets a second empty it for everyone.)
//!
//! Each worker allocates from its own slice of every pool: worker `w` of
//! `n` owns the ports `p` with `p % n == w` in [`PORT_MIN`], 65535, so a
//! reply to `laddr:lport` names its owning worker by its port alone and two
//! workers never hand out the same tuple.
//!
//! A pool is a bitmap of the worker's slice (8 KiB / workers per pool), built
//! when a snapshot names the pair ([`LocalPorts::sync`], between bursts)
//! and dropped once neither the snapshot nor a connection needs it.
//! Allocation walks the bitmap from a cursor that only moves forward, so a
//! released port is handed out again only after the whole slice has been
//! (the real server may still hold the old tuple in TIME_WAIT). Nothing is
//! allocated or hashed on the data path: a new connection finds its
//! dest's pools by the dest's index, and only its release looks the pool up
//! by address.

use hashbrown::HashMap;
use std::net::IpAddr;

/// Lowest local port handed out (below: well-known and registered ports
/// a real server might treat specially).
pub const PORT_MIN: u16 = 1024;

/// The worker that owns local port `port` among `n` workers.
#[inline]
pub fn port_owner(port: u16, n: u16) -> u16 {
    if n <= 1 {
        0
    } else {
        port % n
    }
}

/// Identity of a pool: local address, real server address and port (0 for
/// a real server that keeps the client's destination port: one pool for
/// every port of that server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub laddr: IpAddr,
    pub daddr: IpAddr,
    pub dport: u16,
}

/// One pool: a bit per port of this worker's slice, set when in use.
#[derive(Debug)]
struct Pool {
    key: PoolKey,
    bits: Box<[u64]>,
    /// Next slice index to try.
    cursor: u32,
    in_use: u32,
}

/// A worker's local ports over every pool the snapshot names.
#[derive(Debug, Default)]
pub struct LocalPorts {
    worker: u16,
    workers: u16,
    /// Ports in this worker's slice.
    slice: u32,
    /// The first port of the slice; slice index `i` is port
    /// `first + i * workers`.
    first: u32,
    pools: Vec<Pool>,
    by_key: HashMap<PoolKey, u32>,
    /// Per dest (snapshot index): its pools, one per local address of its
    /// service in the service's order, as a range of `dest_pools`.
    dest_first: Vec<u32>,
    dest_pools: Vec<u32>,
    /// Round-robin position over a service's local addresses.
    cursor: usize,
}

impl LocalPorts {
    /// The allocator of worker `worker` among `workers`.
    pub fn new(worker: u16, workers: u16) -> Self {
        let n = workers.max(1) as u32;
        let w = worker as u32 % n;
        let min = PORT_MIN as u32;
        let first = min + (w + n - min % n) % n;
        let slice = if first > u16::MAX as u32 { 0 } else { (u16::MAX as u32 - first) / n + 1 };
        LocalPorts { worker, workers: n as u16, slice, first, ..LocalPorts::default() }
    }

    /// Ports each pool has for this worker.
    pub fn slice(&self) -> u32 {
        self.slice
    }

    #[inline]
    fn port(&self, i: u32) -> u16 {
        (self.first + i * self.workers as u32) as u16
    }

    /// The slice index of `port`, if this worker owns it.
    #[inline]
    fn index(&self, port: u16) -> Option<u32> {
        let p = port as u32;
        if p < self.first || port_owner(port, self.workers) != self.worker {
            return None;
        }
        Some((p - self.first) / self.workers as u32)
    }

    fn pool_for(&mut self, key: PoolKey) -> u32 {
        if let Some(&i) = self.by_key.get(&key) {
            return i;
        }
        let i = self.pools.len() as u32;
        self.pools.push(Pool { key, bits: vec![0u64; self.slice.div_ceil(64) as usize].into_boxed_slice(), cursor: 0, in_use: 0 });
        self.by_key.insert(key, i);
        i
    }

    /// Builds the pools of a new snapshot (control-plane time, between
    /// bursts, so that no allocation happens on the data path): `dests`
    /// yields, per dest in snapshot order, the pool keys of its local
    /// addresses (none for a dest that is not FULLNAT). Pools of pairs no
    /// longer configured are dropped once none of their ports is in use.
    pub fn sync<I, K>(&mut self, dests: I)
    where
        I: IntoIterator<Item = K>,
        K: IntoIterator<Item = PoolKey>,
    {
        let mut wanted: Vec<Vec<PoolKey>> = Vec::new();
        for d in dests {
            wanted.push(d.into_iter().collect());
        }
        // Keep what is wanted or in use, in their old order.
        let keep: hashbrown::HashSet<PoolKey> = wanted.iter().flatten().copied().collect();
        let old = std::mem::take(&mut self.pools);
        self.by_key.clear();
        for p in old {
            if keep.contains(&p.key) || p.in_use > 0 {
                self.by_key.insert(p.key, self.pools.len() as u32);
                self.pools.push(p);
            }
        }
        self.dest_first.clear();
        self.dest_pools.clear();
        for keys in wanted {
            self.dest_first.push(self.dest_pools.len() as u32);
            for k in keys {
                let i = self.pool_for(k);
                self.dest_pools.push(i);
            }
        }
        self.dest_first.push(self.dest_pools.len() as u32);
    }

    /// A free (local address, port) towards dest `dest` (snapshot index),
    /// trying its local addresses round robin. `None` when every port of
    /// every one of its pools is taken (or it has none).
    pub fn alloc(&mut self, dest: usize) -> Option<(IpAddr, u16)> {
        let (a, b) = match (self.dest_first.get(dest), self.dest_first.get(dest + 1)) {
            (Some(&a), Some(&b)) => (a as usize, b as usize),
            _ => return None,
        };
        let n = b - a;
        for k in 0..n {
            let pi = self.dest_pools[a + (self.cursor + k) % n] as usize;
            if let Some(i) = take_bit(&mut self.pools[pi], self.slice) {
                self.cursor = (self.cursor + k + 1) % n;
                let laddr = self.pools[pi].key.laddr;
                return Some((laddr, self.port(i)));
            }
        }
        None
    }

    /// Returns a port to the pool `key` names. Ports of unknown pools or
    /// of other workers, and ports not in use, are ignored.
    pub fn release(&mut self, key: PoolKey, port: u16) {
        let Some(i) = self.index(port) else { return };
        let Some(&pi) = self.by_key.get(&key) else { return };
        let p = &mut self.pools[pi as usize];
        let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if p.bits[w] & bit != 0 {
            p.bits[w] &= !bit;
            p.in_use -= 1;
        }
    }

    /// Takes port `port` of the pool `key` names: a connection received
    /// from a peer director holds it (connection sync). `false` when the
    /// port is not this worker's, already in use, or the pool unknown.
    pub fn reserve(&mut self, key: PoolKey, port: u16) -> bool {
        let Some(i) = self.index(port) else { return false };
        let Some(&pi) = self.by_key.get(&key) else { return false };
        let p = &mut self.pools[pi as usize];
        let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if p.bits[w] & bit != 0 {
            return false;
        }
        p.bits[w] |= bit;
        p.in_use += 1;
        true
    }

    /// Ports in use on local address `addr`, over all its pools.
    pub fn in_use(&self, addr: IpAddr) -> u32 {
        self.pools.iter().filter(|p| p.key.laddr == addr).map(|p| p.in_use).sum()
    }

    /// Ports in use in the pool `key` names.
    pub fn pool_in_use(&self, key: &PoolKey) -> u32 {
        self.by_key.get(key).map_or(0, |&i| self.pools[i as usize].in_use)
    }

    /// Pools held, and bytes of their bitmaps.
    pub fn memory(&self) -> (usize, usize) {
        (self.pools.len(), self.pools.iter().map(|p| p.bits.len() * 8).sum())
    }
}

/// Takes the first free index at or after the pool's cursor (wrapping),
/// marks it used and moves the cursor past it.
fn take_bit(p: &mut Pool, slice: u32) -> Option<u32> {
    if p.in_use >= slice {
        return None;
    }
    let words = p.bits.len();
    let start = p.cursor % slice;
    let mut w = (start / 64) as usize;
    // Bits below the cursor in its word count as taken on the first pass
    // (the last pass comes back to that word without the mask).
    let low = start % 64;
    let mut mask = if low == 0 { 0 } else { (1u64 << low) - 1 };
    for _ in 0..=words {
        let free = !(p.bits[w] | mask);
        mask = 0;
        if free != 0 {
            let i = w as u32 * 64 + free.trailing_zeros();
            if i < slice {
                p.bits[w] |= 1 << (i % 64);
                p.in_use += 1;
                p.cursor = (i + 1) % slice;
                return Some(i);
            }
        }
        w = (w + 1) % words;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(l: &str, d: &str, p: u16) -> PoolKey {
        PoolKey { laddr: ip(l), daddr: ip(d), dport: p }
    }

    /// One dest per entry, each with the given local addresses.
    fn ports(worker: u16, workers: u16, dests: &[(&str, u16, &[&str])]) -> LocalPorts {
        let mut lp = LocalPorts::new(worker, workers);
        lp.sync(dests.iter().map(|(d, p, ls)| ls.iter().map(|l| key(l, d, *p)).collect::<Vec<_>>()));
        lp
    }

    #[test]
    fn a_synced_connection_reserves_its_port() {
        let d = [("10.0.1.1", 80, &["10.0.0.200"][..])];
        let k = key("10.0.0.200", "10.0.1.1", 80);
        let mut a = ports(1, 2, &d);
        let mine = a.port(0);
        assert!(a.reserve(k, mine));
        assert!(!a.reserve(k, mine), "taken");
        assert!(!a.reserve(k, mine + 1), "worker 0's");
        assert!(!a.reserve(key("10.0.0.9", "10.0.1.1", 80), a.port(1)), "unknown pool");
        assert_eq!(a.pool_in_use(&k), 1);
        for _ in 0..10 {
            assert_ne!(a.alloc(0), Some((ip("10.0.0.200"), mine)), "never handed out while reserved");
        }
        a.release(k, mine);
        assert_eq!(a.pool_in_use(&k), 10);
    }

    #[test]
    fn slices_cover_the_port_space_once() {
        for n in [1u16, 2, 3, 7, 64] {
            let mut all = Vec::new();
            for w in 0..n {
                let lp = LocalPorts::new(w, n);
                for i in 0..lp.slice() {
                    let p = lp.port(i);
                    assert_eq!(port_owner(p, n), w);
                    assert_eq!(lp.index(p), Some(i));
                    all.push(p);
                }
                assert_eq!(lp.index(PORT_MIN - 1), None);
            }
            all.sort_unstable();
            assert_eq!(all, (PORT_MIN..=u16::MAX).collect::<Vec<_>>(), "{n} workers");
        }
    }

    #[test]
    fn workers_get_disjoint_ports_that_name_them() {
        let d = [("10.0.1.1", 80, &["10.0.0.200"][..])];
        let mut a = ports(0, 2, &d);
        let mut b = ports(1, 2, &d);
        for _ in 0..100 {
            let (_, pa) = a.alloc(0).unwrap();
            let (_, pb) = b.alloc(0).unwrap();
            assert_eq!(port_owner(pa, 2), 0);
            assert_eq!(port_owner(pb, 2), 1);
            assert!(pa >= PORT_MIN && pb >= PORT_MIN);
        }
    }

    /// Each real server has the whole port space of a local address: the
    /// same port goes out towards both, and emptying one server's pool
    /// leaves the other's whole.
    #[test]
    fn every_real_server_has_its_own_pool() {
        let mut lp = ports(0, 1, &[("10.0.1.1", 80, &["10.0.0.200"]), ("10.0.1.2", 80, &["10.0.0.200"])]);
        let total = lp.slice() as usize;
        assert_eq!(total, (u16::MAX - PORT_MIN) as usize + 1);
        let mut got = Vec::with_capacity(total);
        while let Some((_, p)) = lp.alloc(0) {
            got.push(p);
        }
        assert_eq!(got.len(), total);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), total, "no port handed out twice");
        assert_eq!(lp.alloc(1), Some((ip("10.0.0.200"), PORT_MIN)), "the other server's pool is whole");
        assert_eq!(lp.pool_in_use(&key("10.0.0.200", "10.0.1.1", 80)), total as u32);
        assert_eq!(lp.in_use(ip("10.0.0.200")), total as u32 + 1);
    }

    #[test]
    fn released_ports_come_back_after_the_cursor_has_gone_round() {
        let mut lp = ports(0, 1, &[("10.0.1.1", 80, &["10.0.0.200"])]);
        let k = key("10.0.0.200", "10.0.1.1", 80);
        let a = lp.alloc(0).unwrap().1;
        let b = lp.alloc(0).unwrap().1;
        assert_eq!((a, b), (PORT_MIN, PORT_MIN + 1));
        lp.release(k, a);
        // not at once: the cursor goes on
        assert_eq!(lp.alloc(0).unwrap().1, PORT_MIN + 2);
        while lp.pool_in_use(&k) < lp.slice() {
            lp.alloc(0).unwrap();
        }
        assert_eq!(lp.alloc(0), None);
        lp.release(k, 6000);
        lp.release(k, 5000);
        // the cursor is at the end: 5000 is found first, then 6000
        assert_eq!(lp.alloc(0).unwrap().1, 5000);
        assert_eq!(lp.alloc(0).unwrap().1, 6000);
        assert_eq!(lp.alloc(0), None);
        // foreign, unknown, bogus and double releases are ignored
        lp.release(k, 80);
        lp.release(key("10.0.0.201", "10.0.1.1", 80), 5000);
        lp.release(k, 5000);
        lp.release(k, 5000);
        assert_eq!(lp.pool_in_use(&k), lp.slice() - 1);
    }

    #[test]
    fn round_robin_over_addresses_and_sync() {
        let mut lp = ports(0, 1, &[("10.0.1.1", 80, &["10.0.0.200", "10.0.0.201"])]);
        let x = lp.alloc(0).unwrap();
        let y = lp.alloc(0).unwrap();
        assert_ne!(x.0, y.0);
        // 10.0.0.200 is no longer configured: its pool stays while a port
        // of it is in use, and the dest allocates from 10.0.0.201 only
        lp.sync([vec![key("10.0.0.201", "10.0.1.1", 80)]]);
        assert_eq!(lp.in_use(ip("10.0.0.200")), 1, "pool kept while a port is in use");
        assert_eq!(lp.alloc(0).unwrap().0, ip("10.0.0.201"));
        lp.release(key("10.0.0.200", "10.0.1.1", 80), x.1);
        lp.sync([vec![key("10.0.0.201", "10.0.1.1", 80)]]);
        assert_eq!(lp.in_use(ip("10.0.0.200")), 0);
        assert_eq!(lp.memory().0, 1);
        // a dest without pools, and one beyond the snapshot
        lp.sync([vec![], vec![key("10.0.0.201", "10.0.1.1", 80)]]);
        assert_eq!(lp.alloc(0), None);
        assert_eq!(lp.alloc(1).unwrap().0, ip("10.0.0.201"));
        assert_eq!(lp.alloc(7), None);
    }

    /// The bitmap search agrees with a plain model for any slice length
    /// (not a multiple of 64), cursor and set of ports in use.
    #[test]
    fn take_bit_agrees_with_a_model() {
        let mut x = 0x9e37_79b9u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for slice in [1u32, 63, 64, 65, 130, 1000] {
            let mut p = Pool { key: key("10.0.0.200", "10.0.1.1", 80), bits: vec![0; slice.div_ceil(64) as usize].into(), cursor: 0, in_use: 0 };
            let mut used = vec![false; slice as usize];
            for _ in 0..4000 {
                if rnd() % 3 == 0 {
                    let i = (rnd() % slice as u64) as usize;
                    if used[i] {
                        used[i] = false;
                        p.bits[i / 64] &= !(1 << (i % 64));
                        p.in_use -= 1;
                    }
                    continue;
                }
                let start = p.cursor;
                let want = (0..slice).map(|k| (start + k) % slice).find(|&i| !used[i as usize]);
                let got = take_bit(&mut p, slice);
                assert_eq!(got, want, "slice {slice} cursor {start}");
                if let Some(i) = got {
                    used[i as usize] = true;
                }
            }
        }
    }
}
