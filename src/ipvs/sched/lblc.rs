//! `lblc` — locality-based least connection (IPVS `ip_vs_lblc.c`).
//!
//! For cache clusters: each destination address (the packet's `daddr`, e.g.
//! the origin server a transparent cache stands for) sticks to one real
//! server. A table maps the address to its server; a new connection takes
//! the remembered server unless it is gone, quiesced, overloaded by its
//! thresholds, or *locality-overloaded*: more active connections than its
//! weight while some server of the service runs under half its weight
//! (`active * 2 < weight`). Then, and for an unknown address, the weighted
//! least-connection server ([`wlc`](super::wlc)) is chosen and remembered.
//!
//! Expiry follows IPVS's once-a-minute timer: every 30th tick a full sweep
//! drops entries unused for [`EXPIRATION`] (24 h, IPVS's
//! `lblc_expiration` default); on the other ticks, only while the table
//! holds more than [`MAX_ENTRIES`], entries unused for [`ENTRY_TIMEOUT`]
//! (6 min) go, at most `(entries - max) * 4/3` (capped at `max/2`) per tick.
//!
//! **Per worker.** Each worker keeps its own table and schedules with its
//! own connection counts; two workers may map the same address to
//! different servers (RSS spreads clients, not destination addresses).
//! Entries remember a server by index and uid, so they survive changes of
//! the service's dests as IPVS's do and are recognised as gone when their
//! server was removed.
//!
//! **Cost.** A lookup in a hash map per decision; inserting a new address
//! may allocate (the map grows). There is no timer on a worker: the
//! decision that finds a minute tick due runs the sweep (after an idle
//! spell it replays the last 31 missed ticks and only counts the older
//! ones), an O(entries) pass at most once a minute.
//!
//! **Deviations.** A remembered server over its connection threshold
//! (ipvsadm `-x`) is not reused (IPVS only checks it when choosing anew;
//! here an overloaded server never gets a new connection). A partial sweep
//! stops exactly at its goal (IPVS finishes the hash bucket it is in).

use super::util::{locality_overloaded, locate, weighted_least_conn};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;
use hashbrown::HashMap;
use std::net::IpAddr;

pub struct Lblc;

const SEC: u64 = 1_000_000_000;
/// Period of IPVS's expiry timer.
pub const CHECK_EXPIRE_INTERVAL: u64 = 60 * SEC;
/// Idle time after which an entry may go while the table is over size.
pub const ENTRY_TIMEOUT: u64 = 6 * 60 * SEC;
/// Idle time after which the full sweep drops an entry (IPVS's
/// `lblc_expiration`/`lblcr_expiration` sysctl default).
pub const EXPIRATION: u64 = 24 * 60 * 60 * SEC;
/// Every how many ticks the full sweep runs (30: half an hour).
pub const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// Table size above which the partial sweeps run (IPVS: 16 × 1024 buckets).
pub const MAX_ENTRIES: usize = 16 * 1024;

/// What one expiry tick does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sweep {
    /// Drop entries unused for [`EXPIRATION`].
    Full,
    /// Drop up to `goal` entries unused for [`ENTRY_TIMEOUT`].
    Partial { goal: usize },
}

/// A table the expiry timer sweeps.
pub(super) trait Swept {
    /// Number of entries.
    fn entries(&self) -> usize;
    /// Applies one tick's sweep, as of time `at`.
    fn sweep(&mut self, at: u64, what: Sweep);
}

/// IPVS's periodic timer, run lazily from the decisions (shared by lblc
/// and lblcr).
#[derive(Debug, Clone)]
pub(super) struct Expiry {
    /// Time of the next tick; `None` until the first decision.
    next: Option<u64>,
    counter: u32,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            next: None,
            counter: 1,
        }
    }
}

impl Expiry {
    /// Runs the ticks due at `now` on `table`.
    #[inline]
    pub(super) fn run(&mut self, now: u64, table: &mut impl Swept) {
        match self.next {
            None => {
                // The timer starts with the table (here: its first use).
                self.next = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL));
            }
            Some(t) if now < t => {}
            Some(t) => self.tick_all(now, t, table),
        }
    }

    #[cold]
    fn tick_all(&mut self, now: u64, next: u64, table: &mut impl Swept) {
        let ticks = (now - next) / CHECK_EXPIRE_INTERVAL + 1;
        self.next = Some(next.saturating_add(ticks.saturating_mul(CHECK_EXPIRE_INTERVAL)));
        // The missed ticks saw an unchanged table, so replaying them in
        // order at their own times is what the timer would have done. The
        // last 31 are replayed (they include a full sweep; older sweeps
        // remove a subset of what later ones do); older ticks only advance
        // the counter, as "table not over size" ticks do.
        let replay = ticks.min(COUNT_FOR_FULL_EXPIRATION as u64 + 1);
        let skipped = ((ticks - replay) % COUNT_FOR_FULL_EXPIRATION as u64) as u32;
        self.counter = (self.counter - 1 + skipped) % COUNT_FOR_FULL_EXPIRATION + 1;
        for k in ticks - replay..ticks {
            let at = next.saturating_add(k * CHECK_EXPIRE_INTERVAL);
            if self.counter % COUNT_FOR_FULL_EXPIRATION == 0 {
                table.sweep(at, Sweep::Full);
                self.counter = 1;
                continue;
            }
            let n = table.entries();
            if n <= MAX_ENTRIES {
                self.counter += 1;
                continue;
            }
            let goal = ((n - MAX_ENTRIES) * 4 / 3).min(MAX_ENTRIES / 2);
            table.sweep(at, Sweep::Partial { goal });
        }
    }
}

