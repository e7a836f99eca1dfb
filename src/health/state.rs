//! Health state: the rise/fall counting of one check ([`CheckState`]) and
//! the state of every checked real server ([`HealthStates`]), which is
//! what [`super::policy::effective_model`] reads.
//!
//! Rise/fall (HAProxy's semantics): an up check goes down after `fall`
//! consecutive failures, a down check goes up after `rise` consecutive
//! successes; a result agreeing with the current state resets the count.
//! A success carrying a dynamic weight applies it even while the check is
//! down, so the server comes back with its latest weight.

use super::check::{Outcome, WeightUpdate};
use super::config::Timing;
use super::DestId;
use crate::ipvs::dest::MAX_WEIGHT;
use crate::ipvs::service::ServiceKey;
use std::collections::BTreeMap;

/// A change of a check's up/down state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Up,
    Down,
}

/// The dynamic weight a check imposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DynWeight {
    /// Replaces the configured weight (`misc_dynamic`).
    pub absolute: Option<u32>,
    /// Scales it, in percent (agent).
    pub percent: Option<u32>,
}

impl DynWeight {
    /// The effective weight of a server configured with `configured`:
    /// the absolute weight if any, scaled by the percentage if any,
    /// clamped to the largest weight.
    pub fn apply(&self, configured: u32) -> u32 {
        let base = self.absolute.unwrap_or(configured) as u64;
        let w = base * self.percent.unwrap_or(100) as u64 / 100;
        w.min(MAX_WEIGHT as u64) as u32
    }

    /// Applies a check's report.
    pub fn update(&mut self, u: WeightUpdate) {
        match u {
            WeightUpdate::Keep => {}
            WeightUpdate::Absolute(w) => self.absolute = Some(w),
            WeightUpdate::Percent(p) => self.percent = Some(p),
            WeightUpdate::Reset => *self = DynWeight::default(),
        }
    }

    /// Combines the weights of several checks of one server: the smallest
    /// of each kind wins (the most cautious check).
    pub fn combine(&self, o: &DynWeight) -> DynWeight {
        let min = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        DynWeight {
            absolute: min(self.absolute, o.absolute),
            percent: min(self.percent, o.percent),
        }
    }
}

/// Rise/fall state of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckState {
    pub up: bool,
    /// Consecutive results disagreeing with `up`.
    pub streak: u32,
    pub rise: u32,
    pub fall: u32,
    pub weight: DynWeight,
    /// Reason of the last failure (empty before any).
    pub last_failure: String,
    /// Runs and failed runs so far.
    pub runs: u64,
    pub failures: u64,
}

impl CheckState {
    /// A fresh check: up unless `alpha` or `start_down`.
    pub fn new(t: &Timing, start_down: bool) -> CheckState {
        CheckState {
            up: !(t.alpha || start_down),
            streak: 0,
            rise: t.rise,
            fall: t.fall,
            weight: DynWeight::default(),
            last_failure: String::new(),
            runs: 0,
            failures: 0,
        }
    }

    /// Counts one result.
    pub fn record(&mut self, o: &Outcome) -> Transition {
        self.runs += 1;
        match o {
            Ok(s) => {
                self.weight.update(s.weight);
                if self.up {
                    self.streak = 0;
                    return Transition::None;
                }
                self.streak += 1;
                if self.streak >= self.rise {
                    self.up = true;
                    self.streak = 0;
                    return Transition::Up;
                }
            }
            Err(f) => {
                self.failures += 1;
                self.last_failure.clone_from(&f.reason);
                if !self.up {
                    self.streak = 0;
                    return Transition::None;
                }
                self.streak += 1;
                if self.streak >= self.fall {
                    self.up = false;
                    self.streak = 0;
                    return Transition::Down;
                }
            }
        }
        Transition::None
    }
}

/// The health of one real server of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestHealth {
    /// Every check of the server is up.
    pub up: bool,
    /// Dynamic weight from its checks.
    pub weight: DynWeight,
    /// Why it went down or up last (empty before any transition).
    pub reason: String,
    /// Transitions so far.
    pub downs: u64,
    pub ups: u64,
    pub weight_changes: u64,
}

impl DestHealth {
    /// A server that starts up (or down) with no history.
    pub fn new(up: bool) -> DestHealth {
        DestHealth {
            up,
            weight: DynWeight::default(),
            reason: String::new(),
            downs: 0,
            ups: 0,
            weight_changes: 0,
        }
    }

    /// Its effective weight when up, for a configured weight.
    pub fn effective_weight(&self, configured: u32) -> u32 {
        self.weight.apply(configured)
    }
}

