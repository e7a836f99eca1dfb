//! The TOML configuration file → [`Model`].
//!
//! Contract: [`load_file`] / [`load_str`] either return a model that
//! [`Snapshot::build`] accepts, or a [`ConfigError`] that names the origin
//! (file), the line and column, the field path (`service[1].real_server[0]
//! .weight`) and why. Nothing in the text can make the loader panic.
//!
//! Loading goes in three steps, each with its own kind of error:
//! 1. TOML syntax: parsed once into a spanned tree ([`DeTable`]); a syntax
//!    error carries a byte span that becomes a line and column (and, in the
//!    part of the tree the parser could still build, a field path).
//! 2. Shape: the tree is deserialized into `Raw*` structs with
//!    `deny_unknown_fields`, so a misspelt key or a wrong type is an error;
//!    serde reports a span, and the spanned tree turns it into a field path.
//! 3. Values: every field is checked and converted (addresses, prefixes,
//!    MACs, names, ranges, duplicates) into the model's types; the field path
//!    of a bad value is known here, the tree turns it into a line and column.
//!
//! Finally the model is compiled once with [`Snapshot::build`] for the
//! cross-object checks (schedulers, overlapping services, ...); its
//! [`ModelError`] is kept whole and, where it names a service or real
//! server, pointed at that object in the file.
//!
//! The file format is documented field by field in `docs/config.md`.

use super::model::{parse_mac, Mac, Model, Neighbour, NetConf, PortConf, RouteConf, RouteHop, SubIfConf};
use super::snapshot::{fmt_sock, ModelError, Snapshot};
use crate::ipvs::dest::{Dest, MAX_WEIGHT};
use crate::ipvs::proto::{TcpState, Timeouts};
use crate::ipvs::sched::SchedFlags;
use crate::ipvs::service::{Group, GroupMember, Persistence, Service, ServiceKey};
use crate::ipvs::{FwdMethod, Proto};
use crate::health::config::{Checks, SorryServerConfig};
use crate::health::plan::HealthPlan;
use crate::health::DestId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The scheduler of a service that names none (ipvsadm's `DEF_SCHED`).
pub const DEFAULT_SCHEDULER: &str = "wlc";
/// The MAC of an `[[interface]]` that gives none (`xvs run` takes the
/// kernel's; replay refuses it).
pub const NO_MAC: Mac = [0; 6];

/// The MTU of an interface that gives none.
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU accepted: every IPv4 host must take 576-byte datagrams.
pub const MIN_MTU: u16 = 576;
/// Largest timeout (connection states, persistence) in seconds: 31 days,
/// ipvsadm's and keepalived's bound (the timer wheel's, `ipvs::timer`).
pub use crate::ipvs::timer::MAX_TIMEOUT;
/// Largest connection threshold (ipvsadm `-x`/`-y` take 0..INT_MAX).
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;
/// Longest interface name (Linux `IFNAMSIZ` less the terminating NUL).
pub const MAX_IFNAME: usize = 15;

/// A position in the configuration text, both counted from 1. Columns count
/// characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a configuration was rejected. Every variant names its origin (the
/// file name, or what the caller of [`load_str`] passed); the display form is
/// `origin: line L, column C: field.path: why`, with the parts that are
/// unknown left out.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{origin}: cannot read the configuration: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML. `path` is the field the error is in,
    /// when it is in one (often empty).
    #[error("{}{why}", head(.origin, .at, .path))]
    Syntax {
        origin: String,
        at: Option<Location>,
        path: String,
        why: String,
    },
    /// A field is unknown, missing, of the wrong type, or its value is bad.
    #[error("{}{why}", head(.origin, .at, .path))]
    Invalid {
        origin: String,
        at: Option<Location>,
        /// The field, e.g. `service[1].real_server[0].weight` (indices count
        /// from 0); empty when serde could not say.
        path: String,
        why: String,
    },
    /// An ipvsadm-save rules file (the other format `xvs run --config`
    /// takes) with a bad line; the error names the line.
    #[error("{origin}: {source}")]
    Rules {
        origin: String,
        #[source]
        source: crate::ctl::ipvsadm::CmdError,
    },
    /// The fields are fine one by one, but the model does not compile
    /// ([`Snapshot::build`] refused it). `path` and `at` point at the
    /// service or real server the model error names, when it names one.
    #[error("{}{source}", head(.origin, .at, .path))]
    Model {
        origin: String,
        at: Option<Location>,
        path: String,
        #[source]
        source: ModelError,
    },
}

/// `origin: line L, column C: path: ` without the parts that are missing.
fn head(origin: &str, at: &Option<Location>, path: &str) -> String {
    let mut s = format!("{origin}: ");
    if let Some(at) = at {
        s.push_str(&format!("{at}: "));
    }
    if !path.is_empty() {
        s.push_str(path);
        s.push_str(": ");
    }
    s
}

impl ConfigError {
    /// The field path the error is about, if known.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Syntax { path, .. }
            | ConfigError::Invalid { path, .. }
            | ConfigError::Model { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            _ => None,
        }
    }

    /// Where in the text the error is, if known.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Read { .. } | ConfigError::Rules { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::Invalid { at, .. }
            | ConfigError::Model { at, .. } => *at,
        }
    }
}

/// A loaded configuration: the forwarding model and the health checks of
/// its real servers.
#[derive(Debug)]
pub struct Config {
    pub model: Model,
    pub health: HealthPlan,
    /// What `xvs run` serves besides forwarding (`[global]`).
    pub daemon: DaemonConf,
    /// Connection sync (`[sync]`, `src/sync/conf.rs`).
    pub sync: crate::sync::conf::SyncConf,
}

/// Where `xvs run` listens for operators: the control socket of `xvsadm`
/// and the Prometheus endpoint (`[global] control_socket`, `metrics`).
/// Read at start; a reload that changes them is logged and ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConf {
    /// The control socket (default [`crate::ctl::control::DEFAULT_SOCKET`]).
    pub control_socket: std::path::PathBuf,
    /// Where the metrics endpoint listens; `None`: `"off"`.
    pub metrics: Option<std::net::SocketAddr>,
    /// The group given the control socket (mode 0660); `None`: mode 0600.
    pub control_socket_group: Option<u32>,
    /// The monitor (`[monitor]`; `None` without the table).
    pub monitor: Option<crate::monitor::MonitorConf>,
    /// VIP announcement for a routing daemon (`[announce]`; `None`
    /// without the table).
    pub announce: Option<crate::daemon::announce::AnnounceConf>,
    /// How workers own flows (`[global] ownership`, `daemon::rss`).
    pub ownership: crate::daemon::rss::Ownership,
}

/// The metrics endpoint unless the config says otherwise: localhost only,
/// so nothing is exposed until the operator chooses to.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9477";

impl Default for DaemonConf {
    fn default() -> Self {
        DaemonConf {
            control_socket: crate::ctl::control::DEFAULT_SOCKET.into(),
            metrics: DEFAULT_METRICS.parse().ok(),
            control_socket_group: None,
            monitor: None,
            announce: None,
            ownership: crate::daemon::rss::Ownership::Auto,
        }
    }
}

/// Reads `[global] metrics`: `"off"` or `address:port` (IPv6 in brackets).
///
/// # Errors
/// A message saying what is wrong with `text`.
pub fn parse_metrics(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!("'{text}' is not \"off\" or an address:port such as \"{DEFAULT_METRICS}\" or \"[::1]:9477\"")
    })
}

/// Reads and loads a configuration file. See [`load_str`].
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read, otherwise as
/// [`load_str`], with the file's path as origin.
pub fn load_file(path: &Path) -> Result<Model, ConfigError> {
    load_config_file(path).map(|c| c.model)
}

/// Loads a configuration from TOML text. `origin` names it in errors
/// (usually the file name). The model is also compiled once with
/// [`Snapshot::build`], so a returned model is known to be usable.
///
/// # Errors
/// The first problem found: syntax, an unknown/missing/mistyped field, a bad
/// value, or a model that does not compile. See [`ConfigError`].
pub fn load_str(text: &str, origin: &str) -> Result<Model, ConfigError> {
    load_config_str(text, origin).map(|c| c.model)
}

/// Reads a configuration file with its health checks. See
/// [`load_config_str`].
///
/// # Errors
/// As [`load_file`].
pub fn load_config_file(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: origin.clone(),
        source,
    })?;
    load_config_str(&text, &origin)
}

/// Loads a configuration and the health-check plan of its real servers
/// (`check` tables and `sorry_server`s), validated together: the model with
/// every checked server down must still compile.
///
/// # Errors
/// As [`load_str`], and bad checks or sorry servers, naming the field.
pub fn load_config_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    if is_ipvsadm_rules(text) {
        return load_rules_str(text, origin);
    }
    let doc = Doc::parse(text, origin)?;
    let model = doc.model()?;
    if let Err(e) = Snapshot::build(&model, None) {
        let path = model_error_path(&model, &e).unwrap_or_default();
        return Err(ConfigError::Model {
            origin: origin.to_string(),
            at: doc.locate(&path),
            path: path.to_string(),
            source: e,
        });
    }
    let health = doc.health(&model)?;
    let daemon = doc.daemon()?;
    let sync = doc.sync()?;
    Ok(Config { model, health, daemon, sync })
}

/// Whether `text` is ipvsadm-save rules rather than TOML: its first line
/// that is neither blank nor a `#` comment is an ipvsadm command (`-A ...`,
/// `-C`). No TOML document starts so: a bare key cannot hold a space.
pub fn is_ipvsadm_rules(text: &str) -> bool {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    first.is_some_and(|l| l.starts_with('-') && (l.contains(char::is_whitespace) || l == "-C"))
}

/// Loads ipvsadm-save rules (`ipvsadm -S` / `xvsadm -S` output) as a
/// configuration: the services and real servers of the rules, everything
/// else at its default (interfaces then come from `xvs run -i`; no health
/// checks; the default listeners). The rules are applied to an empty model
/// as `ipvsadm -R` would, validated whole.
///
/// # Errors
/// [`ConfigError::Rules`] naming the first bad line.
pub fn load_rules_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut model = Model::default();
    crate::ctl::ipvsadm::restore(&mut model, text).map_err(|source| ConfigError::Rules {
        origin: origin.to_string(),
        source,
    })?;
    Ok(Config { model, health: HealthPlan::default(), daemon: DaemonConf::default(), sync: Default::default() })
}

// ---------------------------------------------------------------------------
// The file's shape. Numbers are i64 (TOML's integer) so that range errors
// are ours, with the field path and the bound, rather than serde's.

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    global: Option<RawGlobal>,
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    interface: Vec<RawInterface>,
    #[serde(default)]
    neighbour: Vec<RawNeighbour>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    group: Vec<RawGroup>,
    #[serde(default)]
    service: Vec<RawService>,
    monitor: Option<crate::monitor::conf::RawMonitor>,
    sync: Option<crate::sync::conf::RawSync>,
    announce: Option<RawAnnounce>,
}

