//! Starting and stopping the live director: AF_XDP setup, worker threads,
//! core placement, cross-worker hand-off and the kernel watcher.
//!
//! # Contract
//!
//! - [`start`] checks the environment (root, AF_XDP, the interfaces and
//!   their queues), reads the kernel's view of the interfaces, builds the
//!   [`Director`], attaches the XDP steering program and binds one AF_XDP
//!   socket per (interface, queue) on one shared UMEM ([`XdpIo`]), then
//!   starts one pinned worker thread per queue and the [`NetWatcher`].
//!   Anything that fails is undone and reported as a [`RunError`].
//! - Ownership is decided before the workers start ([`super::rss`]): with
//!   several workers and a NIC whose RSS can be set to the addresses and
//!   read back, flows to VIPs that are not client-owned belong to the
//!   worker of the queue the NIC delivers them to (`Snapshot::rss`);
//!   otherwise to the client hash. One log line says which and why.
//! - Worker `i` owns queue `i` of every interface. A frame whose flow
//!   another worker owns (see `worker::flow_hash`; FULLNAT replies by their
//!   local port) is handed to the owner through the owner's bounded
//!   lock-free inbox ([`INBOX`] frame descriptors, the frame itself stays
//!   in the shared UMEM); a full inbox drops the frame, counted as
//!   `handoff_full`. An owner that sleeps (adaptive polling) is woken by
//!   the hand-off: the sender checks the owner's "asleep" flag once per
//!   burst and writes the owner's eventfd only when it is up ([`Inbox`]),
//!   so a handed frame does not wait for the owner's sleep to time out.
//! - Workers check the snapshot generation once per loop and switch
//!   snapshots between bursts; they publish reports every
//!   [`REPORT_INTERVAL`] and a last one when they stop. A loop that
//!   handled frames is timed (from its clock read to the next loop's) into
//!   the report's burst histogram; between bursts a worker carries on any
//!   connection listing asked of it (`daemon::conns`).
//! - What a worker gives back to the kernel (`Verdict::Pass`: a real
//!   server's own traffic, ...) goes through the kernel path
//!   ([`xdp::kpath`]): copied into the worker's bounded queue, written to
//!   a TAP device by a thread, re-injected at the interface it came in on.
//!   A full queue drops the frame, counted as `kernel_full`. Without a
//!   kernel path (no /dev/net/tun) they are counted so too.
//! - [`Running::stop`] stops the workers, closes their sockets, stops the
//!   watcher and then detaches the XDP programs (on the calling thread),
//!   and returns the final reports.

use super::director::Director;
use super::kernel::{Monitor, NetError, Rtnl, Unresolved};
use super::report::{Reporter, WorkerReport, REPORT_INTERVAL};
use crate::ctl::model::Model;
use crate::ctl::snapshot::ModelError;
use crate::ipvs::mem::Provider;
use crate::io::xdp::kpath::{KernelMode, KernelPath, KernelPort, KernelStats, KernelTx};
use crate::io::xdp::{
    self, AttachMode, Attached, BindMode, Fate, Handed, Inbox, PollMode, QueueIo, XdpConfig,
    XdpError, XdpIo, MAX_BURST,
};
use crate::stats::{DropReason, PassReason};
use crate::wire::Frame;
use crate::worker::{Verdict, Worker, BURST};
use arrayvec::ArrayVec;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames a worker's hand-off inbox holds.
pub const INBOX: usize = 4096;
/// Connections a worker expires per pass when it has no traffic.
const IDLE_EXPIRE_BUDGET: usize = 1024;
/// Index buckets an idle loop moves while a table's index grows.
const IDLE_MIGRATE_BUDGET: usize = 256;
/// How often an idle worker runs expiry.
const IDLE_EXPIRE_EVERY: Duration = Duration::from_millis(100);
/// Longest sleep of an adaptive worker: its timers (reports, expiry,
/// connection listings) are checked at least this often. Frames wake it
/// sooner: its sockets' and, with several workers, its inbox's doorbell.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Why the director could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Privileges(#[from] super::privs::Missing),
    #[error("reading this process's capabilities: {0}")]
    NoCapabilities(std::io::Error),
    #[error("no interfaces: name them with -i or [[interface]] in the config")]
    NoInterfaces,
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("configuration: {0}")]
    Model(#[from] ModelError),
    #[error("interface '{iface}' has {have} queue(s); {want} worker(s) need {want} (raise it with `ethtool -L {iface} combined {want}`, or create a veth with `numrxqueues {want} numtxqueues {want}`)")]
    Queues {
        iface: String,
        have: usize,
        want: usize,
    },
    #[error("service {service}: local address {laddr} is the source the director's kernel uses to reach real server {rs}: the answers to its own traffic from there (health checks, ssh) would be taken by the workers as FULLNAT replies and lost. Give FULLNAT a dedicated local address (e.g. `ip addr add ADDR/32 dev IF`)")]
    LocalIsSource {
        service: String,
        laddr: std::net::IpAddr,
        /// As ipvsadm prints it (`10.0.1.1:80`).
        rs: String,
    },
    #[error("--workers {0}: at least 1 and at most 256")]
    Workers(usize),
    #[error("--cores: CPU {cpu} is not one this process may run on (allowed: {allowed:?})")]
    Core { cpu: usize, allowed: Vec<usize> },
    #[error("{0}")]
    Ownership(String),
}

