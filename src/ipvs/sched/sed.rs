//! `sed` — shortest expected delay (IPVS `ip_vs_sed.c`).
//!
//! Picks the available real server with the smallest `(active + 1) /
//! weight`: the expected delay of the new connection if it joined that
//! server's queue. Only active connections count (IPVS's
//! `ip_vs_sed_dest_overhead` is `active + 1`, no ×256, no inactive). The
//! comparison cross-multiplies in 64 bits; the first available server seeds
//! the search and a later one replaces it only when strictly better, so the
//! first minimum in list order wins ties. No table, no state.

use super::util::{least_by, weight};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;
use crate::ipvs::dest::DestLoad;

pub struct Sed;

/// `active + 1`, the expected-delay numerator of sed and nq.
#[inline]
pub(super) fn sed_overhead(l: &DestLoad) -> i64 {
    l.active as i64 + 1
}

impl Scheduler for Sed {
    const NAME: &'static str = "sed";
    type Table = ();
    type State = ();

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn changed(_t: &(), _s: &mut ()) {}

    fn schedule(_t: &(), _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        least_by(ctx, weight, sed_overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testutil::*;
    use super::super::*;

    #[test]
    fn counts_the_incoming_connection() {
        // Empty servers of weight 1 and 3: wlc sees 0/1 == 0/3 and keeps
        // the first; sed sees 1/1 > 1/3 and takes the heavier one.
        let z = loads(&[(0, 0), (0, 0)]);
        assert_eq!(pick(SchedKind::Wlc, &[1, 3], &z), Some(0));
        assert_eq!(pick(SchedKind::Sed, &[1, 3], &z), Some(1));
    }

    #[test]
    fn inactive_connections_do_not_count() {
        // (0+1)/1 < (1+1)/1 although the first has 1000 inactive.
        assert_eq!(
            pick(SchedKind::Sed, &[1, 1], &loads(&[(0, 1000), (1, 0)])),
            Some(0)
        );
    }

    #[test]
    fn ipvs_sequence_for_1_2_3() {
        // (active+1)/weight, each pick adding one active connection:
        //  1/1, 1/2, 1/3 → c      1, 1/2, 2/3 → b      1, 1, 2/3 → c
        //  1, 1, 1 → a (tie)      2, 1, 1 → b (tie)    2, 3/2, 1 → c
        // and then a = 3/1... the same c,b,c,a,b,c cycle as wrr 1:2:3.
        let (got, _) = pile_up(SchedKind::Sed, &[1, 2, 3], &loads(&[(0, 0); 3]), 12);
        let cycle = [2, 1, 2, 0, 1, 2];
        let want: Vec<_> = cycle.iter().chain(cycle.iter()).map(|&i| Some(i)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let mut l = loads(&[(0, 0), (3, 0), (3, 0)]);
        assert_eq!(pick(SchedKind::Sed, &[0, 1, 2], &l), Some(2));
        l[2].overloaded = true;
        assert_eq!(pick(SchedKind::Sed, &[0, 1, 2], &l), Some(1));
        l[1].overloaded = true;
        assert_eq!(pick(SchedKind::Sed, &[0, 1, 2], &l), None);
    }
}
