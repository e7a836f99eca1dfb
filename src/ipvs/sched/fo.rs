//! `fo` — weighted failover (IPVS `ip_vs_fo.c`).
//!
//! Every new connection goes to the available real server with the highest
//! weight; the first of several equal highest wins (IPVS replaces its pick
//! only on a strictly higher weight). Loads do not matter: the others are
//! standbys, used when the primary is quiesced (weight 0) or overloaded.
//! No table, no state.

use super::util::first_heaviest;
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Fo;

impl Scheduler for Fo {
    const NAME: &'static str = "fo";
    type Table = ();
    type State = ();

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn changed(_t: &(), _s: &mut ()) {}

    fn schedule(_t: &(), _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        // Quiesced dests are skipped too: weight 0 never wins.
        first_heaviest(ctx, |_, l| !l.overloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::util::testutil::*;
    use super::super::*;

    #[test]
    fn highest_weight_regardless_of_load() {
        assert_eq!(
            pick(
                SchedKind::Fo,
                &[1, 3, 2],
                &loads(&[(0, 0), (500, 9), (0, 0)])
            ),
            Some(1)
        );
        // Equal highest: the first.
        assert_eq!(
            pick(SchedKind::Fo, &[2, 3, 3], &loads(&[(0, 0); 3])),
            Some(1)
        );
        // Always the same server while it is available.
        assert_eq!(run(SchedKind::Fo, &[1, 3, 2], 4), [1, 1, 1, 1].map(Some));
    }

    #[test]
    fn fails_over_in_weight_order() {
        let mut l = loads(&[(0, 0); 3]);
        l[1].overloaded = true;
        assert_eq!(pick(SchedKind::Fo, &[1, 3, 2], &l), Some(2));
        // The primary quiesced: the next weight.
        assert_eq!(
            pick(SchedKind::Fo, &[1, 0, 2], &loads(&[(0, 0); 3])),
            Some(2)
        );
        l[2].overloaded = true;
        assert_eq!(pick(SchedKind::Fo, &[1, 3, 2], &l), Some(0));
        l[0].overloaded = true;
        assert_eq!(pick(SchedKind::Fo, &[1, 3, 2], &l), None);
        assert_eq!(run(SchedKind::Fo, &[0, 0], 1), vec![None]);
    }
}