impl RunError {
    /// True for errors in what the operator asked for (exit code 2), false
    /// for the environment refusing (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::NoInterfaces
                | RunError::Model(_)
                | RunError::LocalIsSource { .. }
                | RunError::Workers(_)
                | RunError::Core { .. }
        )
    }
}

/// Options of `xvs run` beyond the model.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The director's interfaces (port order).
    pub interfaces: Vec<String>,
    /// Workers (= queues bound on every interface); `None`: as many as the
    /// interfaces have queues, at most the usable CPUs.
    pub workers: Option<usize>,
    pub poll: PollMode,
    /// CPUs to pin workers to (worker i on `cores[i % len]`); `None`: see
    /// [`placement`].
    pub cores: Option<Vec<usize>>,
    pub bind: BindMode,
    pub attach: AttachMode,
    /// How workers own flows (`[global] ownership`, [`super::rss`]).
    pub ownership: super::rss::Ownership,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            interfaces: Vec::new(),
            workers: None,
            poll: PollMode::default(),
            cores: None,
            bind: BindMode::Auto,
            attach: AttachMode::Auto,
            ownership: super::rss::Ownership::Auto,
        }
    }
}

/// Queues of `iface` an AF_XDP socket can bind (the lower of its RX and
/// TX queue counts, from sysfs).
pub fn queue_count(iface: &str) -> usize {
    let count = |prefix: &str| {
        std::fs::read_dir(Path::new("/sys/class/net").join(iface).join("queues"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .count()
            })
            .unwrap_or(1)
    };
    count("rx-").min(count("tx-")).max(1)
}

/// Drivers of paravirtual NICs, which may pass a partial checksum from a
/// sender on the same host through to XDP (virtio_net lets XDP coexist
/// with its guest checksum offload on newer kernels).
const PARAVIRTUAL: &[&str] = &["virtio_net", "vif", "xen-netfront", "hv_netvsc", "vmxnet3"];

/// Whether frames received on `link` always carry complete checksums: a
/// device its driver made (`kernel::Link::nic`), the one sysfs shows
/// under that name (same ifindex: sysfs may be another namespace's), on
/// a bus device whose driver is not a paravirtual one. Anything else
/// (veth, tun, a paravirtual NIC, a device we cannot tell) is tested for
/// partial checksums (`Worker::set_nic_port`).
pub fn full_checksums(link: &super::kernel::Link) -> bool {
    if !link.nic {
        return false;
    }
    let dir = Path::new("/sys/class/net").join(&link.name);
    let index = std::fs::read_to_string(dir.join("ifindex")).ok().and_then(|s| s.trim().parse::<u32>().ok());
    let driver = std::fs::read_link(dir.join("device/driver")).ok();
    let driver = driver.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy());
    index == Some(link.index) && driver.is_some_and(|d| !PARAVIRTUAL.contains(&d.as_ref()))
}

/// Where the workers run: worker `i` on the returned CPU.
///
/// With `cores` given, worker `i` goes to `cores[i % len]`. Otherwise, from
/// the CPUs this process may use: when there are more of them than
/// workers, the first one is left to the kernel (its softirq/NAPI work, the
/// control threads) and the workers take the next ones; with as many
/// workers as CPUs or more, they share all of them round robin. On a
/// 2-CPU machine one worker runs on CPU 1 and two workers on CPUs 0 and 1.
///
/// # Errors
/// A CPU in `cores` that the process may not use.
pub fn placement(
    workers: usize,
    cores: Option<&[usize]>,
    allowed: &[usize],
) -> Result<Vec<Option<usize>>, RunError> {
    if let Some(c) = cores.filter(|c| !c.is_empty()) {
        if let Some(&cpu) = c.iter().find(|x| !allowed.contains(x)) {
            return Err(RunError::Core {
                cpu,
                allowed: allowed.to_vec(),
            });
        }
        return Ok((0..workers).map(|i| Some(c[i % c.len()])).collect());
    }
    if allowed.is_empty() {
        return Ok(vec![None; workers]);
    }
    let usable = if allowed.len() > workers {
        &allowed[1..]
    } else {
        allowed
    };
    Ok((0..workers)
        .map(|i| Some(usable[i % usable.len()]))
        .collect())
}

fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|v| v.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Monotonic nanoseconds for the workers' clocks (starts at 1 s, as the
/// replay clock does).
fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
}

/// A running director.
pub struct Running {
    director: Arc<Director>,
    workers: Vec<JoinHandle<()>>,
    /// The tables' memory provider and its thread.
    mem: Option<(Provider, JoinHandle<()>)>,
    watcher: Option<NetWatcher>,
    /// CPU of each worker.
    pub placement: Vec<Option<usize>>,
    /// Whether each port runs in zero-copy mode (from worker 0's sockets).
    pub zerocopy: Vec<bool>,
    /// XDP programs of crashed runs that were removed at start.
    pub stale_removed: Vec<(String, u32)>,
    /// The way back to the kernel (`None` when it could not be set up).
    kernel: Option<KernelPath>,
}

/// Refuses a FULLNAT local address that the kernel would use as the
/// source towards one of the service's real servers: the steering program
/// gives every TCP/UDP packet to a local address to the workers, so the
/// answers to the kernel's own connections from it (health checks) would
/// be lost. Checked at start, and before every reload and xvsadm change
/// ([`check_model`]).
fn check_local_addresses(model: &Model, rtnl: &mut Rtnl) -> Result<(), RunError> {
    for s in &model.services {
        if s.laddrs.is_empty() {
            continue;
        }
        for d in s.dests.iter().filter(|d| d.fwd == crate::ipvs::FwdMethod::FullNat) {
            if let Some(src) = rtnl.route_source(d.addr)? {
                if s.laddrs.contains(&src) {
                    return Err(RunError::LocalIsSource { service: s.key.to_string(), laddr: src, rs: crate::ctl::snapshot::fmt_sock(d.addr, d.port) });
                }
            }
        }
    }
    Ok(())
}

/// The start-up check of FULLNAT local addresses for a changed or
/// reloaded model (run in the daemon's network namespace, on the control
/// thread; a control-plane [`crate::daemon::control::Checker`]).
///
/// # Errors
/// The reason, for the operator: a local address the kernel uses as its
/// own source, or the kernel could not be asked.
pub fn check_model(model: &Model) -> Result<(), String> {
    let mut rtnl = Rtnl::open().map_err(|e| e.to_string())?;
    check_local_addresses(model, &mut rtnl).map_err(|e| e.to_string())
}

