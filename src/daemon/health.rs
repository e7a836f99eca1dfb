//! The health checker in the daemon: checks run, verdicts reach the data
//! path as snapshots, and the plan follows the configuration.
//!
//! # Contract
//!
//! - [`HealthCtl::start`] installs a [`Director`] overlay that computes
//!   [`effective_model`]`(configured, plan, states)` and starts the engine
//!   ([`engine::spawn_thread`]) plus one manager thread (`xvs-health-ctl`).
//!   Both inherit the caller's CPU affinity: call it from a control-plane
//!   thread (the daemon's main thread), never from a pinned worker. Every
//!   later engine restart happens on the manager thread, so callers of the
//!   other methods may be any thread.
//! - The manager is the only writer of the overlay's state. On every engine
//!   event (a real server down, up, or re-weighted; the engine logs it with
//!   its reason and counts it) it copies the engine's states into the
//!   overlay and calls [`Director::refresh`], which publishes a snapshot
//!   only when forwarding changed; each publication is logged
//!   (`health: snapshot N published: ...`).
//! - [`HealthCtl::apply_config`] (SIGHUP reload) applies a whole new model
//!   and plan: the new engine starts from the old engine's states, so real
//!   servers that stay keep their health and counters; if the director
//!   refuses the model, the old plan, engine and model stay.
//! - When the model changes by other means (the control socket adding,
//!   removing or re-weighting a real server), the caller applies it to the
//!   director and then calls [`HealthCtl::on_model_change`] (or lets
//!   [`HealthCtl::apply_model`] do both): the plan becomes the last loaded
//!   file's plan restricted to the new model ([`HealthPlan::follow`]).
//!   Until then the overlay already copes with the drift: servers the plan
//!   does not know run as configured, servers it knows run with the new
//!   model's weights.
//! - [`HealthCtl::report`] and [`HealthCtl::totals`] are what listings and
//!   metrics read: per checked real server its state, reason and
//!   transition counts; per unique check its runs and failures; totals
//!   that survive reloads (counts of servers that left the plan are kept).
//! - Nothing here runs on a worker core or touches the data path: workers
//!   only see new snapshots.

use super::director::{Director, Overlay};
use crate::ctl::model::Model;
use crate::ctl::snapshot::ModelError;
use crate::health::config::OnFailure;
use crate::health::engine::{self, CheckStatus, EngineHandle, EngineOptions};
use crate::health::{effective_model, DestId, Event, HealthPlan, HealthStates};
use crate::ipvs::service::ServiceKey;
use std::fmt::Write as _;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

/// Why a health operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The director refused the model (through the overlay).
    #[error("configuration: {0}")]
    Model(#[from] ModelError),
    /// The engine's or the manager's thread could not be started.
    #[error("starting the health checker: {0}")]
    Start(std::io::Error),
    /// The manager thread is gone (stopped, or it panicked).
    #[error("the health checker has stopped")]
    Stopped,
}

/// What the overlay reads: the plan and the states it applies.
#[derive(Debug, Default)]
struct View {
    plan: Arc<HealthPlan>,
    states: HealthStates,
}

/// Transition and run counts that outlived their engine or plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Retired {
    downs: u64,
    ups: u64,
    weight_changes: u64,
    runs: u64,
    failures: u64,
}

struct Shared {
    view: Mutex<View>,
    /// The running engine (`None` when the plan has no check).
    engine: Mutex<Option<EngineHandle>>,
    /// The last engine's checks, once stopped (for the report at stop).
    stopped: Mutex<Vec<CheckStatus>>,
    retired: Mutex<Retired>,
    /// The last [`EVENT_LOG`] events, for the monitor's event log.
    events: Mutex<EventLog>,
}

/// Health events kept for [`HealthCtl::events`].
pub const EVENT_LOG: usize = 256;

/// One event of the health checker, numbered and timed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    /// 1, 2, ... in the order they happened (a reader asks for those after
    /// the last it saw).
    pub seq: u64,
    pub at: std::time::SystemTime,
    pub event: Event,
}