/// `[announce]` as written (docs/scale-out.md).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawAnnounce {
    table: i64,
    device: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    expire_nodest_conn: Option<bool>,
    conn_reuse_mode: Option<i64>,
    drop_entry: Option<bool>,
    icmp_msgs_per_sec: Option<i64>,
    icmp_msgs_burst: Option<i64>,
    toa: Option<bool>,
    expire_quiescent_template: Option<bool>,
    sloppy_tcp: Option<bool>,
    max_conns: Option<i64>,
    shard_prefix_v4: Option<i64>,
    shard_prefix_v6: Option<i64>,
    control_socket: Option<String>,
    control_socket_group: Option<String>,
    metrics: Option<String>,
    ownership: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp: Option<i64>,
    tcp_fin: Option<i64>,
    udp: Option<i64>,
    /// State name (lower case) → seconds; the names are checked against
    /// [`TcpState`] so the list cannot drift from the state machine.
    tcp_state: Option<BTreeMap<String, i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    /// Optional for `xvs run`, which takes it from the kernel; replay
    /// needs it ([`NO_MAC`] when absent).
    mac: Option<String>,
    mtu: Option<i64>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    gateways: Vec<String>,
    /// A sub-interface of this port (another `[[interface]]`).
    link: Option<String>,
    /// Its 802.1Q VLAN id.
    vlan: Option<i64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawNeighbour {
    ip: String,
    mac: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: String,
    via: Option<String>,
    dev: Option<String>,
    metric: Option<i64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    id: i64,
    members: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawService {
    proto: Option<String>,
    vip: Option<String>,
    port: Option<i64>,
    group: Option<i64>,
    scheduler: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    persistence: Option<i64>,
    persistence_netmask: Option<i64>,
    #[serde(default)]
    local_addresses: Vec<String>,
    #[serde(default)]
    real_server: Vec<RawRealServer>,
    sorry_server: Option<SorryServerConfig>,
    /// The SYN proxy (`docs/modes.md`): NAT and FULLNAT TCP services.
    #[serde(default)]
    synproxy: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRealServer {
    ip: String,
    port: Option<i64>,
    weight: Option<i64>,
    mode: Option<String>,
    upper_threshold: Option<i64>,
    lower_threshold: Option<i64>,
    /// `"v1"` / `"v2"`: a PROXY protocol header in front of each TCP
    /// connection's stream (NAT, FULLNAT).
    proxy_protocol: Option<String>,
    /// Health checks (`docs/health.md`): one table or an array of tables.
    check: Option<Checks>,
}

// ---------------------------------------------------------------------------
// Field paths.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Where a field is: `service[1].real_server[0].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldPath(Vec<Seg>);

impl FieldPath {
    fn key(&self, k: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    fn idx(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Idx(i));
        p
    }
}

fn root(k: &str) -> FieldPath {
    FieldPath::default().key(k)
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Idx(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    // Keys that are not bare TOML keys are quoted, so the path
                    // reads back unambiguously.
                    if !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A bad value: where and why.
#[derive(Debug)]
struct Bad {
    path: FieldPath,
    why: String,
}

type V<T> = Result<T, Bad>;

fn bad<T>(path: &FieldPath, why: impl Into<String>) -> V<T> {
    Err(Bad {
        path: path.clone(),
        why: why.into(),
    })
}

// ---------------------------------------------------------------------------
// The parsed document: the text, its spanned tree, and the shape.

struct Doc<'i> {
    origin: &'i str,
    text: &'i str,
    tree: Spanned<DeTable<'i>>,
    raw: RawConfig,
}

impl<'i> Doc<'i> {
    /// Steps 1 and 2: syntax and shape.
    fn parse(text: &'i str, origin: &'i str) -> Result<Doc<'i>, ConfigError> {
        // The recovering parser also gives the tree it could build, which
        // names the field a syntax error sits in, when it is in one.
        let (tree, errors) = DeTable::parse_recoverable(text);
        // Where an error of the parser or of serde sits, by its span.
        let place = |span: Option<Range<usize>>| match span {
            Some(s) => (Some(location(text, s.start)), path_at(&tree, s.start)),
            None => (None, FieldPath::default()),
        };
        if let Some(e) = errors.first() {
            let (at, path) = place(e.span());
            return Err(ConfigError::Syntax {
                origin: origin.to_string(),
                at,
                path: path.to_string(),
                why: tidy(e.message()),
            });
        }
        let raw =
            RawConfig::deserialize(toml::de::Deserializer::from(tree.clone())).map_err(|e| {
                let (at, path) = place(e.span());
                ConfigError::Invalid {
                    origin: origin.to_string(),
                    at,
                    path: path.to_string(),
                    why: tidy(e.message()),
                }
            })?;
        Ok(Doc {
            origin,
            text,
            tree,
            raw,
        })
    }

    /// The span of the value at `path`, or of its deepest part that exists
    /// (a missing field is reported at its table).
    fn span_of(&self, path: &FieldPath) -> Option<Range<usize>> {
        let mut span = None;
        let mut cur: Option<&DeValue<'_>> = None;
        for seg in &path.0 {
            let next = match (seg, cur) {
                (Seg::Key(k), None) => find_key(self.tree.get_ref(), k),
                (Seg::Key(k), Some(DeValue::Table(t))) => find_key(t, k),
                (Seg::Idx(i), Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            match next {
                Some(v) => {
                    span = Some(v.span());
                    cur = Some(v.get_ref());
                }
                None => break,
            }
        }
        span
    }

    fn locate(&self, path: &FieldPath) -> Option<Location> {
        self.span_of(path).map(|s| location(self.text, s.start))
    }

    fn invalid(&self, b: Bad) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            at: self.locate(&b.path),
            path: b.path.to_string(),
            why: b.why,
        }
    }

    /// Step 3: values → model.
    fn model(&self) -> Result<Model, ConfigError> {
        let m = build_model(&self.raw).map_err(|b| self.invalid(b))?;
        // [global]'s listeners are checked with the rest of the values.
        self.daemon()?;
        Ok(m)
    }

    /// The daemon's listeners (`[global] control_socket`, `metrics`,
    /// `[monitor]`).
    fn daemon(&self) -> Result<DaemonConf, ConfigError> {
        let mut d = DaemonConf::default();
        if let Some(g) = &self.raw.global {
            if let Some(p) = &g.control_socket {
                let path = root("global").key("control_socket");
                // sun_path holds 107 bytes and a NUL.
                if !p.starts_with('/') || p.ends_with('/') || p.len() > 107 || p.contains('\0') {
                    return Err(self.invalid(Bad {
                        path,
                        why: format!("'{p}' is not an absolute socket path of at most 107 bytes"),
                    }));
                }
                d.control_socket = p.into();
            }
            if let Some(m) = &g.metrics {
                let path = root("global").key("metrics");
                d.metrics = parse_metrics(m).map_err(|why| self.invalid(Bad { path, why }))?;
            }
            if let Some(o) = &g.ownership {
                let path = root("global").key("ownership");
                d.ownership = o.parse().map_err(|why| self.invalid(Bad { path, why }))?;
            }
            if let Some(group) = &g.control_socket_group {
                let path = root("global").key("control_socket_group");
                let gid = crate::daemon::privs::group_id(group).map_err(|e| self.invalid(Bad { path, why: e.to_string() }))?;
                d.control_socket_group = Some(gid);
            }
        }
        if let Some(a) = &self.raw.announce {
            d.announce = Some(
                crate::daemon::announce::AnnounceConf::new(a.table, a.device.as_deref())
                    .map_err(|(field, why)| self.invalid(Bad { path: root("announce").key(field), why }))?,
            );
        }
        if let Some(m) = &self.raw.monitor {
            use crate::monitor::conf::PathSeg;
            d.monitor = Some(m.build().map_err(|(segs, why)| {
                let path = segs.iter().fold(root("monitor"), |p, s| match s {
                    PathSeg::Key(k) => p.key(k),
                    PathSeg::Idx(i) => p.idx(*i),
                });
                self.invalid(Bad { path, why })
            })?);
        }
        Ok(d)
    }

    /// Connection sync (`[sync]`); a bad field is named under `sync`.
    fn sync(&self) -> Result<crate::sync::conf::SyncConf, ConfigError> {
        let Some(raw) = &self.raw.sync else { return Ok(Default::default()) };
        crate::sync::conf::build(raw).map_err(|(field, why)| {
            // `master.syncid`, `peers[1]` → field path segments.
            let mut path = root("sync");
            for part in field.split('.') {
                match part.split_once('[') {
                    Some((k, i)) => path = path.key(k).idx(i.trim_end_matches(']').parse().unwrap_or(0)),
                    None => path = path.key(part),
                }
            }
            self.invalid(Bad { path, why })
        })
    }

    /// Step 4: the health checks of `model` (built from this document, so
    /// its services and real servers are in the file's order).
    fn health(&self, model: &Model) -> Result<HealthPlan, ConfigError> {
        let mut plan = HealthPlan::new();
        // A health error's field (`check.rise`) under a path of ours.
        // (Its context, e.g. `service TCP 10.0.0.100:80: `, is dropped: our
        // path says where.)
        let under = |base: &FieldPath, field: &str| {
            let field = field.rsplit(": ").next().unwrap_or(field);
            field.split('.').skip(1).fold(base.clone(), |p, k| p.key(k))
        };
        for (i, rs) in self.raw.service.iter().enumerate() {
            let svc = &model.services[i];
            let spath = root("service").idx(i);
            for (j, rr) in rs.real_server.iter().enumerate() {
                let Some(checks) = &rr.check else { continue };
                let dest = &svc.dests[j];
                let cpath = spath.key("real_server").idx(j).key("check");
                for (k, c) in checks.0.iter().enumerate() {
                    let base = if checks.0.len() > 1 { cpath.idx(k) } else { cpath.clone() };
                    if let Err(e) = c.validate(DestId { addr: dest.addr, port: dest.port }) {
                        return Err(self.invalid(Bad { path: under(&base, &e.field), why: e.why }));
                    }
                }
                plan.add_real_server(&svc.key, dest, &checks.0)
                    .map_err(|e| self.invalid(Bad { path: cpath.clone(), why: e.why }))?;
            }
            if let Some(sorry) = &rs.sorry_server {
                let path = spath.key("sorry_server");
                plan.set_sorry_server(&svc.key, &svc.dests, sorry)
                    .map_err(|e| self.invalid(Bad { path: under(&path, &e.field), why: e.why }))?;
            }
        }
        plan.validate(model).map_err(|e| self.invalid(Bad { path: FieldPath::default(), why: e.to_string() }))?;
        Ok(plan)
    }
}

/// serde's and toml's messages on one line, with TOML's type names.
fn tidy(msg: &str) -> String {
    msg.trim_end()
        .replace('\n', "; ")
        .replace("expected i64", "expected an integer")
}

fn find_key<'a, 'i>(t: &'a DeTable<'i>, k: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    t.iter()
        .find(|(key, _)| key.get_ref().as_ref() == k)
        .map(|(_, v)| v)
}

/// The field path of the smallest key or value whose span holds `pos`
/// (serde's errors carry a span, not a path). Iterative: the tree's depth is
/// bounded by the parser, but dotted keys can still nest deeply.
fn path_at(tree: &Spanned<DeTable<'_>>, pos: usize) -> FieldPath {
    let holds =
        |s: &Range<usize>| s.start <= pos && (pos < s.end || s.start == s.end && pos == s.start);
    // (span length, depth, path) of the best match so far.
    let mut best: Option<(usize, usize, FieldPath)> = None;
    let mut consider = |span: Range<usize>, path: &FieldPath| {
        if holds(&span) {
            let cand = (span.end.saturating_sub(span.start), path.0.len());
            if best
                .as_ref()
                .map_or(true, |(l, d, _)| cand.0 < *l || cand.0 == *l && cand.1 > *d)
            {
                best = Some((cand.0, cand.1, path.clone()));
            }
        }
    };
    let mut stack: Vec<(FieldPath, &Spanned<DeValue<'_>>)> = Vec::new();
    for (k, v) in tree.get_ref().iter() {
        let p = root(k.get_ref());
        consider(k.span(), &p);
        stack.push((p, v));
    }
    while let Some((p, v)) = stack.pop() {
        consider(v.span(), &p);
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, child) in t.iter() {
                    let cp = p.key(k.get_ref());
                    consider(k.span(), &cp);
                    stack.push((cp, child));
                }
            }
            DeValue::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    stack.push((p.idx(i), child));
                }
            }
            _ => {}
        }
    }
    best.map(|b| b.2).unwrap_or_default()
}

