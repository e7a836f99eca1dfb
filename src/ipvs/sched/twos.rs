//! `twos` — power of two random choices (IPVS `ip_vs_twos.c`).
//!
//! Draws two real servers at random, each with probability by weight, and
//! takes the one with the smaller `(active * 256 + inactive) / weight`
//! (cross-multiplied; the first draw wins ties). As in IPVS, the random
//! numbers are `r % (W + 1)` over the total weight `W` of the available
//! servers, and a draw `r` picks the first server whose running weight sum
//! reaches `r`, so the first available server is drawn with
//! `(w + 1) / (W + 1)`, every other with `w / (W + 1)`.
//!
//! Randomness: a SplitMix64 generator in each worker's state (no global
//! RNG, no atomics). It is seeded either explicitly through
//! [`SchedState::seed`](super::SchedState::seed) (the worker passes its
//! index) or, failing that, on first use from the first new connection's
//! addresses, ports and the worker clock, which differ between workers. A
//! seeded worker replays identically, which pcap replay tests rely on.

use super::util::{addr_fold, dests_loads, first_least, overhead, usable, Cand};
use super::{SchedCtx, SchedFlags, Scheduler};
use crate::ipvs::dest::DestEntry;

pub struct Twos;

/// The per-worker generator.
#[derive(Debug, Default, Clone)]
pub struct TwosState {
    rng: u64,
    seeded: bool,
}

impl TwosState {
    /// Seeds the generator (any value is fine, 0 included).
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed;
        self.seeded = true;
    }

    /// SplitMix64 (Steele, Lea, Flood 2014): one add and a mix per draw.
    #[inline]
    fn next_u32(&mut self) -> u32 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

