//! `xvs`: the director. `xvs run` forwards live traffic over AF_XDP;
//! `xvs replay` runs the real worker over a capture; `xvs check-config`
//! validates a configuration.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs::ctl::config;
use xvs::ctl::snapshot::Snapshot;
use xvs::daemon::health::HealthCtl;
use xvs::daemon::run::{self, RunConfig};
use xvs::daemon::{control, notify, stats};
use xvs::daemon::signals;
use xvs::io::pcap;
use xvs::io::xdp::PollMode;
use xvs::sync::daemon::SyncService;
use xvs::worker::Worker;

const LONG_ABOUT: &str = "\
xvs is Linux Virtual Server (LVS/IPVS) as a userspace, kernel-bypass L4 load
balancer: it schedules new connections to real servers with the IPVS
algorithms (rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, fo, ovf, twos)
and forwards them by direct routing (DR), IP-in-IP tunnelling (TUN), NAT or
FULLNAT.

The configuration is a TOML file: services (VIP, port, scheduler), their real
servers (address, port, weight, forwarding mode), FULLNAT local addresses and
the director's interfaces. See docs/config.md and the examples in configs/.";

const REPLAY_ABOUT: &str = "\
Runs every frame of a capture through the real worker code, exactly as the
live data path would process it, and writes every frame it would transmit to
another capture. Then prints what happened: frames forwarded per mode and
direction, new connections, and drops and passes by reason.

The worker's clock follows the capture's timestamps, so connection timeouts
and persistence behave as at the capture's pace. In pcapng input, a packet's
interface id is the director port it arrived on. Neighbour and director MACs
come from the configuration ([[interface]] and [[neighbour]]).

Example:
  xvs replay --config configs/nat.toml --in client.pcap --out forwarded.pcap";

#[derive(Parser)]
#[command(name = "xvs", version, about = "Linux Virtual Server as a kernel-bypass L4 load balancer", long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    log: xvs::health::logger::LogArgs,
}

const RUN_ABOUT: &str = "\
Runs the director: attaches the XDP steering program to the interfaces,
binds one AF_XDP socket per (interface, queue), and forwards the services of
the configuration with one pinned worker per queue until SIGINT or SIGTERM.
On stop, the programs are detached and the counters printed.