/// Starts the director. See the module docs.
///
/// # Errors
/// See [`RunError`]; nothing stays attached or bound.
pub fn start(model: Model, cfg: &RunConfig) -> Result<Running, RunError> {
    if cfg.interfaces.is_empty() {
        return Err(RunError::NoInterfaces);
    }
    let mut rtnl = Rtnl::open()?;
    let tables = rtnl.tables()?;
    check_local_addresses(&model, &mut rtnl)?;
    for i in &cfg.interfaces {
        if !tables.links.iter().any(|l| &l.name == i) {
            return Err(NetError::NoInterface(i.clone()).into());
        }
    }
    let have = cfg
        .interfaces
        .iter()
        .map(|i| (i, queue_count(i)))
        .min_by_key(|(_, n)| *n)
        .map(|(i, n)| (i.clone(), n));
    let allowed = allowed_cpus();
    let workers = match cfg.workers {
        Some(w) if w == 0 || w > 256 => return Err(RunError::Workers(w)),
        Some(w) => w,
        None => have
            .as_ref()
            .map_or(1, |(_, n)| *n)
            .min(allowed.len().max(1)),
    };
    if let Some((iface, n)) = have.filter(|(_, n)| *n < workers) {
        return Err(RunError::Queues {
            iface,
            have: n,
            want: workers,
        });
    }
    // Privileges before the first privileged call, so a missing one is
    // named rather than met half-way; the UMEM is sized as XdpIo::open
    // sizes it (for the memlock limit).
    let probe = XdpConfig { interfaces: cfg.interfaces.clone(), ..XdpConfig::default() };
    super::privs::Privileges::current()
        .map_err(RunError::NoCapabilities)?
        .check(probe.chunks_per_queue() as u64 * probe.frame_size as u64 * workers as u64)?;
    xdp::af_xdp_available()?;
    let placement = placement(workers, cfg.cores.as_deref(), &allowed)?;
    let laddrs: Vec<std::net::IpAddr> = model.services.iter().flat_map(|s| s.laddrs.iter().copied()).collect();

    // Ports that are NICs deliver complete checksums: their workers skip
    // the partial checksum test (Worker::set_nic_port).
    let nics: Arc<[bool]> = cfg
        .interfaces
        .iter()
        .map(|i| tables.links.iter().any(|l| &l.name == i && full_checksums(l)))
        .collect();
    let director = Arc::new(Director::with_kernel(
        model,
        cfg.interfaces.clone(),
        tables,
        workers,
    )?);
    // Ownership: where the NIC delivers a flow, if it lets itself be
    // followed (super::rss); before any worker runs.
    let decision = match super::rss::Ethtool::open() {
        Ok(mut nic) => super::rss::decide(cfg.ownership, &cfg.interfaces, workers as u16, &mut nic),
        Err(e) if cfg.ownership == super::rss::Ownership::Rss => Err(format!("[global] ownership = \"rss\": no ethtool socket: {e}")),
        Err(e) => Ok(super::rss::Decision { map: None, why: format!("ownership: hash (the client address's hash): no ethtool socket: {e}") }),
    }
    .map_err(RunError::Ownership)?;
    log::info!("{}", decision.why);
    if let Some(map) = decision.map {
        director.set_rss(Some(Arc::new(map)))?;
        // FULLNAT replies are owned by their local port: the NIC can bring
        // them to the owner only with ntuple rules, which xvs leaves to the
        // operator (they outlive the process and the local addresses).
        if !laddrs.is_empty() {
            match super::rss::fullnat_rules(&laddrs, workers as u16) {
                Some(rules) => log::info!(
                    "FULLNAT replies are handed off unless the NIC steers them to their owner; with ntuple filters on \
                     (`ethtool -K IF ntuple on`), e.g.: {}{}",
                    rules.iter().take(4).map(|r| r.command(&cfg.interfaces[0])).collect::<Vec<_>>().join("; "),
                    if rules.len() > 4 { format!("; ... ({} rules per interface, docs/operations.md)", rules.len()) } else { String::new() }
                ),
                None => log::info!("FULLNAT replies are handed off: {workers} workers is no power of two, no ntuple mask can name a port's owner"),
            }
        }
    }
    let xcfg = XdpConfig {
        interfaces: cfg.interfaces.clone(),
        queues: (0..workers as u32).collect(),
        attach: cfg.attach,
        bind: cfg.bind,
        poll: cfg.poll,
        ..XdpConfig::default()
    };
    let (io, queues) = XdpIo::open(&xcfg)?;
    let stale_removed = io.steering().stale_removed().to_vec();
    let zerocopy = (0..cfg.interfaces.len())
        .map(|p| queues[0].zerocopy(p))
        .collect();
    let (kernel, mut ktx) = match kernel_path(&director, &io, workers) {
        Ok((k, t)) => {
            log::info!("kernel path: {} ({:?})", k.taps().join(", "), k.mode());
            (Some(k), t.into_iter().map(Some).collect())
        }
        Err(e) => {
            log::warn!("no kernel path ({e}): frames for the kernel that reach the workers are dropped (kernel_full)");
            (None, (0..workers).map(|_| None).collect::<Vec<_>>())
        }
    };
    director.set_rule_sink(Box::new(io))?;

    let inboxes: Arc<Vec<Inbox<Handed>>> = Arc::new(
        (0..workers)
            .map(|_| Inbox::new(INBOX))
            .collect::<Result<_, _>>()
            .map_err(|e| XdpError::Sys { iface: "-".into(), op: "eventfd (hand-off inbox)", source: e })?,
    );
    // The connection tables' memory is faulted in ahead of need by a
    // thread of its own, so that no worker waits for the kernel to zero
    // pages while its table grows (ipvs::mem). Without it the workers map
    // their own.
    let mem = Provider::new();
    let mem_thread = match mem.spawn() {
        Ok(h) => Some(h),
        Err(e) => {
            log::warn!("no memory provider thread ({e}): workers fault their tables' memory in themselves");
            None
        }
    };
    let mut handles = Vec::with_capacity(workers);
    for (i, q) in queues.into_iter().enumerate() {
        let ctx = WorkerCtx {
            id: i as u16,
            workers: workers as u16,
            core: placement[i],
            io: q,
            director: director.clone(),
            inboxes: inboxes.clone(),
            kernel: ktx[i].take(),
            mem: mem_thread.as_ref().map(|_| mem.clone()),
            nics: nics.clone(),
        };
        let h = std::thread::Builder::new()
            .name(format!("xvs-worker-{i}"))
            .spawn(move || worker_main(ctx));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                director.stop();
                for h in handles {
                    let _ = h.join();
                }
                mem.stop();
                drop(director.take_rule_sink());
                return Err(XdpError::Sys {
                    iface: "-".into(),
                    op: "spawn worker thread",
                    source: e,
                }
                .into());
            }
        }
    }
    let watcher = NetWatcher::spawn(director.clone(), rtnl);
    Ok(Running {
        director,
        workers: handles,
        mem: mem_thread.map(|h| (mem, h)),
        watcher: Some(watcher),
        placement,
        zerocopy,
        stale_removed,
        kernel,
    })
}

