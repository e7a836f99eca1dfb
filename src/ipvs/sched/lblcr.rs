//! `lblcr` — locality-based least connection with replication (IPVS
//! `ip_vs_lblcr.c`).
//!
//! Like [`lblc`](super::lblc), but each destination address maps to a
//! *set* of real servers, so a hot address can be served by several. A new
//! connection goes to the weighted least-connection server of the set
//! (`(active*256 + inactive) / weight`, skipping quiesced and overloaded
//! members). If there is none, or it is locality-overloaded (more active
//! connections than its weight while some server of the service is under
//! half its weight), the service-wide wlc choice is taken and added to the
//! set. When the set has more than one member and has not changed for
//! [`EXPIRATION`] (IPVS's `lblcr_expiration`, 24 h), its most loaded member
//! (by the same ratio, any positive weight) is dropped, one per decision,
//! so sets shrink back once the heat is gone.
//! Entries expire like lblc's.
//!
//! Set order is IPVS's: the newest member first (`list_add`), which
//! decides ties.
//!
//! **Per worker**, **cost** and the **threshold deviation** are as for
//! lblc: each worker has its own table and counts; a new address or a new
//! set member may allocate. A member whose server was removed from the
//! service is dropped from the set when next seen (IPVS keeps it until it
//! is shrunk away or the entry expires, and never chooses it).

use super::lblc::{Expiry, LastUse};
use super::util::{conn_overhead, first_least, locality_overloaded, locate, weighted_least_conn};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;
use hashbrown::HashMap;
use std::net::IpAddr;

pub use super::lblc::EXPIRATION;

pub struct Lblcr;

/// A set member: index into the dests and uid to recognise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    idx: u32,
    uid: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Newest first.
    set: Vec<Member>,
    /// Last time the set gained or lost a member.
    lastmod: u64,
    lastuse: u64,
}

impl LastUse for Entry {
    fn lastuse(&self) -> u64 {
        self.lastuse
    }
}

/// One worker's destination-address → server-set table.
#[derive(Debug, Default)]
pub struct LblcrState {
    table: HashMap<IpAddr, Entry>,
    expiry: Expiry,
}

impl LblcrState {
    /// Number of remembered addresses.
    pub fn entries(&self) -> usize {
        self.table.len()
    }

    /// Set members over all addresses.
    pub fn members(&self) -> usize {
        self.table.values().map(|e| e.set.len()).sum()
    }

    /// The server set of `daddr` as dest indexes, newest first.
    pub fn set(&self, daddr: &IpAddr) -> Option<Vec<usize>> {
        self.table
            .get(daddr)
            .map(|e| e.set.iter().map(|m| m.idx as usize).collect())
    }
}

/// `ip_vs_dest_set_min`: the weighted least-connection available member.
fn set_min(ctx: &SchedCtx<'_>, set: &[Member]) -> Option<usize> {
    first_least(
        set.iter()
            .map(|m| m.idx as usize)
            .filter(|&i| ctx.available(i))
            .map(|i| (i, ctx.weight(i) as i64, conn_overhead(ctx, i))),
    )
}

/// `ip_vs_dest_set_max`: the weighted most-connection member with a
/// positive weight (overload does not matter here).
fn set_max(ctx: &SchedCtx<'_>, set: &[Member]) -> Option<usize> {
    let mut it = set.iter().map(|m| m.idx as usize);
    let mut most = it.by_ref().find(|&i| ctx.weight(i) > 0)?;
    let mut moh = conn_overhead(ctx, most);
    for i in it {
        let doh = conn_overhead(ctx, i);
        if ctx.weight(i) > 0 && moh * (ctx.weight(i) as i64) < doh * ctx.weight(most) as i64 {
            most = i;
            moh = doh;
        }
    }
    Some(most)
}

impl Scheduler for Lblcr {
    const NAME: &'static str = "lblcr";
    type Table = ();
    type State = LblcrState;

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    /// The table outlives changes of the dests, as in IPVS.
    fn changed(_t: &(), _s: &mut LblcrState) {}

    fn schedule(_t: &(), s: &mut LblcrState, ctx: &SchedCtx<'_>) -> Option<usize> {
        let now = ctx.now;
        s.expiry.run(now, &mut s.table);
        let Some(en) = s.table.get_mut(&ctx.daddr) else {
            let i = weighted_least_conn(ctx)?;
            let m = Member {
                idx: i as u32,
                uid: ctx.dests[i].uid,
            };
            // Room for a few replicas up front, so growing a set rarely
            // allocates again.
            let mut set = Vec::with_capacity(4);
            set.push(m);
            s.table.insert(
                ctx.daddr,
                Entry {
                    set,
                    lastmod: now,
                    lastuse: now,
                },
            );
            return Some(i);
        };
        en.lastuse = now;
        // Follow members to their current index; forget removed ones.
        en.set.retain_mut(|m| match locate(ctx, m.idx, m.uid) {
            Some(i) => {
                m.idx = i as u32;
                true
            }
            None => false,
        });
        let dest = set_min(ctx, &en.set);
        // Unchanged for long enough: shed the most loaded member (the
        // choice above stands even if it was that one, as in IPVS).
        if en.set.len() > 1 && now > en.lastmod.saturating_add(EXPIRATION) {
            if let Some(most) = set_max(ctx, &en.set) {
                en.set.retain(|m| m.idx as usize != most);
                en.lastmod = now;
            }
        }
        if let Some(i) = dest {
            if !locality_overloaded(ctx, i) {
                return Some(i);
            }
        }
        let i = weighted_least_conn(ctx)?;
        if !en.set.iter().any(|m| m.idx as usize == i) {
            en.set.insert(
                0,
                Member {
                    idx: i as u32,
                    uid: ctx.dests[i].uid,
                },
            );
            en.lastmod = now;
        }
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

    const HOUR: u64 = 3600 * 1_000_000_000;

    fn x() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
    }