/// Line and column (from 1; columns in characters) of byte offset `pos`.
/// Never panics: offsets past the end or inside a character are clamped.
fn location(text: &str, pos: usize) -> Location {
    let bytes = text.as_bytes();
    let before = &bytes[..pos.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters by their first bytes (UTF-8 continuation bytes are 10xxxxxx).
    let column = before[start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    Location { line, column }
}

/// Points a [`ModelError`] at the service / real server it names.
/// [`Snapshot::build`] names them `service <key>[, real server <addr:port>]`;
/// service keys are unique once [`build_model`] has passed, so the match is
/// exact. Anything else keeps no path (the message is still whole).
fn model_error_path(model: &Model, e: &ModelError) -> Option<FieldPath> {
    for (i, s) in model.services.iter().enumerate() {
        let name = format!("service {}", s.key);
        let Some(rest) = e.what.strip_prefix(&name) else {
            continue;
        };
        let svc = root("service").idx(i);
        if rest.is_empty() {
            return Some(svc);
        }
        let rs = rest.strip_prefix(", real server ")?;
        let j = s.dests.iter().position(|d| fmt_sock(d.addr, d.port) == rs);
        return Some(j.map_or(svc.clone(), |j| svc.key("real_server").idx(j)));
    }
    None
}

// ---------------------------------------------------------------------------
// Values.

/// `v` within `lo..=hi`.
fn range(v: i64, lo: i64, hi: i64, path: &FieldPath) -> V<i64> {
    if v < lo {
        bad(path, format!("{v} is below {lo}"))
    } else if v > hi {
        bad(path, format!("{v} exceeds {hi}"))
    } else {
        Ok(v)
    }
}

fn port(v: i64, path: &FieldPath) -> V<u16> {
    range(v, 0, u16::MAX as i64, path).map(|v| v as u16)
}

fn timeout(v: i64, path: &FieldPath) -> V<u32> {
    if v == 0 {
        return bad(
            path,
            "0 is not a timeout (omit the field to keep the default)",
        );
    }
    range(v, 1, MAX_TIMEOUT as i64, path).map(|v| v as u32)
}

fn ip(s: &str, path: &FieldPath) -> V<IpAddr> {
    match s.trim().parse::<IpAddr>() {
        Ok(a) => Ok(a),
        Err(_) if s.contains('/') => bad(
            path,
            format!("'{s}' is not an IP address (no prefix length here)"),
        ),
        Err(_) if s.starts_with('[') => bad(
            path,
            format!("'{s}' is not an IP address (no brackets here)"),
        ),
        Err(_) => bad(path, format!("'{s}' is not an IP address")),
    }
}

fn mac(s: &str, path: &FieldPath) -> V<Mac> {
    parse_mac(s.trim()).or_else(|why| bad(path, why))
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn max_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr/len`, the length checked for the address's family.
fn prefix(s: &str, path: &FieldPath) -> V<(IpAddr, u8)> {
    let Some((a, l)) = s.trim().split_once('/') else {
        return bad(
            path,
            format!("'{s}' has no prefix length (want address/length, e.g. 10.0.0.1/24)"),
        );
    };
    let addr = ip(a, path)?;
    let max = max_prefix(addr);
    match l.parse::<u8>() {
        Ok(len) if len <= max => Ok((addr, len)),
        _ => bad(
            path,
            format!(
                "'{s}': prefix length '{l}' is not 0-{max} for an {} address",
                family(addr)
            ),
        ),
    }
}

/// `a` lies in `net/len`.
fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn proto(s: &str, path: &FieldPath) -> V<Proto> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => bad(
            path,
            format!("'{s}' is not a protocol (expected tcp or udp)"),
        ),
    }
}

fn mode(s: &str, path: &FieldPath) -> V<FwdMethod> {
    FwdMethod::ALL
        .into_iter()
        .find(|m| m.name() == s)
        .map_or_else(
            || {
                bad(
                    path,
                    format!("'{s}' is not a forwarding mode (expected dr, tun, nat or fullnat)"),
                )
            },
            Ok,
        )
}

/// A group member: `proto:address:port`, IPv6 addresses in brackets.
fn member(s: &str, path: &FieldPath) -> V<GroupMember> {
    const WANT: &str = "want proto:address:port, e.g. tcp:10.0.0.100:80 or udp:[2001:db8::100]:53";
    let s = s.trim();
    let Some((p, rest)) = s.split_once(':') else {
        return bad(path, format!("'{s}' is not a group member ({WANT})"));
    };
    let proto = proto(p, path)?;
    let Some((host, port_s)) = rest.rsplit_once(':') else {
        return bad(
            path,
            format!("'{s}' has no port ({WANT}; port 0 = every port)"),
        );
    };
    let addr = if let Some(h) = host.strip_prefix('[') {
        match h.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(a)) => IpAddr::V6(a),
            _ => {
                return bad(
                    path,
                    format!("'{s}': '{host}' is not a bracketed IPv6 address"),
                )
            }
        }
    } else if let Ok(a) = host.parse::<Ipv4Addr>() {
        IpAddr::V4(a)
    } else if rest.parse::<Ipv6Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
        return bad(
            path,
            format!("'{s}': put an IPv6 address in brackets, e.g. udp:[2001:db8::100]:53"),
        );
    } else {
        return bad(
            path,
            format!("'{s}': '{host}' is not an IP address ({WANT})"),
        );
    };
    let port = match port_s.parse::<u16>() {
        Ok(p) => p,
        Err(_) => {
            return bad(
                path,
                format!("'{s}': port '{port_s}' is not a number 0-65535"),
            )
        }
    };
    Ok(GroupMember { proto, addr, port })
}

fn build_model(raw: &RawConfig) -> V<Model> {
    let mut m = Model::default();
    if let Some(g) = &raw.global {
        // The defaults live in `Model::default()` only: a field given
        // here replaces its default, an absent one keeps it.
        m.expire_nodest_conn = g.expire_nodest_conn.unwrap_or(m.expire_nodest_conn);
        m.expire_quiescent_template = g.expire_quiescent_template.unwrap_or(m.expire_quiescent_template);
        m.drop_entry = g.drop_entry.unwrap_or(m.drop_entry);
        m.toa = g.toa.unwrap_or(m.toa);
        m.sloppy_tcp = g.sloppy_tcp.unwrap_or(m.sloppy_tcp);
        if let Some(n) = g.conn_reuse_mode {
            m.conn_reuse_mode = range(n, 0, 3, &root("global").key("conn_reuse_mode"))? as u8;
        }
        if let Some(n) = g.icmp_msgs_per_sec {
            m.icmp_msgs_per_sec = range(n, 0, 10_000_000, &root("global").key("icmp_msgs_per_sec"))? as u32;
        }
        if let Some(n) = g.icmp_msgs_burst {
            m.icmp_msgs_burst = range(n, 1, 10_000_000, &root("global").key("icmp_msgs_burst"))? as u32;
        }
        if let Some(n) = g.max_conns {
            m.max_conns = range(n, 1, u32::MAX as i64, &root("global").key("max_conns"))? as usize;
        }
        if let Some(n) = g.shard_prefix_v4 {
            m.shard_prefix.0 = range(n, 0, 32, &root("global").key("shard_prefix_v4"))? as u8;
        }
        if let Some(n) = g.shard_prefix_v6 {
            m.shard_prefix.1 = range(n, 0, 128, &root("global").key("shard_prefix_v6"))? as u8;
        }
    }
    if let Some(t) = &raw.timeouts {
        m.timeouts = timeouts(t)?;
    }
    m.net = net(&raw.interface, &raw.neighbour, &raw.route)?;
    m.groups = groups(&raw.group)?;
    for (i, s) in raw.service.iter().enumerate() {
        let path = root("service").idx(i);
        let svc = service(s, &m.groups, &path)?;
        if let Some(j) = m.services.iter().position(|o: &Service| o.key == svc.key) {
            return bad(&path, format!("{} is already service[{j}]", svc.key));
        }
        m.services.push(svc);
    }
    Ok(m)
}

fn timeouts(t: &RawTimeouts) -> V<Timeouts> {
    let base = root("timeouts");
    let mut out = Timeouts::default();
    let tcp = t.tcp.map(|v| timeout(v, &base.key("tcp"))).transpose()?;
    let fin = t
        .tcp_fin
        .map(|v| timeout(v, &base.key("tcp_fin")))
        .transpose()?;
    let udp = t.udp.map(|v| timeout(v, &base.key("udp"))).transpose()?;
    out.set(tcp.unwrap_or(0), fin.unwrap_or(0), udp.unwrap_or(0));
    if let Some(states) = &t.tcp_state {
        let base = base.key("tcp_state");
        for (name, v) in states {
            let path = base.key(name);
            let Some(st) = TcpState::ALL
                .into_iter()
                .find(|s| s.name().to_ascii_lowercase() == *name)
            else {
                let known: Vec<String> = TcpState::ALL
                    .iter()
                    .map(|s| s.name().to_ascii_lowercase())
                    .collect();
                return bad(
                    &path,
                    format!("'{name}' is not a TCP state (known: {})", known.join(", ")),
                );
            };
            let secs = timeout(*v, &path)?;
            // `tcp`/`tcp_fin` are shorthands for two states: saying both
            // differently is a contradiction, not an override.
            for (short, state, given) in [
                ("tcp", TcpState::Established, tcp),
                ("tcp_fin", TcpState::FinWait, fin),
            ] {
                if let Some(g) = given.filter(|g| st == state && *g != secs) {
                    return bad(
                        &path,
                        format!("{secs} contradicts timeouts.{short} = {g} (the same state)"),
                    );
                }
            }
            out.tcp[st as usize] = secs;
        }
    }
    Ok(out)
}

fn net(ifs: &[RawInterface], neigh: &[RawNeighbour], routes: &[RawRoute]) -> V<NetConf> {
    let mut net = NetConf::default();
    let mut addrs: Vec<(IpAddr, FieldPath)> = Vec::new();
    // Ports first (sub-interfaces name them); every name once.
    let mut names: Vec<&str> = Vec::new();
    for (i, r) in ifs.iter().enumerate() {
        let path = root("interface").idx(i);
        if i > u8::MAX as usize - 1 {
            return bad(&path, "more than 255 interfaces");
        }
        let name = r.name.as_str();
        let np = path.key("name");
        if name.is_empty()
            || name.len() > MAX_IFNAME
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'/' || b.is_ascii_control())
        {
            return bad(
                &np,
                format!(
                    "'{name}' is not an interface name (1-{MAX_IFNAME} bytes, no spaces or '/')"
                ),
            );
        }
        if let Some(j) = names.iter().position(|n| *n == name) {
            return bad(&np, format!("'{name}' is already interface[{j}]"));
        }
        names.push(name);
    }
    for (i, r) in ifs.iter().enumerate() {
        let path = root("interface").idx(i);
        let name = r.name.as_str();
        let mp = path.key("mac");
        let mac = match &r.mac {
            None => NO_MAC,
            Some(text) => {
                let m = mac(text, &mp)?;
                if m[0] & 1 != 0 {
                    return bad(
                        &mp,
                        format!("'{text}' is a multicast address; an interface needs a unicast MAC"),
                    );
                }
                if m == NO_MAC {
                    return bad(&mp, "00:00:00:00:00:00 is not a MAC address; leave `mac` out to take the kernel's (xvs run)");
                }
                m
            }
        };
        let mtu = match r.mtu {
            None => DEFAULT_MTU,
            Some(v) => range(v, MIN_MTU as i64, u16::MAX as i64, &path.key("mtu"))? as u16,
        };
        let mut own = Vec::new();
        for (j, a) in r.addresses.iter().enumerate() {
            let ap = path.key("addresses").idx(j);
            let p = prefix(a, &ap)?;
            if let Some((_, other)) = addrs.iter().find(|(x, _)| *x == p.0) {
                return bad(&ap, format!("{} is already {other}", p.0));
            }
            addrs.push((p.0, ap));
            own.push(p);
        }
        let mut gateways: Vec<IpAddr> = Vec::new();
        for (j, g) in r.gateways.iter().enumerate() {
            let gp = path.key("gateways").idx(j);
            let gw = ip(g, &gp)?;
            if gateways.iter().any(|o| o.is_ipv4() == gw.is_ipv4()) {
                return bad(
                    &gp,
                    format!("a second {} gateway (one per family)", family(gw)),
                );
            }
            // A gateway must be on the link; IPv6 routers are usually
            // link-local, which no configured prefix holds.
            if !is_link_local(gw) && !own.iter().any(|(n, l)| in_prefix(gw, *n, *l)) {
                return bad(
                    &gp,
                    format!(
                        "{gw} is not on this interface (inside none of its addresses' prefixes)"
                    ),
                );
            }
            gateways.push(gw);
        }
        match &r.link {
            None => {
                if r.vlan.is_some() {
                    return bad(&path.key("vlan"), "a VLAN needs `link`, the interface it is on");
                }
                net.ports.push(PortConf { name: name.to_string(), mac, mtu, addrs: own, gateways });
            }
            Some(parent) => {
                let lp = path.key("link");
                let Some(pi) = ifs.iter().position(|o| &o.name == parent) else {
                    return bad(&lp, format!("'{parent}' is no [[interface]]"));
                };
                if ifs[pi].link.is_some() {
                    return bad(&lp, format!("'{parent}' is itself a sub-interface; a sub-interface is on a port"));
                }
                let vid = match r.vlan {
                    Some(v) => range(v, 1, 4094, &path.key("vlan"))? as u16,
                    None if r.mac.is_none() => {
                        return bad(&path, "a sub-interface needs `vlan` (802.1Q id), or its own `mac` (an untagged one, as a macvlan)")
                    }
                    None => 0,
                };
                // The port's index: ports are the interfaces without `link`.
                let port = ifs[..pi].iter().filter(|o| o.link.is_none()).count() as u8;
                let (pmac, pmtu) = (ifs[pi].mac.as_ref().and_then(|t| parse_mac(t).ok()).unwrap_or(NO_MAC), ifs[pi].mtu);
                net.subifs.push(SubIfConf {
                    name: name.to_string(),
                    port,
                    vid,
                    mac: if r.mac.is_some() { mac } else { pmac },
                    mtu: if r.mtu.is_some() { mtu } else { pmtu.map_or(DEFAULT_MTU, |m| m.clamp(MIN_MTU as i64, u16::MAX as i64) as u16) },
                    addrs: own,
                });
                for gw in gateways {
                    let any = if gw.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) };
                    net.routes.push(RouteConf { dst: any, len: 0, metric: 0, hops: vec![RouteHop { dev: name.to_string(), via: Some(gw) }] });
                }
            }
        }
    }
    if let Some((i, _)) = net.subifs.iter().enumerate().find(|(i, s)| net.subifs[..*i].iter().any(|o| o.port == s.port && o.vid == s.vid && s.vid != 0)) {
        let s = &net.subifs[i];
        let at = ifs.iter().position(|o| o.name == s.name).unwrap_or(0);
        return bad(&root("interface").idx(at).key("vlan"), format!("VLAN {} is already another interface's on '{}'", s.vid, net.ports[s.port as usize].name));
    }
    for (i, r) in neigh.iter().enumerate() {
        let path = root("neighbour").idx(i);
        let addr = ip(&r.ip, &path.key("ip"))?;
        if let Some(j) = net
            .neighbours
            .iter()
            .position(|n: &Neighbour| n.addr == addr)
        {
            return bad(&path.key("ip"), format!("{addr} is already neighbour[{j}]"));
        }
        net.neighbours.push(Neighbour {
            addr,
            mac: mac(&r.mac, &path.key("mac"))?,
            dev: None,
        });
    }
    for (i, r) in routes.iter().enumerate() {
        let path = root("route").idx(i);
        let (dst, len) = prefix(&r.to, &path.key("to"))?;
        if masked(dst, len) != dst {
            return bad(&path.key("to"), format!("{dst}/{len} has host bits set (the prefix is {}/{len})", masked(dst, len)));
        }
        let via = match &r.via {
            None => None,
            Some(v) => {
                let vp = path.key("via");
                let gw = ip(v, &vp)?;
                if gw.is_ipv4() != dst.is_ipv4() {
                    return bad(&vp, format!("{gw} is not of the route's address family ({})", family(dst)));
                }
                Some(gw)
            }
        };
        let on = |l: &crate::ctl::model::LinkRef<'_>, gw: IpAddr| l.addrs.iter().any(|(n, pl)| in_prefix(gw, *n, *pl));
        let dev = match (&r.dev, via) {
            (Some(d), _) => {
                let dp = path.key("dev");
                let Some(l) = net.links().find(|l| l.name == d) else {
                    return bad(&dp, format!("'{d}' is no [[interface]]"));
                };
                if let Some(gw) = via.filter(|g| !is_link_local(*g) && !on(&l, *g)) {
                    return bad(&path.key("via"), format!("{gw} is not on '{d}' (inside none of its addresses' prefixes)"));
                }
                d.clone()
            }
            (None, Some(gw)) => match net.links().find(|l| on(l, gw)) {
                Some(l) => l.name.to_string(),
                None => return bad(&path.key("via"), format!("{gw} is on no interface's prefix: say which with `dev`")),
            },
            (None, None) => return bad(&path, "a route needs `via` (a gateway), `dev` (a link), or both"),
        };
        let metric = match r.metric {
            None => 0,
            Some(m) => range(m, 0, u32::MAX as i64, &path.key("metric"))? as u32,
        };
        net.routes.push(RouteConf { dst, len, metric, hops: vec![RouteHop { dev, via }] });
    }
    Ok(net)
}

/// `a` with the bits past `len` cleared.
fn masked(a: IpAddr, len: u8) -> IpAddr {
    use crate::wire::Ip;
    match a {
        IpAddr::V4(x) => IpAddr::V4(x.mask(len)),
        IpAddr::V6(x) => IpAddr::V6(x.mask(len)),
    }
}

fn groups(raw: &[RawGroup]) -> V<Vec<Group>> {
    let mut out: Vec<Group> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = root("group").idx(i);
        // Like a firewall mark, 0 means "none".
        let id = range(r.id, 1, u32::MAX as i64, &path.key("id"))? as u32;
        if let Some(j) = out.iter().position(|g| g.id == id) {
            return bad(&path.key("id"), format!("group {id} is already group[{j}]"));
        }
        if r.members.is_empty() {
            return bad(&path.key("members"), "a group needs at least one member");
        }
        let mut g = Group {
            id,
            members: Vec::new(),
        };
        for (j, s) in r.members.iter().enumerate() {
            let mp = path.key("members").idx(j);
            let m = member(s, &mp)?;
            if g.members.contains(&m) {
                return bad(&mp, format!("'{s}' is listed twice"));
            }
            if let Some(first) = g
                .members
                .first()
                .filter(|f| f.addr.is_ipv4() != m.addr.is_ipv4())
            {
                return bad(
                    &mp,
                    format!(
                        "{} address in a group of {} addresses",
                        family(m.addr),
                        family(first.addr)
                    ),
                );
            }
            g.members.push(m);
        }
        out.push(g);
    }
    Ok(out)
}

fn service(r: &RawService, groups: &[Group], path: &FieldPath) -> V<Service> {
    // What the service matches, and the address family of its VIP(s).
    let (key, v4) = match r.group {
        Some(id) => {
            let gp = path.key("group");
            if r.proto.is_some() || r.vip.is_some() || r.port.is_some() {
                return bad(
                    &gp,
                    "a group service takes no proto, vip or port (its group's members say them)",
                );
            }
            let id = range(id, 1, u32::MAX as i64, &gp)? as u32;
            let Some(g) = groups.iter().find(|g| g.id == id) else {
                return bad(
                    &gp,
                    format!("group {id} is not defined (no [[group]] with id = {id})"),
                );
            };
            (
                ServiceKey::Group(id),
                g.members.first().map_or(true, |m| m.addr.is_ipv4()),
            )
        }
        None => {
            let Some(vip) = &r.vip else {
                return bad(path, "missing field `vip` (or `group` for a group service)");
            };
            let Some(p) = &r.proto else {
                return bad(path, "missing field `proto` (tcp or udp)");
            };
            let Some(port_v) = r.port else {
                return bad(path, "missing field `port` (0 = every port)");
            };
            let proto = proto(p, &path.key("proto"))?;
            let addr = ip(vip, &path.key("vip"))?;
            (
                ServiceKey::Addr {
                    proto,
                    addr,
                    port: port(port_v, &path.key("port"))?,
                },
                addr.is_ipv4(),
            )
        }
    };
    let fam = if v4 { "IPv4" } else { "IPv6" };
    let sched = match &r.scheduler {
        None => DEFAULT_SCHEDULER.to_string(),
        Some(s) if s.trim().is_empty() => {
            return bad(&path.key("scheduler"), "empty scheduler name")
        }
        Some(s) => s.trim().to_string(),
    };
    let mut sched_flags = SchedFlags::default();
    for (j, f) in r.flags.iter().enumerate() {
        let fp = path.key("flags").idx(j);
        if f.trim().is_empty() {
            return bad(&fp, "empty flag name");
        }
        sched_flags.0 |= SchedFlags::parse(f).or_else(|why| bad(&fp, why))?.0;
    }
    let max = if v4 { 32 } else { 128 };
    let persistence = match (r.persistence, r.persistence_netmask) {
        (None, None) => None,
        (None, Some(_)) => {
            return bad(
                &path.key("persistence_netmask"),
                "needs `persistence` (the timeout) on the service",
            )
        }
        (Some(t), nm) => {
            let timeout = timeout(t, &path.key("persistence"))?;
            let netmask = match nm {
                None => max,
                Some(n) => range(n, 1, max as i64, &path.key("persistence_netmask"))? as u8,
            };
            Some(Persistence { timeout, netmask })
        }
    };
    let mut laddrs = Vec::new();
    for (j, l) in r.local_addresses.iter().enumerate() {
        let lp = path.key("local_addresses").idx(j);
        let a = ip(l, &lp)?;
        if a.is_ipv4() != v4 {
            return bad(&lp, format!("{a} is not {fam} like the service"));
        }
        if laddrs.contains(&a) {
            return bad(&lp, format!("{a} is listed twice"));
        }
        laddrs.push(a);
    }
    // A real server's default port: the service's (0 on a group service, as
    // the packet's own port is kept).
    let svc_port = match key {
        ServiceKey::Addr { port, .. } => port,
        ServiceKey::Group(_) => 0,
    };
    let mut dests: Vec<Dest> = Vec::new();
    for (j, d) in r.real_server.iter().enumerate() {
        let dp = path.key("real_server").idx(j);
        let addr = ip(&d.ip, &dp.key("ip"))?;
        if addr.is_ipv4() != v4 {
            return bad(
                &dp.key("ip"),
                format!("{addr} is not {fam} like the service"),
            );
        }
        let port = match d.port {
            None => svc_port,
            Some(p) => port(p, &dp.key("port"))?,
        };
        if let Some(k) = dests.iter().position(|o| o.addr == addr && o.port == port) {
            return bad(
                &dp,
                format!("{} is already real_server[{k}]", fmt_sock(addr, port)),
            );
        }
        let weight = match d.weight {
            None => 1,
            Some(w) => range(w, 0, MAX_WEIGHT as i64, &dp.key("weight"))? as u32,
        };
        let fwd = match &d.mode {
            None => FwdMethod::Dr,
            Some(s) => mode(s, &dp.key("mode"))?,
        };
        let thr = |v: Option<i64>, k: &str| {
            v.map_or(Ok(0), |v| {
                range(v, 0, MAX_THRESHOLD as i64, &dp.key(k)).map(|v| v as u32)
            })
        };
        let u_threshold = thr(d.upper_threshold, "upper_threshold")?;
        let l_threshold = thr(d.lower_threshold, "lower_threshold")?;
        if u_threshold > 0 && l_threshold > u_threshold {
            return bad(
                &dp.key("lower_threshold"),
                format!("{l_threshold} is above upper_threshold {u_threshold}"),
            );
        }
        let proxy = match &d.proxy_protocol {
            None => None,
            Some(s) => match crate::wire::proxy::Version::from_name(s) {
                None => return bad(&dp.key("proxy_protocol"), format!("expected \"v1\" or \"v2\", not {s:?}")),
                Some(_) if !matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat) => {
                    return bad(&dp.key("proxy_protocol"), "needs mode \"nat\" or \"fullnat\" (DR and TUN do not rewrite the stream)");
                }
                Some(_) if matches!(key, ServiceKey::Addr { proto: Proto::Udp, .. }) => {
                    return bad(&dp.key("proxy_protocol"), "is for TCP services only");
                }
                v => v,
            },
        };
        dests.push(Dest {
            addr,
            port,
            weight,
            fwd,
            u_threshold,
            l_threshold,
            proxy,
        });
    }
    if r.synproxy {
        let sp = path.key("synproxy");
        if matches!(key, ServiceKey::Addr { proto: Proto::Udp, .. }) {
            return bad(&sp, "is for TCP services only");
        }
        if let Some(j) = dests.iter().position(|d| matches!(d.fwd, FwdMethod::Dr | FwdMethod::Tun)) {
            return bad(
                &sp,
                format!("needs real servers in mode \"nat\" or \"fullnat\" (real_server[{j}] is {}: its replies bypass the director, which could not splice the connection)", dests[j].fwd),
            );
        }
    }
    Ok(Service {
        key,
        sched,
        sched_flags,
        persistence,
        dests,
        laddrs,
        synproxy: r.synproxy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Steps 1-3 without the snapshot check (for defaults a snapshot cannot
    /// compile yet, such as the "wlc" scheduler).
    fn parse(text: &str) -> Result<Model, ConfigError> {
        Doc::parse(text, "t.toml")?.model()
    }

    const FULL: &str = r#"
[global]
expire_nodest_conn = true
conn_reuse_mode = 3
drop_entry = false
toa = false
sloppy_tcp = true
max_conns = 1000
icmp_msgs_per_sec = 200
icmp_msgs_burst = 20

[timeouts]
tcp = 3600
tcp_fin = 60
udp = 30
tcp_state = { syn_recv = 30, time_wait = 5, close = 3 }

[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"
mtu = 9000
addresses = ["10.0.0.1/24", "2001:db8::1/64"]
gateways = ["10.0.0.254", "fe80::1"]

[[neighbour]]
ip = "10.0.0.254"
mac = "02-00-00-00-00-FE"

[[neighbour]]
ip = "2001:db8::2"
mac = "02:00:00:00:00:02"

[[group]]
id = 7
members = ["tcp:10.0.0.100:80", "tcp:10.0.0.100:443", "udp:10.0.0.100:0"]

[[group]]
id = 8
members = ["udp:[2001:db8::100]:53"]

[[service]]
proto = "tcp"
vip = "10.0.0.100"
port = 8000
scheduler = "wrr"
flags = ["sh-port", "flag-1"]
persistence = 600
persistence_netmask = 24
local_addresses = ["10.0.0.200", "10.0.0.201"]

  [[service.real_server]]
  ip = "10.0.1.1"
  port = 8080
  weight = 3
  mode = "fullnat"
  upper_threshold = 100
  lower_threshold = 50

  [[service.real_server]]
  ip = "10.0.1.2"
  weight = 0
  mode = "nat"

[[service]]
group = 7
scheduler = "rr"

  [[service.real_server]]
  ip = "10.0.1.3"
  mode = "tun"

[[service]]
group = 8
scheduler = "rr"
persistence = 60

  [[service.real_server]]
  ip = "2001:db8::10"

[[service]]
proto = "udp"
vip = "2001:db8::200"
port = 0
scheduler = "rr"

  [[service.real_server]]
  ip = "2001:db8::11"
"#;

    fn dest(addr: &str, port: u16, weight: u32, fwd: FwdMethod) -> Dest {
        Dest {
            addr: a(addr),
            port,
            weight,
            fwd,
            u_threshold: 0,
            l_threshold: 0,
            proxy: None,
        }
    }

    #[test]
    fn full_config_rounds_into_the_model() {
        let got = load_str(FULL, "full.toml").unwrap();
        let mut timeouts = Timeouts::default();
        timeouts.set(3600, 60, 30);
        timeouts.tcp[TcpState::SynRecv as usize] = 30;
        timeouts.tcp[TcpState::TimeWait as usize] = 5;
        timeouts.tcp[TcpState::Close as usize] = 3;
        let member = |p, s: &str, port| GroupMember {
            proto: p,
            addr: a(s),
            port,
        };
        let want = Model {
            services: vec![
                Service {
                    key: ServiceKey::Addr {
                        proto: Proto::Tcp,
                        addr: a("10.0.0.100"),
                        port: 8000,
                    },
                    sched: "wrr".into(),
                    sched_flags: SchedFlags(SchedFlags::FLAG1 | SchedFlags::FLAG2),
                    persistence: Some(Persistence {
                        timeout: 600,
                        netmask: 24,
                    }),
                    dests: vec![
                        Dest {
                            u_threshold: 100,
                            l_threshold: 50,
                            proxy: None,
                            ..dest("10.0.1.1", 8080, 3, FwdMethod::FullNat)
                        },
                        dest("10.0.1.2", 8000, 0, FwdMethod::Nat),
                    ],
                    laddrs: vec![a("10.0.0.200"), a("10.0.0.201")],
                    synproxy: false,
                },
                Service {
                    key: ServiceKey::Group(7),
                    sched: "rr".into(),
                    sched_flags: SchedFlags::default(),
                    persistence: None,
                    dests: vec![dest("10.0.1.3", 0, 1, FwdMethod::Tun)],
                    laddrs: vec![],
                    synproxy: false,
                },
                Service {
                    key: ServiceKey::Group(8),
                    sched: "rr".into(),
                    sched_flags: SchedFlags::default(),
                    persistence: Some(Persistence {
                        timeout: 60,
                        netmask: 128,
                    }),
                    dests: vec![dest("2001:db8::10", 0, 1, FwdMethod::Dr)],
                    laddrs: vec![],
                    synproxy: false,
                },
                Service {
                    key: ServiceKey::Addr {
                        proto: Proto::Udp,
                        addr: a("2001:db8::200"),
                        port: 0,
                    },
                    sched: "rr".into(),
                    sched_flags: SchedFlags::default(),
                    persistence: None,
                    dests: vec![dest("2001:db8::11", 0, 1, FwdMethod::Dr)],
                    laddrs: vec![],
                    synproxy: false,
                },
            ],
            groups: vec![
                Group {
                    id: 7,
                    members: vec![
                        member(Proto::Tcp, "10.0.0.100", 80),
                        member(Proto::Tcp, "10.0.0.100", 443),
                        member(Proto::Udp, "10.0.0.100", 0),
                    ],
                },
                Group {
                    id: 8,
                    members: vec![member(Proto::Udp, "2001:db8::100", 53)],
                },
            ],
            timeouts,
            expire_nodest_conn: true,
            conn_reuse_mode: 3,
            drop_entry: false,
            icmp_msgs_per_sec: 200,
            icmp_msgs_burst: 20,
            toa: false,
            net: NetConf {
                ports: vec![PortConf {
                    name: "eth0".into(),
                    mac: [2, 0, 0, 0, 0, 0x10],
                    mtu: 9000,
                    addrs: vec![(a("10.0.0.1"), 24), (a("2001:db8::1"), 64)],
                    gateways: vec![a("10.0.0.254"), a("fe80::1")],
                }],
                neighbours: vec![
                    Neighbour {
                        dev: None,
                        addr: a("10.0.0.254"),
                        mac: [2, 0, 0, 0, 0, 0xfe],
                    },
                    Neighbour {
                        dev: None,
                        addr: a("2001:db8::2"),
                        mac: [2, 0, 0, 0, 0, 2],
                    },
                ],
                ..NetConf::default()
            },
            max_conns: 1000,
            expire_quiescent_template: false,
            shard_prefix: crate::ctl::model::DEFAULT_SHARD_PREFIX,
            sloppy_tcp: true,
        };
        assert_eq!(got, want);
        // The compiled form agrees: the group answers on every member.
        let s = Snapshot::build(&got, None).unwrap();
        assert_eq!(s.lookup(6, a("10.0.0.100"), 443), Some(1));
        assert_eq!(s.lookup(17, a("10.0.0.100"), 5353), Some(1));
        assert_eq!(s.lookup(6, a("10.0.0.100"), 8000), Some(0));
    }

    #[test]
    fn defaults_are_ipvsadm_s() {
        let m = parse(
            r#"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"

[[service]]
proto = "udp"
vip = "2001:db8::100"
port = 53
persistence = 300

  [[service.real_server]]
  ip = "2001:db8::1"
"#,
        )
        .unwrap();
        let s = &m.services[0];
        assert_eq!(s.sched, "wlc");
        assert_eq!(s.sched_flags, SchedFlags::default());
        assert_eq!(
            s.persistence,
            Some(Persistence {
                timeout: 300,
                netmask: 128
            })
        );
        assert_eq!(s.dests, vec![dest("2001:db8::1", 53, 1, FwdMethod::Dr)]);
        assert_eq!(m.net.ports[0].mtu, 1500);
        assert!(m.net.ports[0].addrs.is_empty() && m.net.ports[0].gateways.is_empty());
        assert_eq!(m.timeouts, Timeouts::default());
        assert_eq!(m.max_conns, crate::ctl::model::DEFAULT_MAX_CONNS);
        assert!(!m.expire_nodest_conn);
        assert_eq!(m.conn_reuse_mode, 1, "IPVS's default");
        assert!(!m.sloppy_tcp, "IPVS's default");
        assert!(load_str("[global]\nsloppy_tcp = true", "t.toml").unwrap().sloppy_tcp);
        assert!(m.drop_entry && m.toa);
        assert_eq!((m.icmp_msgs_per_sec, m.icmp_msgs_burst), (1000, 50), "the kernel's defaults");
        // An IPv4 service defaults to /32.
        let m =
            parse("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 1\npersistence = 5\n")
                .unwrap();
        assert_eq!(m.services[0].persistence.unwrap().netmask, 32);
        // Nothing at all is a valid (empty) configuration.
        assert_eq!(load_str("", "empty").unwrap(), Model::default());
    }

    #[test]
    fn ipvsadm_save_rules_load_as_a_configuration() {
        let rules = "# saved\n-A -t 10.0.0.1:80 -s wrr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 2\n";
        assert!(is_ipvsadm_rules(rules) && is_ipvsadm_rules("-C\n"));
        assert!(!is_ipvsadm_rules("# -A -t x\n[global]\n") && !is_ipvsadm_rules(""));
        let c = load_config_str(rules, "r.save").unwrap();
        assert_eq!(crate::ctl::ipvsadm::save(&c.model), "-A -t 10.0.0.1:80 -s wrr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 2\n");
        assert_eq!(c.daemon, DaemonConf::default());
        let e = load_config_str("-A -t 10.0.0.1:80 -s wrr\n-a -t 10.0.0.1:81 -r 10.0.0.2\n", "r.save").unwrap_err();
        assert_eq!(e.to_string(), "r.save: line 2: Service not defined");
        let e = load_config_str("-A -t 10.0.0.1:80 -s nope\n", "r.save").unwrap_err();
        assert!(e.to_string().starts_with("r.save: line 1: "), "{e}");
    }

    #[test]
    fn daemon_listeners_default_to_private_ones_and_can_be_moved_or_disabled() {
        let d = load_config_str("", "t").unwrap().daemon;
        assert_eq!(d.control_socket, std::path::PathBuf::from("/run/xvs/xvs.sock"));
        assert_eq!(d.metrics, Some("127.0.0.1:9477".parse().unwrap()));
        let text = "[global]\ncontrol_socket = \"/var/run/lb.sock\"\nmetrics = \"[::1]:9100\"\n";
        let d = load_config_str(text, "t").unwrap().daemon;
        assert_eq!(d.control_socket, std::path::PathBuf::from("/var/run/lb.sock"));
        assert_eq!(d.metrics, Some("[::1]:9100".parse().unwrap()));
        assert_eq!(d.ownership, crate::daemon::rss::Ownership::Auto);
        let o = load_config_str("[global]\nownership = \"hash\"\n", "t").unwrap().daemon.ownership;
        assert_eq!(o, crate::daemon::rss::Ownership::Hash);
        let d = load_config_str("[global]\nmetrics = \"off\"\n", "t").unwrap().daemon;
        assert_eq!(d.metrics, None);
        assert_eq!(parse_metrics("0.0.0.0:9477"), Ok(Some("0.0.0.0:9477".parse().unwrap())));
        assert!(parse_metrics("on").unwrap_err().contains("'on' is not"));
        assert_eq!(d.control_socket_group, None);
        let d = load_config_str("[global]\ncontrol_socket_group = \"root\"\n", "t").unwrap().daemon;
        assert_eq!(d.control_socket_group, Some(0));
        assert_eq!(d.announce, None);
        let d = load_config_str("[announce]\ntable = 100\n", "t").unwrap().daemon;
        let a = d.announce.unwrap();
        assert_eq!((a.table, a.device.as_str()), (100, "xvs-announce"));
        let d = load_config_str("[announce]\ntable = 7\ndevice = \"vips\"\n", "t").unwrap().daemon;
        assert_eq!(d.announce.unwrap().device, "vips");
        for (text, path, why) in [
            ("[announce]\ntable = 254", "announce.table", "254 is not a routing table of its own"),
            ("[announce]\ntable = 100\ndevice = \"a/b\"", "announce.device", "'a/b' is not an interface name"),
        ] {
            let e = load_config_str(text, "t").unwrap_err();
            assert_eq!(e.path(), Some(path), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    /// `(config, expected field path, expected part of the reason)`.
    fn bad_cases() -> Vec<(String, &'static str, &'static str)> {
        const SVC: &str = "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 80";
        const RS: &str = "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 80\n[[service.real_server]]\nip = \"10.0.1.1\"";
        const IF0: &str = "[[interface]]\nname = \"eth0\"\nmac = \"02:00:00:00:00:01\"";
        vec![
            // global and timeouts
            ("[global]\nmax_conns = 0".to_string(), "global.max_conns", "0 is below 1"),
            ("[global]\nexpire_nodest_conn = 1".to_string(), "global.expire_nodest_conn", "expected a boolean"),
            ("[global]\nconn_reuse_mode = 4".to_string(), "global.conn_reuse_mode", "4 exceeds 3"),
            ("[global]\nconn_reuse_mode = true".to_string(), "global.conn_reuse_mode", "expected an integer"),
            ("[global]\ndrop_entry = \"yes\"".to_string(), "global.drop_entry", "expected a boolean"),
            ("[global]\nsloppy_tcp = 1".to_string(), "global.sloppy_tcp", "expected a boolean"),
            ("[announce]\ndevice = \"x\"".to_string(), "announce", "missing field `table`"),
            ("[announce]\ntable = 100\nbgp = true".to_string(), "announce.bgp", "unknown field `bgp`"),
            ("[global]\nicmp_msgs_per_sec = -1".to_string(), "global.icmp_msgs_per_sec", "below 0"),
            ("[global]\nicmp_msgs_burst = 0".to_string(), "global.icmp_msgs_burst", "below 1"),
            ("[global]\ntoa = 1".to_string(), "global.toa", "expected a boolean"),
            ("[global]\nmaxconns = 5".to_string(), "global.maxconns", "unknown field `maxconns`"),
            ("[global]\nmetrics = \"localhost:9477\"".to_string(), "global.metrics", "'localhost:9477' is not \"off\" or an address:port"),
            ("[global]\nownership = \"nic\"".to_string(), "global.ownership", "'nic' is not \"auto\", \"rss\" or \"hash\""),
            ("[global]\nownership = 1".to_string(), "global.ownership", "invalid type: integer `1`, expected a string"),
            ("[global]\nmetrics = 9477".to_string(), "global.metrics", "invalid type: integer `9477`, expected a string"),
            ("[global]\ncontrol_socket = \"xvs.sock\"".to_string(), "global.control_socket", "'xvs.sock' is not an absolute socket path"),
            ("[global]\ncontrol_socket = \"/run/xvs/\"".to_string(), "global.control_socket", "is not an absolute socket path"),
            ("[global]\ncontrol_socket_group = \"xvs-no-such-group\"".to_string(), "global.control_socket_group", "no group 'xvs-no-such-group'"),
            ("[global]\ncontrol_socket_group = 0".to_string(), "global.control_socket_group", "invalid type: integer `0`, expected a string"),
            ("[timeouts]\ntcp = 0".to_string(), "timeouts.tcp", "0 is not a timeout"),
            ("[timeouts]\nudp = -5".to_string(), "timeouts.udp", "-5 is below 1"),
            ("[timeouts]\ntcp_fin = 99999999".to_string(), "timeouts.tcp_fin", "99999999 exceeds 2678400"),
            ("[timeouts.tcp_state]\nsyn_recv = 4294967296".to_string(), "timeouts.tcp_state.syn_recv", "4294967296 exceeds 2678400"),
            ("[timeouts.tcp_state]\ntime_wait = 0".to_string(), "timeouts.tcp_state.time_wait", "0 is not a timeout"),
            ("[timeouts.tcp_state]\nSYN_RECV = 5".to_string(), "timeouts.tcp_state.SYN_RECV", "is not a TCP state (known: none, established"),
            ("[timeouts.tcp_state]\nsynrecv = 5".to_string(), "timeouts.tcp_state.synrecv", "is not a TCP state"),
            ("[timeouts]\ntcp = 100\ntcp_state = { established = 200 }".to_string(), "timeouts.tcp_state.established", "contradicts timeouts.tcp = 100"),
            ("[timeouts]\ntcp_fin = 100\ntcp_state = { fin_wait = 200 }".to_string(), "timeouts.tcp_state.fin_wait", "contradicts timeouts.tcp_fin"),
            ("[timeouts.tcp_state]\nclose = 1.5".to_string(), "timeouts.tcp_state.close", "invalid type: floating point `1.5`, expected an integer"),
            ("[timeout]\ntcp = 5".to_string(), "timeout", "unknown field `timeout`, expected one of"),
            // interfaces
            ("[[interface]]\nmac = \"02:00:00:00:00:01\"".to_string(), "interface[0]", "missing field `name`"),
            ("[[interface]]\nname = \"\"\nmac = \"02:00:00:00:00:01\"".to_string(), "interface[0].name", "not an interface name"),
            ("[[interface]]\nname = \"a-very-long-interface-name\"\nmac = \"02:00:00:00:00:01\"".to_string(), "interface[0].name", "1-15 bytes"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0\"\nmac = \"02:00:00:00:00:02\""), "interface[1].name", "'eth0' is already interface[0]"),
            ("[[interface]]\nname = \"eth0\"\nmac = \"02:00:00:00:01\"".to_string(), "interface[0].mac", "six hex bytes"),
            ("[[interface]]\nname = \"eth0\"\nmac = \"02:00:00:00:00:0g\"".to_string(), "interface[0].mac", "is not hex"),
            ("[[interface]]\nname = \"eth0\"\nmac = \"01:00:5e:00:00:01\"".to_string(), "interface[0].mac", "multicast"),
            (format!("{IF0}\nmtu = 500"), "interface[0].mtu", "500 is below 576"),
            (format!("{IF0}\nmtu = 70000"), "interface[0].mtu", "70000 exceeds 65535"),
            (format!("{IF0}\naddresses = [\"10.0.0.1\"]"), "interface[0].addresses[0]", "no prefix length"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/33\"]"), "interface[0].addresses[0]", "not 0-32 for an IPv4"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/24\", \"2001:db8::1/129\"]"), "interface[0].addresses[1]", "not 0-128 for an IPv6"),
            (format!("{IF0}\naddresses = [\"10.0.0.256/24\"]"), "interface[0].addresses[0]", "'10.0.0.256' is not an IP address"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/24\"]\n[[interface]]\nname = \"eth1\"\nmac = \"02:00:00:00:00:02\"\naddresses = [\"10.0.0.1/16\"]"), "interface[1].addresses[0]", "10.0.0.1 is already interface[0].addresses[0]"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/24\"]\ngateways = [\"10.0.0.254\", \"10.0.0.253\"]"), "interface[0].gateways[1]", "a second IPv4 gateway"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/24\"]\ngateways = [\"10.0.1.254\"]"), "interface[0].gateways[0]", "not on this interface"),
            (format!("{IF0}\naddresses = \"10.0.0.1/24\""), "interface[0].addresses", "invalid type: string"),
            (format!("{IF0}\nmut = 1500"), "interface[0].mut", "unknown field `mut`"),
            // sub-interfaces
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nvlan = 20"), "interface[1].vlan", "a VLAN needs `link`"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nlink = \"eth9\"\nvlan = 20"), "interface[1].link", "'eth9' is no [[interface]]"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nlink = \"eth0\"\nvlan = 4095"), "interface[1].vlan", "4095 exceeds 4094"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nlink = \"eth0\"\nvlan = 0"), "interface[1].vlan", "0 is below 1"),
            (format!("{IF0}\n[[interface]]\nname = \"vmac\"\nlink = \"eth0\""), "interface[1]", "needs `vlan`"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nlink = \"eth0\"\nvlan = 20\n[[interface]]\nname = \"x\"\nlink = \"eth0.20\"\nvlan = 30"), "interface[2].link", "'eth0.20' is itself a sub-interface"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nlink = \"eth0\"\nvlan = 20\n[[interface]]\nname = \"v20\"\nlink = \"eth0\"\nvlan = 20"), "interface[2].vlan", "VLAN 20 is already another interface's on 'eth0'"),
            (format!("{IF0}\n[[interface]]\nname = \"eth0.20\"\nlink = \"eth0\"\nvlan = \"20\""), "interface[1].vlan", "invalid type: string"),
            // routes
            ("[[route]]\nto = \"10.9.0.0/16\"".to_string(), "route[0]", "a route needs `via` (a gateway), `dev` (a link), or both"),
            ("[[route]]\nto = \"10.9.0.0\"\nvia = \"10.0.0.7\"".to_string(), "route[0].to", "no prefix length"),
            ("[[route]]\nto = \"10.9.0.1/16\"\nvia = \"10.0.0.7\"".to_string(), "route[0].to", "10.9.0.1/16 has host bits set (the prefix is 10.9.0.0/16)"),
            ("[[route]]\nto = \"10.9.0.0/16\"\nvia = \"2001:db8::7\"".to_string(), "route[0].via", "2001:db8::7 is not of the route's address family (IPv4)"),
            ("[[route]]\nto = \"10.9.0.0/16\"\ndev = \"eth9\"".to_string(), "route[0].dev", "'eth9' is no [[interface]]"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/24\"]\n[[route]]\nto = \"10.9.0.0/16\"\nvia = \"10.0.5.7\""), "route[0].via", "10.0.5.7 is on no interface's prefix: say which with `dev`"),
            (format!("{IF0}\naddresses = [\"10.0.0.1/24\"]\n[[route]]\nto = \"10.9.0.0/16\"\nvia = \"10.0.5.7\"\ndev = \"eth0\""), "route[0].via", "10.0.5.7 is not on 'eth0'"),
            (format!("{IF0}\n[[route]]\nto = \"10.9.0.0/16\"\ndev = \"eth0\"\nmetric = -1"), "route[0].metric", "-1 is below 0"),
            ("[[route]]\nto = \"10.9.0.0/16\"\ngw = \"10.0.0.7\"".to_string(), "route[0].gw", "unknown field `gw`"),
            // neighbours
            ("[[neighbour]]\nip = \"10.0.0.2\"\nmac = \"02:00:00:00:00:02\"\n[[neighbour]]\nip = \"10.0.0.2\"\nmac = \"02:00:00:00:00:03\"".to_string(), "neighbour[1].ip", "10.0.0.2 is already neighbour[0]"),
            ("[[neighbour]]\nip = \"10.0.0.2/24\"\nmac = \"02:00:00:00:00:02\"".to_string(), "neighbour[0].ip", "no prefix length here"),
            ("[[neighbour]]\nip = \"10.0.0.2\"\nmac = \"zz\"".to_string(), "neighbour[0].mac", "not a MAC address"),
            ("[[neighbour]]\nip = \"10.0.0.2\"".to_string(), "neighbour[0]", "missing field `mac`"),
            // groups
            ("[[group]]\nid = 0\nmembers = [\"tcp:10.0.0.1:80\"]".to_string(), "group[0].id", "0 is below 1"),
            ("[[group]]\nid = 4294967296\nmembers = [\"tcp:10.0.0.1:80\"]".to_string(), "group[0].id", "exceeds 4294967295"),
            ("[[group]]\nid = 1\nmembers = []".to_string(), "group[0].members", "at least one member"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.1:80\"]\n[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.2:80\"]".to_string(), "group[1].id", "group 1 is already group[0]"),
            ("[[group]]\nid = 1\nmembers = [\"sctp:10.0.0.1:80\"]".to_string(), "group[0].members[0]", "'sctp' is not a protocol"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.1\"]".to_string(), "group[0].members[0]", "has no port"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0:80\"]".to_string(), "group[0].members[0]", "'10.0.0' is not an IP address"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.1:65536\"]".to_string(), "group[0].members[0]", "port '65536' is not a number 0-65535"),
            ("[[group]]\nid = 1\nmembers = [\"udp:2001:db8::1:53\"]".to_string(), "group[0].members[0]", "put an IPv6 address in brackets"),
            ("[[group]]\nid = 1\nmembers = [\"udp:[2001:db8::zz]:53\"]".to_string(), "group[0].members[0]", "not a bracketed IPv6 address"),
            ("[[group]]\nid = 1\nmembers = [\"tcp\"]".to_string(), "group[0].members[0]", "not a group member"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.1:80\", \"tcp:10.0.0.1:80\"]".to_string(), "group[0].members[1]", "listed twice"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.1:80\", \"tcp:[::1]:80\"]".to_string(), "group[0].members[1]", "IPv6 address in a group of IPv4"),
            // services
            ("[[service]]\nproto = \"tcp\"\nport = 80".to_string(), "service[0]", "missing field `vip`"),
            ("[[service]]\nvip = \"10.0.0.1\"\nport = 80".to_string(), "service[0]", "missing field `proto`"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"".to_string(), "service[0]", "missing field `port`"),
            ("[[service]]\nproto = \"icmp\"\nvip = \"10.0.0.1\"\nport = 80".to_string(), "service[0].proto", "'icmp' is not a protocol (expected tcp or udp)"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1.1\"\nport = 80".to_string(), "service[0].vip", "'10.0.0.1.1' is not an IP address"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"[2001:db8::1]\"\nport = 80".to_string(), "service[0].vip", "no brackets here"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 65536".to_string(), "service[0].port", "65536 exceeds 65535"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = -1".to_string(), "service[0].port", "-1 is below 0"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = \"80\"".to_string(), "service[0].port", "invalid type: string"),
            ("[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.1:80\"]\n[[service]]\ngroup = 1\nvip = \"10.0.0.1\"".to_string(), "service[0].group", "takes no proto, vip or port"),
            ("[[service]]\ngroup = 2".to_string(), "service[0].group", "group 2 is not defined"),
            (format!("{SVC}\nscheduler = \" \""), "service[0].scheduler", "empty scheduler name"),
            (format!("{SVC}\nflags = [\"sh-port\", \"sh-bogus\"]"), "service[0].flags[1]", "unknown scheduler flag 'sh-bogus'"),
            (format!("{SVC}\nflags = \"sh-port\""), "service[0].flags", "invalid type: string"),
            (format!("{SVC}\npersistence = 0"), "service[0].persistence", "0 is not a timeout"),
            (format!("{SVC}\npersistence = 2678401"), "service[0].persistence", "2678401 exceeds 2678400"),
            (format!("{SVC}\npersistence = 999999999999"), "service[0].persistence", "999999999999 exceeds 2678400"),
            (format!("{SVC}\npersistence_netmask = 24"), "service[0].persistence_netmask", "needs `persistence`"),
            (format!("{SVC}\npersistence = 60\npersistence_netmask = 33"), "service[0].persistence_netmask", "33 exceeds 32"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"::1\"\nport = 80\npersistence = 60\npersistence_netmask = 129".to_string(), "service[0].persistence_netmask", "129 exceeds 128"),
            ("[[service]]\nproto = \"tcp\"\nvip = \"::1\"\nport = 80\npersistence = 60\npersistence_netmask = 0".to_string(), "service[0].persistence_netmask", "0 is below 1"),
            (format!("{SVC}\nlocal_addresses = [\"::1\"]"), "service[0].local_addresses[0]", "::1 is not IPv4 like the service"),
            (format!("{SVC}\nlocal_addresses = [\"10.0.0.2\", \"10.0.0.2\"]"), "service[0].local_addresses[1]", "listed twice"),
            (format!("{SVC}\nlocal_addresses = [\"10.0.0.x\"]"), "service[0].local_addresses[0]", "not an IP address"),
            (format!("{SVC}\n[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 80"), "service[1]", "TCP 10.0.0.1:80 is already service[0]"),
            (format!("{SVC}\nschedular = \"rr\""), "service[0].schedular", "unknown field `schedular`"),
            // real servers
            (format!("{SVC}\n[[service.real_server]]\nport = 80"), "service[0].real_server[0]", "missing field `ip`"),
            (format!("{RS}\nweight = 70000"), "service[0].real_server[0].weight", "70000 exceeds 65535"),
            (format!("{RS}\nweight = -1"), "service[0].real_server[0].weight", "-1 is below 0"),
            (format!("{RS}\nwieght = 1"), "service[0].real_server[0].wieght", "unknown field `wieght`, expected one of `ip`, `port`, `weight`"),
            (format!("{RS}\nmode = \"route\""), "service[0].real_server[0].mode", "'route' is not a forwarding mode (expected dr, tun, nat or fullnat)"),
            (format!("{RS}\nport = 70000"), "service[0].real_server[0].port", "70000 exceeds 65535"),
            (format!("{SVC}\n[[service.real_server]]\nip = \"2001:db8::1\""), "service[0].real_server[0].ip", "2001:db8::1 is not IPv4 like the service"),
            (format!("{RS}\n[[service.real_server]]\nip = \"10.0.1.1\""), "service[0].real_server[1]", "10.0.1.1:80 is already real_server[0]"),
            (format!("{RS}\nupper_threshold = 2147483648"), "service[0].real_server[0].upper_threshold", "exceeds 2147483647"),
            (format!("{RS}\nlower_threshold = -1"), "service[0].real_server[0].lower_threshold", "-1 is below 0"),
            (format!("{RS}\nupper_threshold = 10\nlower_threshold = 20"), "service[0].real_server[0].lower_threshold", "20 is above upper_threshold 10"),
            (format!("{RS}\nmode = \"fullnat\"\nproxy_protocol = \"v3\""), "service[0].real_server[0].proxy_protocol", "expected \"v1\" or \"v2\", not \"v3\""),
            (format!("{RS}\nproxy_protocol = \"v1\""), "service[0].real_server[0].proxy_protocol", "needs mode \"nat\" or \"fullnat\""),
            (format!("{RS}\nmode = \"nat\"\nproxy_protocol = 1"), "service[0].real_server[0].proxy_protocol", "invalid type"),
            ("[[service]]\nproto = \"udp\"\nvip = \"10.0.0.1\"\nport = 53\n[[service.real_server]]\nip = \"10.0.1.1\"\nmode = \"nat\"\nproxy_protocol = \"v2\"".to_string(), "service[0].real_server[0].proxy_protocol", "is for TCP services only"),
            (format!("{SVC}\nreal_server = {{ ip = \"10.0.1.1\" }}"), "service[0].real_server", "invalid type: map, expected a sequence"),
            (format!("{SVC}\nsynproxy = \"yes\""), "service[0].synproxy", "invalid type"),
            (format!("{SVC}\nsynproxy = true\n[[service.real_server]]\nip = \"10.0.1.1\"\nmode = \"nat\"\n[[service.real_server]]\nip = \"10.0.1.2\""), "service[0].synproxy", "needs real servers in mode \"nat\" or \"fullnat\" (real_server[1] is dr"),
            ("[[service]]\nproto = \"udp\"\nvip = \"10.0.0.1\"\nport = 53\nsynproxy = true".to_string(), "service[0].synproxy", "is for TCP services only"),
            // the top level
            ("[[services]]\nproto = \"tcp\"".to_string(), "services", "unknown field `services`"),
            ("service = 5".to_string(), "service", "invalid type: integer"),
        ]
    }

    #[test]
    fn vlans_and_routes_make_links_and_routes() {
        let text = "[[interface]]\nname = \"eth0\"\nmac = \"02:00:00:00:00:10\"\nmtu = 9000\naddresses = [\"10.0.0.1/24\"]\n\
                    [[interface]]\nname = \"eth0.20\"\nlink = \"eth0\"\nvlan = 20\naddresses = [\"10.0.20.1/24\"]\ngateways = [\"10.0.20.254\"]\n\
                    [[interface]]\nname = \"vmac\"\nlink = \"eth0\"\nmac = \"00:00:5e:00:01:33\"\nmtu = 1500\n\
                    [[interface]]\nname = \"eth1\"\nmac = \"02:00:00:00:01:10\"\naddresses = [\"10.0.1.1/24\"]\n\
                    [[route]]\nto = \"10.9.0.0/16\"\nvia = \"10.0.1.7\"\n\
                    [[route]]\nto = \"2001:db8:9::/48\"\nvia = \"fe80::1\"\ndev = \"eth0.20\"\nmetric = 5\n";
        let m = parse(text).unwrap();
        let names: Vec<&str> = m.net.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"], "sub-interfaces are no ports");
        let s = &m.net.subifs;
        assert_eq!((s[0].name.as_str(), s[0].port, s[0].vid, s[0].mac, s[0].mtu), ("eth0.20", 0, 20, [2, 0, 0, 0, 0, 0x10], 9000), "the port's MAC and MTU");
        assert_eq!((s[1].port, s[1].vid, s[1].mac, s[1].mtu), (0, 0, [0, 0, 0x5e, 0, 1, 0x33], 1500));
        let hop = |dev: &str, via: &str| vec![RouteHop { dev: dev.into(), via: Some(a(via)) }];
        assert_eq!(
            m.net.routes,
            vec![
                RouteConf { dst: a("0.0.0.0"), len: 0, metric: 0, hops: hop("eth0.20", "10.0.20.254") },
                RouteConf { dst: a("10.9.0.0"), len: 16, metric: 0, hops: hop("eth1", "10.0.1.7") },
                RouteConf { dst: a("2001:db8:9::"), len: 48, metric: 5, hops: hop("eth0.20", "fe80::1") },
            ]
        );
        let r = crate::ctl::route::Routes::build(&m.net);
        assert_eq!(r.next_hop(a("10.9.3.3")).map(|h| (h.link, h.addr)), Some((1, a("10.0.1.7"))));
        assert_eq!(r.next_hop(a("192.0.2.1")).map(|h| (h.link, h.addr)), Some((2, a("10.0.20.254"))), "links: ports, then sub-interfaces");
    }

    #[test]
    fn bad_configs_name_the_field_and_why() {
        for (text, path, why) in bad_cases() {
            let text = text.as_str();
            let e = match parse(text) {
                Ok(m) => panic!("accepted:\n{text}\n{m:?}"),
                Err(e) => e,
            };
            let shown = e.to_string();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{shown}");
            assert_eq!(e.path(), Some(path), "{shown}\nfor:\n{text}");
            assert!(shown.contains(why), "'{shown}' should say '{why}'");
            assert!(shown.starts_with("t.toml: line "), "{shown}");
            assert!(shown.contains(&format!(": {path}: ")), "{shown}");
            // load_str stops at the same place (before the snapshot).
            assert_eq!(load_str(text, "t.toml").unwrap_err().to_string(), shown);
        }
    }

    #[test]
    fn errors_point_at_the_line_and_column() {
        let text = "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nport = 80\nscheduler = \"rr\"\n\n  [[service.real_server]]\n  ip = \"10.0.1.1\"\n  weight = 70000\n  wieght = 1\n";
        let e = parse(text).unwrap_err();
        // Shape errors come first: the misspelt key, at its own position.
        assert_eq!(
            e.location(),
            Some(Location {
                line: 10,
                column: 3
            })
        );
        assert_eq!(
            e.to_string(),
            "t.toml: line 10, column 3: service[0].real_server[0].wieght: unknown field `wieght`, expected one of `ip`, `port`, `weight`, `mode`, `upper_threshold`, `lower_threshold`, `proxy_protocol`, `check`"
        );
        let text = text.replace("  wieght = 1\n", "");
        let e = load_str(&text, "configs/x.toml").unwrap_err();
        assert_eq!(e.to_string(), "configs/x.toml: line 9, column 12: service[0].real_server[0].weight: 70000 exceeds 65535");
        // A missing field is reported at its table's header.
        let e = parse("\n\n[[service]]\nproto = \"tcp\"\nport = 1\n").unwrap_err();
        assert_eq!(e.location(), Some(Location { line: 3, column: 1 }));
        assert_eq!(e.path(), Some("service[0]"));
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = load_str(
            "[global]\nmax_conns = 5\nexpire_nodest_conn = tru\n",
            "s.toml",
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
        assert_eq!(e.location().map(|l| l.line), Some(3));
        assert_eq!(e.to_string(), "s.toml: line 3, column 22: global.expire_nodest_conn: invalid boolean, expected `true`");
        assert_eq!(e.path(), Some("global.expire_nodest_conn"));
        let e = load_str("[[service]]\nport = 1\nport = 2\n", "s.toml").unwrap_err();
        assert_eq!(e.location(), Some(Location { line: 3, column: 1 }), "{e}");
        assert!(e.to_string().contains("duplicate key"), "{e}");
        let e = load_str("[[service]\n", "s.toml").unwrap_err();
        assert_eq!(e.location().map(|l| l.line), Some(1), "{e}");
        assert_eq!(e.path(), None);
    }

    #[test]
    fn model_errors_keep_the_message_and_point_at_the_object() {
        let svc = "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.100\"\nport = 80\n";
        // The scheduler registry is the snapshot's business.
        let e = load_str(&format!("{svc}scheduler = \"bogus\"\n"), "m.toml").unwrap_err();
        let ConfigError::Model { source, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(source.what, "service TCP 10.0.0.100:80");
        assert!(
            source.why.starts_with("unknown scheduler 'bogus' (known: "),
            "{source}"
        );
        assert_eq!(e.path(), Some("service[0]"));
        assert_eq!(e.location(), Some(Location { line: 1, column: 1 }));
        assert_eq!(
            e.to_string(),
            format!("m.toml: line 1, column 1: service[0]: {source}")
        );
        assert!(std::error::Error::source(&e).is_some());
        // A real server the snapshot refuses: DR cannot change the port.
        let text = format!(
            "{svc}scheduler = \"rr\"\n[[service.real_server]]\nip = \"10.0.1.1\"\n[[service.real_server]]\nip = \"10.0.1.2\"\nport = 8080\n"
        );
        let e = load_str(&text, "m.toml").unwrap_err();
        assert_eq!(e.path(), Some("service[0].real_server[1]"), "{e}");
        assert_eq!(e.location().map(|l| l.line), Some(8));
        assert!(
            e.to_string()
                .contains("dr forwarding cannot change the port (80 -> 8080)"),
            "{e}"
        );
        // FULLNAT without local addresses, in the second service.
        let text = format!(
            "{svc}scheduler = \"rr\"\n[[service]]\nproto = \"udp\"\nvip = \"10.0.0.100\"\nport = 53\nscheduler = \"rr\"\n[[service.real_server]]\nip = \"10.0.1.1\"\nmode = \"fullnat\"\n"
        );
        let e = load_str(&text, "m.toml").unwrap_err();
        assert_eq!(e.path(), Some("service[1].real_server[0]"), "{e}");
        assert!(e.to_string().contains("needs local addresses"), "{e}");
        // A group overlapping another service: the group service is named.
        let text = format!(
            "[[group]]\nid = 1\nmembers = [\"tcp:10.0.0.100:80\"]\n{svc}scheduler = \"rr\"\n[[service]]\ngroup = 1\nscheduler = \"rr\"\n"
        );
        let e = load_str(&text, "m.toml").unwrap_err();
        assert_eq!(e.path(), Some("service[1]"), "{e}");
        assert!(
            e.to_string()
                .contains("TCP 10.0.0.100:80 is already a service"),
            "{e}"
        );
    }

    #[test]
    fn default_scheduler_is_wlc() {
        let text = "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 80\n";
        assert_eq!(parse(text).unwrap().services[0].sched, DEFAULT_SCHEDULER);
        assert_eq!(DEFAULT_SCHEDULER, "wlc");
        // Through the snapshot it loads once wlc is registered, and until then
        // fails naming the scheduler and the service.
        match load_str(text, "d.toml") {
            Ok(m) => assert_eq!(m.services[0].sched, "wlc"),
            Err(e) => {
                assert!(
                    crate::ipvs::sched::SchedKind::from_name("wlc").is_none(),
                    "{e}"
                );
                assert!(
                    e.to_string()
                        .contains("service[0]: service TCP 10.0.0.1:80: unknown scheduler 'wlc'"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn read_errors_name_the_file() {
        let e = load_file(Path::new("/nonexistent/xvs-config.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/xvs-config.toml: cannot read the configuration: "),
            "{e}"
        );
        assert_eq!((e.path(), e.location()), (None, None));
    }

    #[test]
    fn health_checks_and_sorry_servers_load_into_a_plan() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/health.toml");
        let c = load_config_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.health.targets().len(), 2, "both real servers are checked");
        assert_eq!(c.health.checks().len(), 3, "http, tcp, agent");
        assert!(c.health.sorry(&c.model.services[0].key).is_some());
        // a config without checks has an empty plan
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/nat.toml");
        assert!(load_config_file(&p).unwrap().health.targets().is_empty());
    }

    #[test]
    fn bad_checks_name_their_field() {
        let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/health.toml")).unwrap();
        let cases = [
            ("rise = 2", "rise = 0", "service[0].real_server[0].check.rise"),
            ("type = \"http\"", "type = \"gopher\"", "service[0].real_server[0].check"),
            ("type = \"agent\"\n    port = 9999", "type = \"agent\"\n    port = 9999\n    path = \"/x\"", "service[0].real_server[1].check[1]"),
            ("fwd = \"nat\"", "fwd = \"nat\"\n  weight = 0", "service[0].sorry_server.weight"),
            ("addr = \"10.0.1.9\"", "addr = \"10.0.1.1\"", "service[0].sorry_server"),
        ];
        for (from, to, want) in cases {
            assert!(base.contains(from), "{from}");
            let text = base.replacen(from, to, 1);
            let e = load_config_str(&text, "h.toml").unwrap_err();
            let msg = e.to_string();
            assert!(e.path().is_some_and(|p| p.starts_with(want)), "{want} in {msg}");
            assert!(msg.starts_with("h.toml: line "), "{msg}");
        }
    }

    #[test]
    fn every_example_in_configs_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let m = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            Snapshot::build(&m, None).unwrap();
            assert!(
                !m.services.is_empty() && !m.net.ports.is_empty(),
                "{}",
                path.display()
            );
            // The per-mode examples use their mode for every real server.
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(mode) = FwdMethod::ALL.into_iter().find(|m| m.name() == stem) {
                assert!(
                    m.services
                        .iter()
                        .flat_map(|s| &s.dests)
                        .all(|d| d.fwd == mode),
                    "{stem}"
                );
                let weights: Vec<u32> = m.services[0].dests.iter().map(|d| d.weight).collect();
                assert_eq!(weights, vec![1, 2], "{stem}");
            }
            seen.push(stem);
        }
        seen.sort();
        for want in ["dr", "fullnat", "nat", "tun"] {
            assert!(
                seen.iter().any(|s| s == want),
                "configs/{want}.toml is missing"
            );
        }
    }

    #[test]
    fn the_example_in_the_reference_loads() {
        let doc = include_str!("../../docs/config.md");
        let example = doc
            .split("\n## Example\n")
            .nth(1)
            .expect("docs/config.md has an Example section");
        let toml = example
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        // wlc is not a registered scheduler yet, so the example names its own.
        let m = load_str(toml, "docs/config.md").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.services.len(), 2);
        assert_eq!(
            m.services[0].persistence,
            Some(Persistence {
                timeout: 300,
                netmask: 24
            })
        );
        assert_eq!(m.services[1].key, ServiceKey::Group(53));
        assert_eq!(m.timeouts.triple(), (3600, 120, 60));
    }

    #[test]
    fn location_counts_lines_and_characters() {
        let t = "ab\nçd\n";
        assert_eq!(location(t, 0), Location { line: 1, column: 1 });
        assert_eq!(location(t, 3), Location { line: 2, column: 1 });
        assert_eq!(
            location(t, 5),
            Location { line: 2, column: 2 },
            "ç is two bytes, one column"
        );
        assert_eq!(
            location(t, 4),
            Location { line: 2, column: 2 },
            "inside a character: no panic"
        );
        assert_eq!(
            location(t, 999),
            Location { line: 3, column: 1 },
            "past the end: clamped"
        );
        assert_eq!(location("", 7), Location { line: 1, column: 1 });
    }

    #[test]
    fn field_paths_print_like_toml() {
        let p = root("service")
            .idx(1)
            .key("real_server")
            .idx(0)
            .key("weight");
        assert_eq!(p.to_string(), "service[1].real_server[0].weight");
        assert_eq!(root("a b").key("c.d").to_string(), "\"a b\".\"c.d\"");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let dotted = format!("{} = 1\n", vec!["k"; 20000].join("."));
        assert!(load_str(&dotted, "deep").is_err());
        let arrays = format!("x = {}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(load_str(&arrays, "deep").is_err());
    }

    /// Config-shaped text: the sections of the schema with their own keys
    /// (not repeated, so most texts pass the parser and the shape check),
    /// values mostly of the right type and often out of range, and now and
    /// then a value of the wrong type, a misspelt key or a line of junk.
    fn config_text() -> impl Strategy<Value = String> {
        const INT: &[&str] = &[
            "0",
            "1",
            "2",
            "24",
            "80",
            "128",
            "576",
            "-1",
            "65536",
            "2678401",
            "99999999999",
        ];
        const IP: &[&str] = &[
            "\"10.0.0.1\"",
            "\"10.0.1.1\"",
            "\"::1\"",
            "\"2001:db8::1\"",
            "\"[::1]\"",
            "\"10.0.0.1/24\"",
            "\"x\"",
        ];
        const IPS: &[&str] = &[
            "[]",
            "[\"10.0.0.1\"]",
            "[\"10.0.0.1\", \"10.0.0.1\"]",
            "[\"::1\"]",
            "[\"10.0.0.254\", \"fe80::1\"]",
            "[\"y\"]",
        ];
        const PREFIXES: &[&str] = &[
            "[]",
            "[\"10.0.0.1/24\"]",
            "[\"2001:db8::1/64\", \"10.0.0.2/33\"]",
            "[\"10.0.0.1\"]",
        ];
        const MAC: &[&str] = &[
            "\"02:00:00:00:00:01\"",
            "\"01:00:00:00:00:01\"",
            "\"02:00:00:00:00\"",
            "\"\"",
        ];
        const NAME: &[&str] = &[
            "\"eth0\"",
            "\"eth1\"",
            "\"\"",
            "\"a very long interface name\"",
        ];
        const PROTO: &[&str] = &["\"tcp\"", "\"udp\"", "\"sctp\""];
        const SCHED: &[&str] = &["\"rr\"", "\"wrr\"", "\"wlc\"", "\"\""];
        const FLAGS: &[&str] = &[
            "[]",
            "[\"sh-port\"]",
            "[\"flag-1\", \"flag-3\"]",
            "[\"nope\"]",
            "[\"\"]",
        ];
        const MODE: &[&str] = &["\"dr\"", "\"tun\"", "\"nat\"", "\"fullnat\"", "\"route\""];
        const MEMBERS: &[&str] = &[
            "[]",
            "[\"tcp:10.0.0.1:80\"]",
            "[\"udp:[::1]:53\", \"tcp:[::1]:0\"]",
            "[\"tcp:10.0.0.1:80\", \"tcp:::1:80\"]",
        ];
        const BOOL: &[&str] = &["true", "false"];
        const PROXY: &[&str] = &["\"v1\"", "\"v2\"", "\"v3\""];
        const WRONG: &[&str] = &["1.5", "true", "\"s\"", "[]", "{}", "[1, 2]"];
        type Keys = &'static [(&'static str, &'static [&'static str])];
        const ARRAYS: &[(&str, Keys)] = &[
            (
                "[[service]]",
                &[
                    ("proto", PROTO),
                    ("vip", IP),
                    ("port", INT),
                    ("group", INT),
                    ("scheduler", SCHED),
                    ("flags", FLAGS),
                    ("persistence", INT),
                    ("persistence_netmask", INT),
                    ("local_addresses", IPS),
                    ("synproxy", BOOL),
                ],
            ),
            (
                "[[interface]]",
                &[
                    ("name", NAME),
                    ("mac", MAC),
                    ("mtu", INT),
                    ("addresses", PREFIXES),
                    ("gateways", IPS),
                ],
            ),
            ("[[neighbour]]", &[("ip", IP), ("mac", MAC)]),
            ("[[group]]", &[("id", INT), ("members", MEMBERS)]),
        ];
        const REAL_SERVER: Keys = &[
            ("ip", IP),
            ("port", INT),
            ("weight", INT),
            ("mode", MODE),
            ("upper_threshold", INT),
            ("lower_threshold", INT),
            ("proxy_protocol", PROXY),
        ];
        const TABLES: &[(&str, Keys)] = &[
            (
                "[global]",
                &[
                    ("expire_nodest_conn", BOOL),
                    ("conn_reuse_mode", INT),
                    ("drop_entry", BOOL),
                    ("icmp_msgs_per_sec", INT),
                    ("icmp_msgs_burst", INT),
                    ("toa", BOOL),
                    ("expire_quiescent_template", BOOL),
                    ("sloppy_tcp", BOOL),
                    ("max_conns", INT),
                    ("shard_prefix_v4", INT),
                    ("shard_prefix_v6", INT),
                ],
            ),
            (
                "[timeouts]",
                &[("tcp", INT), ("tcp_fin", INT), ("udp", INT)],
            ),
            (
                "[timeouts.tcp_state]",
                &[
                    ("syn_recv", INT),
                    ("established", INT),
                    ("fin_wait", INT),
                    ("close", INT),
                    ("SYN_RECV", INT),
                ],
            ),
        ];
        fn body(keys: Keys, picks: &[(bool, usize, bool)]) -> String {
            let mut s = String::new();
            for (k, (present, v, wrong)) in keys.iter().zip(picks) {
                if *present {
                    let pool = if *wrong { WRONG } else { k.1 };
                    s.push_str(&format!("{} = {}\n", k.0, pool[v % pool.len()]));
                }
            }
            s
        }
        let picks = || {
            prop::collection::vec(
                (
                    prop::bool::weighted(0.9),
                    0usize..64,
                    prop::bool::weighted(0.01),
                ),
                9,
            )
        };
        // Each single table at most once (a second one is a syntax error).
        let tables =
            prop::collection::vec(prop::option::of(picks()), TABLES.len()).prop_map(|ts| {
                let present = ts
                    .into_iter()
                    .enumerate()
                    .filter_map(|(t, p)| Some((t, p?)));
                present
                    .map(|(t, p)| format!("{}\n{}", TABLES[t].0, body(TABLES[t].1, &p)))
                    .collect::<String>()
            });
        let real_servers = prop::collection::vec(picks(), 0..3);
        let array = (
            0..ARRAYS.len(),
            picks(),
            real_servers,
            prop::option::weighted(0.02, "wieght = 1\n"),
            prop::option::weighted(0.01, "\\PC{0,12}\n"),
        )
            .prop_map(|(a, p, rs, typo, junk)| {
                let mut s = format!("{}\n{}", ARRAYS[a].0, body(ARRAYS[a].1, &p));
                // Real servers only under a service, as TOML would nest them.
                for r in rs.iter().filter(|_| ARRAYS[a].0 == "[[service]]") {
                    s.push_str(&format!(
                        "[[service.real_server]]\n{}",
                        body(REAL_SERVER, r)
                    ));
                }
                s + &typo.unwrap_or_default() + &junk.unwrap_or_default()
            });
        (tables, prop::collection::vec(array, 0..6)).prop_map(|(t, arrays)| t + &arrays.concat())
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = load_str(&text, "p");
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = load_str(&String::from_utf8_lossy(&bytes), "p");
        }

        #[test]
        fn config_shaped_text_never_panics(text in config_text()) {
            if let Err(e) = load_str(&text, "p") {
                // Every error names its origin.
                prop_assert!(e.to_string().starts_with("p: "));
            }
        }

        #[test]
        fn a_broken_example_never_panics(cut in 0usize..3000, junk in "\\PC{0,8}") {
            let base = include_str!("../../configs/fullnat.toml");
            let mut at = cut.min(base.len());
            while !base.is_char_boundary(at) {
                at -= 1;
            }
            let text = format!("{}{}{}", &base[..at], junk, &base[at..]);
            let _ = load_str(&text, "p");
        }
    }
}
