//! Connection expiry by a timer wheel, never a full scan.
//!
//! Time is counted in ticks of [`TICK_NS`]. Every entry sits in exactly one
//! slot, the one of its expiry tick modulo the wheel size. Refreshing a
//! connection on a packet only writes its new expiry (no wheel operation):
//! when the slot comes round, the owner looks at the entry's current expiry
//! and either expires it or puts it back in the slot of the new time — the
//! lazy scheme keeps the per-packet cost at one store. Expiries beyond the
//! wheel's span simply go round again.

/// Length of a tick: 100 ms. IPVS timeouts are whole seconds.
pub const TICK_NS: u64 = 100_000_000;
/// Ticks per second.
pub const TICKS_PER_SEC: u32 = (1_000_000_000 / TICK_NS) as u32;
/// Slots in the wheel (a power of two): 4096 ticks = 409.6 s per turn.
const SLOTS: usize = 4096;

/// Entries an empty slot keeps room for (see [`Wheel::emptied`]).
const SLOT_KEEP: usize = 256;

/// How far ahead an expiry may lie: tick numbers are `u32` compared with
/// wrapping arithmetic ([`reached`]), so a time more than 2^31 ticks
/// (6.8 years) ahead reads as already past — a timeout that long would
/// expire at once, not never.
pub const HORIZON_TICKS: u32 = u32::MAX / 2;

/// Longest timeout in seconds (connection states, persistence): 31 days,
/// ipvsadm's and keepalived's bound. Every timeout that reaches a worker
/// is checked against it (the config, xvsadm, the control socket:
/// `Snapshot::build`), far inside the wheel's [`HORIZON_TICKS`].
pub const MAX_TIMEOUT: u32 = 31 * 86400;

const _: () = assert!((MAX_TIMEOUT as u64) * (TICKS_PER_SEC as u64) < HORIZON_TICKS as u64 / 2);

/// Converts a monotonic time in ns to ticks. Tick numbers are `u32` and
/// compared with wrapping arithmetic (they wrap after 13 years).
#[inline]
pub fn ticks(now_ns: u64) -> u32 {
    (now_ns / TICK_NS) as u32
}

/// Converts seconds to ticks.
#[inline]
pub fn secs(s: u32) -> u32 {
    s.saturating_mul(TICKS_PER_SEC)
}

/// `a` is at or after `b` in wrapping tick arithmetic.
#[inline]
pub fn reached(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < HORIZON_TICKS
}

/// The wheel. Entries are `u32` ids (connection slab indexes).
#[derive(Clone)]
pub struct Wheel {
    slots: Vec<Vec<u32>>,
    /// A bit per slot, set when an entry goes in and cleared when the
    /// slot is seen empty: a superset of the slots holding entries, so a
    /// look ahead ([`Wheel::evict_ahead`]) passes over a run of empty
    /// slots a word at a time (a SYN storm's entries lie a whole SYN_RECV
    /// timeout, 600 slots, ahead).
    busy: [u64; SLOTS / 64],
    /// The next tick to process.
    next: u32,
    /// Position inside the slot of `next` when a budget ran out.
    cursor: usize,
    /// Where the next [`Wheel::evict_ahead`] starts: the tick of a slot
    /// and the position in it; and whether the searches since the last
    /// entry taken began at the next tick (`false`: they went on from an
    /// entry taken).
    hunt: u32,
    hunt_i: usize,
    hunt_front: bool,
    len: usize,
}

impl Wheel {
    /// An empty wheel whose clock starts at `now` (ticks).
    pub fn new(now: u32) -> Wheel {
        Wheel { slots: (0..SLOTS).map(|_| Vec::new()).collect(), busy: [0; SLOTS / 64], next: now, cursor: 0, hunt: now, hunt_i: 0, hunt_front: true, len: 0 }
    }

    /// Entries in the wheel.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the slots (their capacity, not just their entries).
    pub fn memory(&self) -> usize {
        self.slots.iter().map(|s| s.capacity() * 4).sum::<usize>() + self.slots.capacity() * std::mem::size_of::<Vec<u32>>()
    }

