//! `nq` — never queue (IPVS `ip_vs_nq.c`).
//!
//! Two speeds: the first available real server in list order with no
//! *active* connection (IPVS tests `activeconns == 0`; inactive ones do not
//! make a server busy) gets the connection at once; when every server is
//! busy, the shortest expected delay `(active + 1) / weight` decides as in
//! [`sed`](super::sed), first minimum winning ties. No table, no state.

use super::sed::sed_overhead;
use super::util::{dests_loads, usable, Least};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Nq;

impl Scheduler for Nq {
    const NAME: &'static str = "nq";
    type Table = ();
    type State = ();

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn changed(_t: &(), _s: &mut ()) {}

    fn schedule(_t: &(), _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        let mut least = Least::default();
        for (i, d, l) in dests_loads(ctx) {
            if !usable(d, &l) {
                continue;
            }
            if l.active == 0 {
                return Some(i);
            }
            least.offer((i, d.weight as i64, sed_overhead(&l)));
        }
        least.index()
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testutil::*;
    use super::super::*;

    #[test]
    fn idle_server_first_in_list_order() {
        // The first idle one, though the weight-10 idle server behind it
        // would have the shorter expected delay.
        assert_eq!(
            pick(
                SchedKind::Nq,
                &[1, 1, 10],
                &loads(&[(2, 0), (0, 0), (0, 0)])
            ),
            Some(1)
        );
        // Idle means no *active* connection: 9999 inactive still idle.
        assert_eq!(
            pick(SchedKind::Nq, &[1, 5], &loads(&[(0, 9999), (3, 0)])),
            Some(0)
        );
    }

    #[test]
    fn idle_but_quiesced_or_overloaded_is_skipped() {
        let mut l = loads(&[(0, 0), (0, 0), (1, 0)]);
        assert_eq!(pick(SchedKind::Nq, &[0, 1, 1], &l), Some(1));
        l[1].overloaded = true;
        assert_eq!(pick(SchedKind::Nq, &[0, 1, 1], &l), Some(2));
    }

    #[test]
    fn no_idle_server_falls_back_to_sed() {
        // All busy: 2/1, 2/2, 2/3 → the third.
        assert_eq!(
            pick(SchedKind::Nq, &[1, 2, 3], &loads(&[(1, 0), (1, 0), (1, 0)])),
            Some(2)
        );
    }

    #[test]
    fn ipvs_sequence_for_1_2_3() {
        // a, b, c while idle; then sed on actives (1,1,1):
        //  2/1, 2/2, 2/3 → c     2, 1, 1 → b (tie)    2, 3/2, 1 → c
        //  2, 3/2, 4/3 → c       2, 3/2, 5/3 → b      2, 2, 5/3 → c
        //  2, 2, 2 → a (tie)     3, 2, 2 → b          3, 5/2, 2 → c
        let (got, _) = pile_up(SchedKind::Nq, &[1, 2, 3], &loads(&[(0, 0); 3]), 12);
        assert_eq!(got, [0, 1, 2, 2, 1, 2, 2, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn none_when_nothing_available() {
        assert_eq!(
            pick(SchedKind::Nq, &[0, 0], &loads(&[(0, 0), (0, 0)])),
            None
        );
    }
}
