//! AF_XDP driver: the XDP steering program, the sockets, the shared UMEM and
//! the burst API of `xvs run` (see `docs/afxdp.md`).
//!
//! # Contract
//!
//! - [`XdpIo::open`] attaches the steering program ([`steer`]) to every
//!   interface, maps one UMEM for the whole director ([`umem`]), binds one
//!   AF_XDP socket per (interface, queue) and registers it in the program's
//!   XSKMAP, and returns one [`QueueIo`] per queue for the workers to move
//!   to their threads. Until [`XdpIo::set_rules`] names service traffic,
//!   every frame still goes to the kernel.
//! - Dropping the [`XdpIo`] detaches the programs; dropping a [`QueueIo`]
//!   closes its sockets. For signal paths see [`steer::DetachHandle`] and
//!   [`steer::emergency_detach_all`].
//! - Sockets bind in zero-copy mode when the driver offers it and copy mode
//!   otherwise (veth), unless [`BindMode`] insists. A queue still held by a
//!   socket that is closing (the kernel releases them asynchronously) is
//!   retried until [`XdpConfig::bind_timeout`].
//! - Errors name the interface, the queue and what was refused, and tell
//!   missing interface, missing permission, missing AF_XDP support and a
//!   busy queue apart.
//! - All `unsafe` code and every syscall live in [`sys`].
//!
//! Why not xsk-rs (it shares one UMEM across interfaces as this driver
//! does, so that is not the reason): it transmits a frame only from where
//! its data starts, never from the headroom in front of a received packet,
//! so every encapsulated frame (tunnel headers and ICMP errors are built
//! in the headroom) would cost a memmove of the packet; it builds libxdp
//! from C; and it pins an old libbpf-sys. The kernel interface is small
//! and stable, so the driver speaks it directly and uses libbpf (through
//! libbpf-sys) only to load the program and reach its maps.

pub mod inbox;
pub mod kpath;
pub mod queue;
pub mod steer;
pub mod steer_model;
mod sys;
pub mod umem;

pub use inbox::Inbox;
pub use queue::{Fate, Handed, IoStats, PollMode, QueueIo, XskStats, MAX_BURST};
pub use steer::{
    emergency_detach_all, AttachMode, Attached, DetachHandle, Rule, SteerStats, Steering,
};

use queue::Sock;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::{Area, RingSizes};
use umem::Shared;

/// Errors of the AF_XDP driver (control plane only: setup and rules).
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface '{iface}' does not exist (in this network namespace)")]
    NoInterface { iface: String },
    #[error("permission denied {what} on '{iface}': AF_XDP and XDP need root or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON and CAP_IPC_LOCK")]
    NoPermission { iface: String, what: &'static str },
    #[error("this kernel has no AF_XDP sockets ({0}); it needs CONFIG_XDP_SOCKETS=y")]
    NoAfXdp(io::Error),
    #[error("queue {queue} of '{iface}' is busy: another AF_XDP socket is bound to it (gave up after {waited:?}; a previous run's sockets close asynchronously, a longer bind timeout helps)")]
    QueueBusy {
        iface: String,
        queue: u32,
        waited: Duration,
    },
    #[error("queue {queue} of '{iface}' was refused ({source}); the interface may have fewer queues (see `ethtool -l {iface}`)")]
    NoQueue {
        iface: String,
        queue: u32,
        source: io::Error,
    },
    #[error("'{iface}' does not support zero-copy AF_XDP (bind mode zero-copy); use bind mode auto or copy")]
    NoZeroCopy { iface: String },
    #[error("'{iface}' already runs XDP program '{prog}' (id {id}), which is not xvs's; remove it first (ip link set dev {iface} xdp off)")]
    ForeignProgram {
        iface: String,
        prog: String,
        id: u32,
    },
    #[error("'{iface}' is in use by another running xvs (lock {lock:?} is held)")]
    InUse { iface: String, lock: PathBuf },
    #[error("loading the XDP steering program failed: {0}")]
    Load(String),
    #[error("steering rule {rule} on '{iface}': {source}")]
    Rule {
        iface: String,
        rule: String,
        source: io::Error,
    },
    #[error("{op} on '{iface}' failed: {source}")]
    Sys {
        iface: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("AF_XDP config: `{field}` {why}")]
    Config { field: &'static str, why: String },
}

impl XdpError {
    pub(crate) fn sys(iface: &str, op: &'static str, source: io::Error) -> XdpError {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => XdpError::NoPermission {
                iface: iface.to_string(),
                what: op,
            },
            _ => XdpError::Sys {
                iface: iface.to_string(),
                op,
                source,
            },
        }
    }
}

