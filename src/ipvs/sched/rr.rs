//! `rr` — round robin (IPVS `ip_vs_rr.c`).
//!
//! Walks the real servers in order from the one after the last pick and
//! takes the first with weight > 0 that is not overloaded. Weights beyond
//! zero do not matter.

use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Rr;

/// Cursor: index of the last pick (`None` = before the first dest, IPVS's
/// list head).
#[derive(Debug, Default)]
pub struct RrState {
    last: Option<usize>,
}

impl Scheduler for Rr {
    const NAME: &'static str = "rr";
    type Table = ();
    type State = RrState;

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    fn schedule(_t: &(), s: &mut RrState, ctx: &SchedCtx<'_>) -> Option<usize> {
        let n = ctx.dests.len();
        let last = s.last.filter(|&i| i < n);
        // Two passes at most: from after `last` to the end, then from the
        // start up to and including `last`.
        let order = (last.map_or(0, |i| i + 1)..n).chain(0..last.map_or(0, |i| i + 1));
        for i in order {
            if ctx.available(i) {
                s.last = Some(i);
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;
    use crate::ipvs::dest::DestLoad;

    #[test]
    fn cycles_in_order_ignoring_weight_values() {
        let got = run(SchedKind::Rr, &[1, 5, 2], 7);
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0].map(Some));
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let d = dests(&[1, 0, 1, 1]);
        let mut load = vec![DestLoad::default(); 4];
        load[2].overloaded = true;
        let t = SchedKind::Rr.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        let got: Vec<_> = (0..4).map(|_| t.schedule(&mut s, &ctx(&d, &load))).collect();
        assert_eq!(got, [0, 3, 0, 3].map(Some));
    }

    #[test]
    fn none_when_nothing_available() {
        assert_eq!(run(SchedKind::Rr, &[0, 0], 2), vec![None, None]);
        assert_eq!(run(SchedKind::Rr, &[], 1), vec![None]);
    }
}
