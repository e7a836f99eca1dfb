//! A real server ("destination" in IPVS) as the control plane describes it.

use super::FwdMethod;
use crate::wire::Mac;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Largest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65535;

/// A real server of a service: address, port, weight, forwarding method and
/// the connection thresholds of ipvsadm `-x` / `-y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub addr: IpAddr,
    /// Real server port. For DR and TUN it must equal the virtual port (the
    /// packet is not rewritten); 0 on a port-0 service keeps the client's
    /// destination port.
    pub port: u16,
    /// 0 quiesces the server: no new connections, established ones go on.
    pub weight: u32,
    pub fwd: FwdMethod,
    /// Upper connection threshold (0 = none): above it the server takes no
    /// new connections (IPVS's overloaded flag).
    pub u_threshold: u32,
    /// Lower threshold: the overloaded flag clears below it (0 = 3/4 of the
    /// upper threshold, as IPVS).
    pub l_threshold: u32,
    /// PROXY protocol header put in front of each TCP connection's stream
    /// (NAT, FULLNAT; `None`: none) — docs/modes.md.
    pub proxy: Option<crate::wire::proxy::Version>,
}

/// One worker's accounting of a real server: what lc/wlc/sed/nq read and
/// what the thresholds act on. A connection is active in ESTABLISHED and
/// inactive otherwise (IPVS); templates are counted apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestLoad {
    pub active: u32,
    pub inactive: u32,
    /// Persistence templates pointing at this server.
    pub persist: u32,
    /// Above the upper threshold and not yet back under the lower one.
    pub overloaded: bool,
}

impl DestLoad {
    /// Connections counted against the thresholds.
    #[inline]
    pub fn conns(&self) -> u32 {
        self.active + self.inactive
    }

    /// The overloaded flag after a change of the connection count to
    /// `conns` (see [`DestLoad::update_overload`]).
    #[inline]
    fn overload_after(was: bool, conns: u32, upper: u32, lower: u32) -> bool {
        if upper == 0 {
            return false;
        }
        if conns >= upper {
            return true;
        }
        let clear = if lower > 0 { conns < lower } else { (conns as u64) * 4 < (upper as u64) * 3 };
        was && !clear
    }

    /// Re-evaluates the overloaded flag as IPVS does after a connection is
    /// bound or unbound: set at `conns >= upper`, cleared below `lower`
    /// (or `4 * conns < 3 * upper` when `lower` is 0). No thresholds: never set.
    #[inline]
    pub fn update_overload(&mut self, upper: u32, lower: u32) {
        self.overloaded = Self::overload_after(self.overloaded, self.conns(), upper, lower);
    }
}

/// A real server's load as every worker sees it: IPVS's `activeconns`,
/// `inactconns`, `persistconns` and overloaded flag of `struct
/// ip_vs_dest`, shared by the workers, as in IPVS, so that the
/// least-connection schedulers and the thresholds (`-x`, `-y`) see the
/// whole director rather than one worker's share.
///
/// Updated when a connection is bound to the server, moves between
/// active and inactive, or ends — never per packet — with one relaxed
/// atomic add each (active and inactive share a word, so a move is one
/// add too); read when a connection is scheduled. Its own cache line, so
/// that servers' counts do not share one. Like IPVS, two workers that
/// schedule at the same instant may both see a server just under its
/// upper threshold and both bind to it: the threshold may be passed by
/// up to one connection per other worker.
///
/// The control plane keeps one per real server (by uid) from snapshot
/// to snapshot ([`DestEntry::shared`]).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SharedLoad {
    /// `active << 32 | inactive`.
    conns: AtomicU64,
    persist: AtomicU32,
    /// On a line of its own: rr, wrr and the hashing schedulers read it
    /// for every decision, and it changes only at a threshold, while the
    /// counts' line changes with every worker's burst.
    overloaded: crossbeam::utils::CachePadded<AtomicBool>,
}

const ACTIVE: u64 = 1 << 32;

impl SharedLoad {
    /// The counts now.
    #[inline]
    pub fn get(&self) -> DestLoad {
        self.get_with(0)
    }

    /// Whether the server is flagged overloaded.
    #[inline]
    pub fn overloaded(&self) -> bool {
        self.overloaded.load(Relaxed)
    }

    /// Sets the counts (tests, benchmarks).
    pub fn set(&self, l: &DestLoad) {
        self.conns.store(((l.active as u64) << 32) | l.inactive as u64, Relaxed);
        self.persist.store(l.persist, Relaxed);
        self.overloaded.store(l.overloaded, Relaxed);
    }

