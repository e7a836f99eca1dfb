//! `ovf` — overflow connection (IPVS `ip_vs_ovf.c`).
//!
//! Keeps new connections on the highest-weight available real server while
//! its active connections do not exceed its weight (IPVS skips a server
//! when `active > weight`, so a server takes up to `weight + 1` active
//! connections), then overflows to the next highest. Ties in weight: the
//! first in list order. Only active connections count, so it suits TCP
//! better than UDP, as IPVS notes. No table, no state.

use super::util::first_heaviest;
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Ovf;

impl Scheduler for Ovf {
    const NAME: &'static str = "ovf";
    type Table = ();
    type State = ();

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn changed(_t: &(), _s: &mut ()) {}

    fn schedule(_t: &(), _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        // Quiesced dests are skipped too: weight 0 never wins.
        first_heaviest(ctx, |d, l| {
            !l.overloaded && l.active as i64 <= d.weight as i64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testutil::*;
    use super::super::*;

    #[test]
    fn overflows_when_active_exceeds_weight() {
        // active 5 == weight 5: not exceeded, still the first choice.
        assert_eq!(
            pick(
                SchedKind::Ovf,
                &[2, 5, 3],
                &loads(&[(0, 0), (5, 0), (0, 0)])
            ),
            Some(1)
        );
        // active 6 > 5: overflow to the next highest weight (3).
        assert_eq!(
            pick(
                SchedKind::Ovf,
                &[2, 5, 3],
                &loads(&[(0, 0), (6, 0), (0, 0)])
            ),
            Some(2)
        );
        // Inactive connections do not count.
        assert_eq!(
            pick(
                SchedKind::Ovf,
                &[2, 5, 3],
                &loads(&[(0, 0), (0, 99), (0, 0)])
            ),
            Some(1)
        );
    }

    #[test]
    fn ipvs_sequence_for_1_2() {
        // b (w2) takes active 0→1, 1→2, 2→3 (2 > 2 is false); then b is
        // skipped (3 > 2) and a (w1) takes 0→1, 1→2; then nothing is left.
        let (got, _) = pile_up(SchedKind::Ovf, &[1, 2], &loads(&[(0, 0); 2]), 6);
        assert_eq!(got, [Some(1), Some(1), Some(1), Some(0), Some(0), None]);
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let mut l = loads(&[(0, 0); 3]);
        assert_eq!(pick(SchedKind::Ovf, &[1, 0, 3], &l), Some(2));
        l[2].overloaded = true;
        assert_eq!(pick(SchedKind::Ovf, &[1, 0, 3], &l), Some(0));
        // Equal weights: the first.
        assert_eq!(pick(SchedKind::Ovf, &[4, 4], &loads(&[(0, 0); 2])), Some(0));
    }
}
