//! The control socket of `xvs run`: `xvsadm` commands on the live
//! director.
//!
//! # Contract
//!
//! - [`DaemonHandler`] is the daemon's [`ControlHandler`]. A change (any
//!   table command, `-R` rules, `--set`, `-C`) is carried out on a copy of
//!   the director's *configured* model ([`Director::model`]) with
//!   [`ipvsadm::apply`], then the whole result goes to [`Director::apply`],
//!   which validates it against the running network, builds and publishes
//!   a snapshot, or changes nothing. A refusal names the field or object
//!   (ipvsadm's words, or the model's). Changes and reloads are serialised
//!   by one lock, so each starts from the previous one's result.
//! - Listings (`-L`, `-S`, `--get-laddr`) show the *running* model
//!   ([`Director::running_model`]: what the workers forward with, e.g. a
//!   failed server at weight 0) with live figures from the [`StatsHub`];
//!   `-L -c` asks the workers for their entries (up to a second, capped per
//!   worker; the reply's warning says so when it was).
//! - `--reload` and SIGHUP ([`DaemonHandler::reload`]) re-read the
//!   configuration file through the daemon's [`Reloader`], validated whole;
//!   a bad file changes nothing and the reply (and the log) says why.
//!   `-Z` zeroes the hub's figures, never the workers' counters.
//! - `xvsadm --stats` prints the workers' counters ([`StatsHub::daemon_text`]).
//! - Connection sync ([`SyncService`]): `--start-daemon`, `--stop-daemon`,
//!   `-L --daemon` and `--sync-status` (an error reply, exit code 1, while
//!   this node is not in sync). A reload applies the file's `[sync]`
//!   section only when it differs from the one the last load read, so a
//!   reload does not undo the role switches keepalived's scripts made.

use super::conns::SAMPLE_MAX;
use super::director::Director;
use super::stats::StatsHub;
use crate::ctl::control::{ControlError, ControlHandler, ErrorKind, Request, Response, Server, ServerOpts};
use crate::ctl::ipvsadm::{self, CmdError, Command, ListWhat, Outcome, SvcAddr, View, TABLE_SIZE};
use crate::ctl::config::Config;
use crate::ctl::model::Model;
use super::health::{HealthCtl, HealthError};
use crate::sync::conf::SyncConf;
use crate::sync::daemon::SyncService;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Loads the configuration again (`--reload`, SIGHUP): the new model with
/// its health-check plan, or why not (naming the file, line and field).
pub type Reloader = Box<dyn FnMut() -> Result<Config, String> + Send>;

/// A check of a whole model against the running system (beyond its own
/// validation), made before every change and reload is applied: the
/// daemon's refuses FULLNAT local addresses the kernel uses as sources.
pub type Checker = Box<dyn Fn(&Model) -> Result<(), String> + Send + Sync>;

