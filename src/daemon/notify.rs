//! The systemd service protocol of `xvs run` (`Type=notify`,
//! `WatchdogSec=`): readiness, reloads, stopping and a watchdog that is
//! fed only while the data path makes progress.
//!
//! # Contract
//!
//! - [`Notifier::from_env`] reads `$NOTIFY_SOCKET` (sd_notify(3)) and
//!   `$WATCHDOG_USEC` / `$WATCHDOG_PID` (sd_watchdog_enabled(3): a PID
//!   that is not ours disables it). Without them every call is a no-op,
//!   so `xvs run` by hand behaves as before.
//! - `READY=1` is sent once every worker has published a report, i.e.
//!   runs its loop over bound sockets; `RELOADING=1` … `READY=1` brackets
//!   a SIGHUP reload; `STOPPING=1` starts the stop.
//! - The watchdog ([`Watchdog`]) is fed (`WATCHDOG=1`) at half the
//!   interval, and only when every worker has published a report since the
//!   previous feed (workers publish every `REPORT_INTERVAL`, 100 ms, busy
//!   or idle). A worker stuck in a loop, a deadlock or a stalled main
//!   thread stops the feed and systemd restarts the service after
//!   `WatchdogSec`. A worker late by more than half the interval is
//!   logged once.
//! - Messages go through the `sd-notify` crate (one datagram each).

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

