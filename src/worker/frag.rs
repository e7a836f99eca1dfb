//! Fragments without reassembly (VPP's shallow virtual reassembly).
//!
//! Only the first fragment of a datagram carries its ports. The worker
//! handles it like any packet (connection lookup, scheduling, forwarding)
//! and remembers here what became of it, keyed by what every fragment
//! carries: source, destination, protocol and IP identification. Later
//! fragments look that up and follow: the same connection (whose ports
//! the entry keeps), the same worker, the kernel, or the same drop.
//!
//! The table is a fixed array, two ways per set, allocated once: an entry
//! lives [`FRAG_TIMEOUT_TICKS`] and a new datagram takes an empty or
//! expired way of its set, else the one expiring first. A later fragment
//! that finds nothing (it overtook its first fragment, or its entry
//! expired or was displaced) is dropped, counted as `frag_no_head`.

use crate::ipvs::timer;
use crate::stats::DropReason;

/// Entries per worker (a power of two).
pub const FRAG_SLOTS: usize = 2048;
/// How long the fragments of a datagram may trail its first one: 2 s.
pub const FRAG_TIMEOUT_TICKS: u32 = 2 * timer::TICKS_PER_SEC;

/// What every fragment of a datagram carries: addresses (IPv4 mapped into
/// IPv6), protocol and identification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
}

impl FragKey {
    fn hash(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let mut mix = |b: u8| h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        self.src.iter().chain(&self.dst).chain(&self.id.to_ne_bytes()).for_each(|&b| mix(b));
        mix(self.proto);
        h ^ (h >> 15)
    }
}

/// What the first fragment's datagram became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Forwarded on the connection of these ports (as the first fragment
    /// carried them, before any rewrite).
    Conn { sport: u16, dport: u16 },
    /// Handed to this worker, which owns its flow.
    Handoff(u16),
    /// Given to the kernel.
    Kernel,
    /// Dropped for this reason.
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: FragKey,
    expires: u32,
    what: Follow,
    used: bool,
}

/// The per-worker table. See the module docs.
pub struct FragTable {
    slots: Box<[Slot]>,
}

impl Default for FragTable {
    fn default() -> Self {
        let s = Slot { key: FragKey::default(), expires: 0, what: Follow::Kernel, used: false };
        FragTable { slots: vec![s; FRAG_SLOTS].into_boxed_slice() }
    }
}

impl FragTable {
    #[inline]
    fn set(&self, k: &FragKey) -> usize {
        (k.hash() as usize & (FRAG_SLOTS - 1)) & !1
    }

    /// Remembers what became of `k`'s datagram (from now, at tick `now`).
    pub fn insert(&mut self, k: FragKey, what: Follow, now: u32) {
        let i = self.set(&k);
        let live = |s: &Slot| s.used && !timer::reached(now, s.expires);
        let pick = if self.slots[i].key == k || !live(&self.slots[i]) {
            i
        } else if self.slots[i + 1].key == k || !live(&self.slots[i + 1]) {
            i + 1
        } else if timer::reached(self.slots[i + 1].expires, self.slots[i].expires) {
            // slot i expires first (or together)
            i
        } else {
            i + 1
        };
        self.slots[pick] = Slot { key: k, expires: now.wrapping_add(FRAG_TIMEOUT_TICKS), what, used: true };
    }

    /// What became of `k`'s datagram, if its entry is still there.
    pub fn get(&self, k: &FragKey, now: u32) -> Option<Follow> {
        let i = self.set(k);
        self.slots[i..i + 2]
            .iter()
            .find(|s| s.used && s.key == *k && !timer::reached(now, s.expires))
            .map(|s| s.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey { src: [1; 16], dst: [2; 16], id, proto: 17 }
    }

    #[test]
    fn entries_live_for_the_timeout_and_follow_their_key() {
        let mut t = FragTable::default();
        t.insert(key(7), Follow::Conn { sport: 1, dport: 2 }, 100);
        assert_eq!(t.get(&key(7), 100), Some(Follow::Conn { sport: 1, dport: 2 }));
        assert_eq!(t.get(&key(8), 100), None);
        let mut other = key(7);
        other.proto = 6;
        assert_eq!(t.get(&other, 100), None, "the protocol is part of the key");
        assert_eq!(t.get(&key(7), 100 + FRAG_TIMEOUT_TICKS - 1), Some(Follow::Conn { sport: 1, dport: 2 }));
        assert_eq!(t.get(&key(7), 100 + FRAG_TIMEOUT_TICKS), None, "expired");
        t.insert(key(7), Follow::Kernel, 200);
        assert_eq!(t.get(&key(7), 200), Some(Follow::Kernel), "a new first fragment replaces the entry");
    }

    #[test]
    fn a_full_set_gives_up_the_entry_expiring_first() {
        let mut t = FragTable::default();
        // Three keys of one set: find them by brute force.
        let s = t.set(&key(0));
        let same: Vec<u32> = (1..100_000).filter(|&i| t.set(&key(i)) == s).take(2).collect();
        t.insert(key(0), Follow::Kernel, 10);
        t.insert(key(same[0]), Follow::Handoff(1), 20);
        t.insert(key(same[1]), Follow::Handoff(2), 30);
        assert_eq!(t.get(&key(0), 30), None, "the oldest went");
        assert_eq!(t.get(&key(same[0]), 30), Some(Follow::Handoff(1)));
        assert_eq!(t.get(&key(same[1]), 30), Some(Follow::Handoff(2)));
    }
}