    /// Re-evaluates the overloaded flag from the count `c` after a change,
    /// as IPVS does when it binds or unbinds a connection.
    #[inline]
    fn overload(&self, c: u64, upper: u32, lower: u32) {
        if upper == 0 && !self.overloaded.load(Relaxed) {
            return;
        }
        let conns = ((c >> 32) as u32).wrapping_add(c as u32);
        let was = self.overloaded.load(Relaxed);
        let now = DestLoad::overload_after(was, conns, upper, lower);
        if now != was {
            self.overloaded.store(now, Relaxed);
        }
    }

    /// A connection bound to the server (active, or inactive), with its
    /// thresholds.
    #[inline]
    pub fn open(&self, inactive: bool, upper: u32, lower: u32) {
        self.add(Self::opened(inactive), upper, lower);
    }

    /// A change of the counts added at once (`delta`: `active << 32 |
    /// inactive`, wrapping, as [`SharedLoad::opened`], [`SharedLoad::TO_ACTIVE`]
    /// and [`SharedLoad::TO_INACTIVE`] and their sums), with the
    /// server's thresholds.
    #[inline]
    pub fn add(&self, delta: u64, upper: u32, lower: u32) {
        let c = self.conns.fetch_add(delta, Relaxed).wrapping_add(delta);
        self.overload(c, upper, lower);
    }

    /// The change a connection bound to the server makes.
    #[inline]
    pub const fn opened(inactive: bool) -> u64 {
        if inactive {
            1
        } else {
            ACTIVE
        }
    }

    /// The change of a connection moving from inactive to active: one
    /// more active and one less inactive in one add (with the counts
    /// never below zero, no borrow crosses the halves; the total, and so
    /// the thresholds, do not change).
    pub const TO_ACTIVE: u64 = ACTIVE - 1;
    /// The change of a connection moving from active to inactive.
    pub const TO_INACTIVE: u64 = 1u64.wrapping_sub(ACTIVE);

    /// The counts now with `due` (a change not added yet) added.
    #[inline]
    pub fn get_with(&self, due: u64) -> DestLoad {
        let c = self.conns.load(Relaxed).wrapping_add(due);
        DestLoad {
            active: (c >> 32) as u32,
            inactive: c as u32,
            persist: self.persist.load(Relaxed),
            overloaded: self.overloaded.load(Relaxed),
        }
    }

    /// A connection unbound from the server.
    #[inline]
    pub fn close(&self, inactive: bool, upper: u32, lower: u32) {
        self.add(Self::opened(inactive).wrapping_neg(), upper, lower);
    }

    /// A persistence template pointing at the server made (`+1`) or gone.
    #[inline]
    pub fn persist(&self, made: bool) {
        if made {
            self.persist.fetch_add(1, Relaxed);
        } else {
            self.persist.fetch_sub(1, Relaxed);
        }
    }

    /// Re-evaluates the flag after the thresholds changed (IPVS clears it
    /// when the upper threshold is removed or raised).
    pub fn thresholds_changed(&self, upper: u32, lower: u32) {
        self.overload(self.conns.load(Relaxed), upper, lower);
    }
}

// What the data path reads of a real server and its next hop: compiled
// by the control plane (`ctl::snapshot`), defined here so that the data
// path depends on nothing above it.

/// Where to send a frame for a neighbour: the egress link (index in
/// `Snapshot::links`: a port, or a VLAN on one) and the neighbour's MAC.
/// Seven bytes: a connection holds two and an IPv4 connection fits one
/// cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub link: u8,
    pub mac: Mac,
}

impl Hop {
    /// Not known yet: a connection from a peer director (connection sync)
    /// whose next hop towards the client the first client packet names.
    /// No link has this index (a snapshot has at most 255 links).
    pub const LEARN: Hop = Hop { link: u8::MAX, mac: [0; 6] };
}

