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
//! - [`Steering::set_rules`] replaces the rule set: new port sets are
//!   written before the address entries that use them, an address entry is
//!   replaced in one update, and stale entries are deleted last, so a rule
//!   present before and after never has a gap.

use super::sys::{self, BpfObject};
use super::XdpError;
use crate::ipvs::service::{Group, Service, ServiceKey};
use crate::ipvs::{FwdMethod, Proto};
use std::collections::{BTreeMap, BTreeSet};
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

/// Entries of each address map (`addrs4`, `addrs6`): distinct addresses
/// the rules name, per family.
pub const MAX_ADDRS: usize = 65536;
/// Entries of the port-set array (`ports`); set 0 is the empty set, so
/// `PORT_SETS - 1` distinct port sets, counting those of the previous rule
/// set that a change replaces.
pub const PORT_SETS: usize = 256;

// Address flags and port-set slots, as steer.bpf.c names them.
pub(super) const F_VIP: u8 = 1;
pub(super) const F_LADDR: u8 = 2;
pub(super) const F_REAL: u8 = 4;
pub(super) const F_LOCAL: u8 = 8;
const P_VIP: usize = 0;
const P_REAL: usize = 2;

fn proto_slot(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

/// What the rules say about one address: its roles (`F_*`) and, per role
/// and protocol (VIP TCP, VIP UDP, real server TCP, real server UDP), its
/// ports. A set holding port 0 is the set of every port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AddrWant {
    flags: u8,
    sets: [BTreeSet<u16>; 4],
}

/// The address entries `rules` stand for.
fn compile(rules: &[Rule]) -> BTreeMap<IpAddr, AddrWant> {
    let mut out: BTreeMap<IpAddr, AddrWant> = BTreeMap::new();
    for r in rules {
        match *r {
            Rule::Vip { proto, addr, port } => {
                let w = out.entry(addr).or_default();
                w.flags |= F_VIP;
                w.sets[P_VIP + proto_slot(proto)].insert(port);
            }
            Rule::RealServer { proto, addr, port } => {
                let w = out.entry(addr).or_default();
                w.flags |= F_REAL;
                w.sets[P_REAL + proto_slot(proto)].insert(port);
            }
            Rule::LocalAddr(addr) => out.entry(addr).or_default().flags |= F_LADDR,
            Rule::Local(addr) => out.entry(addr).or_default().flags |= F_LOCAL,
        }
    }
    for w in out.values_mut() {
        for s in &mut w.sets {
            if s.contains(&0) {
                *s = BTreeSet::from([0]);
            }
        }
    }
    out
}

/// The bitmap of a port set (`struct port_set`): bit p of byte p / 8.
fn bitmap(set: &BTreeSet<u16>) -> Vec<u8> {
    if set.contains(&0) {
        return vec![0xff; 8192];
    }
    let mut b = vec![0u8; 8192];
    for &p in set {
        b[p as usize / 8] |= 1 << (p % 8);
    }
    b
}

