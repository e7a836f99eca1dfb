//! IPVS's rate estimator (`ip_vs_est.c`): every 2 seconds the growth of a
//! counter set becomes a rate, smoothed as `avg += (rate − avg) / 4` — a
//! moving average over about the last 8 seconds. Rates are kept scaled
//! (connections and packets by 2^10, bytes by 2^5) in integers, as IPVS
//! does, so `ipvsadm --rate` figures match IPVS's arithmetic.

use super::{DestStats, Rate};

/// Seconds between estimator ticks.
pub const INTERVAL_SECS: u64 = 2;

/// The smoothed rates of one counter set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimator {
    last: DestStats,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

/// `avg += (rate - avg) >> 2`, the growth scaled by `shift` over 2 s.
fn smooth(avg: &mut i64, now: u64, last: u64, shift: u32) {
    let rate = (now.wrapping_sub(last) as i64) << shift;
    *avg += (rate - *avg) >> 2;
}

impl Estimator {
    /// An estimator starting from the totals `cur` (no rate yet).
    pub fn new(cur: &DestStats) -> Estimator {
        Estimator { last: *cur, ..Estimator::default() }
    }

    /// One 2-second tick with the current totals.
    pub fn tick(&mut self, cur: &DestStats) {
        // Scaled by 2^10 and divided by the 2 s interval: << 9; bytes by
        // 2^5 over 2 s: << 4.
        smooth(&mut self.cps, cur.conns, self.last.conns, 9);
        smooth(&mut self.inpps, cur.inpkts, self.last.inpkts, 9);
        smooth(&mut self.outpps, cur.outpkts, self.last.outpkts, 9);
        smooth(&mut self.inbps, cur.inbytes, self.last.inbytes, 4);
        smooth(&mut self.outbps, cur.outbytes, self.last.outbytes, 4);
        self.last = *cur;
    }

    /// `ipvsadm -Z`: rates to zero, counting on from `cur`.
    pub fn zero(&mut self, cur: &DestStats) {
        *self = Estimator::new(cur);
    }

    /// The rates per second, rounded as IPVS's `ip_vs_read_estimator`.
    pub fn rate(&self) -> Rate {
        let r10 = |v: i64| ((v.max(0) + 0x1ff) >> 10) as u64;
        let r5 = |v: i64| ((v.max(0) + 0xf) >> 5) as u64;
        Rate { cps: r10(self.cps), inpps: r10(self.inpps), outpps: r10(self.outpps), inbps: r5(self.inbps), outbps: r5(self.outbps) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(conns: u64, pkts: u64, bytes: u64) -> DestStats {
        DestStats { conns, inpkts: pkts, inbytes: bytes, outpkts: pkts / 2, outbytes: bytes / 2 }
    }

    #[test]
    fn converges_to_a_steady_rate() {
        // 100 conn/s, 1000 pkt/s, 1 MB/s in
        let mut e = Estimator::new(&at(0, 0, 0));
        // (1 - 1/4)^n of the gap remains after n ticks: 80 ticks close it.
        for i in 1..=80u64 {
            e.tick(&at(200 * i, 2000 * i, 2_000_000 * i));
        }
        let r = e.rate();
        assert_eq!((r.cps, r.inpps, r.outpps), (100, 1000, 500));
        assert_eq!((r.inbps, r.outbps), (1_000_000, 500_000));
    }

    #[test]
    fn first_tick_is_a_quarter_of_the_rate() {
        // IPVS's EWMA with W = 1/4: the first 2 s step gives 1/4 of it.
        let mut e = Estimator::new(&at(0, 0, 0));
        e.tick(&at(800, 0, 0)); // 400/s
        assert_eq!(e.rate().cps, 100);
        e.tick(&at(1600, 0, 0));
        assert_eq!(e.rate().cps, 175); // 100 + (400-100)/4
    }

    #[test]
    fn decays_when_idle_and_zero_resets() {
        let mut e = Estimator::new(&at(0, 0, 0));
        for i in 1..=20u64 {
            e.tick(&at(100 * i, 0, 0));
        }
        assert_eq!(e.rate().cps, 50);
        for _ in 0..60 {
            e.tick(&at(2000, 0, 0));
        }
        assert_eq!(e.rate().cps, 0);
        e.tick(&at(2200, 0, 0));
        assert!(e.rate().cps > 0);
        e.zero(&at(2200, 0, 0));
        assert_eq!(e.rate(), Rate::default());
        e.tick(&at(2200, 0, 0));
        assert_eq!(e.rate(), Rate::default(), "no growth after zero, no rate");
    }
}