/// Whether an entry last used at `lastuse` goes in `sweep` at `at`;
/// `goal` counts down the partial sweep's budget.
#[inline]
fn expired(sweep: Sweep, at: u64, lastuse: u64, goal: &mut usize) -> bool {
    match sweep {
        Sweep::Full => at >= lastuse.saturating_add(EXPIRATION),
        Sweep::Partial { .. } => {
            if *goal == 0 || at < lastuse.saturating_add(ENTRY_TIMEOUT) {
                return false;
            }
            *goal -= 1;
            true
        }
    }
}

/// An entry of a destination-address table (lblc's server, lblcr's
/// server set): the expiry goes by its last use.
pub(super) trait LastUse {
    /// When a decision last used the entry.
    fn lastuse(&self) -> u64;
}

/// The destination-address tables of lblc and lblcr, swept alike.
impl<E: LastUse> Swept for HashMap<IpAddr, E> {
    fn entries(&self) -> usize {
        self.len()
    }

    fn sweep(&mut self, at: u64, what: Sweep) {
        let mut goal = match what {
            Sweep::Partial { goal } => goal,
            Sweep::Full => 0,
        };
        self.retain(|_, e| !expired(what, at, e.lastuse(), &mut goal));
    }
}

/// A remembered server.
#[derive(Debug, Clone, Copy)]
struct Entry {
    idx: u32,
    uid: u32,
    lastuse: u64,
}

impl LastUse for Entry {
    fn lastuse(&self) -> u64 {
        self.lastuse
    }
}

/// One worker's destination-address table.
#[derive(Debug, Default)]
pub struct LblcState {
    table: HashMap<IpAddr, Entry>,
    expiry: Expiry,
}

impl LblcState {
    /// Number of remembered addresses.
    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

impl Scheduler for Lblc {
    const NAME: &'static str = "lblc";
    type Table = ();
    type State = LblcState;

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    /// The table outlives changes of the dests, as in IPVS.
    fn changed(_t: &(), _s: &mut LblcState) {}

    fn schedule(_t: &(), s: &mut LblcState, ctx: &SchedCtx<'_>) -> Option<usize> {
        let now = ctx.now;
        s.expiry.run(now, &mut s.table);
        if let Some(e) = s.table.get_mut(&ctx.daddr) {
            e.lastuse = now;
            if let Some(i) = locate(ctx, e.idx, e.uid) {
                e.idx = i as u32;
                if ctx.available(i) && !locality_overloaded(ctx, i) {
                    return Some(i);
                }
            }
        }
        // Unknown address or unusable server: choose anew and remember
        // (IPVS's ip_vs_lblc_new replaces the entry).
        let i = weighted_least_conn(ctx)?;
        let uid = ctx.dests[i].uid;
        s.table.insert(
            ctx.daddr,
            Entry {
                idx: i as u32,
                uid,
                lastuse: now,
            },
        );
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use super::*;
    use crate::ipvs::dest::DestLoad;
    use std::net::Ipv4Addr;

    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;

    fn addr(k: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xC633_6400 + k))
    }

    /// A worker's view: dests, loads and an lblc state.
    struct W {
        d: Vec<DestEntry>,
        load: Vec<DestLoad>,
        s: SchedState,
        t: SchedTable,
    }