/// The kernel path for the director's ports (in port order): frames are
/// re-injected at their interface's ingress when every steering program
/// runs in driver mode, else received on the TAP itself.
fn kernel_path(director: &Director, io: &XdpIo, workers: usize) -> Result<(KernelPath, Vec<KernelTx>), XdpError> {
    let net = director.net();
    let st = io.steering();
    let mut ports = Vec::new();
    let mut native = true;
    for (i, p) in net.ports.iter().enumerate() {
        ports.push(KernelPort { name: p.name.clone(), ifindex: xdp::ifindex(&p.name)?, mac: p.mac, mtu: p.mtu as u32 });
        native &= st.mode(i) == Some(Attached::Native);
    }
    let mode = if native { KernelMode::Ingress } else { KernelMode::Tap };
    if mode == KernelMode::Tap && crate::io::xdp::kpath::rp_filter_all() != 0 {
        log::warn!(
            "kernel path: the steering program runs in generic mode, so frames for the kernel are received on the TAP devices, \
             and net.ipv4.conf.all.rp_filter is on: the kernel drops them (set it to 0)"
        );
    }
    KernelPath::open(&ports, workers, mode)
}

impl Running {
    /// The director (apply models, read counters).
    pub fn director(&self) -> &Arc<Director> {
        &self.director
    }

    /// A thread the director cannot forward without that has ended
    /// although nobody asked it to stop — a worker, or the kernel watcher
    /// (they end only by panicking): joined, and described with its panic
    /// message for the log. The caller should [`Running::stop`] (which
    /// detaches the XDP programs) and exit non-zero, so that a supervisor
    /// restarts the director: its queue would otherwise be redirected to a
    /// socket nobody reads. A panic caught on purpose elsewhere (a control
    /// request, a health check task) ends no such thread and detaches
    /// nothing.
    pub fn dead_thread(&mut self) -> Option<String> {
        if let Some(i) = self.workers.iter().position(|h| h.is_finished()) {
            let h = self.workers.remove(i);
            let name = h.thread().name().unwrap_or("a worker").to_string();
            return Some(format!("{name} died: {}", ended(h.join())));
        }
        if self.watcher.as_ref().is_some_and(|w| w.handle.is_finished()) {
            let w = self.watcher.take()?;
            return Some(format!("the netlink watcher died: {}", ended(w.handle.join())));
        }
        None
    }

    /// The kernel path's counters (zero without one).
    pub fn kernel_stats(&self) -> KernelStats {
        self.kernel.as_ref().map(|k| k.stats()).unwrap_or_default()
    }

    /// Stops everything (see the module docs) and returns the workers'
    /// final reports and the kernel path's counters.
    pub fn stop(mut self) -> (Vec<Arc<WorkerReport>>, KernelStats) {
        self.director.stop();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if let Some((p, h)) = self.mem.take() {
            p.stop();
            let _ = h.join();
        }
        if let Some(w) = self.watcher.take() {
            w.stop();
        }
        // Detach the XDP programs here, after the sockets are closed.
        drop(self.director.take_rule_sink());
        // The kernel path's writer empties its queues before it stops:
        // its counters are final only then.
        let ks = self.kernel.take().map(KernelPath::finish).unwrap_or_default();
        (self.director.reports(), ks)
    }
}

/// How a joined thread ended, for the log: its panic message.
fn ended(r: std::thread::Result<()>) -> String {
    match r {
        Ok(()) => "it returned".into(),
        Err(p) => match (p.downcast_ref::<&str>(), p.downcast_ref::<String>()) {
            (Some(s), _) => format!("panicked: {s}"),
            (_, Some(s)) => format!("panicked: {s}"),
            _ => "panicked".into(),
        },
    }
}

struct WorkerCtx {
    id: u16,
    workers: u16,
    core: Option<usize>,
    io: QueueIo,
    director: Arc<Director>,
    inboxes: Arc<Vec<Inbox<Handed>>>,
    kernel: Option<KernelTx>,
    mem: Option<Provider>,
    /// By port: a NIC (`kernel::Link::nic`).
    nics: Arc<[bool]>,
}