/// Which AF_XDP bind mode to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy when the driver supports it, else copy (the kernel decides).
    #[default]
    Auto,
    /// Copy mode: the kernel copies frames between its buffers and the UMEM.
    Copy,
    /// Zero-copy only; an error where the driver cannot.
    ZeroCopy,
}

/// Setup of the AF_XDP driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// Interfaces; their order gives the port numbers of [`Fate::Tx`].
    pub interfaces: Vec<String>,
    /// Queue ids, one worker ([`QueueIo`]) each, bound on every interface.
    pub queues: Vec<u32>,
    pub attach: AttachMode,
    pub bind: BindMode,
    pub poll: PollMode,
    /// Entries of each socket's RX, TX, fill and completion rings (powers
    /// of two).
    pub rx_ring: u32,
    pub tx_ring: u32,
    pub fill_ring: u32,
    pub comp_ring: u32,
    /// UMEM chunk size: 2048 or 4096. The packet starts 256 bytes in (the
    /// kernel's XDP headroom), which is the workers' headroom.
    pub frame_size: u32,
    /// UMEM chunks per worker; 0 = enough to keep every ring of the
    /// worker's sockets full.
    pub frames_per_queue: u32,
    /// How long a busy queue is retried at bind.
    pub bind_timeout: Duration,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            interfaces: Vec::new(),
            queues: vec![0],
            attach: AttachMode::Auto,
            bind: BindMode::Auto,
            poll: PollMode::default(),
            rx_ring: 2048,
            tx_ring: 2048,
            fill_ring: 2048,
            comp_ring: 2048,
            frame_size: 4096,
            frames_per_queue: 0,
            bind_timeout: Duration::from_secs(3),
        }
    }
}

/// The kernel's headroom in front of every received packet (XDP_PACKET_HEADROOM).
pub const RX_HEADROOM: usize = 256;

impl XdpConfig {
    /// Chunks each worker gets.
    pub fn chunks_per_queue(&self) -> u32 {
        if self.frames_per_queue != 0 {
            return self.frames_per_queue;
        }
        let per_port = self.fill_ring + self.rx_ring + self.tx_ring;
        per_port
            .saturating_mul(self.interfaces.len() as u32)
            .saturating_add(MAX_BURST as u32)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`XdpError::Config`] naming the field.
    pub fn validate(&self) -> Result<(), XdpError> {
        let bad = |field, why: String| Err(XdpError::Config { field, why });
        if self.interfaces.is_empty() {
            return bad("interfaces", "is empty: name at least one interface".into());
        }
        if self.interfaces.len() > 64 {
            return bad(
                "interfaces",
                format!("has {} entries, at most 64", self.interfaces.len()),
            );
        }
        for (i, n) in self.interfaces.iter().enumerate() {
            if n.is_empty() || n.len() >= libc::IFNAMSIZ || n.contains(['/', ' ', '\0']) {
                return bad(
                    "interfaces",
                    format!("entry {i} ('{n}') is not an interface name"),
                );
            }
            if self.interfaces[..i].contains(n) {
                return bad("interfaces", format!("lists '{n}' twice"));
            }
        }
        if self.queues.is_empty() {
            return bad("queues", "is empty: name at least one queue".into());
        }
        for (i, q) in self.queues.iter().enumerate() {
            if *q >= steer::MAX_QUEUES {
                return bad(
                    "queues",
                    format!(
                        "queue {q} is beyond the last supported ({})",
                        steer::MAX_QUEUES - 1
                    ),
                );
            }
            if self.queues[..i].contains(q) {
                return bad("queues", format!("lists queue {q} twice"));
            }
        }
        for (field, v) in [
            ("rx_ring", self.rx_ring),
            ("tx_ring", self.tx_ring),
            ("fill_ring", self.fill_ring),
            ("comp_ring", self.comp_ring),
        ] {
            if !v.is_power_of_two() || !(64..=32768).contains(&v) {
                return bad(
                    field,
                    format!("is {v}: must be a power of two in 64..=32768"),
                );
            }
        }
        if self.comp_ring < self.tx_ring {
            return bad(
                "comp_ring",
                format!(
                    "({}) is smaller than tx_ring ({})",
                    self.comp_ring, self.tx_ring
                ),
            );
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return bad(
                "frame_size",
                format!("is {}: must be 2048 or 4096", self.frame_size),
            );
        }
        let need = self.fill_ring as u64 * self.interfaces.len() as u64 + MAX_BURST as u64;
        if (self.chunks_per_queue() as u64) < need {
            return bad(
                "frames_per_queue",
                format!(
                    "is {}: at least {need} needed to fill every fill ring plus a burst",
                    self.frames_per_queue
                ),
            );
        }
        if self.chunks_per_queue() as u64 * self.queues.len() as u64 * self.frame_size as u64
            > 1 << 36
        {
            return bad(
                "frames_per_queue",
                "makes the UMEM larger than 64 GiB".into(),
            );
        }
        Ok(())
    }
}

