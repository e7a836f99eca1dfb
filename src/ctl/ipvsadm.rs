//! ipvsadm's language over the xvs model.
//!
//! Operators have driven LVS with ipvsadm for twenty years; xvs speaks the
//! same language so their commands, scripts and habits carry over:
//!
//! - [`parse`] turns an ipvsadm argument vector (without the program name)
//!   into a [`Command`], with ipvsadm's defaults (scheduler `wlc`, weight 1,
//!   `-g`, persistence 300 s) and ipvsadm's usage errors ([`UsageError`],
//!   exit code 2). [`parse_rules`] reads the ipvsadm-save format.
//! - [`apply`] carries a command out on a [`Model`]. A change is validated
//!   whole (`Snapshot::build`) and the model is left untouched on any error;
//!   errors are ipvsadm's own words ("Service already exists", ...) or the
//!   snapshot's, which name the bad object ([`CmdError`], exit code 1).
//! - [`render`] prints what a read-only command shows, byte for byte as
//!   ipvsadm 1.31 lays it out (`-L`, `--stats`, `--rate`, `--exact`,
//!   `--thresholds`, `--persistent-conn`, `--tun-info`, `-c`, `--timeout`,
//!   `-S`), from the model plus a [`StatsView`] and [`ConnEntry`] list the
//!   daemon fills in.
//!
//! Names are never resolved: xvs has no resolver on the control path, so
//! addresses and ports are always numeric, with or without `-n` (ipvsadm
//! would print host and service names when they resolve). Firewall marks
//! (`-f mark`) name a service group defined in the configuration.

mod apply;
mod help;
mod list;
mod parse;
mod save;

pub use apply::{apply, restore};
pub use help::{help, version};
pub use list::{render, ConnEntry, Figures, LaddrFigures, Rate, StatsView, View, TABLE_SIZE};
pub use parse::{options, parse, parse_rules, OptValue};
pub use save::{rule_name, save};

use super::snapshot::ModelError;
use crate::ipvs::service::ServiceKey;
use crate::ipvs::{FwdMethod, Proto};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// ipvsadm's default scheduler.
pub const DEFAULT_SCHED: &str = "wlc";

/// Longest persistence / connection timeout ipvsadm accepts (31 days).
pub use crate::ipvs::timer::MAX_TIMEOUT;

/// The service a command names: ipvsadm's `-t|-u host:port` or `-f mark`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SvcAddr {
    /// `-t` / `-u`: protocol, virtual address and port (0 = every port).
    Addr {
        proto: Proto,
        addr: IpAddr,
        port: u16,
    },
    /// `-f mark [-6]`: service group `mark`, defined in the config.
    Mark { mark: u32, v6: bool },
}

impl SvcAddr {
    /// The model's key for this service.
    pub fn key(&self) -> ServiceKey {
        match self {
            SvcAddr::Addr { proto, addr, port } => ServiceKey::Addr {
                proto: *proto,
                addr: *addr,
                port: *port,
            },
            SvcAddr::Mark { mark, .. } => ServiceKey::Group(*mark),
        }
    }

    /// The address family the command line implies (`-6` for marks).
    pub fn is_v6(&self) -> bool {
        match self {
            SvcAddr::Addr { addr, .. } => addr.is_ipv6(),
            SvcAddr::Mark { v6, .. } => *v6,
        }
    }

    /// The virtual port (0 for marks).
    pub fn port(&self) -> u16 {
        match self {
            SvcAddr::Addr { port, .. } => *port,
            SvcAddr::Mark { .. } => 0,
        }
    }
}

impl fmt::Display for SvcAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key().fmt(f)
    }
}

/// `-A` / `-E`: a virtual service and its scheduling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub svc: SvcAddr,
    /// `-s` (default [`DEFAULT_SCHED`]).
    pub sched: String,
    /// `-b`, as [`crate::ipvs::sched::SchedFlags`] bits.
    pub sched_flags: u8,
    /// `-p [timeout]`: persistence timeout in seconds.
    pub persistent: Option<u32>,
    /// `-M`: persistence granularity as a prefix length; `None` = one
    /// client address (/32 or /128).
    pub netmask: Option<u8>,
    /// `--synproxy` / `-j` (xvs, as DPVS; ipvsadm has none).
    #[serde(default)]
    pub synproxy: bool,
}

/// `-a` / `-e`: a real server of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub svc: SvcAddr,
    pub addr: IpAddr,
    pub port: u16,
    pub fwd: FwdMethod,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// `--proxy-protocol v1|v2` (xvs; ipvsadm has none).
    #[serde(default)]
    pub proxy: Option<crate::wire::proxy::Version>,
}

/// What `-L` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListWhat {
    /// The whole table.
    #[default]
    All,
    /// One service (`-L -t vip:port`).
    Service(SvcAddr),
    /// `-c`: the connection entries.
    Connections,
    /// `--timeout`.
    Timeout,
    /// `--daemon`: the connection-sync daemons.
    Daemon,
}

/// `-L` and its format options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOpts {
    pub what: ListWhat,
    pub numeric: bool,
    pub stats: bool,
    pub rate: bool,
    pub exact: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub nosort: bool,
    pub tun_info: bool,
}