/// The health of every checked real server, by (service, server). Servers
/// without checks are not in it and count as up at their configured weight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthStates {
    pub dests: BTreeMap<(ServiceKey, DestId), DestHealth>,
}

impl HealthStates {
    /// The health of `dest` in `service`, if it is checked.
    pub fn get(&self, service: &ServiceKey, dest: DestId) -> Option<&DestHealth> {
        self.dests.get(&(service.clone(), dest))
    }

    /// Sets the health of `dest` in `service`.
    pub fn set(&mut self, service: &ServiceKey, dest: DestId, h: DestHealth) {
        self.dests.insert((service.clone(), dest), h);
    }

    /// Totals of the transition counters: (downs, ups, weight changes).
    pub fn totals(&self) -> (u64, u64, u64) {
        self.dests.values().fold((0, 0, 0), |(d, u, w), h| {
            (d + h.downs, u + h.ups, w + h.weight_changes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::check::{Failure, Success};
    use std::time::Duration;

    fn timing(rise: u32, fall: u32, alpha: bool) -> Timing {
        Timing {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise,
            fall,
            jitter: 0,
            alpha,
        }
    }

    fn ok() -> Outcome {
        Ok(Success::default())
    }
    fn bad() -> Outcome {
        Err(Failure::new("boom"))
    }

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let mut s = CheckState::new(&timing(2, 3, false), false);
        assert!(s.up);
        assert_eq!(s.record(&bad()), Transition::None);
        assert_eq!(s.record(&bad()), Transition::None);
        assert_eq!(
            s.record(&ok()),
            Transition::None,
            "a success resets the failure count"
        );
        assert_eq!(s.record(&bad()), Transition::None);
        assert_eq!(s.record(&bad()), Transition::None);
        assert_eq!(s.record(&bad()), Transition::Down);
        assert!(!s.up);
        assert_eq!(s.last_failure, "boom");
        assert_eq!(s.record(&bad()), Transition::None);
        assert_eq!(s.record(&ok()), Transition::None);
        assert_eq!(
            s.record(&bad()),
            Transition::None,
            "a failure resets the success count"
        );
        assert_eq!(s.record(&ok()), Transition::None);
        assert_eq!(s.record(&ok()), Transition::Up);
        assert_eq!((s.runs, s.failures), (11, 7));
    }

    #[test]
    fn alpha_and_rise_one() {
        let mut s = CheckState::new(&timing(1, 1, true), false);
        assert!(!s.up, "alpha starts down");
        assert_eq!(s.record(&ok()), Transition::Up);
        assert_eq!(s.record(&bad()), Transition::Down);
        let s = CheckState::new(&timing(1, 1, false), true);
        assert!(!s.up, "start_down (a server that was down before a reload)");
    }

    #[test]
    fn weights_apply_even_while_down() {
        let mut s = CheckState::new(&timing(2, 1, false), false);
        s.record(&bad());
        s.record(&Ok(Success {
            weight: WeightUpdate::Percent(50),
        }));
        assert!(!s.up);
        assert_eq!(s.weight.percent, Some(50));
        s.record(&ok());
        assert!(s.up);
        assert_eq!(s.weight.apply(10), 5, "Keep keeps it");
        s.record(&Ok(Success {
            weight: WeightUpdate::Reset,
        }));
        assert_eq!(s.weight, DynWeight::default());
    }

    #[test]
    fn dyn_weight_math() {
        let w = DynWeight {
            absolute: None,
            percent: Some(75),
        };
        assert_eq!(w.apply(4), 3);
        assert_eq!(w.apply(1), 0, "rounds down, like HAProxy");
        assert_eq!(
            DynWeight {
                absolute: Some(20),
                percent: Some(50)
            }
            .apply(4),
            10
        );
        assert_eq!(
            DynWeight {
                absolute: Some(MAX_WEIGHT),
                percent: Some(1000)
            }
            .apply(1),
            MAX_WEIGHT
        );
        assert_eq!(DynWeight::default().apply(7), 7);
        let c = DynWeight {
            absolute: Some(5),
            percent: None,
        }
        .combine(&DynWeight {
            absolute: Some(3),
            percent: Some(80),
        });
        assert_eq!(
            c,
            DynWeight {
                absolute: Some(3),
                percent: Some(80)
            }
        );
    }

    #[test]
    fn states_lookup_and_totals() {
        let svc = ServiceKey::Group(1);
        let d = DestId {
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
        };
        let mut st = HealthStates::default();
        assert!(st.get(&svc, d).is_none());
        let mut h = DestHealth::new(false);
        h.downs = 2;
        h.ups = 1;
        st.set(&svc, d, h);
        assert!(!st.get(&svc, d).unwrap().up);
        assert_eq!(st.totals(), (2, 1, 0));
    }
}
