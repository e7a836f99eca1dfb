//! The sync daemons: one control-plane thread (`xvs-sync`) that does what
//! IPVS's master and backup kernel threads do, plus bulk pulls over TCP.
//!
//! # Contract
//!
//! - **Master**: the thread drains every worker's event queue, packs the
//!   events into version 1 messages of at most `maxlen` bytes and sends
//!   each one when it is full or its first record has waited
//!   `send_delay`, to the multicast group out of the daemon's interface
//!   (TTL `ttl`, not looped back) or to every unicast peer. With
//!   `refresh_period` set it walks the workers' tables that often and
//!   syncs again every connection whose last packet is more recent.
//! - **Backup**: the thread takes messages on the group (or its unicast
//!   port), drops those of another sync id (unless its own is 0), and hands
//!   each record to the worker that owns it ([`crate::worker::sync_owner`])
//!   through its inbox; a full inbox keeps records back (up to
//!   [`PENDING`]) and tries again, then drops them, counted.
//! - Both say hello when they sent nothing for `hello`: an empty message
//!   whose trailer names this daemon's bulk port. Kernel receivers ignore it.
//! - **Bulk pull**: while it is not "in sync", a node with a backup
//!   daemon (or configured peers) asks a peer — a configured one, else the
//!   last one it heard — for its whole table over TCP (`bulk_port`), gets
//!   every connection as length-prefixed messages and an end marker with
//!   their count, hands them to its workers and is in sync once its
//!   workers' inboxes are empty. Every node with a running daemon serves
//!   pulls: it walks its workers' tables a slice per loop (`Walk`). A node
//!   that hears no peer within `pull_timeout` is in sync: there is nothing
//!   to pull.
//! - **Authentication** (a key file): everything sent is signed, and only
//!   messages whose MAC verifies and that pass the replay window are
//!   taken; the rest is counted and ignored.
//! - Bad messages are counted by reason ([`super::wire::DecodeError`],
//!   [`super::wire::RecordError`]) and never stop the thread.
//! - Nothing here runs on a worker: the workers only push to and pop from
//!   bounded lock-free queues ([`super::link`]).

use super::auth::{Auth, Replay, ReplayWindow};
use super::conf::{daemon_line, DaemonConf, Role, SyncConf};
use super::conn::SyncConn;
use super::link::{Link, Params, Refused, Walk, WalkKind};
use super::net;
use super::wire::{self, DecodeError, Decoded, Kind, MsgBuilder, RecordError, Trailer, MAC_LEN, TRAILER_LEN};
use crate::ctl::snapshot::Snapshot;
use crate::ipvs::timer;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Received records kept back while an inbox is full.
pub const PENDING: usize = 65536;
/// Largest message of the bulk stream.
const BULK_MAX: usize = 65000;
/// Pulls served at once.
const MAX_SERVED: usize = 4;
/// How long a walk waits for a worker's hand-back.
const WALK_WAIT: Duration = Duration::from_secs(5);

