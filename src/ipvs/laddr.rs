//! FULLNAT local addresses and their ports (DPVS's `laddr`).
//!
//! Each worker allocates local ports from its own slice of every local
//! address's port space: worker `w` of `n` owns the ports `p` with
//! `p % n == w` in [`PORT_MIN`, 65535]. A reply to `laddr:lport` therefore
//! names its owning worker by its port alone, and two workers can never
//! hand out the same (laddr, lport). Ports are reused least recently
//! released first, which keeps a just-closed (laddr, lport, raddr, rport)
//! out of use for as long as possible (the real server may still hold it
//! in TIME_WAIT).

use hashbrown::HashMap;
use std::collections::VecDeque;
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

/// One local address's free ports, for one worker.
#[derive(Debug)]
struct Ports {
    /// Free ports, least recently released first. May hold ports that
    /// were taken by [`LocalPorts::reserve`] since: `used` tells, and
    /// `alloc` drops them when it meets them.
    free: VecDeque<u16>,
    in_use: u32,
    /// Bit `p`: port `p` is in use.
    used: Box<[u64; 1024]>,
}

impl Ports {
    #[inline]
    fn is_used(&self, p: u16) -> bool {
        self.used[p as usize >> 6] & (1 << (p & 63)) != 0
    }
    #[inline]
    fn set_used(&mut self, p: u16, on: bool) {
        let (w, b) = (p as usize >> 6, 1u64 << (p & 63));
        if on {
            self.used[w] |= b;
        } else {
            self.used[w] &= !b;
        }
    }
}

/// A worker's local port allocator over every local address it has seen.
#[derive(Debug, Default)]
pub struct LocalPorts {
    worker: u16,
    workers: u16,
    pools: HashMap<IpAddr, Ports>,
    /// Round-robin position over a service's local addresses.
    cursor: usize,
}

impl LocalPorts {
    /// The allocator of worker `worker` among `workers`.
    pub fn new(worker: u16, workers: u16) -> Self {
        LocalPorts { worker, workers: workers.max(1), pools: HashMap::new(), cursor: 0 }
    }

    fn pool(&mut self, addr: IpAddr) -> &mut Ports {
        let (w, n) = (self.worker, self.workers);
        self.pools.entry(addr).or_insert_with(|| Ports {
            free: (PORT_MIN..=u16::MAX).filter(|p| port_owner(*p, n) == w).collect(),
            in_use: 0,
            used: Box::new([0; 1024]),
        })
    }