    /// Puts `id` in the slot of tick `at`. An expiry already due lands in
    /// the slot processed next.
    #[inline]
    pub fn insert(&mut self, id: u32, at: u32) {
        let at = if reached(self.next, at) { self.next } else { at };
        let s = at as usize % SLOTS;
        self.slots[s].push(id);
        self.busy[s / 64] |= 1 << (s % 64);
        self.len += 1;
    }

    /// Slot `s` was seen empty: its bit is cleared, and a big array it
    /// grew to is given back. A slot's array grows to the entries filed at
    /// one tick (under a SYN flood with drop_entry making room, a tick's
    /// worth of SYNs: thousands); kept, every slot of the turn would in
    /// time hold that much room, more than the table's entries need.
    /// (It is not what grew the daemon's memory in `tests/e2e_flood.rs`:
    /// docs/reliability.md.)
    fn emptied(&mut self, s: usize) {
        self.busy[s / 64] &= !(1 << (s % 64));
        if self.slots[s].capacity() > SLOT_KEEP {
            self.slots[s] = Vec::new();
        }
    }

    /// Processes every slot up to and including tick `now`, handing each
    /// entry to `visit` with the tick of its slot, at most `budget` entries
    /// in all, soonest first. (After a jump, an entry due at that tick
    /// is due whatever follows it: an owner deciding by the tick rather
    /// than by `now` ends entries in the order their time came.) `visit` returns
    /// `Some(tick)` to keep the entry (re-inserted at that tick) or `None`
    /// when it expired. Returns the number of entries visited; when the
    /// budget runs out the rest is visited by the next call.
    pub fn advance(&mut self, now: u32, budget: usize, mut visit: impl FnMut(u32, u32) -> Option<u32>) -> usize {
        let mut done = 0;
        // After a jump of more than a turn, visiting every slot once is
        // enough: each visit reads the entry's real expiry.
        let behind = now.wrapping_sub(self.next);
        if reached(now, self.next) && behind as usize >= SLOTS {
            self.next = now.wrapping_sub(SLOTS as u32 - 1);
            self.cursor = 0;
        }
        while reached(now, self.next) {
            let s = self.next as usize % SLOTS;
            while self.cursor < self.slots[s].len() {
                if done == budget {
                    return done;
                }
                let id = self.slots[s][self.cursor];
                done += 1;
                match visit(id, self.next) {
                    None => {
                        self.slots[s].swap_remove(self.cursor);
                        self.len -= 1;
                    }
                    Some(at) => {
                        // Still alive. Due already (the owner kept it
                        // without moving it on): look again next tick.
                        let at = if reached(self.next, at) { self.next.wrapping_add(1) } else { at };
                        if at as usize % SLOTS == s {
                            // A later turn of this same slot: leave it.
                            self.cursor += 1;
                        } else {
                            self.slots[s].swap_remove(self.cursor);
                            self.len -= 1;
                            self.insert(id, at);
                        }
                    }
                }
            }
            if self.slots[s].is_empty() {
                self.emptied(s);
            }
            self.next = self.next.wrapping_add(1);
            self.cursor = 0;
        }
        done
    }

    /// [`Wheel::evict_ahead`] took the entry at position `i` of the slot
    /// `k` ticks ahead: the next search starts there.
    fn hunt_took(&mut self, k: usize, i: usize) {
        (self.hunt, self.hunt_i, self.hunt_front) = (self.next.wrapping_add(k as u32), i, false);
    }

    /// [`Wheel::evict_ahead`]'s budget ran out at position `i` of the slot
    /// `k` ticks ahead, in a search that began at the next tick (`front`)
    /// or went on from an entry taken: the next search goes on from here,
    /// or starts at the next tick.
    fn hunt_stopped(&mut self, k: usize, i: usize, front: bool) {
        (self.hunt, self.hunt_i) = if front { (self.next.wrapping_add(k as u32), i) } else { (self.next, 0) };
        self.hunt_front = true;
    }