    impl W {
        fn new(weights: &[i32]) -> W {
            let d = dests(weights);
            let t = SchedKind::Lblc.build(&d, SchedFlags::default());
            W {
                load: vec![DestLoad::default(); d.len()],
                s: t.new_state(),
                d,
                t,
            }
        }
        fn go(&mut self, daddr: IpAddr, now: u64) -> Option<usize> {
            let c = SchedCtx {
                daddr,
                now,
                ..ctx(&self.d, &self.load)
            };
            self.t.schedule(&mut self.s, &c)
        }
        fn entries(&self) -> usize {
            match &self.s {
                SchedState::Lblc(s) => s.entries(),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn an_address_sticks_to_its_server() {
        // First decision for X: wlc over empty servers → a. Then a is
        // loaded (active 1 of weight 1, not over its weight): X stays on a
        // although wlc would pick b; a new address Y gets b.
        let mut w = W::new(&[1, 1]);
        assert_eq!(w.go(addr(1), 0), Some(0));
        w.load[0].active = 1;
        assert_eq!(w.go(addr(1), SEC), Some(0));
        assert_eq!(w.go(addr(2), SEC), Some(1));
        assert_eq!(w.entries(), 2);
    }

    #[test]
    fn locality_overload_moves_the_address() {
        // a weight 2 with 3 active (> 2) but nobody under half weight
        // (b: 1*2 < 2 is false): X stays on a.
        let mut w = W::new(&[2, 2]);
        assert_eq!(w.go(addr(1), 0), Some(0));
        w.load[0].active = 3;
        w.load[1].active = 1;
        assert_eq!(w.go(addr(1), SEC), Some(0));
        // b drops to 0 active (0 < 2/2): a is overloaded in lblc's sense,
        // X moves to the wlc choice b and stays there.
        w.load[1].active = 0;
        assert_eq!(w.go(addr(1), 2 * SEC), Some(1));
        w.load[0].active = 0;
        assert_eq!(w.go(addr(1), 3 * SEC), Some(1));
    }

    #[test]
    fn quiesced_overloaded_or_removed_server_is_replaced() {
        let mut w = W::new(&[1, 1, 1]);
        assert_eq!(w.go(addr(1), 0), Some(0));
        w.d[0].weight = 0;
        assert_eq!(w.go(addr(1), 1), Some(1), "quiesced");
        w.load[1].overloaded = true;
        assert_eq!(w.go(addr(1), 2), Some(2), "over its threshold");
        // The dests change: c moves to index 0, b is removed. X follows
        // c by uid to its new index.
        w.load[1].overloaded = false;
        let c = w.d[2].clone();
        w.d = vec![c, w.d[0].clone()];
        w.load.truncate(2);
        w.t.changed(&mut w.s);
        assert_eq!(w.go(addr(1), 3), Some(0));
        // c removed too: X is scheduled anew (to the remaining dest if
        // it can take it; here it is quiesced, so nothing).
        w.d.remove(0);
        w.load.truncate(1);
        assert_eq!(w.go(addr(1), 4), None);
        assert_eq!(
            w.entries(),
            1,
            "the stale entry stays until replaced or expired"
        );
    }

    #[test]
    fn entries_expire_after_a_day_unused() {
        // X → a at t=0. Later wlc prefers b, so an expired entry shows as
        // a move to b. The full sweep runs on the 30th minute tick; the
        // one at 24 h drops entries unused since t=0.
        let run = |t: u64| {
            let mut w = W::new(&[1, 1]);
            assert_eq!(w.go(addr(1), 0), Some(0));
            w.load[0].active = 1;
            w.go(addr(1), t)
        };
        assert_eq!(run(23 * HOUR + 59 * MIN), Some(0));
        assert_eq!(run(24 * HOUR + MIN), Some(1));
    }

    #[test]
    fn use_keeps_an_entry_alive() {
        let mut w = W::new(&[1, 1]);
        assert_eq!(w.go(addr(1), 0), Some(0));
        w.load[0].active = 1;
        // Used every 12 hours: never 24 h idle, never dropped.
        for k in 1..=6 {
            assert_eq!(w.go(addr(1), k * 12 * HOUR), Some(0));
        }
    }

    #[test]
    fn over_size_tables_shed_idle_entries_each_minute() {
        // 300 entries over the 16384 limit, all made at t=0. Ticks at
        // 1..5 min find nothing idle for 6 min; the decision at 5:30 adds
        // one (301 over). The tick at 6 min removes (301 * 4/3 =) 401 idle
        // ones; the one at 7 min finds the table under the limit. The
        // decision at 7:30 adds one entry.
        let mut w = W::new(&[1]);
        for k in 0..(MAX_ENTRIES as u32 + 300) {
            w.go(addr(k + 10), 0);
        }
        assert_eq!(w.entries(), MAX_ENTRIES + 300);
        w.go(addr(1), 5 * MIN + 30 * SEC);
        assert_eq!(
            w.entries(),
            MAX_ENTRIES + 301,
            "nothing idle long enough yet"
        );
        w.go(addr(2), 7 * MIN + 30 * SEC);
        assert_eq!(w.entries(), MAX_ENTRIES + 301 - 401 + 1);
    }

    #[test]
    fn none_when_nothing_available() {
        let mut w = W::new(&[0, 0]);
        assert_eq!(w.go(addr(1), 0), None);
        assert_eq!(w.entries(), 0);
    }
}
