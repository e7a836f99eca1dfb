//! `wrr` — weighted round robin (IPVS `ip_vs_wrr.c`).
//!
//! The gcd-stepped sequence: a current weight `cw` starts at the maximum
//! weight `mw` and steps down by the gcd `di` of the weights; each pass over
//! the servers picks those whose weight is at least `cw`. Weights 1:2:3 give
//! the cycle c, b, c, a, b, c. The table holds `mw` and `di` (built by the
//! control plane); each worker keeps the cursor and `cw`.

use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Wrr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrrTable {
    /// Max weight less (gcd − 1), as IPVS computes it.
    mw: i32,
    /// Gcd of the positive weights (1 when none).
    di: i32,
}

#[derive(Debug, Default)]
pub struct WrrState {
    /// Last pick; `None` = the list head.
    cl: Option<usize>,
    /// Current weight; 0 = not started (set to `mw` on first use).
    cw: i32,
}

fn gcd(mut a: i32, mut b: i32) -> i32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Scheduler for Wrr {
    const NAME: &'static str = "wrr";
    type Table = WrrTable;
    type State = WrrState;

    fn build(dests: &[DestEntry], _flags: SchedFlags) -> WrrTable {
        let di = dests.iter().map(|d| d.weight).filter(|&w| w > 0).fold(0, gcd);
        let di = if di > 0 { di } else { 1 };
        let max = dests.iter().map(|d| d.weight).max().unwrap_or(0).max(0);
        WrrTable { mw: max - (di - 1), di }
    }

    /// IPVS's `ip_vs_wrr_dest_changed`: back to the head, `cw` kept when it
    /// still fits (rounded to the new gcd).
    fn changed(t: &WrrTable, s: &mut WrrState) {
        s.cl = None;
        if s.cw > t.mw || s.cw == 0 {
            s.cw = t.mw;
        } else if t.di > 1 {
            s.cw = (s.cw / t.di) * t.di + 1;
        }
    }

    fn schedule(t: &WrrTable, s: &mut WrrState, ctx: &SchedCtx<'_>) -> Option<usize> {
        if t.mw <= 0 {
            return None;
        }
        if s.cw <= 0 || s.cw > t.mw {
            s.cw = t.mw;
        }
        let n = ctx.dests.len();
        let last = s.cl.filter(|&i| i < n);
        let mut pos = last;
        let mut stop = None;
        let (mut last_pass, mut restarted) = (false, false);
        loop {
            for i in pos.map_or(0, |i| i + 1)..n {
                if !ctx.overloaded(i) && ctx.weight(i) >= s.cw {
                    s.cl = Some(i);
                    return Some(i);
                }
                if stop == Some(i) {
                    s.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            s.cw -= t.di;
            if s.cw <= 0 {
                s.cw = t.mw;
                // Every dest was checked for weight >= 1: nothing available.
                if last_pass || last.is_none() {
                    s.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = s.cw <= t.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use crate::ipvs::dest::DestLoad;

    #[test]
    fn ipvs_cycle_for_1_2_3() {
        // mw = 3, di = 1: cw=3 → c; cw=2 → b, c; cw=1 → a, b, c.
        let got = run(SchedKind::Wrr, &[1, 2, 3], 12);
        let cycle = [2, 1, 2, 0, 1, 2];
        let want: Vec<_> = cycle.iter().chain(cycle.iter()).map(|&i| Some(i)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn gcd_steps_for_2_4_6() {
        // di = 2, mw = 6 - 1 = 5: cw=5 → c; cw=3 → b, c; cw=1 → a, b, c.
        let got = run(SchedKind::Wrr, &[2, 4, 6], 6);
        assert_eq!(got, [2, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn seed_lab_1_2() {
        // The seeds' lab: rs1 weight 1, rs2 weight 2 → rs2, rs1, rs2, ...
        assert_eq!(run(SchedKind::Wrr, &[1, 2], 6), [1, 0, 1, 1, 0, 1].map(Some));
    }

    #[test]
    fn weight_zero_never_chosen() {
        let got = run(SchedKind::Wrr, &[0, 3, 0, 1], 8);
        assert!(got.iter().all(|g| matches!(g, Some(1) | Some(3))));
        assert_eq!(got.iter().filter(|g| **g == Some(1)).count(), 6);
    }

    #[test]
    fn all_overloaded_gives_none_and_recovers() {
        let d = dests(&[1, 2]);
        let mut load = vec![DestLoad::default(); 2];
        let t = SchedKind::Wrr.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        assert_eq!(t.schedule(&mut s, &ctx(&d, &load)), Some(1));
        load[0].overloaded = true;
        load[1].overloaded = true;
        assert_eq!(t.schedule(&mut s, &ctx(&d, &load)), None);
        load[0].overloaded = false;
        assert_eq!(t.schedule(&mut s, &ctx(&d, &load)), Some(0));
    }

    #[test]
    fn all_zero_weights_is_none() {
        assert_eq!(run(SchedKind::Wrr, &[0, 0], 3), vec![None; 3]);
    }

    proptest::proptest! {
        /// Over any `n` decisions each server's count is within `w / gcd`
        /// of its ideal share `n * w / W`: every full cycle of the sequence
        /// holds exactly `w / gcd` picks of it, and the unfinished cycle at
        /// the end at most that many.
        #[test]
        fn shares_follow_weights_within_one_cycle(
            weights in proptest::collection::vec(1i32..=20, 1..=6),
            n in 1usize..600,
        ) {
            let got = run(SchedKind::Wrr, &weights, n);
            let total: i32 = weights.iter().sum();
            let g = weights.iter().fold(0, |a, &w| super::gcd(a, w));
            for (i, &w) in weights.iter().enumerate() {
                let count = got.iter().filter(|x| **x == Some(i)).count() as f64;
                let ideal = n as f64 * w as f64 / total as f64;
                proptest::prop_assert!((count - ideal).abs() <= (w / g) as f64, "server {} w={}: {} vs {:.1}", i, w, count, ideal);
            }
        }
    }

    #[test]
    fn shares_follow_weights() {
        let got = run(SchedKind::Wrr, &[5, 3, 2], 1000);
        let count = |i| got.iter().filter(|g| **g == Some(i)).count();
        assert_eq!((count(0), count(1), count(2)), (500, 300, 200));
    }
}