/// The daemon's control handler. See the module docs.
pub struct DaemonHandler {
    director: Arc<Director>,
    stats: Arc<StatsHub>,
    /// Serialises changes and reloads; holds the reloader.
    changes: Mutex<Reloader>,
    /// What the configuration is called in messages (its path).
    origin: String,
    /// The health checker, when the daemon runs one: changes and reloads
    /// go through it so the checks follow the model (see
    /// [`HealthCtl::apply_config`], [`HealthCtl::on_model_change`]).
    health: Option<Arc<HealthCtl>>,
    checker: Option<Checker>,
    /// Connection sync, and the `[sync]` section the file had last time.
    sync: Option<(Arc<SyncService>, Mutex<SyncConf>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short description of a change, for the log.
fn summary(cmd: &Command) -> String {
    let svc = |s: &SvcAddr| s.to_string();
    match cmd {
        Command::AddService(s) => format!("add service {} ({})", svc(&s.svc), s.sched),
        Command::EditService(s) => format!("edit service {} ({})", svc(&s.svc), s.sched),
        Command::DelService(s) => format!("delete service {}", svc(s)),
        Command::AddDest(d) => format!(
            "add real server {} to {} (weight {})",
            ipvsadm_sock(d.addr, d.port),
            svc(&d.svc),
            d.weight
        ),
        Command::EditDest(d) => format!(
            "edit real server {} of {} (weight {})",
            ipvsadm_sock(d.addr, d.port),
            svc(&d.svc),
            d.weight
        ),
        Command::DelDest { svc: s, addr, port } => {
            format!("delete real server {} of {}", ipvsadm_sock(*addr, *port), svc(s))
        }
        Command::Clear => "clear every service".into(),
        Command::SetTimeouts { tcp, tcpfin, udp } => format!("timeouts {tcp} {tcpfin} {udp}"),
        Command::SetSloppyTcp(on) => format!("sloppy_tcp {}", if *on { "on" } else { "off" }),
        Command::Restore { rules } => format!("restore {} line(s)", rules.lines().count()),
        Command::AddLaddr { svc: s, addr, .. } => format!("add local address {addr} to {}", svc(s)),
        Command::DelLaddr { svc: s, addr, .. } => format!("delete local address {addr} of {}", svc(s)),
        Command::Zero(Some(s)) => format!("zero the counters of {}", svc(s)),
        Command::Zero(None) => "zero every counter".into(),
        Command::GetLaddr(Some(s)) => format!("list the local addresses of {}", svc(s)),
        Command::Reload => "reload".into(),
        other => format!("{other:?}"),
    }
}

fn ipvsadm_sock(a: std::net::IpAddr, p: u16) -> String {
    crate::ctl::snapshot::fmt_sock(a, p)
}

impl DaemonHandler {
    /// A handler changing `director`, with figures from `stats`; `origin`
    /// names the configuration file that `reload` reads.
    pub fn new(director: Arc<Director>, stats: Arc<StatsHub>, origin: &Path, reload: Reloader) -> DaemonHandler {
        DaemonHandler {
            director,
            stats,
            changes: Mutex::new(reload),
            origin: origin.display().to_string(),
            health: None,
            checker: None,
            sync: None,
        }
    }

    /// Serves the sync daemon commands with `sync`, which runs the file's
    /// `[sync]` section `loaded`.
    #[must_use]
    pub fn with_sync(mut self, sync: Arc<SyncService>, loaded: SyncConf) -> DaemonHandler {
        self.sync = Some((sync, Mutex::new(loaded)));
        self
    }

    /// The sync service, when this daemon runs one (the monitor shows it).
    pub fn sync(&self) -> Option<&Arc<SyncService>> {
        self.sync.as_ref().map(|(s, _)| s)
    }

    /// A sync daemon command.
    fn sync_command(&self, cmd: &Command) -> Response {
        let Some((sync, _)) = &self.sync else {
            // ipvsadm prints nothing when no daemon runs.
            if matches!(cmd, Command::List(_)) {
                return Response::ok("");
            }
            return Response::error(ErrorKind::Unsupported, "connection sync is not running in this daemon");
        };
        let r = match cmd {
            Command::StartDaemon { role, daemon } => sync.start_daemon(*role, daemon.clone()).map(|()| {
                log::info!("xvsadm: {role} sync daemon started (mcast={}, syncid={})", daemon.interface, daemon.syncid);
                String::new()
            }),
            Command::StopDaemon(role) => sync.stop_daemon(*role).map(|()| {
                log::info!("xvsadm: {role} sync daemon stopped");
                String::new()
            }),
            Command::SyncStatus => {
                let text = sync.status_text();
                return if sync.in_sync() {
                    Response::ok(text)
                } else {
                    Response { output: text, ..Response::error(ErrorKind::Failed, "not in sync") }
                };
            }
            Command::List(_) => Ok(sync.list()),
            _ => Ok(String::new()),
        };
        match r {
            Ok(out) => Response::ok(out),
            Err(e) => Response::error(ErrorKind::Failed, e),
        }
    }

    /// Checks every changed or reloaded model with `checker` before it is
    /// applied; a refusal changes nothing.
    #[must_use]
    pub fn with_checker(mut self, checker: Checker) -> DaemonHandler {
        self.checker = Some(checker);
        self
    }

    fn check(&self, m: &Model) -> Result<(), String> {
        self.checker.as_ref().map_or(Ok(()), |c| c(m))
    }

    /// Routes changes and reloads through `health`, so that checks are
    /// started, kept or dropped with the real servers they check.
    #[must_use]
    pub fn with_health(mut self, health: Arc<HealthCtl>) -> DaemonHandler {
        self.health = Some(health);
        self
    }

    /// Applies a changed model (xvsadm): to the director, and to the
    /// health checker when there is one. A refusal changes nothing.
    fn apply_model(&self, m: Model) -> Result<(), HealthError> {
        match &self.health {
            None => Ok(self.director.apply(m)?),
            Some(h) => h.apply_model(&self.director, m),
        }
    }

    /// Applies a reloaded configuration whole: model and health checks.
    fn apply_config(&self, c: Config) -> Result<(), String> {
        match &self.health {
            None => self.director.apply(c.model).map_err(|e| e.to_string()),
            Some(h) => h.apply_config(c.model, c.health).map_err(|e| e.to_string()),
        }
    }

    /// Re-reads the configuration and applies it whole, or changes nothing.
    /// Logs the outcome either way.
    ///
    /// # Errors
    /// Why the file was not applied (its own error, naming line and field,
    /// or the model's).
    pub fn reload(&self) -> Result<String, String> {
        let mut reload = lock(&self.changes);
        let res = match reload().and_then(|c| self.check(&c.model).map(|()| c)).and_then(|c| self.reload_sync(&c.sync).map(|undo| (c, undo))) {
            Err(e) => Err(format!("reload: {e}; the running configuration stays")),
            Ok((c, undo)) => match self.apply_config(c).inspect_err(|_| self.undo_sync(undo)) {
                Ok(()) => Ok(format!(
                    "reload: {} applied (snapshot {})",
                    self.origin,
                    self.director.published().generation()
                )),
                Err(e) => Err(format!("reload: {}: {e}; the running configuration stays", self.origin)),
            },
        };
        match &res {
            Ok(m) => log::info!("{m}"),
            Err(e) => log::error!("{e}"),
        }
        res
    }

    /// A reload's `[sync]`: applied when it changed since the last load.
    /// Returns what to put back if the rest of the reload fails.
    fn reload_sync(&self, new: &SyncConf) -> Result<Option<(SyncConf, SyncConf)>, String> {
        let Some((sync, last)) = &self.sync else { return Ok(None) };
        let mut last = lock(last);
        if *last == *new {
            return Ok(None);
        }
        let running = sync.conf();
        sync.apply(new.clone()).map_err(|e| format!("[sync]: {e}"))?;
        let was = std::mem::replace(&mut *last, new.clone());
        Ok(Some((was, running)))
    }

    fn undo_sync(&self, undo: Option<(SyncConf, SyncConf)>) {
        if let (Some((sync, last)), Some((was, running))) = (&self.sync, undo) {
            *lock(last) = was;
            if let Err(e) = sync.apply(running) {
                log::error!("reload: the sync daemons could not be put back: {e}");
            }
        }
    }

    /// A read-only command on the running model.
    fn query(&self, cmd: &Command) -> Response {
        let running = self.director.running_model();
        let stats = self.stats.view();
        let conn_listing = matches!(cmd, Command::List(o) if o.what == ListWhat::Connections);
        let (conns, warning) = if conn_listing {
            let l = self.stats.conns();
            let w = l.warning(SAMPLE_MAX);
            (l.entries, w)
        } else {
            (Vec::new(), None)
        };
        let view = View { stats: &stats, conns: &conns, table_size: TABLE_SIZE };
        match ipvsadm::render(cmd, &running, &view) {
            Ok(text) => Response::ok(text).warn(warning),
            Err(e) => e.into(),
        }
    }

    fn command(&self, cmd: Command) -> Response {
        match cmd {
            Command::Reload => {
                return match self.reload() {
                    Ok(m) => Response::ok(format!("{m}\n")),
                    Err(e) => Response::error(ErrorKind::Failed, e),
                }
            }
            Command::DaemonStats => return Response::ok(self.stats.daemon_text()),
            Command::StartDaemon { .. } | Command::StopDaemon(_) | Command::SyncStatus => return self.sync_command(&cmd),
            Command::List(ref o) if o.what == ListWhat::Daemon => return self.sync_command(&cmd),
            _ => {}
        }
        let outcome = {
            let _changes = lock(&self.changes);
            let mut m = self.director.model();
            match ipvsadm::apply(&mut m, &cmd) {
                Ok(Outcome::Changed) => {
                    if let Err(e) = self.check(&m) {
                        log::warn!("xvsadm: {} refused: {e}", summary(&cmd));
                        return Response::error(ErrorKind::Failed, e);
                    }
                    return match self.apply_model(m) {
                        Ok(()) => {
                            log::info!(
                                "xvsadm: {} (snapshot {})",
                                summary(&cmd),
                                self.director.published().generation()
                            );
                            Response::ok("")
                        }
                        Err(e) => {
                            log::warn!("xvsadm: {} refused: {e}", summary(&cmd));
                            match e {
                                HealthError::Model(e) => CmdError::Invalid(e).into(),
                                other => Response::error(ErrorKind::Failed, other.to_string()),
                            }
                        }
                    };
                }
                Err(e) => return e.into(),
                Ok(o) => o,
            }
        };
        // Not a change: no need to hold up the others.
        match outcome {
            Outcome::Zero(svc) => {
                self.stats.zero(svc.as_ref());
                Response::ok("")
            }
            Outcome::Query => self.query(&cmd),
            Outcome::Changed | Outcome::Daemon => {
                Response::error(ErrorKind::Unsupported, "this command is not served by xvs run")
            }
        }
    }

    /// Serves this handler on the Unix socket `path` (root only: mode
    /// 0600).
    ///
    /// # Errors
    /// The socket is in use by another daemon, is not a socket, or cannot
    /// be created.
    pub fn serve(self: Arc<Self>, path: &Path) -> Result<Server, ControlError> {
        self.serve_group(path, None)
    }

    /// As [`DaemonHandler::serve`], the socket given to `group` with mode
    /// 0660 (members may use xvsadm) when there is one.
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub fn serve_group(self: Arc<Self>, path: &Path, group: Option<u32>) -> Result<Server, ControlError> {
        let opts = ServerOpts { group, mode: if group.is_some() { 0o660 } else { 0o600 }, ..ServerOpts::default() };
        Server::bind(path, self, opts)
    }
}

impl ControlHandler for DaemonHandler {
    fn handle(&self, req: Request) -> Response {
        if matches!(req, Request::Ping) && super::fault::armed(super::fault::Fault::ControlPanic) {
            panic!("test fault {}: the control handler panics", super::fault::Fault::ControlPanic.name());
        }
        match req {
            Request::Ping => Response::ok(ipvsadm::version()),
            Request::Ipvsadm(cmd) => self.command(cmd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config;
    use crate::daemon::report::Reporter;
    use crate::io::xdp::IoStats;
    use crate::worker::Worker;
    use std::sync::atomic::{AtomicBool, Ordering};

    const CONF: &str = r#"
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
  port = 8080
  mode = "nat"
"#;

    struct T {
        d: Arc<Director>,
        h: DaemonHandler,
        /// What the reloader reads.
        file: Arc<Mutex<String>>,
    }

    fn setup(workers: usize) -> T {
        let d = Arc::new(Director::new(config::load_str(CONF, "t").unwrap(), workers).unwrap());
        let hub = Arc::new(StatsHub::new(d.clone()));
        let file = Arc::new(Mutex::new(CONF.to_string()));
        let f2 = file.clone();
        let reload: Reloader = Box::new(move || config::load_config_str(&f2.lock().unwrap(), "xvs.toml").map_err(|e| e.to_string()));
        let h = DaemonHandler::new(d.clone(), hub, Path::new("xvs.toml"), reload);
        T { d, h, file }
    }

    fn run(h: &DaemonHandler, line: &str) -> Response {
        let words: Vec<&str> = line.split_whitespace().collect();
        h.handle(Request::Ipvsadm(ipvsadm::parse(&words).unwrap()))
    }

    fn ok(h: &DaemonHandler, line: &str) -> String {
        let r = run(h, line);
        assert_eq!(r.error, None, "{line}");
        r.output
    }

    fn refused(t: &T, line: &str, want: &str) {
        let gen = t.d.published().generation();
        let model = t.d.model();
        let r = run(&t.h, line);
        let e = r.error.unwrap_or_else(|| panic!("{line} was accepted"));
        assert!(e.message.contains(want), "{line}: {}", e.message);
        assert_eq!((t.d.published().generation(), t.d.model()), (gen, model), "{line} changed something");
    }

    #[test]
    fn sync_daemons_start_stop_list_and_survive_reloads_that_leave_sync_alone() {
        let mut t = setup(1);
        // Ports nobody holds: with a bulk port another process listened
        // on, the daemon could not bind its own, pulled from that process
        // (reset) and was never in sync (a make test run failed so).
        let [port, bulk] = crate::testutil::free_ports();
        let sync_toml = |threshold: u16| {
            format!("\n[sync]\npeers = [\"127.0.0.1\"]\nbulk_port = {bulk}\npull_timeout = 1\nthreshold = {threshold}\n")
        };
        let file = format!("{CONF}{}", sync_toml(3));
        *t.file.lock().unwrap() = file.clone();
        let loaded = config::load_config_str(&file, "xvs.toml").unwrap().sync;
        let links = vec![Arc::new(crate::sync::link::Link::default())];
        let d = t.d.clone();
        let sync = Arc::new(SyncService::start(links, Box::new(move || d.snapshot()), loaded.clone()).unwrap());
        t.h = t.h.with_sync(sync.clone(), loaded);
        assert_eq!(ok(&t.h, "-L --daemon"), "");
        assert_eq!(run(&t.h, "--sync-status").exit_code(), 1, "no daemon: not in sync");
        ok(&t.h, &format!("--start-daemon master --mcast-interface lo --syncid 3 --mcast-port {port}"));
        assert_eq!(
            ok(&t.h, "-L --daemon"),
            format!("master sync daemon (mcast=lo, syncid=3, maxlen=1472, group=224.0.0.81, port={port}, ttl=1)\n")
        );
        let e = run(&t.h, "--start-daemon master --mcast-interface lo").error.unwrap();
        assert!(e.message.contains("already running"), "{}", e.message);
        assert_eq!(run(&t.h, "--stop-daemon backup").error.unwrap().message, "No backup sync daemon is running");
        let e = run(&t.h, "--start-daemon backup --mcast-interface xvs-nosuch0").error.unwrap();
        assert_eq!(e.message, "Unknown mcast interface: xvs-nosuch0");
        // A master whose only peer is itself has nothing to pull.
        let t0 = std::time::Instant::now();
        while run(&t.h, "--sync-status").exit_code() != 0 {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{}", run(&t.h, "--sync-status").output);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(ok(&t.h, "--sync-status").starts_with("sync: in sync"));
        // A reload whose [sync] did not change keeps what xvsadm started.
        ok(&t.h, "--reload");
        assert!(sync.conf().master.is_some());
        // One that changed it applies it whole.
        *t.file.lock().unwrap() = format!("{CONF}{}", sync_toml(2));
        ok(&t.h, "--reload");
        assert_eq!((sync.conf().master, sync.conf().threshold), (None, 2));
        // A bad [sync] refuses the reload and changes nothing.
        *t.file.lock().unwrap() = format!("{CONF}{}\n[sync.backup]\ninterface = \"xvs-nosuch0\"\n", sync_toml(1));
        let e = run(&t.h, "--reload").error.unwrap();
        assert!(e.message.contains("Unknown mcast interface: xvs-nosuch0") && e.message.ends_with("the running configuration stays"), "{}", e.message);
        assert_eq!(sync.conf().threshold, 2);
        // Without a sync service the commands say so; the listing is empty.
        let plain = setup(1);
        assert_eq!(ok(&plain.h, "-L --daemon"), "");
        assert_eq!(run(&plain.h, "--start-daemon master").error.unwrap().kind, ErrorKind::Unsupported);
    }

    #[test]
    fn changes_reach_the_workers_snapshot_and_listings_show_it() {
        let t = setup(1);
        ok(&t.h, "-a -t 10.0.0.100:80 -r 10.0.0.3:8080 -m -w 2");
        let s = t.d.snapshot();
        assert_eq!(s.generation, 2);
        assert_eq!(s.dests.iter().map(|d| d.weight).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            ok(&t.h, "-S -n"),
            "-A -t 10.0.0.100:80 -s wrr\n-a -t 10.0.0.100:80 -r 10.0.0.2:8080 -m -w 1\n-a -t 10.0.0.100:80 -r 10.0.0.3:8080 -m -w 2\n"
        );
        ok(&t.h, "-E -t 10.0.0.100:80 -s rr");
        assert_eq!(t.d.snapshot().services[0].sched.name(), "rr");
        ok(&t.h, "--set 100 0 0");
        assert_eq!(ok(&t.h, "-L --timeout"), "Timeout (tcp tcpfin udp): 100 120 300\n");
        ok(&t.h, "-A -u 10.0.0.100:53 -s rr");
        ok(&t.h, "-D -u 10.0.0.100:53");
        let list = ok(&t.h, "-L -n");
        assert!(list.contains("TCP  10.0.0.100:80 rr\n"), "{list}");
        let row = |w: u32| format!("  -> {:<28} {:<7} {w:<6} {:<10} {:<10}\n", "10.0.0.3:8080", "Masq", 0, 0);
        assert!(list.contains(&row(2)), "{list}");
        // The listing is the running model: an overlay's weight 0 shows.
        t.d.set_overlay(Some(Box::new(|m: &Model| {
            let mut m = m.clone();
            for d in m.services.iter_mut().flat_map(|s| s.dests.iter_mut()) {
                if d.addr == "10.0.0.3".parse::<std::net::IpAddr>().unwrap() {
                    d.weight = 0;
                }
            }
            m
        })))
        .unwrap();
        assert!(ok(&t.h, "-L -n").contains(&row(0)));
        assert_eq!(t.d.model().services[0].dests[1].weight, 2, "the configured weight stays");
        ok(&t.h, "-C");
        assert!(t.d.snapshot().services.is_empty());
    }

    #[test]
    fn refusals_name_the_problem_and_change_nothing() {
        let t = setup(2);
        refused(&t, "-A -t 10.0.0.100:80 -s rr", "Service already exists");
        refused(&t, "-a -t 10.0.0.100:81 -r 10.0.0.3", "Service not defined");
        refused(&t, "-A -t 10.0.0.101:80 -s nosuch", "Scheduler or persistence engine not found (scheduler 'nosuch'");
        refused(&t, "-a -t 10.0.0.100:80 -r 10.0.0.3:8080 --fullnat", "real server 10.0.0.3:8080: fullnat needs local addresses");
        // Valid on its own, refused by the director (two workers shard by
        // client address; a /24 persistence mask would move flows).
        refused(&t, "-E -t 10.0.0.100:80 -s wrr -p 60 -M 255.255.255.0", "global.shard_prefix");
        let r = t.h.handle(Request::Ipvsadm(Command::Restore { rules: "-C\n-A -t 10.0.0.9:80 -s rr\n-A -t 10.0.0.9:80\n".into() }));
        assert_eq!(r.error.unwrap().message, "line 3: Service already exists");
        assert_eq!(t.d.snapshot().services.len(), 1, "-R is all or nothing");
    }

    /// A client that speaks the socket's JSON itself skips xvsadm's
    /// parser: timeouts out of range (beyond 31 days, far past the expiry
    /// wheel's horizon at u32::MAX, or 0 for a persistence) are refused by
    /// the model's own check, naming the field, and change nothing.
    #[test]
    fn raw_requests_with_out_of_range_timeouts_are_refused() {
        let t = setup(1);
        let send = |json: &str| {
            let req: Request = serde_json::from_str(json).unwrap();
            let gen = t.d.published().generation();
            let model = t.d.model();
            let e = t.h.handle(req).error.unwrap_or_else(|| panic!("{json} was accepted"));
            assert_eq!((t.d.published().generation(), t.d.model()), (gen, model), "{json} changed something");
            e.message
        };
        let m = send(r#"{"ipvsadm":{"set_timeouts":{"tcp":4294967295,"tcpfin":0,"udp":0}}}"#);
        assert!(m.contains("timeouts: tcp is 4294967295 s: at most 2678400 s (31 days)"), "{m}");
        let m = send(r#"{"ipvsadm":{"set_timeouts":{"tcp":0,"tcpfin":0,"udp":2678401}}}"#);
        assert!(m.contains("timeouts: udp is 2678401 s"), "{m}");
        let svc = |p: u32| {
            format!(r#"{{"ipvsadm":{{"edit_service":{{"svc":{{"addr":{{"proto":"tcp","addr":"10.0.0.100","port":80}}}},"sched":"wrr","sched_flags":0,"persistent":{p},"netmask":null}}}}}}"#)
        };
        let m = send(&svc(4_000_000_000));
        assert!(m.contains("service TCP 10.0.0.100:80: persistence timeout 4000000000 s is out of range 1 ..= 2678400 s"), "{m}");
        let m = send(&svc(0));
        assert!(m.contains("persistence timeout 0 s is out of range"), "{m}");
        // in range: accepted
        assert_eq!(t.h.handle(serde_json::from_str(&svc(2_678_400)).unwrap()).error, None);
        ok(&t.h, "--set 2678400 1 1");
    }

    #[test]
    fn the_checker_can_refuse_changes_and_reloads() {
        let mut t = setup(1);
        t.h = t.h.with_checker(Box::new(|m: &Model| {
            if m.services.len() > 1 {
                Err("one service only, says the checker".into())
            } else {
                Ok(())
            }
        }));
        refused(&t, "-A -t 10.0.0.100:443 -s rr", "one service only, says the checker");
        ok(&t.h, "-E -t 10.0.0.100:80 -s rr");
        let gen = t.d.published().generation();
        *t.file.lock().unwrap() = format!("{CONF}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nport = 443\n");
        let e = run(&t.h, "--reload").error.unwrap();
        assert!(e.message.contains("one service only, says the checker") && e.message.ends_with("the running configuration stays"), "{}", e.message);
        assert_eq!(t.d.published().generation(), gen, "nothing applied");
    }

    #[test]
    fn reload_applies_a_good_file_and_keeps_the_running_one_on_a_bad_one() {
        let t = setup(1);
        ok(&t.h, "-A -t 10.0.0.100:443 -s rr");
        *t.file.lock().unwrap() = CONF.replace("\"wrr\"", "\"nope\"");
        let r = run(&t.h, "--reload");
        let e = r.error.unwrap();
        assert!(e.message.contains("unknown scheduler 'nope'") && e.message.ends_with("the running configuration stays"), "{}", e.message);
        assert_eq!(t.d.snapshot().services.len(), 2);
        *t.file.lock().unwrap() = CONF.replace("port = 8080", "port = 8081");
        let out = ok(&t.h, "--reload");
        assert!(out.starts_with("reload: xvs.toml applied (snapshot 3)"), "{out}");
        let s = t.d.snapshot();
        assert_eq!((s.services.len(), s.dests[0].port), (1, 8081), "the file replaces xvsadm's changes");
        assert_eq!(t.h.reload(), Ok("reload: xvs.toml applied (snapshot 4)".to_string()));
    }

    #[test]
    fn figures_zero_and_connection_listing_come_from_the_workers() {
        let t = setup(1);
        // A worker thread that forwards 3 SYNs, then reports and answers
        // listings until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s2) = (t.d.clone(), stop.clone());
        let th = std::thread::spawn(move || {
            let mut w = Worker::new(0, 1, d.snapshot(), 1_000_000_000);
            let mut rep = Reporter::new(d.report_slot(0).unwrap());
            crate::daemon::syns(&mut w, [192, 0, 2, 1], 1000..1003);
            while !s2.load(Ordering::Relaxed) {
                rep.publish(&w, &IoStats::default(), (0, None), false);
                rep.serve_probe(&w, 1_000_000_000);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let svc = |conns: u64, pkts: u64| format!("{:<33}{conns:>9}{pkts:>9}{:>9}", "TCP  10.0.0.100:80", 0);
        let dest = format!("  -> {:<28}{:>9}{:>9}", "10.0.0.2:8080", 3, 3);
        let mut stats = String::new();
        for _ in 0..2000 {
            stats = ok(&t.h, "-L -n --stats");
            if stats.contains(&dest) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(stats.contains(&svc(3, 3)), "{stats}");
        let conns = run(&t.h, "-L -n -c");
        assert_eq!(conns.warning, None);
        let lines: Vec<&str> = conns.output.lines().collect();
        assert_eq!(lines.len(), 5, "{}", conns.output);
        let want = format!("{:<3} {:<6} {:<11} {:<18} {:<18} {}", "TCP", "01:00", "SYN_RECV", "192.0.2.1:1000", "10.0.0.100:80", "10.0.0.2:8080");
        assert_eq!(lines[2], want, "{}", conns.output);
        ok(&t.h, "-Z");
        assert!(ok(&t.h, "-L -n --stats").contains(&svc(0, 0)));
        let daemon = ok(&t.h, "--stats");
        assert!(daemon.contains("connections  new           3"), "{daemon}");
        stop.store(true, Ordering::Relaxed);
        th.join().unwrap();
    }
}
