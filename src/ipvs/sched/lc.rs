//! `lc` — least connection (IPVS `ip_vs_lc.c`).
//!
//! Picks the available real server with the smallest overhead
//! `active * 256 + inactive` (IPVS's `ip_vs_dest_conn_overhead`); weights
//! beyond "zero or not" do not matter. A later server replaces the pick
//! only with a strictly smaller overhead, so the first minimum in list
//! order wins ties. No table, no state: the decision reads this worker's
//! [`DestLoad`](crate::ipvs::dest::DestLoad)s only.

use super::util::{least_by, overhead};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Lc;

impl Scheduler for Lc {
    const NAME: &'static str = "lc";
    type Table = ();
    type State = ();

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn changed(_t: &(), _s: &mut ()) {}

    fn schedule(_t: &(), _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        // Every available dest counts as weight 1: the least overhead.
        least_by(ctx, |_| 1, overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testutil::*;
    use super::super::*;

    #[test]
    fn least_overhead_active_counts_256() {
        // overheads: 2*256 = 512, 1*256+5 = 261, 1*256+3 = 259 → the third.
        assert_eq!(
            pick(SchedKind::Lc, &[1, 1, 1], &loads(&[(2, 0), (1, 5), (1, 3)])),
            Some(2)
        );
        // 255 inactive still cost less than one active connection.
        assert_eq!(
            pick(SchedKind::Lc, &[1, 1], &loads(&[(1, 0), (0, 255)])),
            Some(1)
        );
        assert_eq!(
            pick(SchedKind::Lc, &[1, 1], &loads(&[(1, 0), (0, 256)])),
            Some(0)
        );
    }

    #[test]
    fn weights_do_not_matter_and_first_minimum_wins() {
        // Weight 100 does not attract connections: overhead 1 < 2.
        assert_eq!(
            pick(SchedKind::Lc, &[1, 100], &loads(&[(0, 1), (0, 2)])),
            Some(0)
        );
        // Equal overheads: the first in list order.
        assert_eq!(
            pick(SchedKind::Lc, &[5, 1, 1], &loads(&[(1, 0), (0, 7), (0, 7)])),
            Some(1)
        );
    }

    #[test]
    fn piling_up_cycles_through_equal_servers() {
        // Each pick adds an active connection, so the next least is the
        // next server: 0, 1, 2 (all 0), then 0, 1, 2 (all 256).
        let (got, _) = pile_up(SchedKind::Lc, &[1, 3, 2], &loads(&[(0, 0); 3]), 6);
        assert_eq!(got, [0, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn skips_quiesced_and_overloaded_none_when_all_are() {
        let mut l = loads(&[(0, 0), (5, 0), (9, 0)]);
        // weight 0 on the idle one: the least loaded of the rest.
        assert_eq!(pick(SchedKind::Lc, &[0, 1, 1], &l), Some(1));
        l[1].overloaded = true;
        assert_eq!(pick(SchedKind::Lc, &[0, 1, 1], &l), Some(2));
        l[2].overloaded = true;
        assert_eq!(pick(SchedKind::Lc, &[0, 1, 1], &l), None);
        assert_eq!(pick(SchedKind::Lc, &[], &[]), None);
    }
}