#[derive(Debug, Default)]
struct EventLog {
    last: u64,
    items: std::collections::VecDeque<HealthEvent>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, consistent at every unlock: a panic elsewhere must not
    // stop health reporting.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Reply = std_mpsc::Sender<Result<(), HealthError>>;

enum Cmd {
    Config {
        model: Model,
        plan: HealthPlan,
        reply: Reply,
    },
    Follow {
        model: Model,
        reply: Reply,
    },
    Stop,
}

/// One checked real server, for listings (`xvsadm -L`) and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestReport {
    pub service: ServiceKey,
    pub dest: DestId,
    /// Every check of the server passes.
    pub up: bool,
    /// Its weight in the configured model.
    pub configured_weight: u32,
    /// The weight it runs with: the configured one as scaled by its
    /// dynamic weight when up; 0 when down (quiesced, or removed).
    pub weight: u32,
    pub on_failure: OnFailure,
    /// Its checks, e.g. `http 10.0.1.1:80/health`.
    pub checks: Vec<String>,
    /// Why it last went down, up or changed weight (empty before any).
    pub reason: String,
    pub downs: u64,
    pub ups: u64,
    pub weight_changes: u64,
}

/// Totals for counters and metrics. Transition counts include servers
/// that have since left the plan; run counts include earlier engines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthTotals {
    /// Checked (service, real server) pairs.
    pub checked: u64,
    /// Of those, down now.
    pub down: u64,
    /// Unique checks running.
    pub checks: u64,
    pub downs: u64,
    pub ups: u64,
    pub weight_changes: u64,
    /// Check runs and failed runs.
    pub runs: u64,
    pub failures: u64,
}

impl HealthTotals {
    /// `name=value` pairs, for `xvs run --counters` and metrics.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("health_checked", self.checked),
            ("health_down", self.down),
            ("health_checks", self.checks),
            ("health_downs", self.downs),
            ("health_ups", self.ups),
            ("health_weight_changes", self.weight_changes),
            ("health_check_runs", self.runs),
            ("health_check_failures", self.failures),
        ]
    }
}

/// Everything the health checker knows, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub dests: Vec<DestReport>,
    pub checks: Vec<CheckStatus>,
    pub totals: HealthTotals,
}

impl HealthReport {
    /// One line per checked real server:
    /// `health <service> <dest> up|down weight=W downs=D ups=U weight_changes=C reason=...`.
    pub fn lines(&self) -> Vec<String> {
        self.dests
            .iter()
            .map(|d| {
                format!(
                    "health {} {} {} weight={} downs={} ups={} weight_changes={} reason={}",
                    d.service,
                    d.dest,
                    if d.up { "up" } else { "down" },
                    d.weight,
                    d.downs,
                    d.ups,
                    d.weight_changes,
                    if d.reason.is_empty() { "-" } else { &d.reason }
                )
            })
            .collect()
    }

    /// One line per unique check:
    /// `health_check <check> up|down users=U runs=R failures=F last_failure=...`
    /// (`users`: the (service, real server) pairs sharing it).
    pub fn check_lines(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|c| {
                format!(
                    "health_check {} {} users={} runs={} failures={} last_failure={}",
                    c.name,
                    if c.up { "up" } else { "down" },
                    c.users,
                    c.runs,
                    c.failures,
                    if c.last_failure.is_empty() {
                        "-"
                    } else {
                        &c.last_failure
                    }
                )
            })
            .collect()
    }

    /// A human-readable summary (for `xvs run` at stop).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let t = &self.totals;
        let _ = writeln!(
            s,
            "health: {} checked, {} down; {} down / {} up / {} weight transitions; {} runs, {} failed",
            t.checked, t.down, t.downs, t.ups, t.weight_changes, t.runs, t.failures
        );
        for d in &self.dests {
            let _ = writeln!(
                s,
                "  {} -> {} {} (weight {} of {}, on failure {:?}): {}",
                d.service,
                d.dest,
                if d.up { "up" } else { "down" },
                d.weight,
                d.configured_weight,
                d.on_failure,
                if d.reason.is_empty() {
                    "no transition"
                } else {
                    &d.reason
                }
            );
        }
        s
    }
}