/// An address map's key: the address as the packet carries it.
fn addr_key(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address map's value (`struct addr_info`): the port-set indices
/// (host order), the flags, padding.
fn addr_value(flags: u8, sets: [u16; 4]) -> [u8; 12] {
    let mut v = [0u8; 12];
    for (i, s) in sets.iter().enumerate() {
        v[2 * i..2 * i + 2].copy_from_slice(&s.to_ne_bytes());
    }
    v[8] = flags;
    v
}

/// The fds of one program instance's rule maps.
#[derive(Clone, Copy, Debug)]
pub(super) struct RuleMaps {
    addrs4: RawFd,
    addrs6: RawFd,
    ports: RawFd,
}

impl RuleMaps {
    fn of(obj: &BpfObject) -> io::Result<RuleMaps> {
        Ok(RuleMaps {
            addrs4: obj.map_fd("addrs4")?,
            addrs6: obj.map_fd("addrs6")?,
            ports: obj.map_fd("ports")?,
        })
    }

    fn addrs(&self, a: &IpAddr) -> RawFd {
        if a.is_ipv4() {
            self.addrs4
        } else {
            self.addrs6
        }
    }
}

/// What the rule maps hold (the same in every instance): the entry of
/// each address, the port set at each index.
#[derive(Debug)]
pub(super) struct Tables {
    addrs: BTreeMap<IpAddr, [u8; 12]>,
    sets: Vec<Option<BTreeSet<u16>>>,
}

impl Default for Tables {
    fn default() -> Tables {
        Tables {
            addrs: BTreeMap::new(),
            sets: vec![None; PORT_SETS],
        }
    }
}

impl Tables {
    /// Writes what `rules` stand for into every instance's maps (`maps`:
    /// interface name and fds). New port sets are written first, in
    /// indices no current entry uses; then each address entry is
    /// inserted or replaced (one atomic update each); then stale entries
    /// are deleted: a rule present before and after never has a gap.
    ///
    /// # Errors
    /// Too many addresses or port sets (nothing written), or a map update
    /// failed (the rule is named); the maps then hold the old rules plus
    /// what was written so far, and the next call converges.
    fn apply(&mut self, rules: &[Rule], maps: &[(&str, RuleMaps)]) -> Result<(), XdpError> {
        let want = compile(rules);
        for (fam, v6) in [("IPv4", false), ("IPv6", true)] {
            let n = want.keys().filter(|a| a.is_ipv6() == v6).count();
            if n > MAX_ADDRS {
                return Err(XdpError::Config {
                    field: "rules",
                    why: format!("{n} {fam} addresses to steer, at most {MAX_ADDRS}"),
                });
            }
        }
        let needed: BTreeSet<&BTreeSet<u16>> = want
            .values()
            .flat_map(|w| w.sets.iter())
            .filter(|s| !s.is_empty())
            .collect();
        let in_use: BTreeSet<u16> = self
            .addrs
            .values()
            .flat_map(|v| (0..4).map(move |i| u16::from_ne_bytes([v[2 * i], v[2 * i + 1]])))
            .filter(|&i| i != 0)
            .collect();
        let mut index: BTreeMap<&BTreeSet<u16>, u16> = BTreeMap::new();
        let mut new = Vec::new();
        for set in &needed {
            match self.sets.iter().position(|s| s.as_ref() == Some(*set)) {
                Some(i) => {
                    index.insert(set, i as u16);
                }
                None => new.push(*set),
            }
        }
        let taken: BTreeSet<u16> = in_use.iter().chain(index.values()).copied().collect();
        let free: Vec<u16> = (1..PORT_SETS as u16).filter(|i| !taken.contains(i)).collect();
        if free.len() < new.len() {
            return Err(XdpError::Config {
                field: "rules",
                why: format!(
                    "{} distinct port sets (VIPs' and NAT real servers' ports), with those in use until the change at most {}",
                    needed.len() + in_use.iter().filter(|i| !index.values().any(|j| j == *i)).count(),
                    PORT_SETS - 1
                ),
            });
        }
        let rule_of = |a: &IpAddr| {
            let r = rules.iter().find(|r| match r {
                Rule::Vip { addr, .. } | Rule::RealServer { addr, .. } => addr == a,
                Rule::LocalAddr(x) | Rule::Local(x) => x == a,
            });
            format!("{r:?}")
        };
        for (set, &i) in new.iter().zip(&free) {
            let bits = bitmap(set);
            for (name, m) in maps {
                sys::map_update(m.ports, &u32::from(i).to_ne_bytes(), &bits).map_err(|e| XdpError::Rule {
                    iface: name.to_string(),
                    rule: format!("port set {set:?}"),
                    source: e,
                })?;
            }
            self.sets[i as usize] = Some((*set).clone());
            index.insert(set, i);
        }
        for (a, w) in &want {
            let idx = |s: &BTreeSet<u16>| if s.is_empty() { 0 } else { index[s] };
            let v = addr_value(w.flags, [idx(&w.sets[0]), idx(&w.sets[1]), idx(&w.sets[2]), idx(&w.sets[3])]);
            if self.addrs.get(a) == Some(&v) {
                continue;
            }
            for (name, m) in maps {
                sys::map_update(m.addrs(a), &addr_key(a), &v).map_err(|e| XdpError::Rule {
                    iface: name.to_string(),
                    rule: rule_of(a),
                    source: e,
                })?;
            }
            self.addrs.insert(*a, v);
        }
        let stale: Vec<IpAddr> = self.addrs.keys().filter(|a| !want.contains_key(*a)).copied().collect();
        for a in &stale {
            for (name, m) in maps {
                sys::map_delete(m.addrs(a), &addr_key(a)).map_err(|e| XdpError::Rule {
                    iface: name.to_string(),
                    rule: format!("stale entry of {a}"),
                    source: e,
                })?;
            }
            self.addrs.remove(a);
        }
        Ok(())
    }
}

impl Rule {
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
    maps: RuleMaps,
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
    tables: Tables,
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
            tables: Tables::default(),
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
        let maps = RuleMaps::of(&obj).map_err(|e| XdpError::Load(format!("rule maps: {e}")))?;
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
            maps,
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
    /// Too many addresses or distinct port sets (nothing changed), or a
    /// map update failed (the rule is named); the maps then hold the old
    /// rules plus those inserted so far, and the next call converges.
    pub fn set_rules(&mut self, rules: &[Rule]) -> Result<(), XdpError> {
        let maps: Vec<(&str, RuleMaps)> = self.ports.iter().map(|p| (p.name.as_str(), p.maps)).collect();
        self.tables.apply(rules, &maps)
    }

    /// Number of addresses in the rule maps (the same in every instance).
    pub fn rule_keys(&self) -> usize {
        self.tables.addrs.len()
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
        Self::load_object(STEER_OBJ, rules)
    }

    /// As [`load`](Self::load), with another build of `steer.bpf.c` (an
    /// ELF object with the same maps and program name): to time a variant
    /// of the program without rebuilding xvs (`bench/steer.rs --object`).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_object(elf: &[u8], rules: &[Rule]) -> Result<SteerTestbed, XdpError> {
        let obj = BpfObject::load(elf).map_err(|e| XdpError::Load(format!("{PROG_NAME}: {e}")))?;
        let get = |r: io::Result<RawFd>| r.map_err(|e| XdpError::Load(e.to_string()));
        let prog = get(obj.prog_fd(PROG_NAME))?;
        let maps = RuleMaps::of(&obj).map_err(|e| XdpError::Load(e.to_string()))?;
        let stats = get(obj.map_fd("stats"))?;
        Tables::default().apply(rules, &[("testbed", maps)])?;
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

impl SteerTestbed {
    /// The kernel's mean time per run of the program on `frame`, over
    /// `repeat` runs of `BPF_PROG_TEST_RUN` (its loop included), and what
    /// it returned. For `make bench` (bench/steer.rs).
    ///
    /// # Errors
    /// The test run failed.
    pub fn time(&self, frame: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
        sys::prog_test_run_timed(self.prog, frame, repeat)
    }
}

/// A program that only returns `XDP_PASS`: the floor of a
/// `BPF_PROG_TEST_RUN` timing (the kernel's test loop, the context set-up
/// and the program call), measured beside the steering program.
#[doc(hidden)]
pub struct PassFloor(OwnedFd);

impl PassFloor {
    /// Loads it (root only).
    ///
    /// # Errors
    /// No permission, or no BPF.
    pub fn load() -> io::Result<PassFloor> {
        sys::load_xdp_pass().map(PassFloor)
    }

    /// As [`SteerTestbed::time`].
    ///
    /// # Errors
    /// The test run failed.
    pub fn time(&self, frame: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
        sys::prog_test_run_timed(self.0.as_raw_fd(), frame, repeat)
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
    fn rules_compile_to_one_entry_per_address_with_port_sets() {
        let rules = [
            Rule::Vip { proto: Proto::Tcp, addr: ip("10.0.0.1"), port: 80 },
            Rule::Vip { proto: Proto::Tcp, addr: ip("10.0.0.1"), port: 443 },
            Rule::Vip { proto: Proto::Udp, addr: ip("10.0.0.1"), port: 0 },
            Rule::Vip { proto: Proto::Udp, addr: ip("10.0.0.1"), port: 53 },
            Rule::RealServer { proto: Proto::Tcp, addr: ip("10.0.0.5"), port: 8080 },
            Rule::LocalAddr(ip("10.0.0.9")),
            Rule::Local(ip("10.0.0.1")),
            Rule::Local(ip("2001:db8::1")),
        ];
        let t = compile(&rules);
        assert_eq!(t.len(), 4, "{t:?}");
        let vip = &t[&ip("10.0.0.1")];
        assert_eq!(vip.flags, F_VIP | F_LOCAL);
        assert_eq!(vip.sets[0], BTreeSet::from([80, 443]));
        // A port-0 rule is every port: the other ports add nothing.
        assert_eq!(vip.sets[1], BTreeSet::from([0]));
        assert!(vip.sets[2].is_empty() && vip.sets[3].is_empty());
        let rs = &t[&ip("10.0.0.5")];
        assert_eq!((rs.flags, &rs.sets[2]), (F_REAL, &BTreeSet::from([8080])));
        assert_eq!(t[&ip("10.0.0.9")].flags, F_LADDR);
        assert_eq!(t[&ip("2001:db8::1")].flags, F_LOCAL);
        // Keys are the addresses as packets carry them, per family.
        assert_eq!(addr_key(&ip("10.1.2.3")), vec![10, 1, 2, 3]);
        assert_eq!(addr_key(&ip("2001:db8::1")).len(), 16);
    }

    #[test]
    fn port_sets_are_bitmaps_and_entries_name_them() {
        let b = bitmap(&BTreeSet::from([80, 8080, 65535]));
        assert_eq!(b.len(), 8192);
        assert_eq!(b[10], 1, "port 80: bit 0 of byte 10");
        assert_eq!(b[1010], 1, "port 8080");
        assert_eq!(b[8191], 0x80, "port 65535");
        assert_eq!(b.iter().map(|x| x.count_ones()).sum::<u32>(), 3);
        assert!(bitmap(&BTreeSet::from([0])).iter().all(|&x| x == 0xff));
        let v = addr_value(F_VIP | F_REAL, [1, 0, 2, 0x0102]);
        assert_eq!(&v[..2], &1u16.to_ne_bytes());
        assert_eq!(&v[4..6], &2u16.to_ne_bytes());
        assert_eq!(&v[6..8], &0x0102u16.to_ne_bytes());
        assert_eq!(v[8], F_VIP | F_REAL);
    }

    /// Too many addresses or port sets are refused before anything is
    /// written (no map is touched: the maps list is empty here).
    #[test]
    fn too_many_port_sets_are_refused_naming_the_limit() {
        let mut t = Tables::default();
        let rules: Vec<Rule> = (0..PORT_SETS as u16)
            .map(|i| Rule::Vip { proto: Proto::Tcp, addr: ip(&format!("10.0.{}.{}", i / 200, i % 200 + 1)), port: 1000 + i })
            .collect();
        let e = t.apply(&rules, &[]).unwrap_err().to_string();
        assert!(e.contains("rules") && e.contains("port sets") && e.contains(&format!("{}", PORT_SETS - 1)), "{e}");
        // One port set shared by all (the usual case) fits.
        let shared: Vec<Rule> = (0..1000u16)
            .map(|i| Rule::Vip { proto: Proto::Tcp, addr: ip(&format!("10.1.{}.{}", i / 200, i % 200 + 1)), port: 80 })
            .collect();
        t.apply(&shared, &[]).unwrap();
        assert_eq!(t.addrs.len(), 1000);
        assert_eq!(t.sets.iter().flatten().count(), 1);
        // Changing the port moves to a new index while the old one is in use.
        let moved: Vec<Rule> = shared
            .iter()
            .map(|r| match *r {
                Rule::Vip { proto, addr, .. } => Rule::Vip { proto, addr, port: 81 },
                r => r,
            })
            .collect();
        t.apply(&moved, &[]).unwrap();
        let idx: BTreeSet<[u8; 2]> = t.addrs.values().map(|v| [v[0], v[1]]).collect();
        assert_eq!(idx, BTreeSet::from([2u16.to_ne_bytes()]));
        t.apply(&[], &[]).unwrap();
        assert!(t.addrs.is_empty());
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
            synproxy: false,
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

    /// What a director announcing its VIPs (BIRD: BGP, BFD; ARP, NDP)
    /// and running VRRP needs from its kernel is passed, by the BPF object
    /// (root) and by the mirror, with services on the addresses involved.
    #[test]
    fn control_protocols_are_passed_to_the_kernel() {
        use super::super::steer_model::{classify, RuleSet, Steered};
        use crate::gen::packet::{icmp4_echo, tcp4, udp4, udp6};
        let rules = sample_rules();
        let set = RuleSet::new(&rules);
        let (vip, me, router) = ([10, 0, 0, 100], [10, 0, 0, 1], [10, 0, 0, 254]);
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let (vip6, me6, router6) = (v6("2001:db8::100"), v6("2001:db8::1"), v6("fe80::1"));
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1]);
        arp.extend_from_slice(&[10, 0, 0, 254, 0, 0, 0, 0, 0, 0, 10, 0, 0, 100]);
        arp.resize(60, 0);
        let icmp6 = |src: [u8; 16], dst: [u8; 16], t: u8| {
            let mut f = udp6(src, 0, dst, 0, &[0; 16]);
            f[20] = 58;
            f[54] = t;
            f
        };
        let mut vrrp = udp4(me, 0, [224, 0, 0, 18], 0, &[0; 16]);
        vrrp[23] = 112;
        const SYN: u8 = 0x02;
        let frames = [
            ("ARP request for the VIP", arp),
            ("NDP neighbour solicitation for the VIP", icmp6(router6, vip6, 135)),
            ("NDP neighbour advertisement to the director", icmp6(router6, me6, 136)),
            ("NDP router advertisement", icmp6(router6, v6("ff02::1"), 134)),
            ("BGP from the router", tcp4(router, 40000, me, 179, SYN, b"")),
            ("BGP answer to the director's session", tcp4(router, 179, me, 40000, SYN | 0x10, b"")),
            ("BFD control to the director", udp4(router, 49152, me, 3784, &[0; 24])),
            ("BFD echo to the director", udp4(router, 49152, me, 3785, &[0; 24])),
            ("BGP over IPv6", crate::gen::packet::tcp6(router6, 40000, me6, 179, SYN, b"")),
            ("multihop BFD over IPv6", udp6(router6, 49152, me6, 4784, &[0x20; 24])),
            ("VRRP", vrrp),
            ("ping to the VIP", icmp4_echo(router, vip)),
        ];
        for (what, f) in &frames {
            assert_eq!(classify(f, &set), Steered::Pass, "mirror: {what}");
        }
        if !super::super::is_root() {
            println!("SKIP control_protocols_are_passed_to_the_kernel (BPF half): needs root");
            return;
        }
        let tb = SteerTestbed::load(&rules).expect("loading the steering program");
        for (what, f) in &frames {
            assert_eq!(tb.run(f).unwrap(), Steered::Pass, "BPF object: {what}");
        }
    }

    /// An ICMP error to one of the director's own addresses goes to its
    /// kernel, unless it quotes an IP-in-IP packet: the tunnel's source
    /// is the director's address, and a "fragmentation needed" or "packet
    /// too big" about xvs's TUN packet is the worker's to tell the client.
    /// The mirror and (root) the BPF object.
    #[test]
    fn errors_about_our_tunnel_packets_go_to_the_worker() {
        use super::super::steer_model::{classify, RuleSet, Steered};
        use crate::gen::packet::{refresh_ipv4_checksum, udp4, udp6};
        let rules = sample_rules();
        let set = RuleSet::new(&rules);
        let (router, me) = ([192, 0, 2, 254], [10, 0, 0, 1]);
        let v4 = |inner: u8| {
            let mut f = udp4(router, 0, me, 0, &[0; 28]);
            f[23] = 1; // ICMP
            f[34..36].copy_from_slice(&[3, 4]); // fragmentation needed
            f[42] = 0x45;
            f[42 + 9] = inner;
            refresh_ipv4_checksum(&mut f, 14);
            f
        };
        let (router6, me6) = ("2001:db8:9::fe".parse::<std::net::Ipv6Addr>().unwrap().octets(), "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let v6 = |inner: u8| {
            let mut f = udp6(router6, 0, me6, 0, &[0; 48]);
            f[20] = 58; // ICMPv6
            f[54] = 2; // packet too big
            f[62] = 0x60;
            f[62 + 6] = inner;
            f
        };
        let frames = [
            ("IPv4 error quoting IPIP", v4(4), Steered::Redirect),
            ("IPv4 error quoting TCP", v4(6), Steered::Pass),
            ("IPv6 error quoting IPv6-in-IPv6", v6(41), Steered::Redirect),
            ("IPv6 error quoting TCP", v6(6), Steered::Pass),
            ("IPv4 error quoting IPIP, cut short", v4(4)[..42 + 19].to_vec(), Steered::Pass),
        ];
        for (what, f, want) in &frames {
            assert_eq!(classify(f, &set), *want, "mirror: {what}");
        }
        if !super::super::is_root() {
            println!("SKIP errors_about_our_tunnel_packets_go_to_the_worker (BPF half): needs root");
            return;
        }
        let tb = SteerTestbed::load(&rules).expect("loading the steering program");
        for (what, f, want) in &frames {
            assert_eq!(tb.run(f).unwrap(), *want, "BPF object: {what}");
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