/// The choice of `ip_vs_twos_schedule` for the two draws `r1`, `r2` (each
/// in `0..=W`). `None` when no server is available.
#[inline]
fn choose(ctx: &SchedCtx<'_>, r1: i64, r2: i64) -> Option<usize> {
    let (mut r1, mut r2) = (r1, r2);
    let mut c1: Option<Cand> = None;
    let mut c2: Option<Cand> = None;
    for (i, d, l) in dests_loads(ctx) {
        if !usable(d, &l) {
            continue;
        }
        let w = d.weight as i64;
        r1 -= w;
        r2 -= w;
        if r1 <= 0 && c1.is_none() {
            c1 = Some((i, w, overhead(&l)));
        }
        if r2 <= 0 && c2.is_none() {
            c2 = Some((i, w, overhead(&l)));
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    // The less loaded draw by overhead per weight, the first on a tie.
    // With draws in 0..=W both are found; were only one, it is the answer.
    first_least([c1, c2].into_iter().flatten())
}

impl Scheduler for Twos {
    const NAME: &'static str = "twos";
    type Table = ();
    type State = TwosState;

    fn build(_dests: &[DestEntry], _flags: SchedFlags) {}

    /// The generator survives changes of the service's dests.
    fn changed(_t: &(), _s: &mut TwosState) {}

    fn seed(s: &mut TwosState, seed: u64) {
        s.seed(seed);
    }

    fn schedule(_t: &(), s: &mut TwosState, ctx: &SchedCtx<'_>) -> Option<usize> {
        let total: i64 = dests_loads(ctx)
            .filter(|(_, d, l)| usable(d, l))
            .map(|(_, d, _)| d.weight as i64)
            .sum();
        if total == 0 {
            return None;
        }
        if !s.seeded {
            first_seed(s, ctx);
        }
        // `+ 1`: draws in 0..=W, as IPVS.
        let m = total as u64 + 1;
        let r1 = (s.next_u32() as u64 % m) as i64;
        let r2 = (s.next_u32() as u64 % m) as i64;
        choose(ctx, r1, r2)
    }
}

#[cold]
fn first_seed(s: &mut TwosState, ctx: &SchedCtx<'_>) {
    let flow = ((addr_fold(ctx.saddr) as u64) << 32 | addr_fold(ctx.daddr) as u64)
        ^ ((ctx.sport as u64) << 48 | (ctx.dport as u64) << 16)
        ^ ctx.now;
    s.seed(flow);
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::util::testutil::*;
    use super::super::*;
    use super::choose;

    #[test]
    fn draws_map_to_servers_by_running_weight() {
        // Weights 1, 2, 3: W + 1 = 7 draws 0..=6. Running sums 1, 3, 6:
        // r = 0, 1 → a; r = 2, 3 → b; r = 4, 5, 6 → c.
        let d = dests(&[1, 2, 3]);
        let z = loads(&[(0, 0); 3]);
        let c = ctx(&d, &z);
        let first_of = |r| choose(&c, r, r);
        assert_eq!(
            (0..=6).map(first_of).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2, 2, 2].map(Some)
        );
    }

    #[test]
    fn the_less_loaded_draw_wins_ties_keep_the_first() {
        let d = dests(&[1, 2, 3]);
        // a has 1 active (256/1), c none (0/3): 3*256 > 1*0 → c.
        let l = loads(&[(1, 0), (0, 0), (0, 0)]);
        assert_eq!(choose(&ctx(&d, &l), 0, 6), Some(2));
        // All empty: 3*0 > 1*0 is false → the first draw, a.
        let z = loads(&[(0, 0); 3]);
        assert_eq!(choose(&ctx(&d, &z), 0, 6), Some(0));
        // b 256/2 = 128 vs c 512/3 = 170: b, whichever was drawn first.
        let l = loads(&[(0, 0), (1, 0), (2, 0)]);
        assert_eq!(choose(&ctx(&d, &l), 2, 6), Some(1));
        assert_eq!(choose(&ctx(&d, &l), 6, 2), Some(1));
    }

    #[test]
    fn unavailable_servers_are_not_drawn() {
        // a quiesced, b overloaded: everything lands on c.
        let d = dests(&[0, 2, 3]);
        let mut l = loads(&[(0, 0); 3]);
        l[1].overloaded = true;
        for r in 0..=3 {
            assert_eq!(choose(&ctx(&d, &l), r, 3 - r), Some(2));
        }
        l[2].overloaded = true;
        assert_eq!(pick(SchedKind::Twos, &[0, 2, 3], &l), None);
    }

    #[test]
    fn same_seed_same_decisions_different_seed_different() {
        let d = dests(&[1, 1, 1, 1]);
        let z = loads(&[(0, 0); 4]);
        let t = SchedKind::Twos.build(&d, SchedFlags::default());
        let seq = |seed| {
            let mut s = t.new_state();
            s.seed(seed);
            (0..64)
                .map(|_| t.schedule(&mut s, &ctx(&d, &z)))
                .collect::<Vec<_>>()
        };
        assert_eq!(seq(1), seq(1));
        assert_ne!(seq(1), seq(2));
        // Unseeded states seed themselves from the first flow: the same
        // flow and clock give the same sequence.
        let mut a = t.new_state();
        let mut b = t.new_state();
        let x: Vec<_> = (0..16).map(|_| t.schedule(&mut a, &ctx(&d, &z))).collect();
        let y: Vec<_> = (0..16).map(|_| t.schedule(&mut b, &ctx(&d, &z))).collect();
        assert_eq!(x, y);
    }

    #[test]
    fn idle_shares_follow_ipvs_draw_probabilities() {
        // No load: the first draw always wins, so shares are the draw
        // probabilities (w1 + 1, w2, w3) / (W + 1) = 2/9, 2/9, 5/9.
        let d = dests(&[1, 2, 5]);
        let z = loads(&[(0, 0); 3]);
        let t = SchedKind::Twos.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        s.seed(7);
        let n = 90_000;
        let mut count = [0usize; 3];
        for _ in 0..n {
            count[t.schedule(&mut s, &ctx(&d, &z)).unwrap()] += 1;
        }
        let share = |i: usize| count[i] as f64 / n as f64;
        for (i, want) in [2.0 / 9.0, 2.0 / 9.0, 5.0 / 9.0].into_iter().enumerate() {
            assert!(
                (share(i) - want).abs() < 0.01,
                "server {i}: {} vs {want}",
                share(i)
            );
        }
    }

    #[test]
    fn piled_up_load_stays_balanced_by_weight() {
        // Two choices keep long-lived connections near the weight ratio:
        // every server within 10% of its share after 6000 connections.
        let w = [1, 2, 3];
        let d = dests(&w);
        let mut l = loads(&[(0, 0); 3]);
        let t = SchedKind::Twos.build(&d, SchedFlags::default());
        let mut s = t.new_state();
        s.seed(42);
        for _ in 0..6000 {
            let i = t.schedule(&mut s, &ctx(&d, &l)).unwrap();
            l[i].active += 1;
        }
        for (i, &wi) in w.iter().enumerate() {
            let ideal = 6000.0 * wi as f64 / 6.0;
            assert!(
                (l[i].active as f64 - ideal).abs() < ideal * 0.1,
                "server {i}: {}",
                l[i].active
            );
        }
    }
}