/// Where the current snapshot comes from (the director's published one).
pub type SnapSource = Box<dyn Fn() -> Arc<Snapshot> + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The sync figures (`xvsadm --sync-status`, metrics).
#[derive(Debug, Default)]
pub struct Stats {
    pub msgs_sent: AtomicU64,
    pub records_sent: AtomicU64,
    pub hellos_sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub encode_errors: AtomicU64,
    pub msgs_received: AtomicU64,
    pub records_received: AtomicU64,
    pub hellos_received: AtomicU64,
    pub decode_errors: [AtomicU64; 8],
    pub record_errors: [AtomicU64; 4],
    /// Records xvs cannot hold (persistence-engine data, a template of a
    /// protocol other than TCP and UDP).
    pub unsupported: AtomicU64,
    /// Unsigned or wrongly signed messages (authentication on).
    pub auth_failed: AtomicU64,
    pub replayed: AtomicU64,
    pub skewed: AtomicU64,
    pub other_syncid: AtomicU64,
    pub inbox_full: AtomicU64,
    pub pulls: AtomicU64,
    pub pull_errors: AtomicU64,
    pub pulled_records: AtomicU64,
    pub served: AtomicU64,
    pub served_records: AtomicU64,
    pub refreshes: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn decode_idx(e: DecodeError) -> usize {
    DecodeError::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

/// Where a node stands (for `--sync-status` and keepalived).
#[derive(Debug, Clone)]
struct Status {
    in_sync: bool,
    /// Why (or why not).
    note: String,
    /// Since when a daemon runs (the pull timeout counts from here).
    since: Option<Instant>,
    /// A peer answered a pull (then the timeout does not make us in sync).
    answered: bool,
    /// Peers heard since the start, never forgotten: (address, bulk port,
    /// when last).
    heard: Vec<(IpAddr, u16, Instant)>,
    last_error: Option<String>,
}

/// The sockets of the running daemons, opened by [`SyncService::apply`]
/// on the caller's thread (so a bad interface is the caller's error) and
/// handed to the sync thread.
struct Sockets {
    master: Option<(UdpSocket, Vec<SocketAddr>)>,
    backup: Option<(UdpSocket, UdpSocket, Vec<SocketAddr>)>,
    bulk: Option<TcpListener>,
    auth: Option<Arc<Auth>>,
    maxlen: [usize; 2],
}

/// Opens what `c` needs.
fn open(c: &SyncConf) -> Result<Sockets, String> {
    let auth = match &c.auth_key_file {
        None => None,
        Some(p) => {
            let k = std::fs::read(p).map_err(|e| format!("sync key {}: {e}", p.display()))?;
            let k = k.strip_suffix(b"\n").unwrap_or(&k);
            Some(Arc::new(Auth::new(k).map_err(|e| format!("sync key {}: {e}", p.display()))?))
        }
    };
    let dests = |d: &DaemonConf| -> Vec<SocketAddr> {
        if c.peers.is_empty() {
            vec![SocketAddr::new(d.group(), d.port())]
        } else {
            c.peers.iter().map(|p| SocketAddr::new(*p, d.port())).collect()
        }
    };
    let group = |d: &DaemonConf| if c.peers.is_empty() { Some(d.group()) } else { None };
    let v6 = |d: &DaemonConf| c.peers.first().map_or(d.group().is_ipv6(), |p| p.is_ipv6());
    let mut maxlen = [0; 2];
    let master = match &c.master {
        None => None,
        Some(d) => {
            d.validate().map_err(|(f, w)| format!("master: {f}: {w}"))?;
            let idx = net::ifindex(&d.interface).map_err(|_| format!("Unknown mcast interface: {}", d.interface))?;
            maxlen[0] = d.maxlen(Role::Master, net::mtu(&d.interface));
            let s = net::sender(group(d), v6(d), idx, d.ttl()).map_err(|e| format!("master sync daemon on {}: {e}", d.interface))?;
            Some((s, dests(d)))
        }
    };
    let backup = match &c.backup {
        None => None,
        Some(d) => {
            d.validate().map_err(|(f, w)| format!("backup: {f}: {w}"))?;
            let idx = net::ifindex(&d.interface).map_err(|_| format!("Unknown mcast interface: {}", d.interface))?;
            maxlen[1] = d.maxlen(Role::Backup, net::mtu(&d.interface));
            let r = net::receiver(group(d), v6(d), d.port(), &d.interface, idx)
                .map_err(|e| format!("backup sync daemon on {} port {}: {e}", d.interface, d.port()))?;
            let s = net::sender(group(d), v6(d), idx, d.ttl()).map_err(|e| format!("backup sync daemon on {}: {e}", d.interface))?;
            Some((r, s, dests(d)))
        }
    };
    let bulk = if master.is_some() || backup.is_some() {
        let l = TcpListener::bind(("::", c.bulk_port))
            .or_else(|_| TcpListener::bind(("0.0.0.0", c.bulk_port)))
            .map_err(|e| format!("bulk port {}: {e}", c.bulk_port))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Some(l)
    } else {
        None
    };
    Ok(Sockets { master, backup, bulk, auth, maxlen })
}

struct Shared {
    links: Vec<Arc<Link>>,
    snap: SnapSource,
    workers: u16,
    conf: Mutex<SyncConf>,
    /// Sockets for the thread to take (with the generation they go with).
    fresh: Mutex<Option<Sockets>>,
    gen: AtomicU64,
    /// The generation whose sockets the thread runs with (the old ones
    /// are closed).
    applied: AtomicU64,
    stop: AtomicBool,
    stats: Stats,
    status: Mutex<Status>,
    /// A table walk is under way (one at a time: a worker has one slot).
    walking: AtomicBool,
    walk_id: AtomicU64,
    sender: u64,
    seq: AtomicU64,
    served: AtomicU64,
    /// Replay window for bulk requests.
    requests: Mutex<ReplayWindow>,
}

impl Shared {
    fn trailer(&self, kind: Kind, bulk_port: u16, total: u32) -> Trailer {
        Trailer { kind, bulk_port, sender: self.sender, seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1, time_ms: now_ms(), total }
    }

    /// Hands a received connection to its owner's inbox; `false` when the
    /// inbox is full.
    fn dispatch(&self, snap: &Snapshot, sc: &SyncConn) -> bool {
        let o = crate::worker::sync_owner(snap, self.workers, sc) as usize;
        self.links.get(o).is_some_and(|l| l.inbox.push(*sc).is_ok())
    }

    fn inboxes_empty(&self) -> bool {
        self.links.iter().all(|l| l.inbox.is_empty())
    }

    /// Takes the walk slot, waiting up to `wait`.
    fn begin_walk(&self, wait: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self.walking.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return true;
            }
            if t0.elapsed() >= wait || self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn end_walk(&self) {
        self.walking.store(false, Ordering::Release);
    }

    /// Walks every worker's table, giving each hand-back's rows to `f`.
    /// Caller holds the walk slot.
    fn walk_all(&self, kind: WalkKind, mut f: impl FnMut(&[SyncConn]) -> io::Result<()>) -> io::Result<()> {
        for link in &self.links {
            let id = self.walk_id.fetch_add(1, Ordering::Relaxed) + 1;
            while link.take_walk().is_some() {}
            let mut w = Walk::new(id, kind);
            loop {
                if !link.post_walk(w) {
                    return Err(io::Error::other("a worker's walk slot is taken"));
                }
                let t0 = Instant::now();
                let back = loop {
                    match link.take_walk() {
                        Some(b) if b.id == id => break b,
                        Some(_) => {}
                        None if t0.elapsed() > WALK_WAIT || self.stop.load(Ordering::Relaxed) => {
                            // Take the request back if the worker never did.
                            let _ = link.next_walk();
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "a worker did not answer a table walk"));
                        }
                        None => std::thread::sleep(Duration::from_micros(500)),
                    }
                };
                f(&back.rows)?;
                if back.done {
                    break;
                }
                w = back;
                w.rows.clear();
            }
        }
        Ok(())
    }
}

/// What [`SyncService::view`] shows.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq)]
pub struct SyncView {
    /// `master`, `backup`, both (active-active) or none.
    pub roles: Vec<&'static str>,
    /// `-L --daemon`'s lines.
    pub daemons: Vec<String>,
    /// What `--sync-status` says with its exit code.
    pub in_sync: bool,
    /// Why (or why not).
    pub note: String,
    /// Peers heard since the start.
    pub peers: Vec<PeerView>,
    /// Connections sent and received in sync messages.
    pub sent: u64,
    pub received: u64,
    /// Events the workers' full queues dropped.
    pub events_dropped: u64,
    /// Received records the workers refused.
    pub refused: u64,
    /// Messages and records ignored (malformed, unauthenticated, replayed,
    /// skewed, unsupported, inbox full).
    pub ignored: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize, PartialEq)]