    /// [`Wheel::evict_ahead`] went round the turn and took nothing: the
    /// next search starts at the next tick.
    fn hunt_round(&mut self) {
        (self.hunt, self.hunt_i, self.hunt_front) = (self.next, 0, true);
    }

    /// Looks ahead for one entry to end before its time: visits the
    /// entries of the slots ahead, soonest first (at most one turn and
    /// `budget` entries), until `pick` accepts one, which is taken out of
    /// the wheel and returned. Nothing else moves. (Table pressure: the
    /// connections due soonest are the oldest embryonic ones; see
    /// `ConnTable::evict`.)
    ///
    /// A search goes on from the entry the last one took: the entries
    /// before it were refused or taken. One whose budget runs out without
    /// taking any sends the next back to the next tick, since what it
    /// passed over lay beyond the entries to take (a SYN flood's embryonic
    /// connections, filed one SYN_RECV timeout ahead, are followed by
    /// established and UDP ones filed further); unless the searches since
    /// the last entry taken all began at the next tick: then the next goes
    /// on from where it stopped, and so gets past more entries to refuse
    /// than one budget looks at. Started from the next tick every time, a
    /// search never got past the first `budget` such entries: a
    /// director's closing connections (CLOSE 10 s, TIME_WAIT) are due
    /// before its embryonic ones (SYN_RECV 60 s), and a hundred of them
    /// kept a SYN flood's entries from being evicted (`tests/e2e_flood.rs`:
    /// 3 % of the flood's SYNs made room, the rest were dropped as
    /// `table_full`, legitimate clients' too).
    pub fn evict_ahead(&mut self, budget: usize, mut pick: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut seen = 0;
        // `k`: slots ahead of `next`. (SLOTS is a whole number of words,
        // so the turn's wrap falls on a word's start.) `k0`, `i0`: where
        // the last search stopped, while it is still ahead in this turn.
        let base = self.next as usize % SLOTS;
        let ahead = self.hunt.wrapping_sub(self.next) as usize;
        let (k0, i0, front) = if ahead < SLOTS { (ahead, self.hunt_i, self.hunt_front) } else { (0, 0, true) };
        let mut k = k0;
        // Past the turn's end, from the next tick up to `k0` again.
        let mut wrapped = false;
        loop {
            if k >= SLOTS {
                if wrapped || k0 == 0 && i0 == 0 {
                    break;
                }
                wrapped = true;
                k = 0;
            }
            if wrapped && k > k0 {
                break;
            }
            let s = (base + k) % SLOTS;
            let w = self.busy[s / 64] >> (s % 64);
            if w == 0 {
                k += 64 - s % 64;
                continue;
            }
            k += w.trailing_zeros() as usize;
            if k >= SLOTS || wrapped && k > k0 {
                continue;
            }
            let s = (base + k) % SLOTS;
            // The slot being processed: entries before the cursor were
            // visited and kept this tick; the rest may swap places freely.
            let first = if k == 0 { self.cursor } else { 0 };
            let mut i = if k == k0 && !wrapped { first.max(i0) } else { first };
            let end = if k == k0 && wrapped { i0.min(self.slots[s].len()) } else { usize::MAX };
            while i < self.slots[s].len() && i < end {
                if seen == budget {
                    self.hunt_stopped(k, i, front);
                    return None;
                }
                seen += 1;
                let id = self.slots[s][i];
                if pick(id) {
                    self.slots[s].swap_remove(i);
                    self.len -= 1;
                    self.hunt_took(k, i);
                    return Some(id);
                }
                i += 1;
            }
            if self.slots[s].is_empty() {
                self.emptied(s);
            }
            if wrapped && k == k0 {
                break;
            }
            k += 1;
        }
        self.hunt_round();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn expires_at_the_right_tick() {
        let mut w = Wheel::new(0);
        let mut exp: HashMap<u32, u32> = HashMap::new();
        for (id, at) in [(1, 5), (2, 10), (3, 5000), (4, 0)] {
            exp.insert(id, at);
            w.insert(id, at);
        }
        let mut gone = Vec::new();
        for t in 0..6000u32 {
            w.advance(t, usize::MAX, |id, _| {
                if reached(t, exp[&id]) {
                    gone.push((id, t));
                    None
                } else {
                    Some(exp[&id])
                }
            });
        }
        assert_eq!(gone, vec![(4, 0), (1, 5), (2, 10), (3, 5000)]);
        assert!(w.is_empty());
    }

    #[test]
    fn refreshed_entries_move_instead_of_expiring() {
        let mut w = Wheel::new(0);
        let mut exp = 10u32;
        w.insert(7, exp);
        let mut expired_at = None;
        for t in 0..100u32 {
            if t == 8 {
                exp = 50; // a packet refreshed it
            }
            w.advance(t, usize::MAX, |_, _| if reached(t, exp) { expired_at = Some(t); None } else { Some(exp) });
        }
        assert_eq!(expired_at, Some(50));
    }

    #[test]
    fn evict_ahead_takes_the_soonest_accepted_entry_and_nothing_else() {
        let mut w = Wheel::new(0);
        for (id, at) in [(1, 30), (2, 5), (3, 5), (4, 9000), (5, 20)] {
            w.insert(id, at);
        }
        // soonest first: 2 and 3 (tick 5) are looked at before 5 (tick 20)
        let mut looked = Vec::new();
        let got = w.evict_ahead(100, |id| {
            looked.push(id);
            id == 5 || id == 1
        });
        assert_eq!(got, Some(5));
        assert_eq!(looked[..2].iter().copied().collect::<std::collections::HashSet<_>>(), [2, 3].into());
        assert_eq!(w.len(), 4);
        // the next search goes on from there: 1 (tick 30) at the first look
        let mut looked = Vec::new();
        let got = w.evict_ahead(1, |id| {
            looked.push(id);
            id == 1
        });
        assert_eq!((got, looked), (Some(1), vec![1]));
        // the budget bounds the search: 4 (tick 808) looked at, then the
        // turn's end, and the search stops at 2 (tick 5) with its budget;
        // having found nothing past an entry taken, it sends the next
        // search to the next tick
        assert_eq!(w.evict_ahead(1, |id| id == 3), None);
        let mut looked = Vec::new();
        let got = w.evict_ahead(2, |id| {
            looked.push(id);
            id == 3
        });
        assert_eq!(got, Some(3));
        assert!(looked.contains(&2) && !looked.contains(&4), "{looked:?}");
        // nothing accepted: nothing taken
        assert_eq!(w.evict_ahead(usize::MAX, |_| false), None);
        assert_eq!(w.len(), 2);
        // the rest expires as before, the evicted never comes back
        let mut gone = Vec::new();
        for t in 0..10_000 {
            w.advance(t, usize::MAX, |id, _| {
                gone.push(id);
                None
            });
        }
        gone.sort();
        assert_eq!(gone, vec![2, 4]);
    }

    /// Entries a search may not take (a director's closing connections,
    /// due first) are passed once per turn, not by every search: more of
    /// them than a search's budget do not hide the entries behind them.
    #[test]
    fn evict_ahead_gets_past_more_refused_entries_than_its_budget() {
        let mut w = Wheel::new(0);
        for id in 0..100 {
            w.insert(id, 5 + id % 3);
        }
        for id in 1000..1010 {
            w.insert(id, 50);
        }
        let take = |id: u32| id >= 1000;
        let mut looked = 0;
        assert_eq!(w.evict_ahead(64, |id| { looked += 1; take(id) }), None);
        assert_eq!(looked, 64);
        // the next search looks at the other 36, then takes one
        looked = 0;
        assert!(w.evict_ahead(64, |id| { looked += 1; take(id) }).is_some_and(take));
        assert_eq!(looked, 37);
        // and the ones after it at the first look
        for _ in 0..9 {
            looked = 0;
            assert!(w.evict_ahead(64, |id| { looked += 1; take(id) }).is_some_and(take));
            assert_eq!(looked, 1);
        }
        // none left to take: round once (100 looks) and nothing taken;
        // the search after starts from the next tick again
        looked = 0;
        assert_eq!(w.evict_ahead(usize::MAX, |id| { looked += 1; take(id) }), None);
        assert_eq!(looked, 100);
        w.insert(2000, 3);
        let mut first = None;
        assert_eq!(w.evict_ahead(usize::MAX, |id| { first.get_or_insert(id); id == 2000 }), Some(2000));
        assert_eq!(first, Some(2000), "due first, looked at first");
        assert_eq!(w.len(), 100);
    }

    /// A slot that held many entries gives their room back once empty,
    /// by expiry or by eviction: the wheel's memory follows its entries.
    #[test]
    fn an_emptied_slot_gives_its_room_back() {
        let mut w = Wheel::new(0);
        let small = w.memory();
        for id in 0..10_000 {
            w.insert(id, 5);
            w.insert(100_000 + id, 9);
        }
        assert!(w.memory() >= small + 2 * 10_000 * 4);
        w.advance(5, usize::MAX, |_, _| None);
        while w.evict_ahead(usize::MAX, |_| true).is_some() {}
        assert!(w.is_empty());
        assert_eq!(w.memory(), small, "room for 20 000 entries kept by empty slots");
        // a small slot keeps its room: no allocation per tick
        for id in 0..100 {
            w.insert(id, 20);
        }
        let cap = w.memory();
        w.advance(20, usize::MAX, |_, _| None);
        assert_eq!(w.memory(), cap);
    }

    #[test]
    fn evict_ahead_skips_what_the_current_tick_kept() {
        let mut w = Wheel::new(0);
        for id in 0..4 {
            w.insert(id, 2);
        }
        // tick 2: the budget runs out after two entries, both kept for a
        // later turn of the same slot (4098)
        w.advance(2, 2, |_, _| Some(2 + SLOTS as u32));
        let mut looked = Vec::new();
        w.evict_ahead(usize::MAX, |id| {
            looked.push(id);
            false
        });
        assert_eq!(looked.len(), 2, "only the entries after the cursor: {looked:?}");
        assert_eq!(w.evict_ahead(usize::MAX, |_| true).map(|id| id >= 2), Some(true));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn budget_defers_the_rest() {
        let mut w = Wheel::new(0);
        for id in 0..10 {
            w.insert(id, 1);
        }
        let mut n = 0;
        assert_eq!(w.advance(1, 4, |_, _| { n += 1; None }), 4);
        assert_eq!(w.len(), 6);
        assert_eq!(w.advance(1, 100, |_, _| { n += 1; None }), 6);
        assert_eq!((n, w.len()), (10, 0));
    }

    #[test]
    fn clock_jump_processes_every_slot_once() {
        let mut w = Wheel::new(0);
        w.insert(1, 100);
        w.insert(2, 9000); // beyond one turn
        let mut seen = Vec::new();
        w.advance(20_000, usize::MAX, |id, _| {
            seen.push(id);
            None
        });
        seen.sort();
        assert_eq!(seen, vec![1, 2]);
    }

    #[test]
    fn huge_jump_costs_one_turn() {
        let mut w = Wheel::new(0);
        w.insert(1, 3);
        let mut n = 0;
        w.advance(1_000_000_000, usize::MAX, |_, _| {
            n += 1;
            None
        });
        assert_eq!((n, w.len()), (1, 0));
        // and the clock now follows the new time
        w.insert(2, 1_000_000_005);
        let mut hit = false;
        w.advance(1_000_000_005, usize::MAX, |_, _| {
            hit = true;
            None
        });
        assert!(hit);
    }

    #[test]
    fn wrapping_ticks() {
        assert!(reached(5, u32::MAX - 3));
        assert!(!reached(u32::MAX - 3, 5));
        let start = u32::MAX - 2;
        let mut w = Wheel::new(start);
        w.insert(1, start.wrapping_add(5));
        let mut out = None;
        for i in 0..10u32 {
            let t = start.wrapping_add(i);
            w.advance(t, usize::MAX, |_, _| if reached(t, start.wrapping_add(5)) { out = Some(i); None } else { Some(start.wrapping_add(5)) });
        }
        assert_eq!(out, Some(5));
    }

    /// The look ahead as it was before the occupancy bits: every slot of
    /// the turn in order.
    fn evict_ahead_by_every_slot(w: &mut Wheel, budget: usize, mut pick: impl FnMut(u32) -> bool) -> Option<u32> {
        // Every position in the order a search visits them: from where the
        // last one stopped to the turn's end, then from the next tick.
        let ahead = w.hunt.wrapping_sub(w.next) as usize;
        let (k0, i0, front) = if ahead < SLOTS { (ahead, w.hunt_i, w.hunt_front) } else { (0, 0, true) };
        let slot = |k: usize| w.next.wrapping_add(k as u32) as usize % SLOTS;
        let first = |k: usize| if k == 0 { w.cursor } else { 0 };
        let mut order = Vec::new();
        for k in k0..SLOTS {
            let from = if k == k0 { first(k).max(i0) } else { first(k) };
            order.extend((from..w.slots[slot(k)].len()).map(|i| (k, i)));
        }
        if k0 != 0 || i0 != 0 {
            for k in 0..=k0 {
                let to = if k == k0 { i0.min(w.slots[slot(k)].len()) } else { w.slots[slot(k)].len() };
                order.extend((first(k)..to).map(|i| (k, i)));
            }
        }
        for (seen, (k, i)) in order.into_iter().enumerate() {
            let s = slot(k);
            if seen == budget {
                w.hunt_stopped(k, i, front);
                return None;
            }
            let id = w.slots[s][i];
            if pick(id) {
                w.slots[s].swap_remove(i);
                w.len -= 1;
                w.hunt_took(k, i);
                return Some(id);
            }
        }
        w.hunt_round();
        None
    }

    proptest::proptest! {
        /// Passing over empty slots by their bits visits the same entries
        /// in the same order as visiting every slot (from where the last
        /// search stopped, round the turn), through inserts,
        /// advances (with budgets that stop inside a slot), look-aheads
        /// and the wrap of the turn and of the tick counter.
        #[test]
        fn evict_ahead_by_bits_agrees_with_every_slot(
            start in proptest::prop_oneof![0u32..10_000, (u32::MAX - 5000)..=u32::MAX],
            ops in proptest::collection::vec((0u8..4, 0u32..9000, 0usize..40, 1u32..7), 1..300),
        ) {
            let mut w = Wheel::new(start);
            let mut now = start;
            let mut exp: HashMap<u32, u32> = HashMap::new();
            let mut next_id = 0u32;
            for (op, a, b, m) in ops {
                match op {
                    0 | 1 => {
                        // an entry some ticks ahead (or just due)
                        let at = now.wrapping_add(a % (2 * SLOTS as u32));
                        w.insert(next_id, at);
                        exp.insert(next_id, at);
                        next_id += 1;
                    }
                    2 => {
                        now = now.wrapping_add(a % 700);
                        let t = now;
                        w.advance(t, b, |id, _| if reached(t, exp[&id]) { None } else { Some(exp[&id]) });
                    }
                    _ => {
                        let mut model = w.clone();
                        let (mut seen, mut seen_model) = (Vec::new(), Vec::new());
                        let got = w.evict_ahead(b, |id| { seen.push(id); id % m == 0 });
                        let want = evict_ahead_by_every_slot(&mut model, b, |id| { seen_model.push(id); id % m == 0 });
                        proptest::prop_assert_eq!(got, want);
                        proptest::prop_assert_eq!(&seen, &seen_model);
                        proptest::prop_assert_eq!(&w.slots, &model.slots);
                        proptest::prop_assert_eq!(w.len, model.len);
                        proptest::prop_assert_eq!((w.hunt, w.hunt_i, w.hunt_front), (model.hunt, model.hunt_i, model.hunt_front));
                    }
                }
                // the bits cover every slot that holds an entry
                for (s, slot) in w.slots.iter().enumerate() {
                    proptest::prop_assert!(slot.is_empty() || w.busy[s / 64] & (1 << (s % 64)) != 0, "slot {} holds entries but its bit is clear", s);
                }
            }
        }
    }
}