/// The health checker of a running director. See the module docs.
pub struct HealthCtl {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Starts an engine for `plan` from `prev` (none when nothing is checked).
fn start_engine(
    plan: &Arc<HealthPlan>,
    prev: Option<&HealthStates>,
) -> std::io::Result<Option<(EngineHandle, mpsc::Receiver<Event>)>> {
    if plan.checks().is_empty() {
        return Ok(None);
    }
    engine::spawn_thread(plan.clone(), EngineOptions::default(), prev).map(Some)
}

impl HealthCtl {
    /// Installs the overlay of `plan` on `director` (whose model is the one
    /// `plan` was loaded with) and starts checking. Call from a
    /// control-plane thread: see the module docs.
    ///
    /// # Errors
    /// The overlaid model does not compile (the director keeps running
    /// without an overlay), or a thread could not be started.
    pub fn start(director: Arc<Director>, plan: HealthPlan) -> Result<HealthCtl, HealthError> {
        let plan = Arc::new(plan);
        let started = start_engine(&plan, None).map_err(HealthError::Start)?;
        let (engine, events) = match started {
            Some((h, rx)) => (Some(h), Some(rx)),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            view: Mutex::new(View {
                states: engine.as_ref().map(|e| e.states()).unwrap_or_default(),
                plan: plan.clone(),
            }),
            engine: Mutex::new(engine),
            stopped: Mutex::new(Vec::new()),
            retired: Mutex::new(Retired::default()),
            events: Mutex::new(EventLog::default()),
        });
        let sh = shared.clone();
        let overlay: Overlay = Box::new(move |m: &Model| {
            let v = lock(&sh.view);
            effective_model(m, &v.plan, &v.states)
        });
        director.set_standby_next_hops(plan.sorry_addrs());
        director.set_overlay(Some(overlay))?;
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let mgr = Manager {
            director: director.clone(),
            shared: shared.clone(),
            base: plan,
            events,
        };
        let thread = std::thread::Builder::new()
            .name("xvs-health-ctl".into())
            .spawn(move || mgr.run(cmd_rx));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = director.set_overlay(None);
                return Err(HealthError::Start(e));
            }
        };
        Ok(HealthCtl {
            shared,
            cmd,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn ask(&self, make: impl FnOnce(Reply) -> Cmd) -> Result<(), HealthError> {
        let (tx, rx) = std_mpsc::channel();
        self.cmd.send(make(tx)).map_err(|_| HealthError::Stopped)?;
        rx.recv().map_err(|_| HealthError::Stopped)?
    }

    /// Applies a reloaded configuration: `model` to the director and
    /// `plan` to the checks, together. Real servers in both the old and
    /// the new plan keep their health. On error nothing changes.
    ///
    /// # Errors
    /// The director refused the model, or the new engine could not start.
    pub fn apply_config(&self, model: Model, plan: HealthPlan) -> Result<(), HealthError> {
        self.ask(|reply| Cmd::Config { model, plan, reply })
    }

    /// Makes the checks follow a model the caller has just applied to the
    /// director by other means (the control socket): the last loaded
    /// plan, restricted to `model` (see [`HealthPlan::follow`]). The
    /// engine restarts only when the plan changed; servers that stay keep
    /// their health.
    ///
    /// # Errors
    /// The director refused the re-derived model (the running snapshot
    /// stays), or the new engine could not start (the old one keeps
    /// running with the old plan).
    pub fn on_model_change(&self, model: &Model) -> Result<(), HealthError> {
        let model = model.clone();
        self.ask(|reply| Cmd::Follow { model, reply })
    }

    /// [`Director::apply`] followed by [`HealthCtl::on_model_change`].
    ///
    /// # Errors
    /// As either; when the director refuses, nothing changes.
    pub fn apply_model(&self, director: &Director, model: Model) -> Result<(), HealthError> {
        director.apply(model.clone())?;
        self.on_model_change(&model)
    }

    /// The state of every checked real server and check, and the totals.
    pub fn report(&self) -> HealthReport {
        // One lock at a time (the manager takes them in its own order).
        let plan = lock(&self.shared.view).plan.clone();
        let running = lock(&self.shared.engine)
            .as_ref()
            .map(|e| (e.states(), e.checks()));
        let (engine_states, checks) = running.unwrap_or_else(|| {
            let states = lock(&self.shared.view).states.clone();
            (states, lock(&self.shared.stopped).clone())
        });
        let retired = *lock(&self.shared.retired);
        let mut dests = Vec::with_capacity(plan.targets().len());
        let mut totals = HealthTotals {
            checks: checks.len() as u64,
            downs: retired.downs,
            ups: retired.ups,
            weight_changes: retired.weight_changes,
            runs: retired.runs + checks.iter().map(|c| c.runs).sum::<u64>(),
            failures: retired.failures + checks.iter().map(|c| c.failures).sum::<u64>(),
            ..HealthTotals::default()
        };
        for t in plan.targets() {
            let h = engine_states.get(&t.service, t.dest);
            let up = h.map_or(t.starts_up, |h| h.up);
            let weight = match h {
                Some(h) if up => h.effective_weight(t.configured_weight),
                None if up => t.configured_weight,
                _ => 0,
            };
            let r = DestReport {
                service: t.service.clone(),
                dest: t.dest,
                up,
                configured_weight: t.configured_weight,
                weight,
                on_failure: t.on_failure,
                checks: t
                    .checks
                    .iter()
                    .map(|c| plan.checks()[*c].to_string())
                    .collect(),
                reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                downs: h.map_or(0, |h| h.downs),
                ups: h.map_or(0, |h| h.ups),
                weight_changes: h.map_or(0, |h| h.weight_changes),
            };
            totals.checked += 1;
            totals.down += u64::from(!r.up);
            totals.downs += r.downs;
            totals.ups += r.ups;
            totals.weight_changes += r.weight_changes;
            dests.push(r);
        }
        HealthReport {
            dests,
            checks,
            totals,
        }
    }

    /// The events kept (the last [`EVENT_LOG`]) numbered after `after`,
    /// oldest first.
    pub fn events(&self, after: u64) -> Vec<HealthEvent> {
        lock(&self.shared.events).items.iter().filter(|e| e.seq > after).cloned().collect()
    }

    /// The totals of [`HealthCtl::report`].
    pub fn totals(&self) -> HealthTotals {
        self.report().totals
    }

    /// Stops the checks and the manager (the overlay stays with the last
    /// states: forwarding does not change). Idempotent.
    pub fn stop(&self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for HealthCtl {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The manager thread's state.
struct Manager {
    director: Arc<Director>,
    shared: Arc<Shared>,
    /// The plan of the last loaded configuration (what models follow).
    base: Arc<HealthPlan>,
    events: Option<mpsc::Receiver<Event>>,
}

/// The next event of `rx`; pends forever without an engine.
async fn next_event(rx: &mut Option<mpsc::Receiver<Event>>) -> Option<Event> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// A short summary of events for the log, services and real servers as
/// ipvsadm prints them: `TCP 10.0.0.1:80 -> 10.0.1.1:80 down, ...`.
fn summary(evs: &[Event]) -> String {
    let v: Vec<String> = evs
        .iter()
        .map(|e| match e {
            Event::DestDown { service, dest, .. } => format!("{service} -> {dest} down"),
            Event::DestUp {
                service,
                dest,
                weight,
                ..
            } => format!("{service} -> {dest} up (weight {weight})"),
            Event::WeightChange {
                service,
                dest,
                new_weight,
                ..
            } => format!("{service} -> {dest} weight {new_weight}"),
        })
        .collect();
    v.join(", ")
}

impl Manager {
    fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let rt = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt,
            Err(e) => {
                log::error!(target: "xvs::health", "health manager: no runtime ({e}); checks stop");
                return;
            }
        };
        let shared = self.shared.clone();
        rt.block_on(async move {
            loop {
                tokio::select! {
                    ev = next_event(&mut self.events) => match ev {
                        Some(ev) => {
                            let mut evs = vec![ev];
                            if let Some(rx) = self.events.as_mut() {
                                while let Ok(e) = rx.try_recv() {
                                    evs.push(e);
                                }
                            }
                            self.on_events(&evs);
                        }
                        None => {
                            log::error!(target: "xvs::health", "the health engine stopped; servers keep their last state");
                            self.events = None;
                        }
                    },
                    cmd = cmds.recv() => match cmd {
                        Some(Cmd::Config { model, plan, reply }) => {
                            let _ = reply.send(self.config(model, plan));
                        }
                        Some(Cmd::Follow { model, reply }) => {
                            let _ = reply.send(self.follow(&model));
                        }
                        Some(Cmd::Stop) | None => break,
                    },
                }
            }
        });
        // Stopped: the engine's last states and checks (what they
        // counted) stay for the report printed at stop.
        let engine = lock(&shared.engine).take();
        if let Some(e) = &engine {
            lock(&shared.view).states = e.states();
            *lock(&shared.stopped) = e.checks();
        }
        // Stops the engine's thread (outside every lock).
        drop(engine);
    }

    /// Copies the engine's states to the overlay and republishes.
    fn on_events(&mut self, evs: &[Event]) {
        {
            let mut log = lock(&self.shared.events);
            let at = std::time::SystemTime::now();
            for e in evs {
                log.last += 1;
                let seq = log.last;
                if log.items.len() == EVENT_LOG {
                    log.items.pop_front();
                }
                log.items.push_back(HealthEvent { seq, at, event: e.clone() });
            }
        }
        let states = match lock(&self.shared.engine).as_ref() {
            Some(e) => e.states(),
            None => return,
        };
        lock(&self.shared.view).states = states;
        let g = self.director.published().generation();
        match self.director.refresh() {
            Ok(()) => {
                let now = self.director.published().generation();
                if now != g {
                    log::info!(target: "xvs::health", "snapshot {now} published: {}", summary(evs));
                }
            }
            Err(e) => log::error!(
                target: "xvs::health",
                "health verdict not applied ({}): {e}; the running snapshot stays",
                summary(evs)
            ),
        }
    }

    /// The states to carry into a new engine: the running engine's.
    fn current_states(&self) -> HealthStates {
        let running = lock(&self.shared.engine).as_ref().map(|e| e.states());
        running.unwrap_or_else(|| lock(&self.shared.view).states.clone())
    }

    /// Swaps in a new engine and plan; retires what the old ones counted
    /// that the new ones do not carry.
    fn install(
        &mut self,
        plan: Arc<HealthPlan>,
        started: Option<(EngineHandle, mpsc::Receiver<Event>)>,
        old_states: &HealthStates,
    ) {
        let (engine, events) = match started {
            Some((h, rx)) => (Some(h), Some(rx)),
            None => (None, None),
        };
        let old = std::mem::replace(&mut *lock(&self.shared.engine), engine);
        {
            let mut r = lock(&self.shared.retired);
            for ((svc, dest), h) in &old_states.dests {
                if plan.target(svc, *dest).is_none() {
                    r.downs += h.downs;
                    r.ups += h.ups;
                    r.weight_changes += h.weight_changes;
                }
            }
            if let Some(o) = &old {
                for c in o.checks() {
                    r.runs += c.runs;
                    r.failures += c.failures;
                }
            }
        }
        self.events = events;
        // Stops the old engine's thread (outside every lock).
        drop(old);
    }

    fn config(&mut self, model: Model, plan: HealthPlan) -> Result<(), HealthError> {
        let plan = Arc::new(plan);
        let prev = self.current_states();
        let started = start_engine(&plan, Some(&prev)).map_err(HealthError::Start)?;
        let states = match &started {
            Some((h, _)) => h.states(),
            None => plan.initial_states(Some(&prev)),
        };
        let old_view = std::mem::replace(
            &mut *lock(&self.shared.view),
            View {
                plan: plan.clone(),
                states,
            },
        );
        self.director.set_standby_next_hops(plan.sorry_addrs());
        if let Err(e) = self.director.apply(model) {
            self.director
                .set_standby_next_hops(old_view.plan.sorry_addrs());
            *lock(&self.shared.view) = old_view;
            // The new engine (if any) is dropped here: the old one runs on.
            return Err(e.into());
        }
        self.base = plan.clone();
        self.install(plan, started, &prev);
        Ok(())
    }

    fn follow(&mut self, model: &Model) -> Result<(), HealthError> {
        let plan = Arc::new(self.base.follow(model));
        if *plan == *lock(&self.shared.view).plan {
            return Ok(());
        }
        let prev = self.current_states();
        let started = start_engine(&plan, Some(&prev)).map_err(HealthError::Start)?;
        let states = match &started {
            Some((h, _)) => h.states(),
            None => plan.initial_states(Some(&prev)),
        };
        *lock(&self.shared.view) = View {
            plan: plan.clone(),
            states,
        };
        self.director.set_standby_next_hops(plan.sorry_addrs());
        self.install(plan, started, &prev);
        self.director.refresh()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config;
    use std::time::{Duration, Instant};

    /// Service 80 (wrr): 10.0.0.2 (weight 3, an agent check answered by
    /// the test's agent on `port`) and 10.0.0.3 (weight `w3`, unchecked).
    /// An agent in the test's process, not an `exec` check: with `fall =
    /// 1` a check that outlives its timeout is a down the test did not
    /// ask for, and forking a shell on this loaded machine took up to
    /// 2.3 s (the test flaked with 50 ms, and with 1 s).
    fn conf(port: u16, w3: u32) -> String {
        format!(
            r#"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"
addresses = ["10.0.0.1/24"]

[[neighbour]]
ip = "10.0.0.2"
mac = "02:00:00:00:00:02"

[[neighbour]]
ip = "10.0.0.3"
mac = "02:00:00:00:00:03"

[[service]]
proto = "tcp"
vip = "10.0.0.100"
port = 80
scheduler = "wrr"

  [[service.real_server]]
  ip = "10.0.0.2"
  mode = "dr"
  weight = 3
    [service.real_server.check]
    type = "agent"
    addr = "127.0.0.1"
    port = {port}
    interval = "500ms"
    timeout = "500ms"
    rise = 1
    fall = 1
    jitter = 0

  [[service.real_server]]
  ip = "10.0.0.3"
  mode = "dr"
  weight = {w3}
"#
        )
    }

    /// A health agent on 127.0.0.1 (HAProxy's agent-check) answering
    /// every connection with the line it was last given; a thread of its
    /// own, stopped on drop.
    struct Agent {
        port: u16,
        answer: Arc<Mutex<String>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Agent {
        fn start(answer: &str) -> Agent {
            use std::io::Write;
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let answer = Arc::new(Mutex::new(answer.to_string()));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (a, st) = (answer.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                for s in l.incoming() {
                    if st.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(mut s) = s {
                        let line = format!("{}\n", lock(&a));
                        let _ = s.write_all(line.as_bytes());
                    }
                }
            });
            Agent { port, answer, stop, thread: Some(thread) }
        }

        fn say(&self, line: &str) {
            *lock(&self.answer) = line.to_string();
        }
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Weights of service 0's dests in the running snapshot, by address.
    fn weights(d: &Director) -> Vec<(String, i32)> {
        let s = d.snapshot();
        s.svc_dests(0)
            .iter()
            .map(|x| (x.addr.to_string(), x.weight))
            .collect()
    }

    /// Waits (generously: the machine may be loaded) until `f` holds.
    fn until(what: &str, d: &Director, f: impl Fn(&[(String, i32)]) -> bool) {
        let t0 = Instant::now();
        while !f(&weights(d)) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{what}: still {:?}",
                weights(d)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn w(a: &str, w: i32) -> (String, i32) {
        (a.to_string(), w)
    }

    #[test]
    fn verdicts_reach_the_snapshot_reloads_keep_health_models_are_followed() {
        let agent = Agent::start("ready");
        let c = config::load_config_str(&conf(agent.port, 2), "t.toml").unwrap();
        let d = Arc::new(Director::new(c.model.clone(), 1).unwrap());
        let h = HealthCtl::start(d.clone(), c.health).unwrap();
        assert_eq!(weights(&d), vec![w("10.0.0.2", 3), w("10.0.0.3", 2)]);

        // Down: quiesced (the default on_failure).
        agent.say("down #status 1");
        until("down", &d, |x| x[0].1 == 0);
        let r = h.report();
        assert_eq!(r.dests.len(), 1);
        assert!(!r.dests[0].up);
        assert_eq!(r.dests[0].weight, 0);
        assert_eq!(
            r.dests[0].reason,
            format!("agent 127.0.0.1:{}: agent says down: status 1 (1 failed in a row)", agent.port)
        );
        assert_eq!((r.totals.checked, r.totals.down, r.totals.downs), (1, 1, 1));

        // Up with a dynamic weight: 167% of 3 = 5.
        agent.say("up 167%");
        until("up at weight 5", &d, |x| x[0].1 == 5);
        let r = h.report();
        assert!(r.dests[0].up);
        assert_eq!((r.dests[0].weight, r.dests[0].ups), (5, 1));
        assert_eq!(r.checks[0].last_ok, Some(true));
        // The event log (the monitor's): both transitions, numbered.
        let ev = h.events(0);
        let kinds: Vec<(u64, bool)> = ev.iter().map(|e| (e.seq, matches!(e.event, Event::DestDown { .. }))).collect();
        assert_eq!(kinds, vec![(1, true), (2, false)], "{ev:?}");
        assert_eq!(h.events(1).len(), 1, "only those after seq 1");

        // A reload (10.0.0.3 to weight 4) keeps 10.0.0.2's health and counts.
        let c2 = config::load_config_str(&conf(agent.port, 4), "t.toml").unwrap();
        h.apply_config(c2.model.clone(), c2.health).unwrap();
        assert_eq!(weights(&d), vec![w("10.0.0.2", 5), w("10.0.0.3", 4)]);
        let r = h.report();
        assert_eq!((r.dests[0].downs, r.dests[0].ups), (1, 1));

        // A reload the director refuses changes nothing.
        let mut bad = c2.model.clone();
        bad.services[0].sched = "nope".into();
        let e = h
            .apply_config(
                bad,
                config::load_config_str(&conf(agent.port, 4), "t")
                    .unwrap()
                    .health,
            )
            .unwrap_err();
        assert!(e.to_string().contains("unknown scheduler 'nope'"), "{e}");
        assert_eq!(d.model(), c2.model);
        assert_eq!(weights(&d), vec![w("10.0.0.2", 5), w("10.0.0.3", 4)]);

        // The control socket removes 10.0.0.2: the plan follows, the counts
        // of the server that left stay in the totals.
        let mut without = c2.model.clone();
        without.services[0].dests.remove(0);
        h.apply_model(&d, without).unwrap();
        assert_eq!(weights(&d), vec![w("10.0.0.3", 4)]);
        let r = h.report();
        assert!(r.dests.is_empty() && r.checks.is_empty());
        assert_eq!((r.totals.downs, r.totals.ups), (1, 1));
        assert!(r.totals.runs > 0, "the old engine's runs are kept");

        // Added back with another weight: its check comes back from the
        // file's plan (and 167% is now of 9: 15).
        let mut back = c2.model.clone();
        back.services[0].dests[0].weight = 9;
        h.apply_model(&d, back.clone()).unwrap();
        let r = h.report();
        assert_eq!(r.dests.len(), 1);
        assert_eq!(r.dests[0].configured_weight, 9);
        until("re-checked, weight 15", &d, |x| {
            x.len() == 2 && x[0].1 == 15
        });
        agent.say("down #status 1");
        until("down again", &d, |x| x[0].1 == 0);
        assert_eq!(h.report().totals.downs, 2);
        // The same model again: no restart, nothing changes.
        let runs_before = h.report().checks[0].runs;
        h.on_model_change(&back).unwrap();
        assert!(
            h.report().checks[0].runs >= runs_before,
            "the engine was not restarted"
        );
        let before = h.report().totals;
        h.stop();
        h.stop();
        let after = h.report().totals;
        assert!(
            after.runs >= before.runs && after.failures >= before.failures,
            "a stopped engine's runs are kept: {before:?} then {after:?}"
        );
        assert_eq!((after.downs, after.down, after.checks), (2, 1, 1));
        let lines = h.report().check_lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with(&format!("health_check agent 127.0.0.1:{} down users=1 runs=", agent.port))
                && lines[0].ends_with("last_failure=agent says down: status 1"),
            "{lines:?}"
        );
        assert!(matches!(
            h.on_model_change(&back),
            Err(HealthError::Stopped)
        ));
    }

    #[test]
    fn without_checks_the_overlay_still_runs_the_sorry_server() {
        let text = r#"
[[service]]
proto = "tcp"
vip = "10.0.0.100"
port = 80
  [service.sorry_server]
  addr = "10.0.0.9"
  [[service.real_server]]
  ip = "10.0.0.2"
  mode = "dr"
  weight = 0
"#;
        let c = config::load_config_str(text, "t.toml").unwrap();
        let d = Arc::new(Director::new(c.model, 1).unwrap());
        let h = HealthCtl::start(d.clone(), c.health).unwrap();
        assert_eq!(
            weights(&d),
            vec![w("10.0.0.2", 0), w("10.0.0.9", 1)],
            "every real server at weight 0: the sorry server takes over"
        );
        assert_eq!(h.report().totals, HealthTotals::default());
        assert_eq!(h.totals().pairs().len(), 8);
        assert!(h
            .totals()
            .pairs()
            .iter()
            .all(|(k, _)| k.starts_with("health_")));
    }
}