pub struct PeerView {
    pub addr: String,
    /// Since it was last heard.
    pub heard_ms: u64,
}

/// The sync service of a running director. See the module docs.
pub struct SyncService {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Serialises [`SyncService::apply`].
    applying: Mutex<()>,
}

impl SyncService {
    /// Starts the sync thread for workers joined by `links`, with `conf`.
    ///
    /// # Errors
    /// What `conf` needs and the system refuses (see [`SyncService::apply`]).
    pub fn start(links: Vec<Arc<Link>>, snap: SnapSource, conf: SyncConf) -> Result<SyncService, String> {
        let socks = open(&conf)?;
        let workers = links.len().max(1) as u16;
        let max_skew = conf.max_skew.as_millis() as u64;
        let running = conf.master.is_some() || conf.backup.is_some();
        let shared = Arc::new(Shared {
            links,
            snap,
            workers,
            conf: Mutex::new(conf),
            fresh: Mutex::new(Some(socks)),
            gen: AtomicU64::new(1),
            applied: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            status: Mutex::new(Status {
                in_sync: false,
                note: "no sync daemon runs".into(),
                since: running.then(Instant::now),
                answered: false,
                heard: Vec::new(),
                last_error: None,
            }),
            walking: AtomicBool::new(false),
            walk_id: AtomicU64::new(0),
            sender: random_u64(),
            seq: AtomicU64::new(0),
            served: AtomicU64::new(0),
            requests: Mutex::new(ReplayWindow::new(max_skew)),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xvs-sync".into())
            .spawn(move || Runner::new(sh).run())
            .map_err(|e| format!("starting the sync thread: {e}"))?;
        Ok(SyncService { shared, thread: Some(thread), applying: Mutex::new(()) })
    }

    /// The configuration in force.
    pub fn conf(&self) -> SyncConf {
        lock(&self.shared.conf).clone()
    }

    /// Replaces the configuration whole (a reload, a daemon started or
    /// stopped): opens what it needs first, so a refusal changes nothing.
    ///
    /// # Errors
    /// An interface that does not exist, a port in use, an unreadable or
    /// short key file, ...
    pub fn apply(&self, conf: SyncConf) -> Result<(), String> {
        let _one = lock(&self.applying);
        let old = lock(&self.shared.conf).clone();
        if old == conf {
            return Ok(());
        }
        // The old sockets go first (same ports), then the new ones open.
        *lock(&self.shared.conf) = conf.clone();
        *lock(&self.shared.fresh) = Some(Sockets { master: None, backup: None, bulk: None, auth: None, maxlen: [0; 2] });
        let g = self.shared.gen.fetch_add(1, Ordering::AcqRel) + 1;
        self.wait_applied(g);
        match open(&conf) {
            Ok(s) => {
                let started = (old.master.is_none() && old.backup.is_none()) && (conf.master.is_some() || conf.backup.is_some());
                // A node that becomes a backup pulls the table again: it may
                // have missed what its peer did meanwhile (a link down).
                let backup = old.backup.is_none() && conf.backup.is_some();
                {
                    let mut st = lock(&self.shared.status);
                    if started || backup {
                        st.since = Some(Instant::now());
                        st.answered = false;
                    }
                    if backup {
                        st.in_sync = false;
                        st.note = "pulling the table from a peer".into();
                    }
                    if conf.master.is_none() && conf.backup.is_none() {
                        st.since = None;
                    }
                }
                *lock(&self.shared.fresh) = Some(s);
                self.shared.gen.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                // Back to what ran.
                let back = open(&old);
                if let Err(b) = &back {
                    log::error!("sync: the previous configuration does not open again either: {b}");
                }
                *lock(&self.shared.conf) = old;
                *lock(&self.shared.fresh) = back.ok();
                self.shared.gen.fetch_add(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Waits (briefly) until the thread took the sockets handed to it.
    fn wait_applied(&self, g: u64) {
        let t0 = Instant::now();
        while self.shared.applied.load(Ordering::Acquire) < g && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `--start-daemon`: starts the daemon of `role`.
    ///
    /// # Errors
    /// One runs already, or [`SyncService::apply`]'s.
    pub fn start_daemon(&self, role: Role, d: DaemonConf) -> Result<(), String> {
        let mut c = self.conf();
        if c.daemon(role).is_some() {
            return Err(format!("the {role} sync daemon is already running (stop it first: --stop-daemon {role})"));
        }
        *c.daemon_mut(role) = Some(d);
        self.apply(c)
    }

    /// `--stop-daemon`: stops the daemon of `role`.
    ///
    /// # Errors
    /// None runs.
    pub fn stop_daemon(&self, role: Role) -> Result<(), String> {
        let mut c = self.conf();
        if c.daemon(role).is_none() {
            return Err(format!("No {role} sync daemon is running"));
        }
        *c.daemon_mut(role) = None;
        self.apply(c)
    }

    /// `-L --daemon`, as ipvsadm prints it.
    pub fn list(&self) -> String {
        let c = self.conf();
        let mut out = String::new();
        for role in [Role::Master, Role::Backup] {
            if let Some(d) = c.daemon(role) {
                out.push_str(&daemon_line(role, d, d.maxlen(role, net::mtu(&d.interface))));
            }
        }
        out
    }

    /// Whether this node holds its peers' connections (keepalived's
    /// `track_script` asks): a daemon runs and the table was pulled (or
    /// there was nobody to pull from).
    pub fn in_sync(&self) -> bool {
        let c = self.conf();
        (c.master.is_some() || c.backup.is_some()) && lock(&self.shared.status).in_sync
    }

    /// `xvsadm --sync-status`: where this node stands, and the counters.
    pub fn status_text(&self) -> String {
        let c = self.conf();
        let st = lock(&self.shared.status).clone();
        let s = &self.shared.stats;
        let mut o = String::new();
        let running = c.master.is_some() || c.backup.is_some();
        o.push_str(&format!(
            "sync: {}{}\n",
            if !running {
                "no sync daemon runs"
            } else if st.in_sync {
                "in sync"
            } else {
                "NOT in sync"
            },
            if running { format!(" ({})", st.note) } else { String::new() }
        ));
        o.push_str(&self.list());
        if let Some(e) = &st.last_error {
            o.push_str(&format!("last error: {e}\n"));
        }
        for (a, p, t) in &st.heard {
            o.push_str(&format!("peer {} (bulk port {p}) heard {:.1} s ago\n", SocketAddr::new(*a, *p).ip(), t.elapsed().as_secs_f64()));
        }
        let refused: Vec<String> = Refused::ALL
            .iter()
            .map(|r| (r.name(), self.shared.links.iter().map(|l| get(&l.stats.refused[*r as usize])).sum::<u64>()))
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let (added, updated, dropped) = self.shared.links.iter().fold((0, 0, 0), |(a, u, d), l| {
            (a + get(&l.stats.added), u + get(&l.stats.updated), d + l.events_dropped())
        });
        o.push_str(&format!(
            "sent: {} messages, {} connections, {} hellos; {} send errors; {} events dropped (queues full)\n",
            get(&s.msgs_sent),
            get(&s.records_sent),
            get(&s.hellos_sent),
            get(&s.send_errors),
            dropped
        ));
        o.push_str(&format!(
            "received: {} messages, {} connections, {} hellos; added {added}, updated {updated}, refused {}\n",
            get(&s.msgs_received),
            get(&s.records_received),
            get(&s.hellos_received),
            if refused.is_empty() { "0".to_string() } else { refused.join(", ") }
        ));
        let dec: u64 = s.decode_errors.iter().map(get).sum();
        let rec: u64 = s.record_errors.iter().map(get).sum();
        // Which records, by reason, when there were any.
        let why: Vec<String> = RecordError::ALL
            .iter()
            .zip(&s.record_errors)
            .filter(|(_, n)| get(n) > 0)
            .map(|(e, n)| format!("{} {}", e.name(), get(n)))
            .collect();
        let rec = if why.is_empty() { format!("{rec} unusable records") } else { format!("{rec} unusable records ({})", why.join(", ")) };
        o.push_str(&format!(
            "ignored: {dec} malformed messages, {rec}, {} unsupported, {} unauthenticated, {} replayed, {} clock skew, {} other syncid, {} inbox full\n",
            get(&s.unsupported),
            get(&s.auth_failed),
            get(&s.replayed),
            get(&s.skewed),
            get(&s.other_syncid),
            get(&s.inbox_full)
        ));
        o.push_str(&format!(
            "bulk: {} pulls ({} connections, {} errors), {} served ({} connections); {} refresh walks\n",
            get(&s.pulls),
            get(&s.pulled_records),
            get(&s.pull_errors),
            get(&s.served),
            get(&s.served_records),
            get(&s.refreshes)
        ));
        o
    }

    /// Where this node stands, for the monitor's page (what `--sync-status`
    /// prints, as data).
    pub fn view(&self) -> SyncView {
        let c = self.conf();
        let st = lock(&self.shared.status).clone();
        let s = &self.shared.stats;
        let running = c.master.is_some() || c.backup.is_some();
        let mut roles = Vec::new();
        if c.master.is_some() {
            roles.push("master");
        }
        if c.backup.is_some() {
            roles.push("backup");
        }
        let refused: u64 =
            self.shared.links.iter().map(|l| l.stats.refused.iter().map(get).sum::<u64>()).sum::<u64>();
        let ignored = s.decode_errors.iter().map(get).sum::<u64>()
            + s.record_errors.iter().map(get).sum::<u64>()
            + [&s.unsupported, &s.auth_failed, &s.replayed, &s.skewed, &s.inbox_full].into_iter().map(get).sum::<u64>();
        SyncView {
            roles,
            daemons: self.list().lines().map(str::to_string).collect(),
            in_sync: running && st.in_sync,
            note: if running { st.note } else { "no sync daemon runs".into() },
            peers: st.heard.iter().map(|(a, _, t)| PeerView { addr: a.to_string(), heard_ms: t.elapsed().as_millis() as u64 }).collect(),
            sent: get(&s.records_sent),
            received: get(&s.records_received),
            events_dropped: self.shared.links.iter().map(|l| l.events_dropped()).sum(),
            refused,
            ignored,
            last_error: st.last_error,
        }
    }

    /// The counters (tests, metrics).
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// This node's sender id (in every trailer it sends).
    pub fn sender_id(&self) -> u64 {
        self.shared.sender
    }

    /// Stops the thread (the workers stop producing events).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncService {
    fn drop(&mut self) {
        self.halt();
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // Time and pid: unique enough to tell restarts apart.
        let t = now_ms() ^ ((std::process::id() as u64) << 40);
        return t | 1;
    }
    u64::from_ne_bytes(b) | 1
}

/// Writes one length-prefixed message to a bulk stream.
fn write_frame(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(&(msg.len() as u32).to_be_bytes())?;
    s.write_all(msg)
}

/// Reads one length-prefixed message (at most 65535 bytes).
fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut l = [0u8; 4];
    s.read_exact(&mut l)?;
    let n = u32::from_be_bytes(l) as usize;
    if n > wire::MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bulk message of {n} bytes")));
    }
    buf.resize(n, 0);
    s.read_exact(buf)
}

/// Signs a finished message in place when there is a key.
fn sign(auth: &Option<Arc<Auth>>, msg: &mut [u8]) {
    if let Some(a) = auth {
        let mac = a.sign(wire::sign_range(msg));
        wire::put_mac(msg, &mac);
    }
}

/// What a backup daemon makes of one received datagram, before its
/// records go to the workers ([`admit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Refused whole by the decoder.
    Malformed(DecodeError),
    /// Authentication on: no trailer or MAC, or a MAC that does not verify.
    Auth,
    /// Authentication on: its counter was seen before.
    Replay,
    /// Authentication on: its clock is too far from ours.
    Skew,
    /// This node's own message (looped back).
    Own,
    /// A hello: no records.
    Hello,
    /// A bulk-stream message on the datagram port.
    NotData,
    /// For another sync id.
    OtherSyncid,
    /// Connection records to take (`Decoded::records`).
    Data,
}

/// Decodes `msg` into `d` and checks it as the backup daemon does: its
/// MAC and replay window when there is a key (`auth`), whose it is (`me`,
/// this node's sender id), its kind, its sync id (`want`, 0: any). Only
/// [`Admit::Data`] hands records on. Also the fuzz target's entry
/// (`xvs::fuzz::sync`).
pub fn admit(msg: &[u8], d: &mut Decoded, auth: Option<&Auth>, win: &mut ReplayWindow, now_ms: u64, me: u64, want: u8) -> Admit {
    if let Err(e) = wire::decode(msg, d) {
        return Admit::Malformed(e);
    }
    if let Some(a) = auth {
        let (Some(t), Some(mac)) = (d.trailer, d.mac) else { return Admit::Auth };
        if !a.verify(&msg[..d.signed], &mac) {
            return Admit::Auth;
        }
        match win.check(t.sender, t.seq, t.time_ms, now_ms) {
            Ok(()) => {}
            Err(Replay::Seen) => return Admit::Replay,
            Err(Replay::Skew) => return Admit::Skew,
        }
    }
    if let Some(t) = d.trailer {
        if t.sender == me {
            return Admit::Own;
        }
        if t.kind == Kind::Hello {
            return Admit::Hello;
        }
        if t.kind != Kind::Data {
            return Admit::NotData;
        }
    }
    if want != 0 && d.syncid != want {
        return Admit::OtherSyncid;
    }
    Admit::Data
}

/// What a message's trailer and MAC say about it, with a key.
enum Check {
    Ok,
    Auth,
    Replay,
    Skew,
}

fn check(auth: &Option<Arc<Auth>>, d: &Decoded, msg: &[u8], win: &mut ReplayWindow) -> Check {
    let Some(a) = auth else { return Check::Ok };
    let (Some(t), Some(mac)) = (d.trailer, d.mac) else { return Check::Auth };
    if !a.verify(&msg[..d.signed], &mac) {
        return Check::Auth;
    }
    match win.check(t.sender, t.seq, t.time_ms, now_ms()) {
        Ok(()) => Check::Ok,
        Err(Replay::Seen) => Check::Replay,
        Err(Replay::Skew) => Check::Skew,
    }
}

/// A pull's outcome: connections pulled, or (whether the peer answered, why).
type PullResult = Result<u64, (bool, String)>;

/// The thread's state.
struct Runner {
    sh: Arc<Shared>,
    conf: SyncConf,
    gen: u64,
    master: Option<(UdpSocket, Vec<SocketAddr>)>,
    backup: Option<(UdpSocket, UdpSocket, Vec<SocketAddr>)>,
    bulk: Option<TcpListener>,
    auth: Option<Arc<Auth>>,
    window: ReplayWindow,
    out: MsgBuilder,
    first_at: Option<Instant>,
    last_sent: [Instant; 2],
    pending: VecDeque<SyncConn>,
    decoded: Decoded,
    buf: Vec<u8>,
    pull: Option<(SocketAddr, JoinHandle<PullResult>)>,
    /// Bulk addresses that turned out to be this node.
    myself: Vec<SocketAddr>,
    next_pull: Instant,
    next_refresh: Option<Instant>,
}

impl Runner {
    fn new(sh: Arc<Shared>) -> Runner {
        let conf = lock(&sh.conf).clone();
        let skew = conf.max_skew.as_millis() as u64;
        Runner {
            sh,
            conf,
            gen: 0,
            master: None,
            backup: None,
            bulk: None,
            auth: None,
            window: ReplayWindow::new(skew),
            out: MsgBuilder::new(0, 1472),
            first_at: None,
            last_sent: [Instant::now(); 2],
            pending: VecDeque::new(),
            decoded: Decoded::default(),
            buf: vec![0; 65536],
            pull: None,
            myself: Vec::new(),
            next_pull: Instant::now(),
            next_refresh: None,
        }
    }

    fn run(mut self) {
        while !self.sh.stop.load(Ordering::Relaxed) {
            let g = self.sh.gen.load(Ordering::Acquire);
            if g != self.gen {
                self.reconfigure(g);
            }
            let mut busy = self.master_tick();
            busy |= self.backup_tick();
            self.accept_pulls();
            self.pull_tick();
            self.refresh_tick();
            if !busy {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Workers stop producing events; a last partial message goes out.
        self.flush();
        for l in &self.sh.links {
            l.set_params(Params { master: false, ..Params::default() });
        }
        if let Some((_, p)) = self.pull.take() {
            let _ = p.join();
        }
    }

    fn reconfigure(&mut self, g: u64) {
        let Some(s) = lock(&self.sh.fresh).take() else {
            return;
        };
        self.gen = g;
        self.flush();
        // The old sockets close here, before anything else: the caller
        // opens the new ones on the same ports as soon as these are taken.
        self.master = s.master;
        self.backup = s.backup;
        self.bulk = s.bulk;
        self.auth = s.auth;
        self.sh.applied.store(g, Ordering::Release);
        self.conf = lock(&self.sh.conf).clone();
        self.window = ReplayWindow::new(self.conf.max_skew.as_millis() as u64);
        let syncid = self.conf.master.as_ref().map_or(0, |d| d.syncid);
        self.out = MsgBuilder::new(syncid, if s.maxlen[0] > 0 { s.maxlen[0] } else { 1472 });
        self.first_at = None;
        self.next_refresh = (self.master.is_some() && !self.conf.refresh_period.is_zero()).then(|| Instant::now() + self.conf.refresh_period);
        let p = Params {
            master: self.master.is_some(),
            threshold: self.conf.threshold,
            period: self.conf.period,
            syn_recv: self.conf.syn_recv,
        };
        for l in &self.sh.links {
            l.set_params(p);
        }
        // With no daemon the node is not in sync ([`SyncService::in_sync`]),
        // but it keeps what it pulled: a role switch (stop one daemon,
        // start the other) does not pull again unless a backup starts.
        let mut st = lock(&self.sh.status);
        if (self.master.is_some() || self.backup.is_some()) && !st.in_sync {
            st.note = "pulling the table from a peer".into();
        }
    }

    fn reserve(&self) -> usize {
        TRAILER_LEN + if self.auth.is_some() { MAC_LEN } else { 0 }
    }

    /// Sends the message being built (if any) as the master.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let bulk_port = self.conf.bulk_port;
        let t = self.sh.trailer(Kind::Data, bulk_port, 0);
        let n = self.out.count() as u64;
        let auth = self.auth.clone();
        let msg = self.out.finish(Some(&t), auth.is_some());
        sign(&auth, msg);
        if let Some((s, dests)) = &self.master {
            let mut ok = false;
            for d in dests {
                match s.send_to(msg, d) {
                    Ok(_) => ok = true,
                    Err(_) => inc(&self.sh.stats.send_errors),
                }
            }
            if ok {
                inc(&self.sh.stats.msgs_sent);
                add(&self.sh.stats.records_sent, n);
                self.last_sent[0] = Instant::now();
            }
        }
        self.out.clear();
        self.first_at = None;
    }

    /// Adds one connection to the master's message (sending what is full).
    fn add(&mut self, sc: &SyncConn) {
        let r = sc.to_record();
        let reserve = self.reserve();
        for _ in 0..2 {
            match self.out.push(&r, reserve) {
                Ok(true) => {
                    self.first_at.get_or_insert_with(Instant::now);
                    return;
                }
                Ok(false) => self.flush(),
                Err(_) => break,
            }
        }
        inc(&self.sh.stats.encode_errors);
    }

    fn hello(&self, s: &UdpSocket, dests: &[SocketAddr], syncid: u8) -> bool {
        let mut b = MsgBuilder::new(syncid, 256);
        let t = self.sh.trailer(Kind::Hello, self.conf.bulk_port, 0);
        let msg = b.finish(Some(&t), self.auth.is_some());
        sign(&self.auth, msg);
        let mut ok = false;
        for d in dests {
            ok |= s.send_to(msg, d).is_ok();
        }
        if ok {
            inc(&self.sh.stats.hellos_sent);
        }
        ok
    }

    fn master_tick(&mut self) -> bool {
        if self.master.is_none() {
            return false;
        }
        let mut n = 0;
        for i in 0..self.sh.links.len() {
            while n < 8192 {
                let Some(ev) = self.sh.links[i].events.pop() else { break };
                self.add(&ev);
                n += 1;
            }
        }
        if self.first_at.is_some_and(|t| t.elapsed() >= self.conf.send_delay) {
            self.flush();
        }
        if self.last_sent[0].elapsed() >= self.conf.hello {
            if let Some((s, d)) = &self.master {
                let syncid = self.conf.master.as_ref().map_or(0, |m| m.syncid);
                if self.hello(s, d, syncid) {
                    self.last_sent[0] = Instant::now();
                }
            }
        }
        n > 0
    }

    fn backup_tick(&mut self) -> bool {
        // Records kept back from full inboxes go first.
        if !self.pending.is_empty() {
            let snap = (self.sh.snap)();
            while let Some(sc) = self.pending.front() {
                if !self.sh.dispatch(&snap, sc) {
                    break;
                }
                self.pending.pop_front();
            }
        }
        let Some((r, s, d)) = self.backup.take() else { return false };
        let mut buf = std::mem::take(&mut self.buf);
        let mut got = 0;
        while got < 256 {
            match r.recv_from(&mut buf) {
                Ok((n, from)) => {
                    got += 1;
                    self.take(&buf[..n], from);
                }
                Err(_) => break,
            }
        }
        self.buf = buf;
        let syncid = self.conf.backup.as_ref().map_or(0, |b| b.syncid);
        if self.last_sent[1].elapsed() >= self.conf.hello && self.hello(&s, &d, syncid) {
            self.last_sent[1] = Instant::now();
        }
        self.backup = Some((r, s, d));
        got > 0
    }

    /// One datagram received by the backup daemon.
    fn take(&mut self, msg: &[u8], from: SocketAddr) {
        let st = &self.sh.stats;
        let mut d = std::mem::take(&mut self.decoded);
        let want = self.conf.backup.as_ref().map_or(0, |b| b.syncid);
        let v = admit(msg, &mut d, self.auth.as_deref(), &mut self.window, now_ms(), self.sh.sender, want);
        if let (Some(t), Admit::Hello | Admit::NotData | Admit::OtherSyncid | Admit::Data) = (d.trailer, v) {
            if t.bulk_port != 0 {
                let mut s = lock(&self.sh.status);
                s.heard.retain(|(a, _, _)| *a != from.ip());
                s.heard.push((from.ip(), t.bulk_port, Instant::now()));
            }
        }
        let counter = match v {
            Admit::Data => None,
            Admit::Malformed(e) => Some(&st.decode_errors[decode_idx(e)]),
            Admit::Auth => Some(&st.auth_failed),
            Admit::Replay => Some(&st.replayed),
            Admit::Skew => Some(&st.skewed),
            Admit::Own => {
                self.decoded = d;
                return;
            }
            Admit::Hello => Some(&st.hellos_received),
            Admit::NotData => Some(&st.decode_errors[decode_idx(DecodeError::BadTrailer)]),
            Admit::OtherSyncid => Some(&st.other_syncid),
        };
        if let Some(c) = counter {
            inc(c);
            self.decoded = d;
            return;
        }
        inc(&st.msgs_received);
        let snap = (self.sh.snap)();
        for r in &d.records {
            match r {
                Err(e) => inc(&st.record_errors[record_idx(*e)]),
                Ok(r) => {
                    inc(&st.records_received);
                    match SyncConn::from_record(r) {
                        None => inc(&st.unsupported),
                        Some(sc) => {
                            if !self.pending.is_empty() || !self.sh.dispatch(&snap, &sc) {
                                if self.pending.len() < PENDING {
                                    self.pending.push_back(sc);
                                } else {
                                    inc(&st.inbox_full);
                                }
                            }
                        }
                    }
                }
            }
        }
        self.decoded = d;
    }

    /// Starts serving a pull for each waiting connection (bounded).
    fn accept_pulls(&mut self) {
        let Some(l) = &self.bulk else { return };
        while let Ok((s, _)) = l.accept() {
            if self.sh.served.load(Ordering::Relaxed) as usize >= MAX_SERVED {
                drop(s);
                continue;
            }
            self.sh.served.fetch_add(1, Ordering::Relaxed);
            let (sh, auth) = (self.sh.clone(), self.auth.clone());
            let spawned = std::thread::Builder::new().name("xvs-sync-bulk".into()).spawn(move || {
                let r = serve_pull(&sh, s, &auth);
                if let Err(e) = r {
                    log::warn!("sync: serving a bulk pull: {e}");
                }
                sh.served.fetch_sub(1, Ordering::Relaxed);
            });
            if spawned.is_err() {
                self.sh.served.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts a pull when one is needed, and collects a finished one.
    fn pull_tick(&mut self) {
        if let Some((_, h)) = &self.pull {
            if !h.is_finished() {
                return;
            }
            let Some((peer, h)) = self.pull.take() else { return };
            let r = Some(h.join());
            let mut st = lock(&self.sh.status);
            match r {
                Some(Ok(Err((_, e)))) if e == MYSELF => {
                    self.myself.push(peer);
                    self.sh.stats.pulls.fetch_sub(1, Ordering::Relaxed);
                }
                Some(Ok(Ok(n))) => {
                    st.in_sync = true;
                    st.answered = true;
                    st.note = format!("pulled {n} connection(s)");
                    st.last_error = None;
                    log::info!("sync: in sync: pulled {n} connection(s) from a peer");
                }
                Some(Ok(Err((answered, e)))) => {
                    inc(&self.sh.stats.pull_errors);
                    st.answered |= answered;
                    st.last_error = Some(e.clone());
                    log::warn!("sync: bulk pull: {e}");
                    self.next_pull = Instant::now() + Duration::from_secs(1);
                }
                _ => self.next_pull = Instant::now() + Duration::from_secs(1),
            }
            return;
        }
        let running = self.master.is_some() || self.backup.is_some();
        let wants = self.backup.is_some() || !self.conf.peers.is_empty();
        let mut st = lock(&self.sh.status);
        if !running || st.in_sync || Instant::now() < self.next_pull {
            return;
        }
        if !wants {
            // A master alone, with nobody configured to pull from.
            st.in_sync = true;
            st.note = "master only: nothing to pull".into();
            return;
        }
        let mut cands: Vec<SocketAddr> = self.conf.peers.iter().map(|p| SocketAddr::new(*p, self.conf.bulk_port)).collect();
        let mut heard = st.heard.clone();
        heard.sort_by_key(|h| std::cmp::Reverse(h.2));
        cands.extend(heard.iter().map(|(a, p, _)| SocketAddr::new(*a, *p)));
        cands.retain(|c| !self.myself.contains(c));
        // Nothing to pull only when no peer ever answered or said hello:
        // a node that heard a peer keeps trying (after a link down it must
        // not take over with a stale table).
        let timed_out = st.since.is_some_and(|t| t.elapsed() >= self.conf.pull_timeout) && st.heard.is_empty() && !st.answered;
        if cands.is_empty() || timed_out {
            if timed_out {
                st.in_sync = true;
                st.note = format!("no peer answered within {:?}: nothing to pull", self.conf.pull_timeout);
                log::info!("sync: in sync: no peer to pull from");
            }
            return;
        }
        drop(st);
        let n = get(&self.sh.stats.pulls) as usize;
        let peer = cands[n % cands.len()];
        inc(&self.sh.stats.pulls);
        let (sh, auth, skew) = (self.sh.clone(), self.auth.clone(), self.conf.max_skew.as_millis() as u64);
        self.pull = std::thread::Builder::new().name("xvs-sync-pull".into()).spawn(move || pull(&sh, peer, &auth, skew)).ok().map(|h| (peer, h));
    }

    /// The master's `sync_refresh_period` pass.
    fn refresh_tick(&mut self) {
        let Some(at) = self.next_refresh else { return };
        if Instant::now() < at || self.master.is_none() {
            return;
        }
        self.next_refresh = Some(Instant::now() + self.conf.refresh_period);
        if !self.sh.begin_walk(Duration::ZERO) {
            return;
        }
        let ticks = timer::secs(self.conf.refresh_period.as_secs().max(1) as u32);
        let mut rows = Vec::new();
        let r = self.sh.walk_all(WalkKind::Recent { ticks }, |r| {
            rows.extend_from_slice(r);
            Ok(())
        });
        self.sh.end_walk();
        if r.is_ok() {
            inc(&self.sh.stats.refreshes);
        }
        for sc in &rows {
            self.add(sc);
        }
        self.flush();
    }
}

fn record_idx(e: RecordError) -> usize {
    RecordError::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

/// Serves one bulk pull on `s`.
fn serve_pull(sh: &Arc<Shared>, mut s: TcpStream, auth: &Option<Arc<Auth>>) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    read_frame(&mut s, &mut buf)?;
    let mut d = Decoded::default();
    wire::decode(&buf, &mut d).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bulk request: {e}")))?;
    let Some(req) = d.trailer.filter(|t| t.kind == Kind::BulkRequest) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a bulk request"));
    };
    if req.sender == sh.sender {
        // A peer list that names this node too: tell it it asked itself.
        let mut b = MsgBuilder::new(0, 256);
        let t = sh.trailer(Kind::BulkRequest, 0, 0);
        let msg = b.finish(Some(&t), auth.is_some());
        sign(auth, msg);
        write_frame(&mut s, msg)?;
        linger_out(s);
        return Ok(());
    }
    match check(auth, &d, &buf, &mut lock(&sh.requests)) {
        Check::Ok => {}
        Check::Auth => {
            inc(&sh.stats.auth_failed);
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "bulk request not authenticated"));
        }
        Check::Replay | Check::Skew => {
            inc(&sh.stats.replayed);
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "bulk request replayed"));
        }
    }
    if !sh.begin_walk(Duration::from_secs(10)) {
        return Err(io::Error::other("another table walk is under way"));
    }
    let reserve = TRAILER_LEN + if auth.is_some() { MAC_LEN } else { 0 };
    let mut b = MsgBuilder::new(0, BULK_MAX);
    let mut total: u32 = 0;
    let send = |b: &mut MsgBuilder, s: &mut TcpStream| -> io::Result<()> {
        let t = sh.trailer(Kind::Data, 0, 0);
        let msg = b.finish(Some(&t), auth.is_some());
        sign(auth, msg);
        write_frame(s, msg)?;
        b.clear();
        Ok(())
    };
    let r = sh.walk_all(WalkKind::All, |rows| {
        for sc in rows {
            let rec = sc.to_record();
            if !b.push(&rec, reserve).unwrap_or(true) {
                send(&mut b, &mut s)?;
                let _ = b.push(&rec, reserve);
            }
            total += 1;
        }
        Ok(())
    });
    sh.end_walk();
    r?;
    if !b.is_empty() {
        send(&mut b, &mut s)?;
    }
    let t = sh.trailer(Kind::BulkEnd, 0, total);
    b.clear();
    let msg = b.finish(Some(&t), auth.is_some());
    sign(auth, msg);
    write_frame(&mut s, msg)?;
    linger_out(s);
    inc(&sh.stats.served);
    add(&sh.stats.served_records, total as u64);
    Ok(())
}

/// Lets the client close first, so that TIME_WAIT stays on its side and
/// the bulk port can be bound again at once (a daemon restarted).
fn linger_out(mut s: TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 64];
    while matches!(s.read(&mut b), Ok(n) if n > 0) {}
}

/// What a pull from this very node says.
const MYSELF: &str = "that peer is this node";

/// Pulls the whole table from `peer`. `Err((answered, why))`.
fn pull(sh: &Arc<Shared>, peer: SocketAddr, auth: &Option<Arc<Auth>>, skew: u64) -> PullResult {
    let fail = |answered: bool| move |e: io::Error| (answered, format!("{peer}: {e}"));
    let mut s = TcpStream::connect_timeout(&peer, Duration::from_secs(2)).map_err(fail(false))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(fail(true))?;
    let _ = s.set_nodelay(true);
    let mut b = MsgBuilder::new(0, 256);
    let t = sh.trailer(Kind::BulkRequest, 0, 0);
    let req = b.finish(Some(&t), auth.is_some());
    sign(auth, req);
    write_frame(&mut s, req).map_err(fail(true))?;
    let mut win = ReplayWindow::new(skew);
    let mut buf = Vec::new();
    let mut d = Decoded::default();
    let mut n: u64 = 0;
    loop {
        if sh.stop.load(Ordering::Relaxed) {
            return Err((true, "stopping".into()));
        }
        read_frame(&mut s, &mut buf).map_err(fail(true))?;
        wire::decode(&buf, &mut d).map_err(|e| (true, format!("{peer}: bulk message: {e}")))?;
        if !matches!(check(auth, &d, &buf, &mut win), Check::Ok) {
            inc(&sh.stats.auth_failed);
            return Err((true, format!("{peer}: a bulk message failed authentication")));
        }
        let Some(t) = d.trailer else {
            return Err((true, format!("{peer}: a bulk message without a trailer")));
        };
        if t.kind == Kind::BulkRequest && t.sender == sh.sender {
            return Err((false, MYSELF.into()));
        }
        if t.kind == Kind::BulkEnd {
            if t.total as u64 != n {
                return Err((true, format!("{peer}: the end marker counts {} connections, {n} came", t.total)));
            }
            break;
        }
        let snap = (sh.snap)();
        for r in &d.records {
            n += 1;
            let Ok(r) = r else { continue };
            let Some(sc) = SyncConn::from_record(r) else {
                inc(&sh.stats.unsupported);
                continue;
            };
            // Wait for room: the stream waits with us (TCP flow control).
            let t0 = Instant::now();
            while !sh.dispatch(&snap, &sc) {
                if t0.elapsed() > Duration::from_secs(10) || sh.stop.load(Ordering::Relaxed) {
                    return Err((true, "the workers do not take the pulled connections".into()));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    add(&sh.stats.pulled_records, n);
    let t0 = Instant::now();
    while !sh.inboxes_empty() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err((true, "the workers did not apply the pulled connections in time".into()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
