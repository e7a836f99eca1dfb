//! The engine: runs the plan's checks on a tokio runtime (a control-plane
//! thread, never a worker core), counts rise/fall, and reports real-server
//! transitions as [`Event`]s.
//!
//! Layout: one task per unique check sleeps, probes, and sends the
//! [`Outcome`] to one aggregator task, which alone owns the check states
//! (no locks between checks). The aggregator applies rise/fall, recomputes
//! each affected (service, server), and on a change updates the shared
//! [`HealthStates`] (what [`effective_model`](super::effective_model)
//! reads), logs the transition with its reason and sends the event.
//!
//! Timing: a check first fires after a random offset in `[0, interval)`,
//! then every `interval ± jitter%`, measured from the start of the previous
//! run so slow checks do not drift. The randomness comes from a seeded
//! generator ([`EngineOptions::seed`]), so a schedule is reproducible.
//! A probe gets a deadline of `timeout`; the engine cuts it off shortly
//! after if it overruns.
//!
//! Lifecycle: [`start`] on the current runtime or [`spawn_thread`] on a
//! runtime of its own; dropping the [`EngineHandle`] stops every check. On
//! a reload, start a new engine from the new plan with the old engine's
//! [`EngineHandle::states`] so servers keep their health.

use super::check::{self, fmt_dur, Failure, Outcome};
use super::config::CheckSpec;
use super::plan::HealthPlan;
use super::state::{CheckState, DestHealth, DynWeight, HealthStates, Transition};
use super::Event;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long after its deadline a probe is cut off by the engine.
pub const GRACE: Duration = Duration::from_millis(100);

/// Engine settings.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Seed of the schedule's randomness (start offsets, jitter).
    pub seed: u64,
    /// Capacity of the event channel; a full channel holds back the checks
    /// until the consumer catches up.
    pub event_capacity: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        EngineOptions {
            seed: t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32),
            event_capacity: 1024,
        }
    }
}

/// A probe's future.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Runs one probe of a spec before a deadline. The real one is [`prober`];
/// tests substitute scripted ones.
pub type ProbeFn = Arc<dyn Fn(Arc<CheckSpec>, Instant) -> ProbeFuture + Send + Sync>;

/// The real prober: [`check::run`].
pub fn prober() -> ProbeFn {
    Arc::new(|spec: Arc<CheckSpec>, deadline: Instant| -> ProbeFuture {
        Box::pin(async move { check::run(&spec.probe, deadline).await })
    })
}

/// The state of one unique check, for display (`xvsadm -L`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStatus {
    /// e.g. `http 10.0.1.1:80/health`.
    pub name: String,
    pub up: bool,
    pub runs: u64,
    pub failures: u64,
    /// Empty before the first failure.
    pub last_failure: String,
    /// The last run passed (`None` before the first run).
    pub last_ok: Option<bool>,
    /// How many (service, real server) pairs use it.
    pub users: usize,
}

struct Shared {
    states: HealthStates,
    checks: Vec<CheckStatus>,
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere must not stop health reporting: the data is plain.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

enum Runner {
    Tasks(#[allow(dead_code)] JoinSet<()>),
    Thread {
        stop: Option<oneshot::Sender<()>>,
        join: Option<std::thread::JoinHandle<()>>,
    },
}

/// A running engine. Dropping it stops every check (and its thread).
pub struct EngineHandle {
    shared: Arc<Mutex<Shared>>,
    runner: Runner,
}

impl EngineHandle {
    /// The current health of every checked real server.
    pub fn states(&self) -> HealthStates {
        lock(&self.shared).states.clone()
    }