/// Index of interface `name` in the calling thread's network namespace.
///
/// # Errors
/// [`XdpError::NoInterface`] when it does not exist.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    sys::if_nametoindex(name).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) | None => XdpError::NoInterface {
            iface: name.to_string(),
        },
        _ => XdpError::sys(name, "look up interface", e),
    })
}

/// True when running as root.
pub fn is_root() -> bool {
    sys::euid() == 0
}

/// Whether this kernel offers AF_XDP sockets to this process.
///
/// # Errors
/// [`XdpError::NoAfXdp`] or [`XdpError::NoPermission`].
pub fn af_xdp_available() -> Result<(), XdpError> {
    sys::xsk_socket()
        .map(drop)
        .map_err(|e| classify_socket_error(e, "any interface"))
}

fn classify_socket_error(e: io::Error, iface: &str) -> XdpError {
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) => {
            XdpError::NoAfXdp(e)
        }
        Some(libc::EPERM) | Some(libc::EACCES) => XdpError::NoPermission {
            iface: iface.to_string(),
            what: "creating an AF_XDP socket",
        },
        _ => XdpError::sys(iface, "socket(AF_XDP)", e),
    }
}

/// Moves the calling thread into network namespace `name` (as `ip netns`
/// names them, under /run/netns). Other threads stay where they are; every
/// AF_XDP object the thread then creates belongs to that namespace.
///
/// # Errors
/// The namespace does not exist or setns was refused.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = File::open(PathBuf::from("/run/netns").join(name))?;
    sys::setns_net(&f)
}