Without --config, xvs starts with an empty table on the interfaces given
with -i, and xvsadm fills it (as ipvsadm fills IPVS's); `xvsadm -S` saves it
in a form --config reads back.

Interfaces are the config's [[interface]] names (not its sub-interfaces),
or those given with -i (which replace them). Their MACs, MTUs, addresses,
VLAN sub-interfaces, the main routing table and the neighbours come from
the kernel (the kernel wins over the config file; a
static [[neighbour]] only fills in an address the kernel does not know).

SIGHUP (or `xvsadm --reload`) reloads the configuration file: it is
validated whole; an invalid file is logged and the running configuration
stays.

The control socket (`--socket`, [global] control_socket, default
/run/xvs/xvs.sock; mode 0600, or 0660 for the group of --socket-group)
serves `xvsadm`: ipvsadm's commands change the running director live,
listings show live figures. The Prometheus
endpoint (`--metrics`, [global] metrics, default 127.0.0.1:9477; `off`
disables it) serves every counter at /metrics. See docs/operations.md.

Real servers with health checks (docs/health.md) leave rotation when they
fail and come back when they recover; every transition is logged with its
reason, and the counts are printed at stop.

Reloads include the health checks; real servers that stay keep their
health state.

Exit status: 0 after a clean stop, 2 for a bad command line or
configuration, 1 when the system refuses (a missing capability, no
AF_XDP, a missing interface, a busy queue, ...) or when a worker thread
dies (its XDP programs are detached first; a supervisor should restart
xvs).

Under systemd (Type=notify) it reports READY once every worker runs and
feeds the watchdog only while they all make progress; it needs root or
CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON and CAP_IPC_LOCK (see
xvs(8) and docs/operations.md).

Example:
  xvs run --config configs/demo.toml -i eth0 -i eth1";

/// `--poll`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Poll {
    /// Spin briefly, then sleep in poll() until frames arrive (default;
    /// safe when the kernel's receive work shares the workers' CPUs).
    Adaptive,
    /// Never sleep: lowest latency, a full CPU per worker even when idle.
    Busy,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the director on live interfaces (AF_XDP).
    #[command(long_about = RUN_ABOUT)]
    Run {
        /// Configuration file: TOML, or ipvsadm-save rules (`xvsadm -S`
        /// output; interfaces then come from -i). Without it, xvs starts
        /// with an empty table that xvsadm fills, as IPVS does.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Interface to forward on (repeatable; replaces the config's
        /// [[interface]] list; needed without --config).
        #[arg(long = "interface", short = 'i', value_name = "IFACE")]
        interfaces: Vec<String>,
        /// Worker threads; each binds queue i of every interface (default:
        /// the interfaces' queue count, at most the usable CPUs).
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        /// Polling mode of the workers.
        #[arg(long, value_enum, default_value = "adaptive")]
        poll: Poll,
        /// CPUs to pin the workers to, e.g. `1` or `0,1` (worker i on the
        /// i-th, round robin; default: leave CPU 0 to the kernel when there
        /// are more CPUs than workers).
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        cores: Option<Vec<usize>>,
        /// Print every counter as `name=value` lines at exit.
        #[arg(long)]
        counters: bool,
        /// The control socket xvsadm talks to (default: [global]
        /// control_socket, else /run/xvs/xvs.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Group given the control socket, mode 0660, so its members may use
        /// xvsadm (default: [global] control_socket_group, else none: root
        /// only, mode 0600).
        #[arg(long, value_name = "GROUP", value_parser = parse_group_arg)]
        socket_group: Option<u32>,
        /// Where the Prometheus endpoint listens, `ADDR:PORT` or `off`
        /// (default: [global] metrics, else 127.0.0.1:9477).
        #[arg(long, value_name = "ADDR:PORT|off", value_parser = parse_metrics_arg)]
        metrics: Option<Metrics>,
        /// Where the HTTPS monitor listens, `ADDR:PORT` or `off` (default:
        /// [monitor] listen, else 127.0.0.1:9443 when [monitor] is
        /// configured; docs/monitor.md).
        #[arg(long, value_name = "ADDR:PORT|off", value_parser = parse_monitor_arg)]
        monitor: Option<Metrics>,
    },
    /// Print an argon2 hash of a password for [[monitor.user]]
    /// password_hash (read from the terminal, or a line of standard input).
    Passwd,
    /// Replay a capture through the worker and write what it transmits.
    #[command(long_about = REPLAY_ABOUT)]
    Replay {
        /// Configuration file (TOML).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// Input capture (pcap or pcapng, Ethernet).
        #[arg(long = "in", value_name = "PCAP")]
        input: PathBuf,
        /// Output capture (pcap), one frame per transmitted frame.
        #[arg(long = "out", value_name = "PCAP")]
        output: PathBuf,
        /// Print every counter as `name=value` lines (machine readable)
        /// instead of the summary.
        #[arg(long)]
        counters: bool,
        /// Switch to another configuration SECS seconds after the
        /// capture's first frame, as a reload of a running director
        /// would (repeatable, in time order).
        #[arg(long, value_name = "SECS=FILE")]
        reload: Vec<String>,
    },
    /// Validate a configuration file and summarise it.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Write the manual pages and shell completions under DIR (the
    /// package build runs it; xvs::manual).
    #[command(hide = true)]
    Generate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `--metrics`: where, or `None` for off.
#[derive(Clone, Debug)]
struct Metrics(Option<std::net::SocketAddr>);

fn parse_metrics_arg(s: &str) -> Result<Metrics, String> {
    config::parse_metrics(s).map(Metrics)
}

fn parse_group_arg(s: &str) -> Result<u32, String> {
    xvs::daemon::privs::group_id(s).map_err(|e| e.to_string())
}

fn parse_monitor_arg(s: &str) -> Result<Metrics, String> {
    xvs::monitor::conf::parse_listen(s).map(Metrics)
}

/// Where `xvs run` listens besides the data path (command line over config).
struct Listen {
    socket: Option<PathBuf>,
    socket_group: Option<u32>,
    metrics: Option<Metrics>,
    monitor: Option<Metrics>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = xvs::health::logger::init_with(&cli.log) {
        eprintln!("xvs: {e}");
        return ExitCode::from(2);
    }
    match cli.cmd {
        Cmd::Run { config, interfaces, workers, poll, cores, counters, socket, socket_group, metrics, monitor } => {
            let poll = match poll {
                Poll::Adaptive => PollMode::default(),
                Poll::Busy => PollMode::Busy,
            };
            run_director(config, interfaces, workers, poll, cores, counters, Listen { socket, socket_group, metrics, monitor })
        }
        Cmd::Passwd => passwd(),
        Cmd::Replay { config, input, output, counters, reload } => replay(config, input, output, counters, &reload),
        Cmd::CheckConfig { config } => check_config(config),
        Cmd::Generate { dir } => match xvs::manual::write_all(&<Cli as clap::CommandFactory>::command(), &dir) {
            Ok(files) => {
                println!("{} files under {}", files.len(), dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xvs generate: {}: {e}", dir.display());
                ExitCode::from(1)
            }
        },
    }
}

fn load(path: &Path) -> Result<Arc<Snapshot>, String> {
    let model = config::load_file(path).map_err(|e| e.to_string())?;
    Snapshot::build(&model, None).map(Arc::new).map_err(|e| format!("{}: {e}", path.display()))
}

fn replay(config: PathBuf, input: PathBuf, output: PathBuf, counters: bool, reload: &[String]) -> ExitCode {
    let snap = match load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xvs: {e}");
            return ExitCode::from(2);
        }
    };
    // Each reload's snapshot is built on the one before it (dest ids
    // follow the addresses, as a running director's reload).
    let mut reloads: Vec<(u64, Arc<Snapshot>)> = Vec::new();
    for r in reload {
        let parsed = r.split_once('=').and_then(|(t, f)| Some((t.trim().parse::<f64>().ok().filter(|t| t.is_finite() && *t >= 0.0)?, f)));
        let Some((secs, file)) = parsed else {
            eprintln!("xvs: --reload {r:?}: expected SECS=FILE, SECS a number of seconds >= 0");
            return ExitCode::from(2);
        };
        let at = (secs * 1e9) as u64;
        if reloads.last().is_some_and(|(t, _)| *t > at) {
            eprintln!("xvs: --reload {r:?}: reloads must be in time order");
            return ExitCode::from(2);
        }
        let prev = reloads.last().map_or(&snap, |(_, s)| s).clone();
        let next = config::load_file(Path::new(file))
            .map_err(|e| e.to_string())
            .and_then(|m| Snapshot::build(&m, Some(&prev)).map_err(|e| format!("{file}: {e}")));
        match next {
            Ok(s) => reloads.push((at, Arc::new(s))),
            Err(e) => {
                eprintln!("xvs: --reload: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some((i, p)) = snap.ports.iter().enumerate().find(|(_, p)| p.mac == config::NO_MAC) {
        eprintln!(
            "xvs: {}: interface[{i}] ('{}') has no `mac`: replay needs the director's MACs in the config",
            config.display(),
            p.name
        );
        return ExitCode::from(2);
    }
    let mut w = Worker::new(0, 1, snap, pcap::CLOCK_START_NS);
    // A replay is deterministic: its SYN proxy's cookies too, so that a
    // capture can carry the ACK of a SYN-ACK an earlier replay made.
    w.set_synproxy_secret(xvs::ipvs::synproxy::Secret::REPLAY);
    let t0 = Instant::now();
    let progress = |n: u64| {
        if n >= 1 << 20 {
            eprintln!("xvs replay: {n} frames ({:.1} s)", t0.elapsed().as_secs_f64());
        }
    };
    let sum = match pcap::replay_with(&mut w, &input, &output, &reloads, progress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xvs replay: {e}");
            return ExitCode::from(1);
        }
    };
    let c = w.counters();
    if counters {
        println!("frames_in={}", sum.frames_in);
        println!("frames_out={}", sum.frames_out);
        println!("conns={}", w.conns());
        for (k, v) in c.pairs() {
            println!("{k}={v}");
        }
    } else {
        println!(
            "xvs replay: {} frames in, {} out, {} connections tracked at the end ({:.2} s)",
            sum.frames_in,
            sum.frames_out,
            w.conns(),
            t0.elapsed().as_secs_f64()
        );
        print!("{}", c.render());
    }
    ExitCode::SUCCESS
}

/// What `xvs run` calls its configuration in messages when it has none.
const NO_CONFIG: &str = "(no --config: the table xvsadm fills)";

/// Loads the config for `xvs run`: the model with its health checks and
/// listeners, and the interface list (`-i` replaces the config's
/// [[interface]] names). Without a file, the configuration of an empty
/// file: no services, every default.
fn load_live(path: Option<&std::path::Path>, cli_ifaces: &[String]) -> Result<(config::Config, Vec<String>), String> {
    let conf = match path {
        Some(p) => config::load_config_file(p).map_err(|e| e.to_string())?,
        None => config::load_config_str("", NO_CONFIG).map_err(|e| e.to_string())?,
    };
    let ifaces = if cli_ifaces.is_empty() {
        conf.model.net.ports.iter().map(|p| p.name.clone()).collect()
    } else {
        cli_ifaces.to_vec()
    };
    Ok((conf, ifaces))
}

fn run_director(
    config: Option<PathBuf>,
    cli_ifaces: Vec<String>,
    workers: Option<usize>,
    poll: PollMode,
    cores: Option<Vec<usize>>,
    counters: bool,
    listen: Listen,
) -> ExitCode {
    let (conf, interfaces) = match load_live(config.as_deref(), &cli_ifaces) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("xvs: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(listen.monitor, Some(Metrics(Some(_)))) && conf.daemon.monitor.as_ref().map_or(true, |m| m.users.is_empty()) {
        let origin = config.as_deref().map_or_else(|| NO_CONFIG.to_string(), |p| p.display().to_string());
        eprintln!("xvs: --monitor: {origin} has no [[monitor.user]]: nobody could log in (docs/monitor.md)");
        return ExitCode::from(2);
    }
    if let Err(e) = signals::install() {
        eprintln!("xvs: installing signal handlers: {e}");
        return ExitCode::from(1);
    }
    // No panic hook detaches XDP: hooks run for panics caught on purpose
    // too (a control request's handler, a health check task), and one of
    // those must not take the director off the wire while its workers go
    // on polling. XDP is detached when the process ends: a clean stop, a
    // dead worker (below), a second signal, or a panic unwinding out of
    // this function (`DetachOnUnwind`).
    let cfg = RunConfig { interfaces: interfaces.clone(), workers, poll, cores, ownership: conf.daemon.ownership, ..RunConfig::default() };
    let mut running = match run::start(conf.model, &cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xvs run: {e}");
            return ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    let _detach = DetachOnUnwind;
    for (iface, id) in &running.stale_removed {
        log::warn!("removed the XDP program (id {id}) a crashed xvs left on {iface}");
    }
    let d = running.director().clone();
    // Health checks: started here, on the main (control) thread, so the
    // engine's threads are not pinned to a worker's CPU.
    let health = match HealthCtl::start(d.clone(), conf.health) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("xvs run: health checks: {e}");
            running.stop();
            return ExitCode::from(2);
        }
    };
    // Connection sync (docs/ha.md): its thread, joined to every worker.
    let sync_conf = conf.sync.clone();
    let sync = match start_sync(&d, sync_conf.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("xvs run: [sync]: {e}");
            health.stop();
            running.stop();
            return ExitCode::from(2);
        }
    };
    let snap = d.snapshot();
    let modes: Vec<String> = interfaces
        .iter()
        .zip(&running.zerocopy)
        .map(|(i, z)| format!("{i} ({})", if *z { "zero-copy" } else { "copy" }))
        .collect();
    let cpus: Vec<String> =
        running.placement.iter().map(|c| c.map_or("unpinned".to_string(), |c| format!("cpu {c}"))).collect();
    log::info!(
        "running: {} service(s), {} real server(s) on {}; {} worker(s) [{}], {:?} polling",
        snap.services.len(),
        snap.dests.len(),
        modes.join(", "),
        cpus.len(),
        cpus.join(", "),
        poll
    );
    // The operator's side: statistics, the control socket, metrics.
    let (reload_cfg, reload_ifaces, started_conf) = (config.clone(), interfaces.clone(), conf.daemon.clone());
    let reloader: control::Reloader = Box::new(move || {
        let Some(path) = reload_cfg.as_deref() else {
            return Err("xvs run was started without --config: there is no file to reload (xvsadm changes the table)".into());
        };
        let (c, ifaces) = load_live(Some(path), &[])?;
        if cli_ifaces.is_empty() && ifaces != reload_ifaces {
            log::warn!("reload: the interface list changed ({ifaces:?}); interfaces change only with a restart");
        }
        if c.daemon != started_conf {
            log::warn!("reload: control_socket, metrics, ownership, [monitor] and [announce] change only with a restart");
        }
        Ok(c)
    });
    let origin = config.clone().unwrap_or_else(|| PathBuf::from(NO_CONFIG));
    // VIP announcement (docs/scale-out.md): a TUN device whose routes a
    // routing daemon exports; it dies with this process.
    let mut announcer = match conf.daemon.announce.as_ref().map(xvs::daemon::announce::Announcer::start) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            log::error!("{e}");
            if let Ok(s) = Arc::try_unwrap(sync) {
                s.stop();
            }
            health.stop();
            running.stop();
            return ExitCode::from(1);
        }
    };
    let ops = match Operator::start(&d, &health, &origin, reloader, listen, conf.daemon, (sync.clone(), sync_conf)) {
        Ok(o) => o,
        Err(e) => {
            log::error!("{e}");
            running.stop();
            return ExitCode::from(1);
        }
    };
    // systemd (Type=notify): READY once the workers run, the watchdog fed
    // while they make progress (xvs::daemon::notify).
    let mut service = notify::Service::from_env(format!("forwarding {} service(s) on {}", snap.services.len(), interfaces.join(", ")));
    let mut died = None;
    while !signals::stop_requested() {
        if let Some(what) = running.dead_thread() {
            log::error!("{what}; stopping, detaching XDP and exiting with status 1 (a supervisor should restart xvs)");
            died = Some(what);
            break;
        }
        service.tick(&d);
        if let Some(a) = announcer.as_mut() {
            a.update(&d.snapshot());
        }
        if signals::take_reload() {
            service.reloading();
            let _ = ops.handler.reload();
            service.reloaded();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    service.stopping();
    // Withdrawn first: the routers move the flows to the other directors
    // while this one still forwards what is on its way.
    if let Some(a) = announcer.as_mut() {
        a.withdraw_all();
    }
    log::info!("stopping");
    drop(ops);
    // The sync thread waits on the workers' walks: it stops before them.
    if let Ok(s) = Arc::try_unwrap(sync) {
        s.stop();
    }
    health.stop();
    let health = health.report();
    let (reports, kernel) = running.stop();
    let mut total = xvs::stats::WorkerCounters::default();
    for r in &reports {
        total.merge(&r.counters);
    }
    if counters {
        for (k, v) in total.pairs() {
            println!("{k}={v}");
        }
        println!("kernel_sent={}\nkernel_errors={}\nkernel_partial_csum={}", kernel.sent, kernel.errors, kernel.partial_csum);
        for (k, v) in health.totals.pairs() {
            println!("{k}={v}");
        }
        for l in health.lines() {
            println!("{l}");
        }
        for l in health.check_lines() {
            println!("{l}");
        }
        // Each worker's balance (docs/operations.md): the end-to-end tests
        // check that it holds.
        for r in &reports {
            println!("worker {} {}", r.worker, r.counters.balance());
        }
        for t in d.dest_totals() {
            println!(
                "dest {} {} conns={} inpkts={} outpkts={} inbytes={} outbytes={}",
                t.service,
                xvs::ctl::snapshot::fmt_sock(t.addr, t.port),
                t.stats.conns,
                t.stats.inpkts,
                t.stats.outpkts,
                t.stats.inbytes,
                t.stats.outbytes
            );
        }
    } else {
        println!("xvs run: stopped; counters of {} worker(s):", reports.len());
        print!("{}", total.render());
        println!(
            "kernel path: {} sent, {} write errors, {} with a partial checksum",
            kernel.sent, kernel.errors, kernel.partial_csum
        );
        println!("real servers:");
        for t in d.dest_totals() {
            println!(
                "  {} -> {} {} weight {}: {} conns, {} pkts in, {} pkts out",
                t.service,
                xvs::ctl::snapshot::fmt_sock(t.addr, t.port),
                t.fwd,
                t.weight,
                t.stats.conns,
                t.stats.inpkts,
                t.stats.outpkts
            );
        }
        print!("{}", health.render());
        for r in &reports {
            let b = r.counters.balance();
            println!(
                "  worker {}: {} ({})",
                r.worker,
                b,
                if b.holds() { "balanced" } else { "DOES NOT BALANCE" }
            );
            println!(
                "  worker {} (queue {}, {}): rx {} tx {} tx_full {} handed out {} handoff_full {} sleeps {} (woken by a hand-off {})",
                r.worker,
                r.queue,
                r.core.map_or("unpinned".into(), |c| format!("cpu {c}")),
                r.io.rx,
                r.io.tx,
                r.io.tx_full,
                r.io.handed_out,
                r.handoff_full,
                r.io.sleeps,
                r.io.handoff_wakeups
            );
        }
    }
    match died {
        Some(what) => {
            eprintln!("xvs run: {what}; XDP programs detached, exit status 1");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

/// Detaches every XDP program of the process when a panic unwinds
/// through `run_director` (the main thread's own bugs): the process is
/// about to end, and the workers, on other threads, would never drop
/// their end of the director. Panics caught elsewhere never get here.
struct DetachOnUnwind;

impl Drop for DetachOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            xvs::io::xdp::emergency_detach_all();
        }
    }
}

/// What serves the operator while the director runs; stopped when dropped
/// (control socket first, so no command meets stopping workers).
struct Operator {
    handler: Arc<control::DaemonHandler>,
    _server: xvs::ctl::control::Server,
    _metrics: Option<xvs::stats::prom::Endpoint>,
    /// Before `_stats`: the monitor reads the hub.
    _monitor: Option<xvs::monitor::Monitor>,
    _stats: stats::StatsThread,
}

impl Operator {
    fn start(
        d: &Arc<xvs::daemon::Director>,
        health: &Arc<HealthCtl>,
        config: &std::path::Path,
        reloader: control::Reloader,
        listen: Listen,
        conf: config::DaemonConf,
        sync: (Arc<SyncService>, xvs::sync::conf::SyncConf),
    ) -> Result<Operator, String> {
        let hub = Arc::new(stats::StatsHub::new(d.clone()));
        let stats_thread = hub.spawn().map_err(|e| format!("starting the statistics thread: {e}"))?;
        let handler = Arc::new(
            control::DaemonHandler::new(d.clone(), hub.clone(), config, reloader)
                .with_health(health.clone())
                .with_checker(Box::new(run::check_model))
                .with_sync(sync.0, sync.1),
        );
        let socket = listen.socket.unwrap_or(conf.control_socket);
        let group = listen.socket_group.or(conf.control_socket_group);
        let server = handler.clone().serve_group(&socket, group).map_err(|e| e.to_string())?;
        let metrics = match listen.metrics.map_or(conf.metrics, |m| m.0) {
            None => None,
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
                let h = hub.clone();
                let ep = xvs::stats::prom::serve(l, move || h.metrics_text()).map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
                Some(ep)
            }
        };
        log::info!(
            "control socket {}; metrics {}",
            socket.display(),
            metrics.as_ref().map_or("off".to_string(), |m| format!("on http://{}/metrics", m.addr))
        );
        let ctx = xvs::monitor::Ctx { director: d.clone(), hub, handler: handler.clone(), health: Some(health.clone()) };
        let monitor = start_monitor(conf.monitor, listen.monitor, ctx)?;
        Ok(Operator { handler, _server: server, _metrics: metrics, _monitor: monitor, _stats: stats_thread })
    }
}