/// Runs the worker on a burst and turns its verdicts into the driver's
/// fates; what is the kernel's is copied to the kernel path.
#[inline]
fn run_burst(
    w: &mut Worker,
    verdicts: &mut [Verdict; MAX_BURST],
    frames: &mut [Frame<'_>],
    ports: &[u8],
    fates: &mut [Fate],
    now: u64,
    kernel: &mut Option<KernelTx>,
) {
    for (f, &p) in frames.iter_mut().zip(ports) {
        f.port = p;
    }
    let n = frames.len().min(MAX_BURST);
    w.process_burst(&mut frames[..n], &mut verdicts[..n], now);
    for ((fate, v), f) in fates.iter_mut().zip(&verdicts[..n]).zip(frames.iter()) {
        *fate = match *v {
            Verdict::Tx { port } => Fate::Tx { port },
            Verdict::Handoff { worker } => Fate::Handoff { worker },
            Verdict::Drop(_) => Fate::Recycle,
            // AF_XDP cannot give a frame back to the kernel: a copy goes
            // through the kernel path.
            Verdict::Pass(r) => {
                to_kernel(w, kernel, f, r);
                Fate::Recycle
            }
        };
    }
    if let Some(k) = kernel {
        k.flush();
    }
}

/// Sends the frames the worker made beside its burst's (fragments of
/// tunnelled datagrams), each copied into a free chunk, on the TX ring of
/// its port — in the same loop turn as the burst's first fragments.
#[inline]
fn send_staged(io: &mut QueueIo, w: &mut Worker) {
    w.drain_staged(|port, bytes| {
        io.send_new(port, 1, |_, f| {
            let at = f.head;
            match f.buf.get_mut(at..at + bytes.len()) {
                Some(b) => {
                    b.copy_from_slice(bytes);
                    f.len = bytes.len();
                    true
                }
                None => false,
            }
        }) == 1
    });
}

#[cold]
#[inline(never)]
fn to_kernel(w: &mut Worker, kernel: &mut Option<KernelTx>, f: &Frame<'_>, r: PassReason) {
    if !kernel.as_mut().is_some_and(|k| k.push(f.port, f.data())) {
        w.count_kernel_full(r);
    }
}

fn worker_main(mut ctx: WorkerCtx) {
    if let Some(c) = ctx.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
            log::warn!(
                "worker {}: could not pin to CPU {c}; running unpinned",
                ctx.id
            );
            ctx.core = None;
        }
    }
    let published = ctx.director.published();
    let Some(slot) = ctx.director.report_slot(ctx.id as usize) else {
        return;
    };
    let mut sync = crate::worker::SyncPort::new(slot.sync.clone());
    let mut reporter = Reporter::new(slot);
    let mut worker = Worker::new(ctx.id, ctx.workers, published.load(), clock_ns());
    if let Some(p) = &ctx.mem {
        worker.attach_memory(p);
    }
    // The indexes at the size max_conns needs, faulted in before the
    // first burst (docs/performance.md, "SYN storm without page faults").
    worker.presize_tables();
    for (p, &nic) in ctx.nics.iter().enumerate() {
        worker.set_nic_port(p as u8, nic);
    }
    let mut gen = worker.snapshot().generation;
    let mut verdicts = [Verdict::Drop(DropReason::Truncated); MAX_BURST];
    let mut refused: ArrayVec<Handed, MAX_BURST> = ArrayVec::new();
    let report_ns = REPORT_INTERVAL.as_nanos() as u64;
    let expire_ns = IDLE_EXPIRE_EVERY.as_nanos() as u64;
    let mut next_report = clock_ns() + report_ns;
    let mut next_expire = clock_ns() + expire_ns;
    let me = ctx.id as usize;
    let meta = (ctx.io.queue(), ctx.core);
    let io = &mut ctx.io;
    let inboxes = &*ctx.inboxes;
    // Start of the last loop that handled frames: the next loop's clock
    // read ends it (one clock read per loop).
    let mut busy_since: Option<u64> = None;
    // Compiled out of release builds (see `daemon::fault`).
    let fault = me == 0 && super::fault::armed(super::fault::Fault::WorkerPanic);

    while !published.stopping() {
        if published.generation() != gen {
            let s = published.load();
            gen = s.generation;
            worker.set_snapshot(s);
        }
        let now = clock_ns();
        if let Some(t) = busy_since.take() {
            reporter.record_burst(now.saturating_sub(t));
        }
        let kernel = &mut ctx.kernel;
        let mut handled = io.burst(BURST, |f, p, fa| {
            run_burst(&mut worker, &mut verdicts, f, p, fa, now, kernel)
        });
        // Frames handed to a worker whose inbox is full are dropped; the
        // worker's counters learn of them, and of what the TX rings
        // refused, so that they count what really happened.
        let pass_on = |io: &mut QueueIo, refused: &mut ArrayVec<Handed, MAX_BURST>, worker: &mut Worker| {
            // The workers this burst handed frames to, woken once each
            // after the burst's pushes (a worker id is below 256).
            let mut to_wake = [0u64; 4];
            io.take_handoffs(|to, h| {
                let pushed = match inboxes.get(to as usize) {
                    Some(q) => q.push(h),
                    None => Err(h),
                };
                match pushed {
                    Ok(()) => to_wake[(to as usize >> 6) & 3] |= 1 << (to & 63),
                    Err(h) => refused.push(h),
                }
            });
            for (i, mut bits) in to_wake.into_iter().enumerate() {
                while bits != 0 {
                    inboxes[i * 64 + bits.trailing_zeros() as usize].wake();
                    bits &= bits - 1;
                }
            }
            let mut r = io.take_refused();
            for h in refused.drain(..) {
                io.recycle_handed(h);
                r.handoff_full += 1;
            }
            if !r.is_empty() {
                worker.count_refused(&r);
            }
        };
        pass_on(io, &mut refused, &mut worker);
        send_staged(io, &mut worker);
        if ctx.workers > 1 {
            let inbox = &inboxes[me];
            let n = io.burst_handed(
                std::iter::from_fn(|| inbox.pop()).take(BURST),
                |f, p, fa| run_burst(&mut worker, &mut verdicts, f, p, fa, now, kernel),
            );
            worker.count_handed_in(n);
            handled += n;
            pass_on(io, &mut refused, &mut worker);
            send_staged(io, &mut worker);
        }
        if handled == 0 && now >= next_expire {
            worker.set_clock(now);
            worker.expire(IDLE_EXPIRE_BUDGET);
            next_expire = now + expire_ns;
        }
        if handled == 0 {
            // An idle worker finishes a growing index's drain sooner.
            worker.maintain(IDLE_MIGRATE_BUDGET);
        }
        if now >= next_report {
            reporter.publish(&worker, io.stats(), meta, false);
            next_report = now + report_ns;
        }
        reporter.serve_probe(&worker, now);
        // Connection sync: new parameters, received connections, walks.
        worker.set_clock(now);
        sync.serve(&mut worker);
        if handled > 0 {
            busy_since = Some(now);
            if fault {
                panic!("test fault {}: worker 0 panics", super::fault::Fault::WorkerPanic.name());
            }
        }
        match inboxes.get(me).filter(|_| ctx.workers > 1) {
            Some(inbox) => io.idle_inbox(handled, MAX_SLEEP, inbox),
            None => io.idle(handled, MAX_SLEEP),
        };
    }
    // Frames still waiting for this worker go back to their pools.
    if let Some(inbox) = inboxes.get(me) {
        while let Some(h) = inbox.pop() {
            io.recycle_handed(h);
        }
    }
    reporter.publish(&worker, io.stats(), meta, true);
}