/// A real server, compiled.
#[derive(Clone, Debug)]
pub struct DestEntry {
    pub uid: u32,
    /// Index of its service in `Snapshot::services`.
    pub svc: u32,
    pub addr: IpAddr,
    /// 0 = the packet's destination port.
    pub port: u16,
    pub weight: i32,
    pub fwd: FwdMethod,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// The PROXY protocol version its new TCP connections get.
    pub proxy: Option<crate::wire::proxy::Version>,
    /// Next hop towards it (`None`: no neighbour known yet).
    pub hop: Option<Hop>,
    /// Its connection counts, shared by every worker and kept from
    /// snapshot to snapshot while the real server stays (by uid).
    pub shared: std::sync::Arc<SharedLoad>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counts_and_overload_follow_opens_moves_and_closes() {
        let s = SharedLoad::default();
        s.open(true, 3, 0);
        s.open(false, 3, 0);
        assert_eq!(s.get(), DestLoad { active: 1, inactive: 1, ..DestLoad::default() });
        s.add(SharedLoad::TO_INACTIVE, 3, 0);
        assert_eq!((s.get().active, s.get().inactive), (0, 2));
        s.add(SharedLoad::TO_ACTIVE, 3, 0);
        s.add(SharedLoad::TO_ACTIVE, 3, 0);
        assert_eq!((s.get().active, s.get().inactive), (2, 0));
        s.open(false, 4, 0);
        assert!(!s.overloaded(), "3 is under the upper threshold");
        s.open(false, 4, 0);
        assert!(s.overloaded(), "at the upper threshold");
        s.close(false, 4, 0);
        assert!(s.overloaded(), "3 is not below 3/4 of 4");
        s.close(false, 4, 0);
        assert!(!s.overloaded(), "2 is");
        s.open(false, 1, 0);
        assert!(s.overloaded());
        s.thresholds_changed(0, 0);
        assert!(!s.overloaded(), "no threshold, no flag");
        s.persist(true);
        s.persist(true);
        s.persist(false);
        assert_eq!(s.get(), DestLoad { active: 3, inactive: 0, persist: 1, overloaded: false });
        s.set(&DestLoad { active: 7, inactive: 9, persist: 0, overloaded: true });
        assert_eq!(s.get(), DestLoad { active: 7, inactive: 9, persist: 0, overloaded: true });
        assert!(std::mem::align_of::<SharedLoad>() >= 64);
        // The flag on another line than the counts.
        let flag = &*s.overloaded as *const AtomicBool as isize;
        let conns = &s.conns as *const AtomicU64 as isize;
        assert!((flag - conns).unsigned_abs() >= 64);
        // A worker's summed changes added at once are the same changes.
        let (a, b) = (SharedLoad::default(), SharedLoad::default());
        for inactive in [true, true, false] {
            a.open(inactive, 0, 0);
        }
        a.add(SharedLoad::TO_ACTIVE, 0, 0);
        a.add(SharedLoad::TO_INACTIVE, 0, 0);
        a.add(SharedLoad::TO_INACTIVE, 0, 0);
        let sum = SharedLoad::opened(true)
            .wrapping_add(SharedLoad::opened(true))
            .wrapping_add(SharedLoad::opened(false))
            .wrapping_add(SharedLoad::TO_ACTIVE)
            .wrapping_add(SharedLoad::TO_INACTIVE)
            .wrapping_add(SharedLoad::TO_INACTIVE);
        b.add(sum, 0, 0);
        assert_eq!(a.get(), b.get());
        assert_eq!(b.get(), DestLoad { active: 0, inactive: 3, persist: 0, overloaded: false });
        assert_eq!(b.get_with(SharedLoad::TO_ACTIVE), DestLoad { active: 1, inactive: 2, persist: 0, overloaded: false });
        b.add(SharedLoad::opened(false), 4, 0);
        b.add(SharedLoad::opened(false), 4, 0);
        assert!(b.overloaded(), "the sum reaches the upper threshold");
    }

    #[test]
    fn shared_counts_are_exact_under_concurrent_updates() {
        let s = std::sync::Arc::new(SharedLoad::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        // even: opened inactive, made active; odd: the reverse
                        s.open(i % 2 == 0, 0, 0);
                        s.add(if i % 2 == 1 { SharedLoad::TO_INACTIVE } else { SharedLoad::TO_ACTIVE }, 0, 0);
                        if i % 6 == 0 {
                            s.close(false, 0, 0);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Per thread: 10 000 opened, every one moved to the other side
        // (5 000 each way), and 1 667 active ones closed.
        let l = s.get();
        assert_eq!((l.active, l.inactive), (4 * (5_000 - 1_667), 4 * 5_000));
    }

    #[test]
    fn overload_hysteresis() {
        let mut l = DestLoad { inactive: 3, ..DestLoad::default() };
        l.update_overload(4, 0);
        assert!(!l.overloaded);
        l.active = 1;
        l.update_overload(4, 0);
        assert!(l.overloaded, "at the upper threshold");
        l.active = 0; // 3 conns: 3/4 of 4 is 3, not below it
        l.update_overload(4, 0);
        assert!(l.overloaded);
        l.inactive = 2;
        l.update_overload(4, 0);
        assert!(!l.overloaded, "below the lower threshold");
        l.inactive = 10;
        l.update_overload(0, 0);
        assert!(!l.overloaded, "no threshold, no overload");
    }
}