/// Starts the monitor when `[monitor]` or `--monitor` asks for it.
fn start_monitor(
    conf: Option<xvs::monitor::MonitorConf>,
    flag: Option<Metrics>,
    ctx: xvs::monitor::Ctx,
) -> Result<Option<xvs::monitor::Monitor>, String> {
    let conf = match (conf, flag) {
        (_, Some(Metrics(None))) | (None, None) => return Ok(None),
        (Some(c), None) => c,
        (c, Some(Metrics(Some(addr)))) => {
            xvs::monitor::MonitorConf { listen: Some(addr), ..c.unwrap_or_default() }
        }
    };
    if conf.listen.is_none() {
        return Ok(None);
    }
    let m = xvs::monitor::Monitor::start(&conf, ctx)?;
    log::info!(
        "monitor on https://{} ({} user(s)); certificate {}{}, SHA-256 fingerprint {}",
        m.addr,
        conf.users.len(),
        m.cert_path.display(),
        if m.generated { " (self-signed, made now)" } else { "" },
        m.fingerprint
    );
    Ok(Some(m))
}

/// `xvs passwd`: a password from the terminal (asked twice, not echoed)
/// or one line of standard input, hashed.
fn passwd() -> ExitCode {
    use std::io::{BufRead, IsTerminal};
    let read_line = || {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s).map(|_| s.trim_end_matches(['\n', '\r']).to_string())
    };
    let pw = if std::io::stdin().is_terminal() {
        let ask = |prompt: &str| -> std::io::Result<String> {
            eprint!("{prompt}");
            let _echo = xvs::monitor::auth::NoEcho::new();
            let r = read_line();
            eprintln!();
            r
        };
        match (ask("Password: "), ask("Again: ")) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("xvs passwd: the passwords differ");
                return ExitCode::from(1);
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("xvs passwd: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        match read_line() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("xvs passwd: {e}");
                return ExitCode::from(1);
            }
        }
    };
    match xvs::monitor::auth::hash_password(&pw) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvs passwd: {e}");
            ExitCode::from(2)
        }
    }
}

