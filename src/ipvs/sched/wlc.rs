//! `wlc` — weighted least connection (IPVS `ip_vs_wlc.c`).
//!
//! Picks the available real server with the smallest
//! `(active * 256 + inactive) / weight`, compared without division by
//! cross-multiplying (`loh * w_d > doh * w_least`, in 64 bits). The first
//! available server seeds the search and a later one replaces it only when
//! strictly less loaded, so the first minimum in list order wins ties.
//! No table, no state.

use super::util::weighted_least_conn;
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Wlc;

impl Scheduler for Wlc {
    const NAME: &'static str = "wlc";
    type Table = ();
    type State = ();

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn changed(_t: &(), _s: &mut ()) {}

    fn schedule(_t: &(), _s: &mut (), ctx: &SchedCtx<'_>) -> Option<usize> {
        weighted_least_conn(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::util::testutil::*;
    use super::super::*;
    use proptest::prelude::*;

    #[test]
    fn overhead_per_weight() {
        // 261/1 vs 259/1 vs 300/1: overheads 1*256+5, 1*256+3, 0*256+300.
        assert_eq!(
            pick(
                SchedKind::Wlc,
                &[1, 1, 1],
                &loads(&[(1, 5), (1, 3), (0, 300)])
            ),
            Some(1)
        );
        // 512/1 > 768/4 = 192: the heavier server with more connections.
        assert_eq!(
            pick(SchedKind::Wlc, &[1, 4], &loads(&[(2, 0), (3, 0)])),
            Some(1)
        );
        // 256/1 == 512/2: a tie keeps the first.
        assert_eq!(
            pick(SchedKind::Wlc, &[1, 2], &loads(&[(1, 0), (2, 0)])),
            Some(0)
        );
    }

    #[test]
    fn ipvs_sequence_for_1_2_3() {
        // Overhead/weight from empty, each pick adding one active conn:
        //  a,b,c = 0,0,0        → a (tie, first)
        //  256, 0, 0            → b (tie b/c, first)
        //  256, 128, 0          → c
        //  256, 128, 85         → c (85 < 128)
        //  256, 128, 171        → b
        //  256, 256, 171        → c
        //  256, 256, 256        → a (tie): the cycle restarts.
        let (got, load) = pile_up(SchedKind::Wlc, &[1, 2, 3], &loads(&[(0, 0); 3]), 12);
        let cycle = [0, 1, 2, 2, 1, 2];
        let want: Vec<_> = cycle.iter().chain(cycle.iter()).map(|&i| Some(i)).collect();
        assert_eq!(got, want);
        assert_eq!(load.iter().map(|l| l.active).collect::<Vec<_>>(), [2, 4, 6]);
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let mut l = loads(&[(0, 0), (0, 0), (4, 0)]);
        assert_eq!(pick(SchedKind::Wlc, &[0, 1, 9], &l), Some(1));
        l[1].overloaded = true;
        assert_eq!(pick(SchedKind::Wlc, &[0, 1, 9], &l), Some(2));
        l[2].overloaded = true;
        assert_eq!(pick(SchedKind::Wlc, &[0, 1, 9], &l), None);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        // 2^31 active * 256 * 65535 needs 64 bits; 32-bit math would wrap.
        let l = loads(&[(1 << 31, 0), (1 << 30, 0)]);
        assert_eq!(pick(SchedKind::Wlc, &[65535, 1], &l), Some(0));
    }

    proptest! {
        /// Long-lived connections piling up: after `n` decisions from
        /// empty, every server holds within `N` (the number of servers) of
        /// its ideal share `n * w / W`. Why: the last pick of server i was
        /// minimal, so all `a_i / w_i` stay within `1 / w_i` of the
        /// smallest; summing gives `w_i (n - N) / W <= a_i <= w_i n / W + 1`.
        #[test]
        fn shares_follow_weights(weights in prop::collection::vec(1i32..=50, 1..=8), n in 1usize..2000) {
            let z = loads(&vec![(0, 0); weights.len()]);
            let (got, load) = pile_up(SchedKind::Wlc, &weights, &z, n);
            prop_assert!(got.iter().all(Option::is_some));
            let total: i64 = weights.iter().map(|&w| w as i64).sum();
            let bound = weights.len() as f64;
            for (i, &w) in weights.iter().enumerate() {
                let ideal = n as f64 * w as f64 / total as f64;
                let a = load[i].active as f64;
                prop_assert!((a - ideal).abs() <= bound, "server {i} w={w}: {a} vs ideal {ideal:.1}");
            }
        }
    }
}