    struct W {
        d: Vec<DestEntry>,
        load: Vec<DestLoad>,
        s: SchedState,
        t: SchedTable,
    }

    impl W {
        fn new(weights: &[i32]) -> W {
            let d = dests(weights);
            let t = SchedKind::Lblcr.build(&d, SchedFlags::default());
            W {
                load: vec![DestLoad::default(); d.len()],
                s: t.new_state(),
                d,
                t,
            }
        }
        fn go(&mut self, now: u64) -> Option<usize> {
            let c = SchedCtx {
                daddr: x(),
                now,
                ..ctx(&self.d, &self.load)
            };
            self.t.schedule(&mut self.s, &c)
        }
        fn set(&self) -> Option<Vec<usize>> {
            match &self.s {
                SchedState::Lblcr(s) => s.set(&x()),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn set_grows_under_locality_overload_and_balances_inside() {
        let mut w = W::new(&[2, 2, 2]);
        // New address: wlc over empty servers → a; set {a}.
        assert_eq!(w.go(0), Some(0));
        assert_eq!(w.set(), Some(vec![0]));
        // a at 3 active > weight 2 while c is idle (0 < 2/2): a is
        // locality-overloaded → wlc (b: 1 active = 256/2, c: 0) → c, which
        // joins the set in front.
        w.load[0].active = 3;
        w.load[1].active = 1;
        assert_eq!(w.go(1), Some(2));
        assert_eq!(w.set(), Some(vec![2, 0]));
        // Inside the set the least loaded member serves: c (0) vs a (3).
        assert_eq!(w.go(2), Some(2));
        // c gets busier than a: a serves again (3*256/2 < 4*256/2), not
        // b, which is outside the set.
        w.load[2].active = 4;
        w.load[0].active = 3;
        w.load[1].active = 1;
        assert_eq!(w.go(3), Some(0));
    }

    #[test]
    fn equal_members_the_newest_wins() {
        let mut w = W::new(&[1, 1]);
        assert_eq!(w.go(0), Some(0));
        w.load[0].active = 2; // > weight 1, and b is idle (0 < 1/2)
        assert_eq!(w.go(1), Some(1));
        assert_eq!(w.set(), Some(vec![1, 0]));
        // Both equally loaded and neither over its weight: the first in
        // set order, the newest, b.
        w.load[0].active = 1;
        w.load[1].active = 1;
        assert_eq!(w.go(2), Some(1));
    }

    #[test]
    fn set_shrinks_after_a_quiet_day() {
        let mut w = W::new(&[1, 1]);
        assert_eq!(w.go(0), Some(0));
        w.load[0].active = 2;
        assert_eq!(w.go(1), Some(1)); // set {b, a}, lastmod = 1
        w.load[0].active = 1;
        w.load[1].active = 0;
        // Used every 12 h so the entry does not expire. At 12 h nothing
        // happens; after 24 h since the last change the most loaded
        // member (a: 256 > b: 0) is dropped; the least loaded (b) serves.
        assert_eq!(w.go(12 * HOUR), Some(1));
        assert_eq!(w.set(), Some(vec![1, 0]));
        assert_eq!(w.go(24 * HOUR + 2), Some(1));
        assert_eq!(w.set(), Some(vec![1]));
        // A single member is never shed.
        assert_eq!(w.go(48 * HOUR + 3), Some(1));
        assert_eq!(w.set(), Some(vec![1]));
    }

    #[test]
    fn the_shed_member_may_still_serve_this_once() {
        // Equal loads: set_min and set_max both pick the first member
        // with a positive weight (the newest, b). It is dropped from the
        // set, yet serves this connection, as in IPVS.
        let mut w = W::new(&[1, 1]);
        assert_eq!(w.go(0), Some(0));
        w.load[0].active = 2;
        assert_eq!(w.go(1), Some(1));
        w.load[0].active = 0;
        assert_eq!(w.go(24 * HOUR + 2), Some(1));
        assert_eq!(w.set(), Some(vec![0]));
    }

    #[test]
    fn quiesced_members_are_skipped_removed_ones_forgotten() {
        let mut w = W::new(&[1, 1, 1]);
        assert_eq!(w.go(0), Some(0));
        w.load[0].active = 2;
        assert_eq!(w.go(1), Some(1)); // set {b, a}
                                      // b quiesced: a is the only usable member; it is not over its
                                      // weight any more, so it serves.
        w.d[1].weight = 0;
        w.load[0].active = 1;
        assert_eq!(w.go(2), Some(0));
        // a removed from the service (dests now b, c): a leaves the set;
        // b is quiesced, so the wlc choice c joins.
        w.d = vec![w.d[1].clone(), w.d[2].clone()];
        w.load = vec![DestLoad::default(); 2];
        w.t.changed(&mut w.s);
        assert_eq!(w.go(3), Some(1));
        assert_eq!(w.set(), Some(vec![1, 0]));
    }

    #[test]
    fn none_when_nothing_available() {
        let mut w = W::new(&[1]);
        assert_eq!(w.go(0), Some(0));
        w.load[0].overloaded = true;
        assert_eq!(w.go(1), None);
        let mut w = W::new(&[0]);
        assert_eq!(w.go(0), None);
    }
}