/// One ipvsadm command line, parsed. The daemon and `xvsadm` share it (it
/// crosses the control socket as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    AddService(ServiceSpec),
    EditService(ServiceSpec),
    DelService(SvcAddr),
    AddDest(DestSpec),
    EditDest(DestSpec),
    DelDest {
        svc: SvcAddr,
        addr: IpAddr,
        port: u16,
    },
    /// `-C`: remove every service (groups and timeouts stay).
    Clear,
    /// `--set tcp tcpfin udp` (0 leaves a value unchanged).
    SetTimeouts {
        tcp: u32,
        tcpfin: u32,
        udp: u32,
    },
    /// xvs: `--sloppy-tcp on|off`, IPVS's `sloppy_tcp` sysctl (ipvsadm
    /// has no option for it): schedule a TCP packet of an unknown flow
    /// that is not a SYN (nor a RST) instead of dropping it.
    SetSloppyTcp(bool),
    /// `-Z [service]`: zero the counters.
    Zero(Option<SvcAddr>),
    List(ListOpts),
    /// `-S [-n]`.
    Save {
        numeric: bool,
    },
    /// `-R`: `parse` leaves `rules` empty; the caller fills in the text
    /// (xvsadm reads standard input).
    Restore {
        rules: String,
    },
    /// DPVS's `--add-laddr -t|-u service -z addr [-F ifname]`.
    AddLaddr {
        svc: SvcAddr,
        addr: IpAddr,
        ifname: Option<String>,
    },
    /// DPVS's `--del-laddr -t|-u service -z addr`.
    DelLaddr {
        svc: SvcAddr,
        addr: IpAddr,
        ifname: Option<String>,
    },
    /// DPVS's `--get-laddr [-t|-u service]`.
    GetLaddr(Option<SvcAddr>),
    /// xvs: re-read the configuration file (as SIGHUP).
    Reload,
    /// xvs: the daemon's own counters (`xvsadm --stats` without `-L`).
    DaemonStats,
    /// `--start-daemon master|backup [--mcast-interface IF] [--syncid N]
    /// [--sync-maxlen N] [--mcast-group ADDR] [--mcast-port P] [--mcast-ttl T]`.
    StartDaemon {
        role: crate::sync::conf::Role,
        daemon: crate::sync::conf::DaemonConf,
    },
    /// `--stop-daemon master|backup`.
    StopDaemon(crate::sync::conf::Role),
    /// xvs: `--sync-status`, whose exit code says whether this director
    /// holds its peers' connections (keepalived's `track_script`).
    SyncStatus,
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

/// A command line ipvsadm would refuse; xvsadm exits with code 2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
    /// Follow the message with ipvsadm's "Try `-h'" hint.
    pub try_help: bool,
}

impl UsageError {
    pub(crate) fn new(message: impl Into<String>) -> UsageError {
        UsageError {
            message: message.into(),
            try_help: false,
        }
    }
    pub(crate) fn try_help(message: impl Into<String>) -> UsageError {
        UsageError {
            message: message.into(),
            try_help: true,
        }
    }
}

/// ipvsadm's errors for operations on the table (libipvs's messages).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpvsError {
    #[error("Service already exists")]
    ServiceExists,
    #[error("No such service")]
    NoService,
    /// Adding/editing/deleting a real server of a service that is not there.
    #[error("Service not defined")]
    ServiceNotDefined,
    #[error("Destination already exists")]
    DestExists,
    #[error("No such destination")]
    NoDest,
    #[error("Scheduler or persistence engine not found (scheduler '{name}'; xvs has: {known})")]
    SchedulerNotFound { name: String, known: String },
    #[error("Local address already exists")]
    LaddrExists,
    #[error("No such local address")]
    NoLaddr,
    /// `-f mark -6` for an IPv4 group.
    #[error("FWM {mark}: service group {mark} is IPv4, but -6 was given")]
    GroupFamily { mark: u32 },
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// The operation does not fit the table (exit code 1).
    #[error(transparent)]
    Ipvs(#[from] IpvsError),
    /// The result would not validate; names the bad object (exit code 1).
    #[error("{0}")]
    Invalid(#[from] ModelError),
    /// A malformed command (from a rules file or a raw socket client).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The command cannot run here (e.g. a listing inside `-R` rules).
    #[error("{0}")]
    NotHere(String),
    /// An error on line `line` of `-R` rules.
    #[error("line {line}: {source}")]
    Line { line: usize, source: Box<CmdError> },
}

impl CmdError {
    /// ipvsadm's exit code for this error: 2 for usage errors, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            CmdError::Usage(_) => 2,
            CmdError::Line { source, .. } => source.exit_code(),
            _ => 1,
        }
    }
}

/// What [`apply`] did, and what the caller has left to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The model changed and validates: build and publish a new snapshot.
    Changed,
    /// Zero the counters of this service (`None`: all); the model is as it was.
    Zero(Option<ServiceKey>),
    /// A read-only command: print [`render`]'s text.
    Query,
    /// A daemon command (`--reload`, `--stats`): the daemon carries it out.
    Daemon,
}

/// `addr:port`, IPv6 in brackets (ipvsadm's numeric form).
pub(crate) fn fmt_addr_port(addr: IpAddr, port: u16) -> String {
    crate::ctl::snapshot::fmt_sock(addr, port)
}
