//! The XDP steering program: load, attach, rules, detach.
//!
//! # Contract
//!
//! - [`Steering::attach`] loads one instance of `steer.bpf.c` per interface
//!   (each interface needs its own XSKMAP: a socket only accepts frames of
//!   the device and queue it is bound to) and attaches it in driver mode,
//!   falling back to generic (skb) mode where the driver has no XDP (or as
//!   [`AttachMode`] says).
//! - Before attaching it takes a lock per interface (`flock` on
//!   `/run/xvs/xdp-<netns>-<ifindex>.lock`, or in `$RUNTIME_DIRECTORY`
//!   when systemd or a test sets it; released by the kernel when the
//!   process dies; the file is removed on a clean exit). With the lock held, an attached program named
//!   [`PROG_NAME`] can only be left over from a crashed run: it is removed
//!   ([`Steering::stale_removed`] tells). Any other program is not ours and
//!   attaching fails with [`XdpError::ForeignProgram`].
//! - Dropping the [`Steering`] detaches every program it attached (only if
//!   it is still the one attached), from any thread: requests go through
//!   a netlink socket opened in the interface's namespace at attach time. [`DetachHandle::detach_now`] and
//!   [`emergency_detach_all`] do the same from a signal handler or a panic
//!   hook: they are async-signal-safe (one netlink request each, on stack
//!   memory, through a socket opened at attach time in the right namespace).
//! - [`Steering::set_rules`] replaces the rule set: new keys are inserted
//!   before stale ones are deleted, so a rule present before and after never
//!   has a gap.

use super::sys::{self, BpfObject};
use super::XdpError;
use crate::ipvs::service::{Group, Service, ServiceKey};
use crate::ipvs::{FwdMethod, Proto};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// The program's name in the kernel; how a stale instance is recognised.
pub const PROG_NAME: &str = "xvs_steer";
/// Entries of the XSKMAP: the highest queue index + 1 xvs can bind.
pub const MAX_QUEUES: u32 = 256;
/// Entries of the rules map (each [`Rule`] takes one or two).
pub const MAX_RULE_KEYS: usize = 65536;
/// Where the per-interface locks live (unless `$RUNTIME_DIRECTORY` says).
pub const LOCK_DIR: &str = "/run/xvs";