/// Where the UMEM comes from for a new socket.
enum UmemRef<'a> {
    /// The first socket registers the area.
    Register(&'a Area),
    /// Every later one shares the first one's.
    Share(&'a OwnedFd),
}

/// The outcome of one bind attempt, sorted for the retry loop.
#[derive(Debug)]
enum BindError {
    Busy,
    Fatal(XdpError),
}

fn classify_bind_error(e: io::Error, iface: &str, queue: u32, mode: BindMode) -> BindError {
    match e.raw_os_error() {
        Some(libc::EBUSY) => BindError::Busy,
        Some(libc::EOPNOTSUPP) if mode == BindMode::ZeroCopy => {
            BindError::Fatal(XdpError::NoZeroCopy {
                iface: iface.to_string(),
            })
        }
        Some(libc::EINVAL) => BindError::Fatal(XdpError::NoQueue {
            iface: iface.to_string(),
            queue,
            source: e,
        }),
        Some(libc::ENODEV) | Some(libc::ENXIO) => BindError::Fatal(XdpError::NoInterface {
            iface: iface.to_string(),
        }),
        _ => BindError::Fatal(XdpError::sys(iface, "bind AF_XDP socket", e)),
    }
}

/// Opens and binds one socket, retrying a busy queue until the deadline.
fn open_sock(
    iface: &str,
    ifindex: u32,
    queue: u32,
    cfg: &XdpConfig,
    umem: UmemRef<'_>,
) -> Result<Sock, XdpError> {
    let sizes = RingSizes {
        rx: cfg.rx_ring,
        tx: cfg.tx_ring,
        fill: cfg.fill_ring,
        comp: cfg.comp_ring,
    };
    let flags = libc::XDP_USE_NEED_WAKEUP
        | match cfg.bind {
            BindMode::Auto => 0,
            BindMode::Copy => libc::XDP_COPY,
            BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
        };
    let start = Instant::now();
    loop {
        // A fresh socket per attempt: a failed bind leaves nothing behind.
        let fd = sys::xsk_socket().map_err(|e| classify_socket_error(e, iface))?;
        let shared = match umem {
            UmemRef::Register(area) => {
                sys::register_umem(&fd, area)
                    .map_err(|e| XdpError::sys(iface, "register UMEM", e))?;
                None
            }
            UmemRef::Share(first) => Some(first),
        };
        let (rx, tx, fill, comp) =
            sys::setup_rings(&fd, sizes).map_err(|e| XdpError::sys(iface, "set up rings", e))?;
        match sys::bind_xsk(&fd, ifindex, queue, flags, shared) {
            Ok(()) => {
                let zerocopy =
                    sys::is_zerocopy(&fd).map_err(|e| XdpError::sys(iface, "XDP_OPTIONS", e))?;
                return Ok(Sock {
                    fd,
                    rx,
                    tx,
                    fill,
                    comp,
                    zerocopy,
                });
            }
            Err(e) => match classify_bind_error(e, iface, queue, cfg.bind) {
                BindError::Busy if start.elapsed() < cfg.bind_timeout => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                BindError::Busy => {
                    return Err(XdpError::QueueBusy {
                        iface: iface.to_string(),
                        queue,
                        waited: start.elapsed(),
                    })
                }
                BindError::Fatal(e) => return Err(e),
            },
        }
    }
}

/// The director's AF_XDP setup: steering programs and the shared UMEM.
/// Dropping it detaches the programs (the workers' [`QueueIo`]s close their
/// own sockets).
#[derive(Debug)]
pub struct XdpIo {
    steering: Steering,
    shared: Arc<Shared>,
}

impl XdpIo {
    /// Attaches the steering program, binds every (interface, queue) socket
    /// on one shared UMEM, and returns the workers' [`QueueIo`]s in the
    /// order of `cfg.queues`. Runs in the calling thread's network
    /// namespace.
    ///
    /// # Errors
    /// Invalid config, missing interface, no permission, no AF_XDP, a busy
    /// queue, a foreign XDP program; everything set up so far is undone.
    pub fn open(cfg: &XdpConfig) -> Result<(XdpIo, Vec<QueueIo>), XdpError> {
        cfg.validate()?;
        sys::xsk_socket().map_err(|e| classify_socket_error(e, &cfg.interfaces[0]))?;
        let names: Vec<&str> = cfg.interfaces.iter().map(String::as_str).collect();
        let steering = Steering::attach(&names, cfg.attach)?;
        let (shared, pools) = Shared::new(
            cfg.queues.len() as u32,
            cfg.chunks_per_queue(),
            cfg.frame_size,
        )
        .map_err(|e| XdpError::sys(&cfg.interfaces[0], "map UMEM", e))?;
        let shared = Arc::new(shared);

        let mut first: Option<OwnedFd> = None;
        let mut per_queue: Vec<Vec<Sock>> = Vec::with_capacity(cfg.queues.len());
        for &q in &cfg.queues {
            let mut socks = Vec::with_capacity(names.len());
            for (port, name) in names.iter().enumerate() {
                let ifindex = steering.ifindex(port).unwrap_or(0);
                let umem = match &first {
                    None => UmemRef::Register(&shared.area),
                    Some(fd) => UmemRef::Share(fd),
                };
                let s = open_sock(name, ifindex, q, cfg, umem)?;
                if first.is_none() {
                    first = Some(
                        s.fd.try_clone()
                            .map_err(|e| XdpError::sys(name, "dup socket", e))?,
                    );
                }
                socks.push(s);
            }
            per_queue.push(socks);
        }
        drop(first);

        let mut queues = Vec::with_capacity(cfg.queues.len());
        for ((socks, pool), &q) in per_queue.into_iter().zip(pools).zip(&cfg.queues) {
            // QueueIo::new fills the fill rings before any frame is steered.
            let fds: Vec<i32> = socks.iter().map(|s| s.fd.as_raw_fd()).collect();
            queues.push(QueueIo::new(shared.clone(), q, socks, pool, cfg.poll));
            for (port, fd) in fds.into_iter().enumerate() {
                steering.register_socket(port, q, fd)?;
            }
        }
        Ok((XdpIo { steering, shared }, queues))
    }

    /// Replaces the steering rules (see [`Steering::set_rules`]).
    ///
    /// # Errors
    /// As [`Steering::set_rules`].
    pub fn set_rules(&mut self, rules: &[Rule]) -> Result<(), XdpError> {
        self.steering.set_rules(rules)
    }

    /// The steering programs.
    pub fn steering(&self) -> &Steering {
        &self.steering
    }

    /// A handle that detaches the programs from a signal handler.
    pub fn detach_handle(&self) -> DetachHandle {
        self.steering.detach_handle()
    }

    /// Bytes per UMEM chunk.
    pub fn chunk_size(&self) -> u32 {
        self.shared.chunk_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> XdpConfig {
        XdpConfig {
            interfaces: vec!["eth0".into(), "eth1".into()],
            queues: vec![0, 1],
            ..XdpConfig::default()
        }
    }

    #[test]
    fn default_config_with_interfaces_is_valid() {
        cfg().validate().unwrap();
        assert_eq!(cfg().chunks_per_queue(), 2 * 3 * 2048 + MAX_BURST as u32);
    }

    #[test]
    fn bad_config_fields_are_named() {
        let cases: Vec<(&str, XdpConfig)> = vec![
            (
                "interfaces",
                XdpConfig {
                    interfaces: vec![],
                    ..cfg()
                },
            ),
            (
                "interfaces",
                XdpConfig {
                    interfaces: vec!["a".into(), "a".into()],
                    ..cfg()
                },
            ),
            (
                "interfaces",
                XdpConfig {
                    interfaces: vec!["a/b".into()],
                    ..cfg()
                },
            ),
            (
                "interfaces",
                XdpConfig {
                    interfaces: vec!["x".repeat(16)],
                    ..cfg()
                },
            ),
            (
                "queues",
                XdpConfig {
                    queues: vec![],
                    ..cfg()
                },
            ),
            (
                "queues",
                XdpConfig {
                    queues: vec![1, 1],
                    ..cfg()
                },
            ),
            (
                "queues",
                XdpConfig {
                    queues: vec![256],
                    ..cfg()
                },
            ),
            (
                "rx_ring",
                XdpConfig {
                    rx_ring: 1000,
                    ..cfg()
                },
            ),
            (
                "tx_ring",
                XdpConfig {
                    tx_ring: 32,
                    ..cfg()
                },
            ),
            (
                "comp_ring",
                XdpConfig {
                    comp_ring: 512,
                    tx_ring: 1024,
                    ..cfg()
                },
            ),
            (
                "frame_size",
                XdpConfig {
                    frame_size: 1500,
                    ..cfg()
                },
            ),
            (
                "frames_per_queue",
                XdpConfig {
                    frames_per_queue: 100,
                    ..cfg()
                },
            ),
        ];
        for (field, c) in cases {
            match c.validate() {
                Err(XdpError::Config { field: f, why }) => assert_eq!(f, field, "{why}"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        match ifindex("xvs-nonexistent0") {
            Err(e @ XdpError::NoInterface { .. }) => {
                assert!(e.to_string().contains("xvs-nonexistent0"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bind_errors_are_sorted() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(matches!(
            classify_bind_error(e(libc::EBUSY), "v", 0, BindMode::Auto),
            BindError::Busy
        ));
        assert!(matches!(
            classify_bind_error(e(libc::EOPNOTSUPP), "v", 0, BindMode::ZeroCopy),
            BindError::Fatal(XdpError::NoZeroCopy { .. })
        ));
        match classify_bind_error(e(libc::EINVAL), "v", 3, BindMode::Auto) {
            BindError::Fatal(err @ XdpError::NoQueue { .. }) => {
                assert!(err.to_string().contains("queue 3 of 'v'"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_bind_error(e(libc::EPERM), "v", 0, BindMode::Auto),
            BindError::Fatal(XdpError::NoPermission { .. })
        ));
        assert!(matches!(
            classify_socket_error(e(libc::EAFNOSUPPORT), "v"),
            XdpError::NoAfXdp(_)
        ));
        assert!(matches!(
            classify_socket_error(e(libc::EPERM), "v"),
            XdpError::NoPermission { .. }
        ));
        let busy = XdpError::QueueBusy {
            iface: "v".into(),
            queue: 2,
            waited: Duration::from_secs(3),
        };
        assert!(busy.to_string().contains("queue 2 of 'v' is busy"));
    }
}
