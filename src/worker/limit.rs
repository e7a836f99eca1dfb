//! The rate limit of the ICMP errors a worker builds itself: a token
//! bucket, as the kernel's `icmp_global_allow` (`net.ipv4.icmp_msgs_per_sec`,
//! `icmp_msgs_burst`). Each worker has its own bucket holding its share
//! of the director's rate and burst, so no worker touches another's state.
//! Tokens are counted in nanosecond units: a token is [`NS`] units, and
//! `rate` tokens a second refill `rate` units per nanosecond.

const NS: u64 = 1_000_000_000;
/// The longest gap refilled at once (the bucket is full long before).
const MAX_GAP_NS: u64 = 10 * NS;

/// A token bucket. See the module docs.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens a second; 0: no limit.
    rate: u64,
    /// Capacity, in units.
    cap: u64,
    units: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// One worker's share of a director-wide limit of `rate` a second and
    /// `burst` at once among `workers` (both rounded up, the burst at
    /// least 1); full at `now_ns`.
    pub fn share(rate: u32, burst: u32, workers: u16, now_ns: u64) -> TokenBucket {
        let n = workers.max(1) as u64;
        let rate = (rate as u64).div_ceil(n);
        let burst = (burst as u64).div_ceil(n).max(1);
        TokenBucket { rate, cap: burst * NS, units: burst * NS, last_ns: now_ns }
    }

    /// Keeps what is left of the tokens under a new limit (a reload),
    /// up to its burst.
    pub fn reshape(&mut self, new: TokenBucket) {
        let units = self.units.min(new.cap);
        *self = TokenBucket { units, last_ns: self.last_ns, ..new };
    }

    /// Takes a token at `now_ns` (monotonic): `false` when there is none.
    #[inline]
    pub fn allow(&mut self, now_ns: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let gap = now_ns.saturating_sub(self.last_ns).min(MAX_GAP_NS);
        self.last_ns = self.last_ns.max(now_ns);
        self.units = (self.units + gap * self.rate).min(self.cap);
        if self.units < NS {
            return false;
        }
        self.units -= NS;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(b: &mut TokenBucket, at_ns: u64, n: usize) -> usize {
        (0..n).filter(|_| b.allow(at_ns)).count()
    }

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::share(1000, 50, 1, 0);
        assert_eq!(sent(&mut b, 0, 100), 50, "the burst at once");
        assert_eq!(sent(&mut b, 0, 10), 0);
        assert_eq!(sent(&mut b, NS / 100, 100), 10, "10 ms later: 10 more at 1000/s");
        assert_eq!(sent(&mut b, 5 * NS, 1000), 50, "a quiet time refills the burst, no more");
        // emptied, then steady: one every millisecond
        assert_eq!(sent(&mut b, 6 * NS, 100), 50);
        let n: usize = (1..=1000u64).map(|ms| sent(&mut b, 6 * NS + ms * 1_000_000, 5)).sum();
        assert_eq!(n, 1000);
    }

    #[test]
    fn workers_share_the_limit_and_zero_is_none() {
        let mut b = TokenBucket::share(1000, 50, 4, 0);
        assert_eq!(sent(&mut b, 0, 100), 13, "50 / 4, rounded up");
        assert_eq!(sent(&mut b, NS / 10, 100), 13, "250/s for 100 ms is 25, up to the burst");
        let mut b = TokenBucket::share(1000, 1, 8, 0);
        assert_eq!(sent(&mut b, 0, 5), 1, "a burst of at least one");
        let mut b = TokenBucket::share(0, 1, 1, 0);
        assert_eq!(sent(&mut b, 0, 10_000), 10_000);
    }

    #[test]
    fn a_clock_going_back_or_far_ahead_does_no_harm() {
        let mut b = TokenBucket::share(10, 2, 1, 5 * NS);
        assert_eq!(sent(&mut b, 5 * NS, 5), 2);
        assert_eq!(sent(&mut b, NS, 5), 0, "an earlier time refills nothing");
        assert_eq!(sent(&mut b, u64::MAX, 5), 2, "no overflow");
        let mut r = TokenBucket::share(10, 2, 1, 0);
        r.reshape(TokenBucket::share(10, 1, 1, 0));
        assert_eq!(sent(&mut r, 0, 5), 1, "a smaller burst caps what is left");
    }
}