/// Starts connection sync for the running director's workers.
fn start_sync(d: &Arc<xvs::daemon::Director>, conf: xvs::sync::conf::SyncConf) -> Result<SyncService, String> {
    let links = (0..).map_while(|i| d.report_slot(i)).map(|s| s.sync.clone()).collect();
    let d2 = d.clone();
    let s = SyncService::start(links, Box::new(move || d2.snapshot()), conf.clone())?;
    for (role, dc) in [("master", &conf.master), ("backup", &conf.backup)] {
        if let Some(dc) = dc {
            log::info!("sync: {role} daemon on {} (syncid {})", dc.interface, dc.syncid);
        }
    }
    Ok(s)
}

fn check_config(path: PathBuf) -> ExitCode {
    match load(&path) {
        Ok(s) => {
            println!("{}: ok", path.display());
            println!(
                "  global: max_conns {} per worker, expire_nodest_conn {}, expire_quiescent_template {}, conn_reuse_mode {}, drop_entry {}, toa {}, sloppy_tcp {}, shard prefix /{} /{}, icmp errors {}/s burst {}",
                s.max_conns,
                s.expire_nodest_conn,
                s.expire_quiescent_template,
                s.conn_reuse_mode,
                s.drop_entry,
                s.toa,
                s.sloppy_tcp,
                s.shard_prefix.0,
                s.shard_prefix.1,
                s.icmp_limit.0,
                s.icmp_limit.1
            );
            for svc in &s.services {
                println!("  {} scheduler {} ({} real servers)", svc.key, svc.sched.name(), svc.dests.len());
                for d in &s.dests[svc.dests.clone()] {
                    let hop = match d.hop {
                        Some(h) => xvs::ctl::model::fmt_mac(&h.mac),
                        None => "no neighbour MAC: live, from the kernel".into(),
                    };
                    println!(
                        "    -> {} {} weight {} ({hop})",
                        xvs::ctl::snapshot::fmt_sock(d.addr, d.port),
                        d.fwd,
                        d.weight
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvs: {e}");
            ExitCode::from(2)
        }
    }
}