/// The thread that keeps the director's view of the kernel current: it
/// dumps links, addresses, routes and neighbours on every
/// rtnetlink notification (coalesced) and at least every
/// [`NetWatcher::REFRESH`], feeds them to [`Director::kernel_update`], and
/// prompts the kernel to resolve (or re-verify) the next hops the director
/// lists.
pub struct NetWatcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl NetWatcher {
    /// Longest time between two dumps.
    pub const REFRESH: Duration = Duration::from_secs(1);

    /// Starts the watcher on `rtnl`'s namespace (the calling thread's).
    pub fn spawn(director: Arc<Director>, rtnl: Rtnl) -> NetWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("xvs-netwatch".into())
            .spawn(move || watch(director, rtnl, s))
            .expect("spawning the netlink watcher thread");
        NetWatcher { stop, handle }
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

fn watch(director: Arc<Director>, mut rtnl: Rtnl, stop: Arc<AtomicBool>) {
    let mut mon = match Monitor::open() {
        Ok(m) => Some(m),
        Err(e) => {
            log::warn!(
                "no rtnetlink notifications ({e}); polling the kernel every {:?}",
                NetWatcher::REFRESH
            );
            None
        }
    };
    let mut last = Instant::now();
    let mut last_err = String::new();
    let mut pending: BTreeSet<Unresolved> = director.unresolved().into_iter().collect();
    for u in &pending {
        log::info!("resolving next hop {} on {}", u.addr, u.iface);
        let _ = rtnl.prompt(u.index, u.addr);
    }
    if pending.is_empty() {
        log::info!("{}", super::LOG_HOPS_RESOLVED);
    }
    // A publication (xvsadm, a reload, the health checker) may bring a
    // real server whose neighbour nobody asked for yet: it is asked for
    // at the next turn (200 ms at most), not at the next refresh; the
    // schedulers pass over the server until then.
    let mut seen = director.published().generation();
    while !stop.load(Ordering::Relaxed) {
        let event = match mon.as_mut() {
            Some(m) => m.wait(Duration::from_millis(200)),
            None => {
                std::thread::sleep(Duration::from_millis(200));
                false
            }
        };
        let published = director.published().generation() != seen;
        if !event && !published && last.elapsed() < NetWatcher::REFRESH {
            continue;
        }
        if event {
            // Changes come in bursts (a link up brings addresses, routes,
            // neighbours): take them as one.
            std::thread::sleep(Duration::from_millis(20));
            if let Some(m) = mon.as_mut() {
                m.wait(Duration::ZERO);
            }
        }
        last = Instant::now();
        let gen = director.published().generation();
        let res = rtnl
            .tables()
            .map_err(|e| e.to_string())
            .and_then(|t| director.kernel_update(t).map_err(|e| e.to_string()));
        seen = director.published().generation();
        match res {
            Ok(todo) => {
                last_err.clear();
                if director.published().generation() != gen {
                    log::info!(
                        "kernel network changed: snapshot {} published",
                        director.published().generation()
                    );
                }
                let unresolved: BTreeSet<Unresolved> = director.unresolved().into_iter().collect();
                for u in unresolved.difference(&pending) {
                    log::info!("resolving next hop {} on {}", u.addr, u.iface);
                }
                for u in pending.difference(&unresolved) {
                    log::info!("next hop {} on {} resolved", u.addr, u.iface);
                }
                if unresolved.is_empty() && !pending.is_empty() {
                    log::info!("{}", super::LOG_HOPS_RESOLVED);
                }
                pending = unresolved;
                for u in todo {
                    if let Err(e) = rtnl.prompt(u.index, u.addr) {
                        log::debug!("prompting neighbour {} on {}: {e}", u.addr, u.iface);
                    }
                }
            }
            Err(e) => {
                if e != last_err {
                    log::warn!("kernel network view not applied (the running one stays): {e}");
                    last_err = e;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_leaves_the_first_cpu_to_the_kernel_when_it_can() {
        assert_eq!(placement(1, None, &[0, 1]).unwrap(), vec![Some(1)]);
        assert_eq!(placement(2, None, &[0, 1]).unwrap(), vec![Some(0), Some(1)]);
        assert_eq!(
            placement(3, None, &[0, 1]).unwrap(),
            vec![Some(0), Some(1), Some(0)]
        );
        assert_eq!(
            placement(2, None, &[0, 1, 2, 3]).unwrap(),
            vec![Some(1), Some(2)]
        );
        assert_eq!(placement(2, None, &[]).unwrap(), vec![None, None]);
    }

    #[test]
    fn explicit_cores_are_used_round_robin_and_checked() {
        assert_eq!(placement(3, Some(&[1]), &[0, 1]).unwrap(), vec![Some(1); 3]);
        assert_eq!(
            placement(2, Some(&[1, 0]), &[0, 1]).unwrap(),
            vec![Some(1), Some(0)]
        );
        let e = placement(1, Some(&[5]), &[0, 1]).unwrap_err();
        assert!(e.to_string().contains("CPU 5"), "{e}");
        assert!(e.is_usage());
    }

    #[test]
    fn queue_count_of_a_missing_interface_is_one() {
        assert_eq!(queue_count("xvs-none-such0"), 1);
        assert!(queue_count("lo") >= 1);
    }

    /// Only a bus device with a NIC's driver counts as delivering complete
    /// checksums: not lo (no device), not a link sysfs shows under
    /// another index, not a virtual one, not a paravirtual NIC.
    #[test]
    fn full_checksums_only_from_a_real_nics_driver() {
        use crate::daemon::kernel::Link;
        let link = |name: &str, index: u32, nic: bool| Link { index, name: name.into(), mac: None, mtu: 1500, up: true, upper: None, nic };
        let lo: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex").map_or(1, |s| s.trim().parse().unwrap_or(1));
        assert!(!full_checksums(&link("lo", lo, true)), "no bus device");
        assert!(!full_checksums(&link("xvs-none-such0", 7, true)));
        for d in std::fs::read_dir("/sys/class/net").unwrap().filter_map(|e| e.ok()) {
            let name = d.file_name().to_string_lossy().into_owned();
            let Some(index) = std::fs::read_to_string(d.path().join("ifindex")).ok().and_then(|s| s.trim().parse().ok()) else { continue };
            assert!(!full_checksums(&link(&name, index, false)), "{name}: a kind");
            assert!(!full_checksums(&link(&name, index + 1000, true)), "{name}: another namespace's");
            let drv = std::fs::read_link(d.path().join("device/driver")).ok();
            if drv.is_some_and(|p| p.ends_with("virtio_net")) {
                assert!(!full_checksums(&link(&name, index, true)), "{name}: virtio_net");
            }
        }
    }

    #[test]
    fn start_refuses_without_interfaces() {
        let e = start(Model::default(), &RunConfig::default())
            .err()
            .unwrap();
        assert!(matches!(e, RunError::NoInterfaces));
        assert!(e.is_usage());
    }
}