    /// Makes sure the pools of `addrs` exist (control-plane time, so that
    /// allocating on the data path never builds one) and drops pools of
    /// addresses no longer configured once none of their ports is in use.
    pub fn sync<'a>(&mut self, addrs: impl Iterator<Item = &'a IpAddr>) {
        let keep: hashbrown::HashSet<IpAddr> = addrs.copied().collect();
        for a in &keep {
            self.pool(*a);
        }
        self.pools.retain(|a, p| keep.contains(a) || p.in_use > 0);
    }

    /// A free (address, port) from `laddrs`, trying them round robin.
    /// `None` when every port of every address is taken.
    pub fn alloc(&mut self, laddrs: &[IpAddr]) -> Option<(IpAddr, u16)> {
        let n = laddrs.len();
        for k in 0..n {
            let a = laddrs[(self.cursor + k) % n];
            let p = self.pool(a);
            while let Some(port) = p.free.pop_front() {
                if p.is_used(port) {
                    // Reserved for a synced connection since it was freed.
                    continue;
                }
                p.set_used(port, true);
                p.in_use += 1;
                self.cursor = (self.cursor + k + 1) % n;
                return Some((a, port));
            }
        }
        None
    }

    /// Returns a port. Ports of unknown addresses or of other workers are
    /// ignored.
    pub fn release(&mut self, addr: IpAddr, port: u16) {
        if port < PORT_MIN || port_owner(port, self.workers) != self.worker {
            return;
        }
        if let Some(p) = self.pools.get_mut(&addr) {
            if p.is_used(port) {
                p.set_used(port, false);
                p.in_use -= 1;
                p.free.push_back(port);
            }
        }
    }

    /// Takes port `port` of `addr` out of the free list: a connection
    /// received from a peer director holds it (connection sync). `false`
    /// when it is not this worker's, not free, or `addr` unknown.
    pub fn reserve(&mut self, addr: IpAddr, port: u16) -> bool {
        if port < PORT_MIN || port_owner(port, self.workers) != self.worker {
            return false;
        }
        let Some(p) = self.pools.get_mut(&addr) else { return false };
        if p.is_used(port) {
            return false;
        }
        // Its entry in `free` stays: `alloc` skips it while it is used.
        p.set_used(port, true);
        p.in_use += 1;
        true
    }

    /// Ports in use on `addr`.
    pub fn in_use(&self, addr: IpAddr) -> u32 {
        self.pools.get(&addr).map_or(0, |p| p.in_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_synced_connection_reserves_its_port() {
        let l = [ip("10.0.0.200")];
        let mut a = LocalPorts::new(1, 2);
        a.sync(l.iter());
        assert!(a.reserve(l[0], 1025));
        assert!(!a.reserve(l[0], 1025), "taken");
        assert!(!a.reserve(l[0], 1026), "worker 0's");
        assert!(!a.reserve(ip("10.0.0.9"), 1027), "unknown address");
        assert_eq!(a.in_use(l[0]), 1);
        for _ in 0..10 {
            assert_ne!(a.alloc(&l), Some((l[0], 1025)), "never handed out while reserved");
        }
        a.release(l[0], 1025);
        assert_eq!(a.in_use(l[0]), 10);
    }

    #[test]
    fn workers_get_disjoint_ports_that_name_them() {
        let l = [ip("10.0.0.200")];
        let mut a = LocalPorts::new(0, 2);
        let mut b = LocalPorts::new(1, 2);
        for _ in 0..100 {
            let (_, pa) = a.alloc(&l).unwrap();
            let (_, pb) = b.alloc(&l).unwrap();
            assert_eq!(port_owner(pa, 2), 0);
            assert_eq!(port_owner(pb, 2), 1);
            assert!(pa >= PORT_MIN && pb >= PORT_MIN);
        }
    }

    #[test]
    fn exhaustion_then_release_reuses_oldest_first() {
        let l = [ip("10.0.0.200")];
        let mut a = LocalPorts::new(0, 1);
        let total = (u16::MAX - PORT_MIN) as usize + 1;
        let mut got = Vec::with_capacity(total);
        while let Some((_, p)) = a.alloc(&l) {
            got.push(p);
        }
        assert_eq!(got.len(), total);
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), total, "no port handed out twice");
        a.release(l[0], 5000);
        a.release(l[0], 6000);
        assert_eq!(a.alloc(&l), Some((l[0], 5000)));
        assert_eq!(a.alloc(&l), Some((l[0], 6000)));
        assert_eq!(a.alloc(&l), None);
    }

    #[test]
    fn round_robin_over_addresses_and_sync() {
        let l = [ip("10.0.0.200"), ip("10.0.0.201")];
        let mut a = LocalPorts::new(0, 1);
        let x = a.alloc(&l).unwrap();
        let y = a.alloc(&l).unwrap();
        assert_ne!(x.0, y.0);
        a.sync([l[1]].iter());
        assert_eq!(a.in_use(l[0]), 1, "pool kept while a port is in use");
        a.release(x.0, x.1);
        a.sync([l[1]].iter());
        assert_eq!(a.in_use(l[0]), 0);
        assert_eq!(a.pools.len(), 1);
        // foreign and bogus ports are ignored
        a.release(l[1], 80);
        a.release(ip("192.0.2.1"), 5000);
    }
}