/// Talks to the service manager, when there is one.
#[derive(Debug, Default)]
pub struct Notifier {
    enabled: bool,
    /// The watchdog interval systemd asked for.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment (see the module docs).
    pub fn from_env() -> Notifier {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            log::warn!("sd_notify to $NOTIFY_SOCKET failed: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (a reload starts; [`Notifier::ready`] ends it).
    pub fn reloading(&self) {
        self.send(&[NotifyState::Reloading]);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `WATCHDOG=1`.
    pub fn feed(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// The watchdog interval of sd_watchdog_enabled(3): `WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is absent or names this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == me => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

/// What a [`Watchdog::tick`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Feed now.
    Feed,
    /// Nothing to do yet.
    Wait,
    /// Worker `n` has published nothing since the last feed, which is
    /// half an interval or more ago (reported once per stall).
    Stalled(usize),
}

/// Decides when to feed the watchdog from the workers' report sequence
/// numbers (see the module docs).
#[derive(Debug)]
pub struct Watchdog {
    interval: Duration,
    last_feed: Instant,
    /// Each worker's sequence number at the last feed.
    at_feed: Vec<u64>,
    reported: bool,
}

impl Watchdog {
    /// A watchdog of `interval` whose clock starts at `now` (the time of
    /// `READY=1`), with the workers' current sequence numbers.
    pub fn new(interval: Duration, now: Instant, seqs: &[u64]) -> Watchdog {
        Watchdog { interval, last_feed: now, at_feed: seqs.to_vec(), reported: false }
    }

    /// Looks at the workers' sequence numbers at `now`.
    pub fn tick(&mut self, now: Instant, seqs: &[u64]) -> Tick {
        let due = now.saturating_duration_since(self.last_feed) >= self.interval / 2;
        if !due {
            return Tick::Wait;
        }
        let stuck = if seqs.len() != self.at_feed.len() {
            None
        } else {
            seqs.iter().zip(&self.at_feed).position(|(now, then)| now == then)
        };
        match stuck {
            None => {
                self.last_feed = now;
                self.at_feed = seqs.to_vec();
                self.reported = false;
                Tick::Feed
            }
            Some(w) if !self.reported => {
                self.reported = true;
                Tick::Stalled(w)
            }
            Some(_) => Tick::Wait,
        }
    }
}

/// The protocol as `xvs run`'s main loop drives it: [`Service::tick`]
/// every loop (tens of milliseconds) sends `READY=1` once every worker
/// runs and feeds the watchdog while they make progress.
#[derive(Debug)]
pub struct Service {
    notifier: Notifier,
    status: String,
    ready: bool,
    watchdog: Option<Watchdog>,
}

impl Service {
    /// From the environment; `status` is the `STATUS=` line sent with
    /// `READY=1`.
    pub fn from_env(status: String) -> Service {
        Service { notifier: Notifier::from_env(), status, ready: false, watchdog: None }
    }

    /// Whether `READY=1` has been sent (or would have been, without a
    /// service manager).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Looks at the director's workers (see the module docs).
    pub fn tick(&mut self, d: &super::Director) {
        let seqs: Vec<u64> = d.reports().iter().map(|r| r.seq).collect();
        let now = Instant::now();
        if !self.ready {
            if seqs.iter().all(|&s| s > 0) {
                self.ready = true;
                self.notifier.ready(&self.status);
                self.watchdog = self.notifier.watchdog.map(|i| Watchdog::new(i, now, &seqs));
                log::info!("ready: {} {}", seqs.len(), super::LOG_READY);
            }
            return;
        }
        if let Some(w) = self.watchdog.as_mut() {
            match w.tick(now, &seqs) {
                Tick::Feed => self.notifier.feed(),
                Tick::Wait => {}
                Tick::Stalled(n) => log::error!(
                    "worker {n} has published no report for at least {:?}: the systemd watchdog is no longer fed",
                    w.interval / 2
                ),
            }
        }
    }

    /// A reload starts.
    pub fn reloading(&self) {
        self.notifier.reloading();
    }

    /// A reload ended (applied or not: the director runs).
    pub fn reloaded(&self) {
        if self.ready {
            self.notifier.ready(&self.status);
        }
    }

    /// The director stops.
    pub fn stopping(&self) {
        self.notifier.stopping();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_follows_sd_watchdog_enabled() {
        assert_eq!(watchdog_interval(Some("2000000"), None, 7), Some(Duration::from_secs(2)));
        assert_eq!(watchdog_interval(Some("2000000"), Some("7"), 7), Some(Duration::from_secs(2)));
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None, "another process's watchdog");
        assert_eq!(watchdog_interval(Some("2000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn fed_at_half_the_interval_while_every_worker_progresses() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = Watchdog::new(Duration::from_secs(2), t0, &[0, 0]);
        assert_eq!(w.tick(ms(500), &[5, 5]), Tick::Wait, "not due before half the interval");
        assert_eq!(w.tick(ms(1000), &[10, 10]), Tick::Feed);
        assert_eq!(w.tick(ms(1500), &[15, 15]), Tick::Wait);
        assert_eq!(w.tick(ms(2000), &[20, 20]), Tick::Feed);
    }

    #[test]
    fn a_stuck_worker_stops_the_feed_until_it_moves_again() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = Watchdog::new(Duration::from_secs(2), t0, &[0, 0]);
        assert_eq!(w.tick(ms(1000), &[10, 10]), Tick::Feed);
        // Worker 1 stops publishing at 10.
        assert_eq!(w.tick(ms(2000), &[20, 10]), Tick::Stalled(1), "reported once");
        for t in (2050..5000).step_by(50) {
            assert_eq!(w.tick(ms(t), &[t / 100, 10]), Tick::Wait, "no feed at {t} ms");
        }
        // It moves again: fed at once.
        assert_eq!(w.tick(ms(5000), &[50, 11]), Tick::Feed);
        assert_eq!(w.tick(ms(5100), &[51, 11]), Tick::Wait);
        // A second stall is reported again.
        assert_eq!(w.tick(ms(6000), &[60, 11]), Tick::Stalled(1));
    }

    #[test]
    fn a_changed_worker_count_does_not_stop_the_feed() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(Duration::from_secs(1), t0, &[0]);
        // Different lengths: nothing to compare, fed (the workers are
        // fixed at start; this only must not panic).
        assert_eq!(w.tick(t0 + Duration::from_secs(1), &[1, 1]), Tick::Feed);
        assert_eq!(w.tick(t0 + Duration::from_secs(2), &[2, 2]), Tick::Feed);
    }
}