/// The lock directory: the first of systemd's `$RUNTIME_DIRECTORY` (the
/// unit's `RuntimeDirectory=`, writable by its user), else [`LOCK_DIR`].
fn lock_dir() -> PathBuf {
    std::env::var("RUNTIME_DIRECTORY")
        .ok()
        .and_then(|v| v.split(':').next().filter(|d| !d.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(LOCK_DIR))
}

static STEER_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// Which XDP attach mode to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode, else generic mode when the driver lacks XDP.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// The mode a program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

impl Attached {
    fn flag(self) -> u32 {
        match self {
            Attached::Native => sys::XDP_FLAGS_DRV_MODE,
            Attached::Generic => sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

/// One class of service traffic the program sends to the sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// TCP/UDP to a virtual service; port 0 = every port of the VIP. ICMP
    /// errors and fragments to the VIP follow.
    Vip {
        proto: Proto,
        addr: IpAddr,
        port: u16,
    },
    /// TCP/UDP and ICMP errors to a FULLNAT local address.
    LocalAddr(IpAddr),
    /// Replies from a NAT real server (its address and port as source);
    /// port 0 = every port. ICMP errors and fragments from it follow.
    RealServer {
        proto: Proto,
        addr: IpAddr,
        port: u16,
    },
    /// An address of the director's own: what a NAT real server sends to
    /// it (answers to the director's health checks, ssh, ...) is the
    /// kernel's, not a reply to a client, and is not steered.
    Local(IpAddr),
}

// Key kinds, as steer.bpf.c names them.
pub(super) const K_VIP: u8 = 1;
pub(super) const K_VIP_ADDR: u8 = 2;
pub(super) const K_LADDR: u8 = 3;
pub(super) const K_REAL: u8 = 4;
pub(super) const K_REAL_ADDR: u8 = 5;
pub(super) const K_LOCAL: u8 = 6;

/// A key of the rules map: kind, protocol, port (network order), address
/// (IPv6, or IPv4-mapped). Byte layout of `struct rule_key`.
pub(super) type RuleKey = [u8; 20];

fn key(kind: u8, proto: u8, port: u16, addr: IpAddr) -> RuleKey {
    let mut k = [0u8; 20];
    k[0] = kind;
    k[1] = proto;
    k[2..4].copy_from_slice(&port.to_be_bytes());
    let a = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    k[4..20].copy_from_slice(&a);
    k
}

impl Rule {
    /// The map keys this rule stands for.
    pub(super) fn keys(&self) -> [Option<RuleKey>; 2] {
        match *self {
            Rule::Vip { proto, addr, port } => [
                Some(key(K_VIP, proto.number(), port, addr)),
                Some(key(K_VIP_ADDR, 0, 0, addr)),
            ],
            Rule::LocalAddr(addr) => [Some(key(K_LADDR, 0, 0, addr)), None],
            Rule::RealServer { proto, addr, port } => [
                Some(key(K_REAL, proto.number(), port, addr)),
                Some(key(K_REAL_ADDR, 0, 0, addr)),
            ],
            Rule::Local(addr) => [Some(key(K_LOCAL, 0, 0, addr)), None],
        }
    }

    /// The rules that steer the traffic of `services`: their VIPs (group
    /// members for group services), the real servers of NAT destinations
    /// (replies come back through the director) and FULLNAT local
    /// addresses. DR and TUN replies bypass the director: no rule.
    pub fn for_services(services: &[Service], groups: &[Group]) -> Vec<Rule> {
        let mut out = BTreeSet::new();
        for s in services {
            let mut vips: Vec<(Proto, IpAddr, u16)> = Vec::new();
            match &s.key {
                ServiceKey::Addr { proto, addr, port } => vips.push((*proto, *addr, *port)),
                ServiceKey::Group(id) => {
                    for g in groups.iter().filter(|g| g.id == *id) {
                        vips.extend(g.members.iter().map(|m| (m.proto, m.addr, m.port)));
                    }
                }
            }
            for &(proto, addr, port) in &vips {
                out.insert(Rule::Vip { proto, addr, port });
            }
            for d in &s.dests {
                if d.fwd != FwdMethod::Nat {
                    continue;
                }
                for &(proto, _, vport) in &vips {
                    // A port-0 service (or dest) keeps the client's port:
                    // replies may come from any port.
                    let port = if vport == 0 || d.port == 0 { 0 } else { d.port };
                    out.insert(Rule::RealServer {
                        proto,
                        addr: d.addr,
                        port,
                    });
                }
            }
            if s.dests.iter().any(|d| d.fwd == FwdMethod::FullNat) {
                out.extend(s.laddrs.iter().map(|a| Rule::LocalAddr(*a)));
            }
        }
        out.into_iter().collect()
    }
}

/// Counters of one interface's program (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerStats {
    /// Frames sent to an AF_XDP socket.
    pub redirected: u64,
    /// Frames passed to the kernel (not service traffic).
    pub passed: u64,
    /// Service frames passed to the kernel because no socket was bound to
    /// their receive queue.
    pub no_socket: u64,
}

// ---------------------------------------------------------------------------
// Emergency detach registry (signal handlers, panic hooks)

const SLOTS: usize = 64;

struct Slot {
    armed: AtomicBool,
    nl_fd: AtomicI32,
    ifindex: AtomicI32,
    prog_fd: AtomicI32,
    mode: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const SLOT_INIT: Slot = Slot {
    armed: AtomicBool::new(false),
    nl_fd: AtomicI32::new(-1),
    ifindex: AtomicI32::new(0),
    prog_fd: AtomicI32::new(-1),
    mode: AtomicU32::new(0),
};
static REGISTRY: [Slot; SLOTS] = [SLOT_INIT; SLOTS];
/// Slots handed out (never reused while armed).
static CLAIMED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

fn arm(nl_fd: RawFd, ifindex: u32, prog_fd: RawFd, mode: u32) -> Option<usize> {
    let i = (0..SLOTS).find(|&i| {
        CLAIMED[i]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })?;
    let s = &REGISTRY[i];
    s.nl_fd.store(nl_fd, Ordering::Relaxed);
    s.ifindex.store(ifindex as i32, Ordering::Relaxed);
    s.prog_fd.store(prog_fd, Ordering::Relaxed);
    s.mode.store(mode, Ordering::Relaxed);
    s.armed.store(true, Ordering::Release);
    Some(i)
}

/// Detaches slot `i` if still armed. Async-signal-safe.
fn fire(i: usize) -> bool {
    let s = &REGISTRY[i];
    if !s.armed.swap(false, Ordering::AcqRel) {
        return false;
    }
    let msg = sys::xdp_detach_msg(
        s.ifindex.load(Ordering::Relaxed),
        s.mode.load(Ordering::Relaxed),
        s.prog_fd.load(Ordering::Relaxed),
    );
    sys::netlink_send_ack(s.nl_fd.load(Ordering::Relaxed), &msg)
}

fn disarm_and_release(i: usize) {
    REGISTRY[i].armed.store(false, Ordering::Release);
    CLAIMED[i].store(false, Ordering::Release);
}

/// Detaches every steering program this process attached and has not
/// detached yet. Async-signal-safe (no allocation, no locks): call it from
/// a fatal signal handler or a panic hook, then exit. The orderly way out
/// is still to drop the [`Steering`] (which also closes the sockets).
pub fn emergency_detach_all() {
    for i in 0..SLOTS {
        fire(i);
    }
}

/// Detaches the programs of one [`Steering`] from a signal handler.
#[derive(Clone, Copy, Debug)]
pub struct DetachHandle {
    slots: u64,
}

impl DetachHandle {
    /// Detaches now; true when every program was detached by this call.
    /// Async-signal-safe.
    pub fn detach_now(&self) -> bool {
        let mut all = true;
        for i in 0..SLOTS {
            if self.slots & (1 << i) != 0 {
                all &= fire(i);
            }
        }
        all
    }
}

// ---------------------------------------------------------------------------

/// One interface with our program attached.
#[derive(Debug)]
struct Port {
    name: String,
    ifindex: u32,
    mode: Attached,
    /// Owns the program and map fds below.
    _obj: BpfObject,
    prog_fd: RawFd,
    xsks_fd: RawFd,
    rules_fd: RawFd,
    stats_fd: RawFd,
    slot: Option<usize>,
    /// Netlink socket in the interface's namespace (detach from any thread).
    nl: OwnedFd,
    _lock: IfLock,
}

/// The steering programs of a director's interfaces; detaches on drop.
#[derive(Debug)]
pub struct Steering {
    ports: Vec<Port>,
    rules: BTreeSet<RuleKey>,
    ncpus: usize,
    stale: Vec<(String, u32)>,
}

fn netns_inode() -> u64 {
    fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// A held per-interface lock; the file is removed when it is released.
#[derive(Debug)]
struct IfLock {
    file: File,
    path: PathBuf,
}

impl Drop for IfLock {
    fn drop(&mut self) {
        // Unlinked while still held: a process that opened the old file
        // and waits for it notices (inode check below) and starts over.
        let _ = fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

fn lock_interface(name: &str, ifindex: u32) -> Result<IfLock, XdpError> {
    let dir = lock_dir();
    let path = dir.join(format!("xdp-{}-{}.lock", netns_inode(), ifindex));
    loop {
        let open = || {
            fs::create_dir_all(&dir)?;
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        let file = open().map_err(|e| XdpError::sys(name, "open lock file", e))?;
        match sys::try_flock(&file) {
            Ok(true) => {}
            Ok(false) => {
                return Err(XdpError::InUse {
                    iface: name.to_string(),
                    lock: path,
                })
            }
            Err(e) => return Err(XdpError::sys(name, "lock", e)),
        }
        // The previous holder may have removed the file between our open
        // and our lock: then we hold a lock on a dead inode; retry.
        let same = match (file.metadata(), fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(IfLock { file, path });
        }
    }
}

impl Steering {
    /// Loads and attaches the steering program on each interface (in this
    /// thread's network namespace), removing stale programs of a crashed
    /// run first. No rules yet: everything passes until
    /// [`set_rules`](Self::set_rules).
    ///
    /// # Errors
    /// Missing interface, no permission, another xvs holding the interface,
    /// a foreign XDP program, or a load/attach failure; each names the
    /// interface.
    pub fn attach(ifaces: &[&str], mode: AttachMode) -> Result<Steering, XdpError> {
        let ncpus =
            sys::possible_cpus().map_err(|e| XdpError::Load(format!("cannot count CPUs: {e}")))?;
        let mut st = Steering {
            ports: Vec::new(),
            rules: BTreeSet::new(),
            ncpus,
            stale: Vec::new(),
        };
        for name in ifaces {
            if st.ports.iter().any(|p| p.name == *name) {
                return Err(XdpError::Config {
                    field: "interfaces",
                    why: format!("'{name}' is listed twice"),
                });
            }
            let p = st.attach_one(name, mode)?;
            st.ports.push(p);
        }
        Ok(st)
    }

    fn attach_one(&mut self, name: &str, mode: AttachMode) -> Result<Port, XdpError> {
        let ifindex = super::ifindex(name)?;
        let lock = lock_interface(name, ifindex)?;
        self.remove_stale(name, ifindex)?;
        let obj = BpfObject::load(STEER_OBJ).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => XdpError::NoPermission {
                iface: name.to_string(),
                what: "loading a BPF program",
            },
            _ => XdpError::Load(format!(
                "{PROG_NAME}: {e} (run with LIBBPF_LOG_LEVEL=debug for the verifier log)"
            )),
        })?;
        let fd = |r: io::Result<RawFd>, what: &str| {
            r.map_err(|e| XdpError::Load(format!("{what}: {e}")))
        };
        let prog_fd = fd(obj.prog_fd(PROG_NAME), "program")?;
        let xsks_fd = fd(obj.map_fd("xsks"), "map xsks")?;
        let rules_fd = fd(obj.map_fd("rules"), "map rules")?;
        let stats_fd = fd(obj.map_fd("stats"), "map stats")?;
        let nl = sys::netlink_route().map_err(|e| XdpError::sys(name, "netlink socket", e))?;

        let try_attach = |m: Attached| {
            sys::xdp_attach(
                ifindex,
                prog_fd,
                m.flag() | sys::XDP_FLAGS_UPDATE_IF_NOEXIST,
            )
        };
        let attached = match mode {
            AttachMode::Native => try_attach(Attached::Native).map(|_| Attached::Native),
            AttachMode::Generic => try_attach(Attached::Generic).map(|_| Attached::Generic),
            AttachMode::Auto => match try_attach(Attached::Native) {
                Ok(()) => Ok(Attached::Native),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                    ) =>
                {
                    try_attach(Attached::Generic).map(|_| Attached::Generic)
                }
                Err(e) => Err(e),
            },
        };
        let mode = attached.map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => XdpError::NoPermission {
                iface: name.to_string(),
                what: "attaching an XDP program",
            },
            Some(libc::EBUSY) | Some(libc::EEXIST) => XdpError::ForeignProgram {
                iface: name.to_string(),
                prog: "(attached while we were starting)".into(),
                id: 0,
            },
            _ => XdpError::sys(name, "attach XDP program", e),
        })?;
        let slot = arm(nl.as_raw_fd(), ifindex, prog_fd, mode.flag());
        Ok(Port {
            name: name.to_string(),
            ifindex,
            mode,
            _obj: obj,
            prog_fd,
            xsks_fd,
            rules_fd,
            stats_fd,
            slot,
            nl,
            _lock: lock,
        })
    }

    /// Removes our program left attached by a crashed run; refuses to touch
    /// anyone else's.
    fn remove_stale(&mut self, name: &str, ifindex: u32) -> Result<(), XdpError> {
        for m in [Attached::Native, Attached::Generic] {
            let id = sys::xdp_query_id(ifindex, m.flag())
                .map_err(|e| XdpError::sys(name, "query XDP program", e))?;
            if id == 0 {
                continue;
            }
            let (fd, prog) =
                sys::prog_by_id(id).map_err(|e| XdpError::sys(name, "inspect XDP program", e))?;
            if prog != PROG_NAME {
                return Err(XdpError::ForeignProgram {
                    iface: name.to_string(),
                    prog,
                    id,
                });
            }
            sys::xdp_detach(ifindex, m.flag(), fd.as_raw_fd())
                .map_err(|e| XdpError::sys(name, "detach stale XDP program", e))?;
            self.stale.push((name.to_string(), id));
        }
        Ok(())
    }

    /// Stale programs removed at attach: (interface, program id).
    pub fn stale_removed(&self) -> &[(String, u32)] {
        &self.stale
    }

    /// Number of interfaces.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// Interface name of `port`.
    pub fn name(&self, port: usize) -> Option<&str> {
        self.ports.get(port).map(|p| p.name.as_str())
    }

    /// Interface index of `port`.
    pub fn ifindex(&self, port: usize) -> Option<u32> {
        self.ports.get(port).map(|p| p.ifindex)
    }

    /// The mode the program of `port` is attached in.
    pub fn mode(&self, port: usize) -> Option<Attached> {
        self.ports.get(port).map(|p| p.mode)
    }

    /// A handle that detaches these programs from a signal handler.
    pub fn detach_handle(&self) -> DetachHandle {
        DetachHandle {
            slots: self
                .ports
                .iter()
                .filter_map(|p| p.slot)
                .fold(0, |m, i| m | (1 << i)),
        }
    }

    /// Sends frames of `port`'s receive queue `queue` to the socket `fd`.
    pub(super) fn register_socket(
        &self,
        port: usize,
        queue: u32,
        fd: RawFd,
    ) -> Result<(), XdpError> {
        let p = &self.ports[port];
        sys::map_update(p.xsks_fd, &queue.to_ne_bytes(), &(fd as u32).to_ne_bytes())
            .map_err(|e| XdpError::sys(&p.name, "register socket in XSKMAP", e))
    }

    /// Replaces the steering rules on every interface.
    ///
    /// # Errors
    /// Too many rules, or a map update failed (the rule is named); the maps
    /// then hold the old rules plus those inserted so far, and the next call
    /// converges.
    pub fn set_rules(&mut self, rules: &[Rule]) -> Result<(), XdpError> {
        let mut want = BTreeSet::new();
        for r in rules {
            want.extend(r.keys().into_iter().flatten());
        }
        if want.len() > MAX_RULE_KEYS {
            return Err(XdpError::Config {
                field: "rules",
                why: format!("{} steering keys, at most {MAX_RULE_KEYS}", want.len()),
            });
        }
        let fail = |p: &Port, k: &RuleKey, e| {
            let rule = rules.iter().find(|r| r.keys().contains(&Some(*k)));
            XdpError::Rule {
                iface: p.name.clone(),
                rule: format!("{rule:?}"),
                source: e,
            }
        };
        for k in want.difference(&self.rules) {
            for p in &self.ports {
                sys::map_update(p.rules_fd, k, &[1]).map_err(|e| fail(p, k, e))?;
            }
        }
        self.rules.extend(want.iter().copied());
        let stale: Vec<RuleKey> = self.rules.difference(&want).copied().collect();
        for k in &stale {
            for p in &self.ports {
                sys::map_delete(p.rules_fd, k).map_err(|e| fail(p, k, e))?;
            }
            self.rules.remove(k);
        }
        Ok(())
    }

    /// Number of keys in the rules maps.
    pub fn rule_keys(&self) -> usize {
        self.rules.len()
    }

    /// Counters of `port`'s program.
    ///
    /// # Errors
    /// The map could not be read.
    pub fn stats(&self, port: usize) -> Result<SteerStats, XdpError> {
        let p = self.ports.get(port).ok_or_else(|| XdpError::Config {
            field: "port",
            why: format!("no port {port}"),
        })?;
        let get = |i| {
            sys::percpu_u64_sum(p.stats_fd, i, self.ncpus)
                .map_err(|e| XdpError::sys(&p.name, "read stats", e))
        };
        Ok(SteerStats {
            redirected: get(0)?,
            passed: get(1)?,
            no_socket: get(2)?,
        })
    }
}

/// The steering program loaded but attached nowhere, to run it on frames
/// with `BPF_PROG_TEST_RUN` (tests hold [`super::steer_model`] to it).
/// Needs root.
#[doc(hidden)]
pub struct SteerTestbed {
    _obj: BpfObject,
    prog: RawFd,
    stats: RawFd,
    ncpus: usize,
}

impl SteerTestbed {
    /// Loads the program with `rules` in its map (and no socket in its
    /// XSKMAP).
    ///
    /// # Errors
    /// Loading or filling the map failed (no permission, no BPF).
    pub fn load(rules: &[Rule]) -> Result<SteerTestbed, XdpError> {
        let obj = BpfObject::load(STEER_OBJ).map_err(|e| XdpError::Load(format!("{PROG_NAME}: {e}")))?;
        let get = |r: io::Result<RawFd>| r.map_err(|e| XdpError::Load(e.to_string()));
        let prog = get(obj.prog_fd(PROG_NAME))?;
        let rfd = get(obj.map_fd("rules"))?;
        let stats = get(obj.map_fd("stats"))?;
        for k in rules.iter().flat_map(|r| r.keys().into_iter().flatten()) {
            sys::map_update(rfd, &k, &[1]).map_err(|e| XdpError::Load(format!("rule: {e}")))?;
        }
        let ncpus = sys::possible_cpus().map_err(|e| XdpError::Load(e.to_string()))?;
        Ok(SteerTestbed { _obj: obj, prog, stats, ncpus })
    }

    /// What the program does with `frame`: a redirect to a socket shows as
    /// XDP_DROP with the `no_socket` counter going up (there is no socket;
    /// service traffic without one is dropped), a pass as XDP_PASS. Frames
    /// shorter than an Ethernet header cannot be run (the kernel refuses
    /// them) and are passed, as the program would.
    ///
    /// # Errors
    /// The test run or a counter read failed.
    pub fn run(&self, frame: &[u8]) -> io::Result<super::steer_model::Steered> {
        use super::steer_model::Steered;
        if frame.len() < 14 {
            return Ok(Steered::Pass);
        }
        let before = sys::percpu_u64_sum(self.stats, 2, self.ncpus)?;
        let ret = sys::prog_test_run(self.prog, frame)?;
        let after = sys::percpu_u64_sum(self.stats, 2, self.ncpus)?;
        // XDP_DROP (1) with no_socket counted: a redirect; XDP_PASS (2):
        // a pass. Anything else is a mismatch between the two.
        match (ret, after > before) {
            (1, true) => Ok(Steered::Redirect),
            (2, false) => Ok(Steered::Pass),
            _ => Err(io::Error::other(format!("xvs_steer returned {ret} (no_socket counted: {})", after > before))),
        }
    }
}

/// Whether a program named [`PROG_NAME`] is attached to interface `name`
/// (in this thread's namespace) in any mode.
///
/// # Errors
/// The interface does not exist or the query failed.
pub fn xvs_program_attached(name: &str) -> Result<bool, XdpError> {
    let ifindex = super::ifindex(name)?;
    for m in [Attached::Native, Attached::Generic] {
        let id = sys::xdp_query_id(ifindex, m.flag()).unwrap_or(0);
        if id != 0 {
            let (_, prog) =
                sys::prog_by_id(id).map_err(|e| XdpError::sys(name, "inspect XDP program", e))?;
            if prog == PROG_NAME {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl Drop for Steering {
    fn drop(&mut self) {
        for p in &self.ports {
            if let Some(i) = p.slot {
                disarm_and_release(i);
            }
            // Through the netlink socket opened at attach time: it belongs to
            // the interface's namespace, whatever thread drops us (an
            // ifindex means nothing in another namespace). The kernel
            // refuses if the attached program is no longer ours (already
            // detached on an emergency path, or replaced).
            let msg = sys::xdp_detach_msg(p.ifindex as i32, p.mode.flag(), p.prog_fd);
            let _ = sys::netlink_send_ack(p.nl.as_raw_fd(), &msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::dest::Dest;
    use crate::ipvs::sched::SchedFlags;
    use crate::ipvs::service::GroupMember;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_use_mapped_v4_and_network_order_ports() {
        let k = key(K_VIP, 6, 0x1234, ip("10.1.2.3"));
        assert_eq!(&k[..4], &[K_VIP, 6, 0x12, 0x34]);
        assert_eq!(
            &k[4..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]
        );
        let k6 = key(K_LADDR, 0, 0, ip("2001:db8::1"));
        assert_eq!(&k6[4..6], &[0x20, 0x01]);
        assert_eq!(k6[19], 1);
    }

    #[test]
    fn rule_kinds_expand_to_their_keys() {
        let v = Rule::Vip {
            proto: Proto::Udp,
            addr: ip("10.0.0.1"),
            port: 53,
        }
        .keys();
        assert_eq!(v[0].unwrap()[..4], [K_VIP, 17, 0, 53]);
        assert_eq!(v[1].unwrap()[..4], [K_VIP_ADDR, 0, 0, 0]);
        let l = Rule::LocalAddr(ip("10.0.0.9")).keys();
        assert_eq!((l[0].unwrap()[0], l[1]), (K_LADDR, None));
        let r = Rule::RealServer {
            proto: Proto::Tcp,
            addr: ip("10.0.0.5"),
            port: 8080,
        }
        .keys();
        assert_eq!(r[0].unwrap()[..4], [K_REAL, 6, 0x1f, 0x90]);
        assert_eq!(r[1].unwrap()[0], K_REAL_ADDR);
        let o = Rule::Local(ip("10.0.0.1")).keys();
        assert_eq!(o[0].unwrap()[..4], [K_LOCAL, 0, 0, 0]);
        assert_eq!(o[1], None);
    }

    fn dest(addr: &str, port: u16, fwd: FwdMethod) -> Dest {
        Dest {
            addr: ip(addr),
            port,
            weight: 1,
            fwd,
            u_threshold: 0,
            l_threshold: 0,
            proxy: None,
        }
    }

    fn svc(key: ServiceKey, dests: Vec<Dest>, laddrs: Vec<IpAddr>) -> Service {
        Service {
            key,
            sched: "rr".into(),
            sched_flags: SchedFlags::default(),
            persistence: None,
            dests,
            laddrs,
        }
    }

    #[test]
    fn rules_follow_services_and_forwarding_methods() {
        let services = vec![
            svc(
                ServiceKey::Addr {
                    proto: Proto::Tcp,
                    addr: ip("10.0.0.100"),
                    port: 80,
                },
                vec![
                    dest("192.168.1.1", 8080, FwdMethod::Nat),
                    dest("192.168.1.2", 80, FwdMethod::Dr),
                ],
                vec![],
            ),
            svc(
                ServiceKey::Addr {
                    proto: Proto::Udp,
                    addr: ip("10.0.0.101"),
                    port: 0,
                },
                vec![
                    dest("192.168.1.3", 0, FwdMethod::Nat),
                    dest("192.168.1.4", 0, FwdMethod::FullNat),
                ],
                vec![ip("10.0.1.1"), ip("10.0.1.2")],
            ),
            svc(
                ServiceKey::Group(7),
                vec![dest("192.168.1.5", 443, FwdMethod::Nat)],
                vec![],
            ),
        ];
        let groups = vec![Group {
            id: 7,
            members: vec![GroupMember {
                proto: Proto::Tcp,
                addr: ip("10.0.0.102"),
                port: 443,
            }],
        }];
        let rules = Rule::for_services(&services, &groups);
        let want = [
            Rule::Vip {
                proto: Proto::Tcp,
                addr: ip("10.0.0.100"),
                port: 80,
            },
            Rule::RealServer {
                proto: Proto::Tcp,
                addr: ip("192.168.1.1"),
                port: 8080,
            },
            Rule::Vip {
                proto: Proto::Udp,
                addr: ip("10.0.0.101"),
                port: 0,
            },
            Rule::RealServer {
                proto: Proto::Udp,
                addr: ip("192.168.1.3"),
                port: 0,
            },
            Rule::LocalAddr(ip("10.0.1.1")),
            Rule::LocalAddr(ip("10.0.1.2")),
            Rule::Vip {
                proto: Proto::Tcp,
                addr: ip("10.0.0.102"),
                port: 443,
            },
            Rule::RealServer {
                proto: Proto::Tcp,
                addr: ip("192.168.1.5"),
                port: 443,
            },
        ];
        for w in &want {
            assert!(rules.contains(w), "missing {w:?}");
        }
        // DR replies bypass the director: no rule for 192.168.1.2.
        assert_eq!(rules.len(), want.len());
    }

    /// The rules of a director with a NAT TCP service and a UDP port-0
    /// one with NAT and FULLNAT real servers, IPv4 and IPv6, and its own
    /// addresses (the pools of `gen::packet::steering_sample`).
    fn sample_rules() -> Vec<Rule> {
        let services = vec![
            svc(
                ServiceKey::Addr { proto: Proto::Tcp, addr: ip("10.0.0.100"), port: 80 },
                vec![dest("10.0.1.1", 8080, FwdMethod::Nat), dest("10.0.1.2", 8080, FwdMethod::Nat)],
                vec![],
            ),
            svc(
                ServiceKey::Addr { proto: Proto::Udp, addr: ip("10.0.0.100"), port: 0 },
                vec![dest("10.0.1.1", 0, FwdMethod::Nat), dest("10.0.1.2", 0, FwdMethod::FullNat)],
                vec![ip("10.0.0.200")],
            ),
            svc(
                ServiceKey::Addr { proto: Proto::Tcp, addr: ip("2001:db8::100"), port: 443 },
                vec![dest("2001:db8:1::1", 443, FwdMethod::Nat)],
                vec![],
            ),
        ];
        let mut r = Rule::for_services(&services, &[]);
        r.extend(["10.0.0.1", "2001:db8::1"].iter().map(|a| Rule::Local(ip(a))));
        r
    }

    /// The Rust mirror and the BPF object agree on every frame: the
    /// samples of `steering_sample` from every choice vector proptest
    /// draws, and every prefix of some. Root only (loads the program).
    #[test]
    fn the_mirror_decides_as_the_bpf_object_does() {
        use super::super::steer_model::{classify, RuleSet};
        use crate::gen::packet::steering_sample;
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        if !super::super::is_root() {
            println!("SKIP the_mirror_decides_as_the_bpf_object_does: needs root (BPF_PROG_TEST_RUN)");
            return;
        }
        let rules = sample_rules();
        let tb = SteerTestbed::load(&rules).expect("loading the steering program");
        let set = RuleSet::new(&rules);
        let redirected = std::cell::Cell::new(0u32);
        let mut runner = TestRunner::new(Config { cases: 3000, failure_persistence: None, ..Config::default() });
        let result = runner.run(&proptest::collection::vec(any::<u8>(), 20), |c| {
            let f = steering_sample(&c);
            let want = tb.run(&f).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(classify(&f, &set), want, "frame {:02x?}", f);
            if want == super::super::steer_model::Steered::Redirect {
                redirected.set(redirected.get() + 1);
            }
            for n in [14, 18, 33, 34, 37, 53, 54, 57, 61, 62] {
                if n < f.len() {
                    prop_assert_eq!(classify(&f[..n], &set), tb.run(&f[..n]).unwrap(), "prefix {} of {:02x?}", n, f);
                }
            }
            Ok(())
        });
        result.unwrap();
        let redirected = redirected.get();
        assert!(redirected > 300, "the samples reach the redirecting branches ({redirected})");
    }

    /// A director behind ECMP runs BGP, BFD, ARP and NDP on the very
    /// interfaces xvs forwards on (docs/scale-out.md): none of it is
    /// steered, whatever the services, so it reaches the kernel. The
    /// mirror decides it, and the BPF object too when root can run it.
    #[test]
    fn routing_protocols_reach_the_kernel() {
        use super::super::steer_model::{classify, RuleSet, Steered};
        use crate::gen::packet::{tcp4, tcp6, udp4, udp6};
        use crate::wire::tcp_flags::{ACK, SYN};
        let (me, router) = ([10, 0, 0, 1], [10, 0, 0, 254]);
        let me6: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let router6: [u8; 16] = "2001:db8::fe".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut arp = vec![0xff; 6];
        arp.extend([2, 0, 0, 0, 0, 0xfe, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xfe]);
        arp.extend(router);
        arp.extend([0; 6]);
        arp.extend(me);
        let mut ns = udp6(router6, 0, me6, 0, &[0; 20]);
        ns[14 + 6] = 58; // ICMPv6 neighbour solicitation
        ns[14 + 40] = 135;
        let frames = [
            ("BGP, the router connecting", tcp4(router, 40179, me, 179, SYN, b"")),
            ("BGP, the director's session", tcp4(router, 179, me, 50000, ACK, b"keepalive")),
            ("BGP over IPv6", tcp6(router6, 179, me6, 50000, ACK, b"keepalive")),
            ("BFD control", udp4(router, 49152, me, 3784, &[0x20; 24])),
            ("BFD echo", udp4(router, 3785, me, 3785, &[0; 8])),
            ("multihop BFD", udp6(router6, 49152, me6, 4784, &[0x20; 24])),
            ("ARP", arp),
            ("NDP", ns),
        ];
        let rules = sample_rules();
        let set = RuleSet::new(&rules);
        let tb = super::super::is_root().then(|| SteerTestbed::load(&rules).expect("loading the steering program"));
        for (what, f) in &frames {
            assert_eq!(classify(f, &set), Steered::Pass, "{what}");
            if let Some(tb) = &tb {
                assert_eq!(tb.run(f).unwrap(), Steered::Pass, "{what} (BPF object)");
            }
        }
    }

    #[test]
    fn detach_handle_covers_only_its_slots() {
        // Arm two fake slots (fd -1: the netlink send fails harmlessly).
        let a = arm(-1, 1, -1, 0).unwrap();
        let b = arm(-1, 2, -1, 0).unwrap();
        let h = DetachHandle { slots: 1 << a };
        assert!(!h.detach_now(), "send on fd -1 cannot succeed");
        assert!(!REGISTRY[a].armed.load(Ordering::Acquire));
        assert!(REGISTRY[b].armed.load(Ordering::Acquire));
        disarm_and_release(a);
        disarm_and_release(b);
    }
}