    /// The state of every unique check.
    pub fn checks(&self) -> Vec<CheckStatus> {
        lock(&self.shared).checks.clone()
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if let Runner::Thread { stop, join } = &mut self.runner {
            if let Some(s) = stop.take() {
                let _ = s.send(());
            }
            if let Some(j) = join.take() {
                let _ = j.join();
            }
        }
    }
}

/// A small seeded generator (splitmix64): schedules only, not crypto.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The generator of check `idx` under `seed`.
    pub(crate) fn for_check(seed: u64, idx: usize) -> Rng {
        Rng(seed ^ (idx as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The offset of a check's first run: uniform in [0, interval).
    pub(crate) fn first_delay(&mut self, interval: Duration) -> Duration {
        interval.mul_f64(self.unit())
    }

    /// The time to the next run: `interval` ± `jitter` percent.
    pub(crate) fn next_interval(&mut self, interval: Duration, jitter: u32) -> Duration {
        if jitter == 0 {
            return interval;
        }
        let f = 1.0 + (jitter as f64 / 100.0) * (2.0 * self.unit() - 1.0);
        interval.mul_f64(f)
    }
}

/// Starts the checks of `plan` on the current tokio runtime, from `prev`
/// states (see [`HealthPlan::initial_states`]). Events arrive on the
/// returned receiver.
///
/// # Panics
/// Outside a tokio runtime.
pub fn start(
    plan: Arc<HealthPlan>,
    opts: EngineOptions,
    prev: Option<&HealthStates>,
) -> (EngineHandle, mpsc::Receiver<Event>) {
    start_with(plan, opts, prev, prober())
}

/// [`start`] with another prober (tests).
pub fn start_with(
    plan: Arc<HealthPlan>,
    opts: EngineOptions,
    prev: Option<&HealthStates>,
    probe: ProbeFn,
) -> (EngineHandle, mpsc::Receiver<Event>) {
    let (shared, checks) = initial(&plan, prev);
    let shared = Arc::new(Mutex::new(shared));
    let (ev_tx, ev_rx) = mpsc::channel(opts.event_capacity.max(1));
    let mut set = JoinSet::new();
    spawn_all(&mut set, plan, opts, shared.clone(), checks, ev_tx, probe);
    (
        EngineHandle {
            shared,
            runner: Runner::Tasks(set),
        },
        ev_rx,
    )
}

/// Starts the engine on a thread of its own (`xvs-health`) running a
/// single-threaded tokio runtime. The thread inherits the caller's CPU
/// affinity: call it from a control-plane thread, not a pinned worker.
///
/// # Errors
/// The runtime or the thread could not be created.
pub fn spawn_thread(
    plan: Arc<HealthPlan>,
    opts: EngineOptions,
    prev: Option<&HealthStates>,
) -> std::io::Result<(EngineHandle, mpsc::Receiver<Event>)> {
    let (shared, checks) = initial(&plan, prev);
    let shared = Arc::new(Mutex::new(shared));
    let (ev_tx, ev_rx) = mpsc::channel(opts.event_capacity.max(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sh = shared.clone();
    let join = std::thread::Builder::new()
        .name("xvs-health".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut set = JoinSet::new();
                spawn_all(&mut set, plan, opts, sh, checks, ev_tx, prober());
                let _ = stop_rx.await;
                set.shutdown().await;
            });
        })?;
    Ok((
        EngineHandle {
            shared,
            runner: Runner::Thread {
                stop: Some(stop_tx),
                join: Some(join),
            },
        },
        ev_rx,
    ))
}

/// The starting states: servers from `prev` or the plan; a check starts
/// down when it has `alpha` or a server it feeds was down before.
fn initial(plan: &HealthPlan, prev: Option<&HealthStates>) -> (Shared, Vec<CheckState>) {
    let mut states = plan.initial_states(prev);
    let fanout = plan.fanout();
    let mut checks = Vec::with_capacity(plan.checks().len());
    let mut status = Vec::with_capacity(plan.checks().len());
    for (i, spec) in plan.checks().iter().enumerate() {
        let was_down = fanout[i].iter().any(|t| {
            let t = &plan.targets()[*t];
            states.get(&t.service, t.dest).is_some_and(|h| !h.up)
        });
        let c = CheckState::new(&spec.timing, was_down);
        status.push(CheckStatus {
            name: spec.to_string(),
            up: c.up,
            runs: 0,
            failures: 0,
            last_failure: String::new(),
            last_ok: None,
            users: fanout[i].len(),
        });
        checks.push(c);
    }
    // A server is up only if all its checks start up (a check shared with
    // a server that was down starts down): keep the two views consistent
    // so the first results raise no spurious transition.
    for t in plan.targets() {
        let all_up = t.checks.iter().all(|c| checks[*c].up);
        if let Some(h) = states.dests.get_mut(&(t.service.clone(), t.dest)) {
            h.up &= all_up;
        }
    }
    (
        Shared {
            states,
            checks: status,
        },
        checks,
    )
}

fn spawn_all(
    set: &mut JoinSet<()>,
    plan: Arc<HealthPlan>,
    opts: EngineOptions,
    shared: Arc<Mutex<Shared>>,
    checks: Vec<CheckState>,
    events: mpsc::Sender<Event>,
    probe: ProbeFn,
) {
    let (res_tx, res_rx) = mpsc::channel(plan.checks().len().max(1) * 2);
    for (idx, spec) in plan.checks().iter().enumerate() {
        let spec = Arc::new(spec.clone());
        set.spawn(run_check(
            idx,
            spec,
            probe.clone(),
            res_tx.clone(),
            Rng::for_check(opts.seed, idx),
        ));
    }
    drop(res_tx);
    set.spawn(aggregate(plan, res_rx, shared, checks, events));
}

/// Runs check `idx` forever.
async fn run_check(
    idx: usize,
    spec: Arc<CheckSpec>,
    probe: ProbeFn,
    results: mpsc::Sender<(usize, Outcome)>,
    mut rng: Rng,
) {
    let t = spec.timing;
    tokio::time::sleep(rng.first_delay(t.interval)).await;
    loop {
        let start = Instant::now();
        let deadline = start + t.timeout;
        let outcome =
            match tokio::time::timeout_at(deadline + GRACE, probe(spec.clone(), deadline)).await {
                Ok(o) => o,
                Err(_) => Err(Failure::new(format!(
                    "no result within {}",
                    fmt_dur(t.timeout)
                ))),
            };
        if results.send((idx, outcome)).await.is_err() {
            return;
        }
        tokio::time::sleep_until(start + rng.next_interval(t.interval, t.jitter)).await;
    }
}

/// The reason of a weight change, from the dynamic weight.
fn weight_reason(w: &DynWeight) -> String {
    match (w.absolute, w.percent) {
        (None, None) => "back to the configured weight".into(),
        (Some(a), None) => format!("weight {a} reported"),
        (None, Some(0)) => "draining (0%)".into(),
        (None, Some(p)) => format!("{p}% of the configured weight"),
        (Some(a), Some(p)) => format!("weight {a} at {p}%"),
    }
}

/// Owns the check states; turns outcomes into events.
async fn aggregate(
    plan: Arc<HealthPlan>,
    mut results: mpsc::Receiver<(usize, Outcome)>,
    shared: Arc<Mutex<Shared>>,
    mut checks: Vec<CheckState>,
    events: mpsc::Sender<Event>,
) {
    let fanout = plan.fanout();
    let mut out = Vec::new();
    while let Some((idx, outcome)) = results.recv().await {
        let spec = &plan.checks()[idx];
        let tr = checks[idx].record(&outcome);
        {
            let mut sh = lock(&shared);
            let st = &mut sh.checks[idx];
            let c = &checks[idx];
            (st.up, st.runs, st.failures) = (c.up, c.runs, c.failures);
            st.last_failure.clone_from(&c.last_failure);
            st.last_ok = Some(outcome.is_ok());
            for &ti in &fanout[idx] {
                let t = &plan.targets()[ti];
                let up = t.checks.iter().all(|c| checks[*c].up);
                let weight = t
                    .checks
                    .iter()
                    .fold(DynWeight::default(), |w, c| w.combine(&checks[*c].weight));
                let key = (t.service.clone(), t.dest);
                let h = sh
                    .states
                    .dests
                    .entry(key)
                    .or_insert_with(|| DestHealth::new(t.starts_up));
                let (old_up, old_w) = (h.up, h.effective_weight(t.configured_weight));
                h.up = up;
                h.weight = weight;
                let new_w = h.effective_weight(t.configured_weight);
                let ev = if old_up && !up {
                    h.downs += 1;
                    let reason = format!(
                        "{spec}: {} ({} failed in a row)",
                        checks[idx].last_failure, checks[idx].fall
                    );
                    Event::DestDown {
                        service: t.service.clone(),
                        dest: t.dest,
                        reason,
                    }
                } else if !old_up && up {
                    h.ups += 1;
                    let reason = if tr == Transition::Up {
                        format!("{spec}: {} passed in a row", checks[idx].rise)
                    } else {
                        format!("{spec}: passed")
                    };
                    Event::DestUp {
                        service: t.service.clone(),
                        dest: t.dest,
                        weight: new_w,
                        reason,
                    }
                } else if up && old_w != new_w {
                    h.weight_changes += 1;
                    Event::WeightChange {
                        service: t.service.clone(),
                        dest: t.dest,
                        new_weight: new_w,
                        reason: format!("{spec}: {}", weight_reason(&weight)),
                    }
                } else {
                    continue;
                };
                match &ev {
                    Event::DestDown { reason, .. }
                    | Event::DestUp { reason, .. }
                    | Event::WeightChange { reason, .. } => h.reason.clone_from(reason),
                }
                out.push(ev);
            }
        }
        for ev in out.drain(..) {
            match ev {
                Event::DestDown { .. } => log::warn!(target: "xvs::health", "{ev}"),
                _ => log::info!(target: "xvs::health", "{ev}"),
            }
            // A consumer that went away does not stop the checks: the
            // states stay readable through the handle.
            let _ = events.send(ev).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::check::{Success, WeightUpdate};
    use crate::health::config::{CheckConfig, CheckType, ConfDuration, Probe};
    use crate::health::testutil::{dest, key};
    use crate::health::DestId;
    use crate::ipvs::dest::Dest;
    use crate::ipvs::service::ServiceKey;
    use crate::ipvs::FwdMethod;
    use std::net::SocketAddr;

    fn rs(addr: &str, port: u16) -> Dest {
        dest(addr, port, 4, FwdMethod::Nat)
    }
    fn tcp(interval_ms: u64, rise: u32, fall: u32, jitter: u32) -> CheckConfig {
        let mut c = CheckConfig::new(CheckType::Tcp);
        c.interval = Some(ConfDuration(Duration::from_millis(interval_ms)));
        c.timeout = Some(ConfDuration(Duration::from_millis(interval_ms / 2)));
        (c.rise, c.fall, c.jitter) = (Some(rise), Some(fall), Some(jitter));
        c
    }
    fn opts(seed: u64) -> EngineOptions {
        EngineOptions {
            seed,
            event_capacity: 64,
        }
    }

    /// A prober driven by a script of the virtual time since `t0`, which
    /// logs every call (check target, time).
    struct Script {
        t0: Instant,
        calls: Arc<Mutex<Vec<(SocketAddr, Duration)>>>,
    }

    impl Script {
        fn new() -> Script {
            Script {
                t0: Instant::now(),
                calls: Arc::default(),
            }
        }
        fn prober(
            &self,
            f: impl Fn(SocketAddr, Duration) -> Outcome + Send + Sync + 'static,
        ) -> ProbeFn {
            let (t0, calls, f) = (self.t0, self.calls.clone(), Arc::new(f));
            Arc::new(
                move |spec: Arc<CheckSpec>, _deadline: Instant| -> ProbeFuture {
                    let Probe::Tcp { target } = spec.probe else {
                        panic!("tcp only")
                    };
                    let now = Instant::now() - t0;
                    calls.lock().unwrap().push((target, now));
                    let f = f.clone();
                    Box::pin(async move { f(target, now) })
                },
            )
        }
        fn calls(&self) -> Vec<(SocketAddr, Duration)> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn bad(why: &str) -> Outcome {
        Err(Failure::new(why))
    }

    async fn next(rx: &mut mpsc::Receiver<Event>, t0: Instant) -> (Duration, Event) {
        let ev = rx.recv().await.expect("engine running");
        (Instant::now() - t0, ev)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Virtual times agree to the timer wheel's millisecond resolution.
    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= Duration::from_millis(2)
    }

    #[tokio::test(start_paused = true)]
    async fn fall_then_rise_on_the_virtual_clock() {
        let mut plan = HealthPlan::new();
        plan.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp(1000, 2, 3, 0)])
            .unwrap();
        let plan = Arc::new(plan);
        let script = Script::new();
        // Fails from 5 s to 10 s.
        let probe = script.prober(|_, t| {
            if t >= secs(5.0) && t < secs(10.0) {
                bad("connect: connection refused")
            } else {
                check::up()
            }
        });
        let (h, mut rx) = start_with(plan.clone(), opts(42), None, probe);
        let d = Rng::for_check(42, 0).first_delay(Duration::from_secs(1));
        // Runs at d, d+1, ...: failures at the runs in [5, 10), down on the third.
        let first_fail = (0..)
            .map(|k| d + secs(k as f64))
            .find(|t| *t >= secs(5.0))
            .unwrap();
        let (at, ev) = next(&mut rx, script.t0).await;
        assert!(
            close(at, first_fail + secs(2.0)),
            "{at:?} vs {:?}",
            first_fail + secs(2.0)
        );
        let dest = DestId {
            addr: "10.0.1.1".parse().unwrap(),
            port: 80,
        };
        assert_eq!(
            ev,
            Event::DestDown {
                service: key(80),
                dest,
                reason: "tcp 10.0.1.1:80: connect: connection refused (3 failed in a row)".into()
            }
        );
        assert!(!h.states().get(&key(80), dest).unwrap().up);
        let first_ok = (0..)
            .map(|k| d + secs(k as f64))
            .find(|t| *t >= secs(10.0))
            .unwrap();
        let (at, ev) = next(&mut rx, script.t0).await;
        assert!(
            close(at, first_ok + secs(1.0)),
            "rise 2: {at:?} vs {:?}",
            first_ok + secs(1.0)
        );
        assert_eq!(
            ev,
            Event::DestUp {
                service: key(80),
                dest,
                weight: 4,
                reason: "tcp 10.0.1.1:80: 2 passed in a row".into()
            }
        );
        let st = h.states();
        let dh = st.get(&key(80), dest).unwrap();
        assert_eq!((dh.up, dh.downs, dh.ups), (true, 1, 1));
        assert_eq!(st.totals(), (1, 1, 0));
        let c = &h.checks()[0];
        assert_eq!((c.up, c.failures, c.users), (true, 5, 1));
        assert_eq!(c.last_failure, "connect: connection refused");
        // Every run was one interval after the previous one (no jitter).
        let calls = script.calls();
        assert!(close(calls[0].1, d), "first run at the seeded offset");
        for w in calls.windows(2) {
            assert!(close(w[1].1 - w[0].1, secs(1.0)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dedup_runs_once_and_fans_out() {
        let mut plan = HealthPlan::new();
        let c = tcp(1000, 1, 1, 10);
        plan.add_real_server(&key(80), &rs("10.0.1.1", 80), std::slice::from_ref(&c))
            .unwrap();
        plan.add_real_server(&key(0), &rs("10.0.1.1", 80), std::slice::from_ref(&c))
            .unwrap();
        plan.add_real_server(&key(80), &rs("10.0.1.2", 80), &[c])
            .unwrap();
        assert_eq!(plan.checks().len(), 2);
        let script = Script::new();
        let probe = script.prober(|a, t| {
            if a.ip().to_string() == "10.0.1.1" && t >= secs(3.0) {
                bad("refused")
            } else {
                check::up()
            }
        });
        let (h, mut rx) = start_with(Arc::new(plan), opts(7), None, probe);
        let (at1, e1) = next(&mut rx, script.t0).await;
        let (at2, e2) = next(&mut rx, script.t0).await;
        assert_eq!(at1, at2, "one run, two events");
        let mut services: Vec<ServiceKey> = vec![e1.service().clone(), e2.service().clone()];
        services.sort();
        assert_eq!(services, vec![key(0), key(80)]);
        assert!(matches!(e1, Event::DestDown { .. }) && e1.dest() == e2.dest());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let calls = script.calls();
        let n1 = calls
            .iter()
            .filter(|c| c.0.ip().to_string() == "10.0.1.1")
            .count();
        let n2 = calls.len() - n1;
        assert!(
            (9..=13).contains(&n1) && (9..=13).contains(&n2),
            "about one run per second each: {n1} {n2}"
        );
        assert_eq!(h.checks()[0].users, 2);
        drop(h);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_spreads_runs_deterministically() {
        async fn schedule(seed: u64) -> Vec<(SocketAddr, Duration)> {
            let mut plan = HealthPlan::new();
            for i in 1..=5 {
                plan.add_real_server(
                    &key(80),
                    &rs(&format!("10.0.1.{i}"), 80),
                    &[tcp(1000, 1, 1, 20)],
                )
                .unwrap();
            }
            let script = Script::new();
            let (h, _rx) = start_with(
                Arc::new(plan),
                opts(seed),
                None,
                script.prober(|_, _| check::up()),
            );
            tokio::time::sleep(Duration::from_millis(20_500)).await;
            drop(h);
            script.calls()
        }
        let a = schedule(1).await;
        let b = schedule(1).await;
        let c = schedule(2).await;
        assert_eq!(a, b, "same seed, same schedule");
        assert_ne!(a, c, "another seed, another schedule");
        let mut firsts = Vec::new();
        for i in 1..=5 {
            let ip: std::net::IpAddr = format!("10.0.1.{i}").parse().unwrap();
            let times: Vec<Duration> = a.iter().filter(|x| x.0.ip() == ip).map(|x| x.1).collect();
            assert!(times[0] < secs(1.0), "first run within one interval");
            firsts.push(times[0]);
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                assert!(
                    gap >= secs(0.8) && gap <= secs(1.2),
                    "gap {gap:?} within ±20%"
                );
            }
            assert!(
                times.windows(2).any(|w| w[1] - w[0] != secs(1.0)),
                "gaps vary"
            );
        }
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), 5, "checks do not start in lockstep");
    }

    #[test]
    fn rng_bounds() {
        let mut r = Rng::for_check(9, 3);
        for _ in 0..10_000 {
            let d = r.first_delay(Duration::from_secs(2));
            assert!(d < Duration::from_secs(2));
            let n = r.next_interval(Duration::from_secs(2), 50);
            assert!(n >= Duration::from_secs(1) && n <= Duration::from_secs(3));
        }
        assert_eq!(
            r.next_interval(Duration::from_secs(2), 0),
            Duration::from_secs(2)
        );
        assert_ne!(
            Rng::for_check(9, 3).next_u64(),
            Rng::for_check(9, 4).next_u64()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn weights_and_multiple_checks() {
        // One server with two checks: both must pass; the agent's weight applies.
        let mut plan = HealthPlan::new();
        let mut agent = tcp(1000, 1, 1, 0);
        agent.port = Some(9999); // stands for the agent port; the script decides
        plan.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp(1000, 1, 1, 0), agent])
            .unwrap();
        let script = Script::new();
        let probe = script.prober(|a, t| match (a.port(), t.as_secs()) {
            (9999, 0..=2) => check::up(),
            (9999, 3..=5) => Ok(Success {
                weight: WeightUpdate::Percent(50),
            }),
            (9999, 6..=8) => Ok(Success {
                weight: WeightUpdate::Percent(0),
            }),
            (9999, 9..=11) => bad("agent says down"),
            (9999, _) => Ok(Success {
                weight: WeightUpdate::Reset,
            }),
            _ => check::up(),
        });
        let (h, mut rx) = start_with(Arc::new(plan), opts(3), None, probe);
        let dest = DestId {
            addr: "10.0.1.1".parse().unwrap(),
            port: 80,
        };
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (_, ev) = next(&mut rx, script.t0).await;
            seen.push(ev);
        }
        let w = |n: u32, r: &str| Event::WeightChange {
            service: key(80),
            dest,
            new_weight: n,
            reason: format!("tcp 10.0.1.1:9999: {r}"),
        };
        assert_eq!(seen[0], w(2, "50% of the configured weight"));
        assert_eq!(seen[1], w(0, "draining (0%)"));
        assert!(
            matches!(&seen[2], Event::DestDown { reason, .. } if reason == "tcp 10.0.1.1:9999: agent says down (1 failed in a row)"),
            "{:?}",
            seen[2]
        );
        // Up again with the reset weight: the up event carries it, no extra change.
        assert!(
            matches!(&seen[3], Event::DestUp { weight: 4, .. }),
            "{:?}",
            seen[3]
        );
        // Nothing changes after that.
        assert!(tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .is_err());
        let st = h.states();
        let dh = st.get(&key(80), dest).unwrap();
        assert_eq!(
            (dh.up, dh.weight_changes, dh.downs, dh.ups),
            (true, 2, 1, 1)
        );
        assert_eq!(dh.reason, "tcp 10.0.1.1:9999: 1 passed in a row");
    }

    #[tokio::test(start_paused = true)]
    async fn restart_keeps_health_and_overrunning_probes_are_cut() {
        let mut plan = HealthPlan::new();
        plan.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp(1000, 2, 1, 0)])
            .unwrap();
        let plan = Arc::new(plan);
        let dest = DestId {
            addr: "10.0.1.1".parse().unwrap(),
            port: 80,
        };
        let mut prev = plan.initial_states(None);
        let mut down = DestHealth::new(false);
        down.downs = 1;
        prev.set(&key(80), dest, down);
        // A probe that never returns is cut at timeout + GRACE.
        let hang: ProbeFn = Arc::new(|_, _| -> ProbeFuture { Box::pin(std::future::pending()) });
        let (h, _rx) = start_with(plan.clone(), opts(5), Some(&prev), hang);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let c = &h.checks()[0];
        assert!(!c.up && c.failures >= 2, "{c:?}");
        assert_eq!(c.last_failure, "no result within 500ms");
        drop(h);
        // A restart from the previous states needs `rise` successes.
        let script = Script::new();
        let (h, mut rx) = start_with(
            plan,
            opts(5),
            Some(&prev),
            script.prober(|_, _| check::up()),
        );
        assert!(
            !h.states().get(&key(80), dest).unwrap().up,
            "still down after the restart"
        );
        let (_, ev) = next(&mut rx, script.t0).await;
        assert!(matches!(ev, Event::DestUp { .. }));
        assert_eq!(script.calls().len(), 2, "after rise = 2 runs");
        assert_eq!(
            h.states().get(&key(80), dest).unwrap().ups,
            1,
            "counters carried over: downs stays 1"
        );
        assert_eq!(h.states().get(&key(80), dest).unwrap().downs, 1);
    }

    /// The real prober end to end on loopback (real time): a TCP server
    /// goes away and comes back.
    #[test]
    fn real_tcp_server_down_and_up_on_own_thread() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut plan = HealthPlan::new();
        plan.add_real_server(&key(80), &rs("127.0.0.1", addr.port()), &[tcp(50, 1, 1, 0)])
            .unwrap();
        let (h, mut rx) = spawn_thread(Arc::new(plan), EngineOptions::default(), None).unwrap();
        drop(l);
        let ev = rx.blocking_recv().unwrap();
        match &ev {
            Event::DestDown { reason, .. } => assert_eq!(
                reason,
                &format!("tcp {addr}: connect: connection refused (1 failed in a row)")
            ),
            e => panic!("{e:?}"),
        }
        // Re-bind the same port (nothing else took it in the meantime, or skip).
        let l = match std::net::TcpListener::bind(addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "SKIP recovery half: port {} was taken meanwhile ({e})",
                    addr.port()
                );
                return;
            }
        };
        let ev = rx.blocking_recv().unwrap();
        assert!(matches!(ev, Event::DestUp { weight: 4, .. }), "{ev:?}");
        drop(h);
        drop(l);
    }
}
