//! The configuration of health checks and sorry servers, as written in the
//! TOML config (`[service.real_server.check]`, `[service.sorry_server]`),
//! and its validation into typed, hashable [`CheckSpec`]s.
//!
//! One flat [`CheckConfig`] serves every check kind (`type = ...`) so serde
//! can reject unknown keys; [`CheckConfig::validate`] then rejects keys that
//! do not apply to the chosen kind and every bad value, with a
//! [`ConfigError`] naming the field.
//!
//! Durations (`interval`, `timeout`) are a number of seconds (`2`, `0.5`)
//! or a string with a unit: `"500ms"`, `"2s"`, `"1m"`, `"1h"`.

use super::DestId;
use crate::ipvs::dest::{Dest, MAX_WEIGHT};
use crate::ipvs::FwdMethod;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Default time between two checks.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default time a check may take (connect + exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive successes that bring a down server up (HAProxy's).
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures that take an up server down (HAProxy's).
pub const DEFAULT_FALL: u32 = 3;
/// Default spread of each interval, in percent (± this much).
pub const DEFAULT_JITTER: u32 = 10;
/// Largest `rise` / `fall`.
pub const MAX_COUNT: u32 = 1000;
/// Largest `jitter` percentage: beyond it checks could overlap.
pub const MAX_JITTER: u32 = 50;
/// Shortest interval accepted: a check is a real exchange with a server.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval / timeout accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Longest UDP payload or expected reply.
pub const MAX_UDP_PAYLOAD: usize = 1472;

/// A configuration problem: the field at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `check.digest`.
    pub field: String,
    pub why: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, why: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            why: why.into(),
        }
    }

    /// Prefixes the field with where it sits (e.g. the service and real
    /// server whose check it is).
    pub fn within(mut self, ctx: impl fmt::Display) -> ConfigError {
        self.field = format!("{ctx}: {}", self.field);
        self
    }
}

fn cerr(field: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("check.{field}"), why)
}

/// A duration in the config: seconds as a number, or a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfDuration(pub Duration);

impl ConfDuration {
    /// Parses `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"` or a bare number
    /// of seconds.
    ///
    /// # Errors
    /// A message saying what is wrong with the text.
    pub fn parse(s: &str) -> Result<ConfDuration, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let scale = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("'{s}' has unknown unit '{u}' (use ms, s, m or h)")),
        };
        let v: f64 = num.parse().map_err(|_| {
            format!("'{s}' is not a duration (e.g. \"2s\", \"500ms\" or a number of seconds)")
        })?;
        Self::from_secs(v * scale).map_err(|e| format!("'{s}' {e}"))
    }

    fn from_secs(v: f64) -> Result<ConfDuration, String> {
        if !v.is_finite() || v < 0.0 {
            return Err("is not a non-negative duration".into());
        }
        if v > MAX_INTERVAL.as_secs_f64() {
            return Err(format!("exceeds {}s", MAX_INTERVAL.as_secs()));
        }
        Ok(ConfDuration(Duration::from_secs_f64(v)))
    }
}

impl<'de> Deserialize<'de> for ConfDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds as a number, or a string like \"2s\" or \"500ms\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfDuration, E> {
                ConfDuration::from_secs(v as f64).map_err(|e| E::custom(format!("{v} {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfDuration, E> {
                ConfDuration::from_secs(v as f64).map_err(|e| E::custom(format!("{v} {e}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfDuration, E> {
                ConfDuration::from_secs(v).map_err(|e| E::custom(format!("{v} {e}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfDuration, E> {
                ConfDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The kind of check (`type = ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// ICMP echo (layer 3).
    Icmp,
    /// TCP connect (layer 4).
    Tcp,
    /// HTTP GET (layer 7).
    Http,
    /// HTTPS GET; the certificate is not verified (keepalived's SSL_GET).
    Https,
    /// UDP datagram, optionally expecting a reply.
    Udp,
    /// DNS query over UDP.
    Dns,
    /// External command (keepalived's MISC_CHECK).
    Exec,
    /// HAProxy-style agent: a line of text over TCP.
    Agent,
}

impl CheckType {
    /// The name used in the config.
    pub const fn name(self) -> &'static str {
        match self {
            CheckType::Icmp => "icmp",
            CheckType::Tcp => "tcp",
            CheckType::Http => "http",
            CheckType::Https => "https",
            CheckType::Udp => "udp",
            CheckType::Dns => "dns",
            CheckType::Exec => "exec",
            CheckType::Agent => "agent",
        }
    }
}

/// What happens to a real server whose check fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Weight 0: no new connections, established ones go on (keepalived's
    /// `inhibit_on_failure`). The default, as it never cuts a connection.
    #[default]
    Quiesce,
    /// Remove the real server from the service (keepalived's default).
    Remove,
}

/// DNS query type of a `dns` check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum QueryType {
    #[serde(alias = "a")]
    A,
    #[serde(alias = "aaaa")]
    AAAA,
}

impl QueryType {
    /// The RR type number.
    pub const fn code(self) -> u16 {
        match self {
            QueryType::A => 1,
            QueryType::AAAA => 28,
        }
    }
}

/// One health check of a real server, as written in the config. See
/// `docs/health.md` for every key; keys that do not apply to `type` are
/// rejected by [`CheckConfig::validate`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The kind of check.
    #[serde(rename = "type")]
    pub kind: CheckType,
    /// Time between two checks (default 2s).
    pub interval: Option<ConfDuration>,
    /// Time one check may take, connect included (default 1s, at most
    /// `interval`).
    pub timeout: Option<ConfDuration>,
    /// Consecutive successes before a down server is up (default 2).
    pub rise: Option<u32>,
    /// Consecutive failures before an up server is down (default 3).
    pub fall: Option<u32>,
    /// Each interval varies randomly by ± this percentage (default 10,
    /// at most 50), so checks do not fire in lockstep.
    pub jitter: Option<u32>,
    /// `quiesce` (weight 0, the default) or `remove`.
    pub on_failure: Option<OnFailure>,
    /// Start the server as down until it passes `rise` checks (keepalived's
    /// `alpha`); by default servers start up.
    pub alpha: Option<bool>,
    /// Address to check instead of the real server's (keepalived's
    /// `connect_ip`).
    pub addr: Option<IpAddr>,
    /// Port to check instead of the real server's (`connect_port`);
    /// required for `agent`.
    pub port: Option<u16>,
    /// http/https: the path to GET (default `/`).
    pub path: Option<String>,
    /// http/https: the Host header (default the checked address and port).
    pub host: Option<String>,
    /// http/https: accepted status codes (default any 2xx).
    pub status: Option<Vec<u16>>,
    /// http/https: MD5 of the body, 32 hex digits (keepalived's `digest`).
    pub digest: Option<String>,
    /// http/https: a regular expression the body must match.
    pub regex: Option<String>,
    /// https: the TLS server name to send (SNI); default none.
    pub sni: Option<String>,
    /// udp: the datagram to send, as text.
    pub payload: Option<String>,
    /// udp: the datagram to send, as hex.
    pub payload_hex: Option<String>,
    /// udp: the reply must start with this text.
    pub expect: Option<String>,
    /// udp: the reply must start with these bytes (hex).
    pub expect_hex: Option<String>,
    /// udp: a reply is needed (default true); when false, silence until the
    /// timeout passes and only an ICMP error fails (keepalived's UDP_CHECK).
    pub require_reply: Option<bool>,
    /// dns: the name to query.
    pub name: Option<String>,
    /// dns: `A` (default) or `AAAA`.
    pub query_type: Option<QueryType>,
    /// exec: the program and its arguments (no shell).
    pub command: Option<Vec<String>>,
    /// exec: exit codes 2..=255 mean up with weight `code - 2`.
    pub misc_dynamic: Option<bool>,
    /// agent: a line to send to the agent after connecting (HAProxy's
    /// `agent-send`); a newline is added.
    pub send: Option<String>,
}

/// The checks of one real server: `check` written as one table
/// (`[service.real_server.check]`) or as an array of tables
/// (`[[service.real_server.check]]`, e.g. an HTTP check plus an agent). A
/// server is up when every one of its checks is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checks(pub Vec<CheckConfig>);

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a check table or an array of check tables")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, m: A) -> Result<Checks, A::Error> {
                CheckConfig::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|c| Checks(vec![c]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Checks, A::Error> {
                Vec::<CheckConfig>::deserialize(de::value::SeqAccessDeserializer::new(s))
                    .map(Checks)
            }
        }
        d.deserialize_any(V)
    }
}

/// A sorry server (`[service.sorry_server]`): takes the service's new
/// connections while no real server can (every one down or at weight 0).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServerConfig {
    pub addr: IpAddr,
    /// 0 (default) = the port the client asked for.
    #[serde(default)]
    pub port: u16,
    /// Forwarding method; default the method of the service's first real
    /// server, or `dr`.
    pub fwd: Option<FwdMethod>,
    /// Weight while active (default 1).
    pub weight: Option<u32>,
    /// Keep the sorry server in the service at weight 0 while inactive
    /// instead of removing it (keepalived's `sorry_server_inhibit`), so its
    /// connections drain gently.
    #[serde(default)]
    pub inhibit: bool,
}

impl SorryServerConfig {
    /// The sorry server as a dest of a service whose real servers are
    /// `dests` (which give the default forwarding method).
    ///
    /// # Errors
    /// A weight of 0 or above 65535.
    pub fn to_dest(&self, dests: &[Dest]) -> Result<Dest, ConfigError> {
        let weight = self.weight.unwrap_or(1);
        if weight == 0 || weight > MAX_WEIGHT {
            return Err(ConfigError::new(
                "sorry_server.weight",
                format!("{weight} is not in 1..={MAX_WEIGHT}"),
            ));
        }
        let fwd = self
            .fwd
            .or_else(|| dests.first().map(|d| d.fwd))
            .unwrap_or(FwdMethod::Dr);
        Ok(Dest {
            addr: self.addr,
            port: self.port,
            weight,
            fwd,
            u_threshold: 0,
            l_threshold: 0,
            proxy: None,
        })
    }
}

/// Timing of a check, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Percent.
    pub jitter: u32,
    /// Starts down.
    pub alpha: bool,
}

/// Accepted HTTP status codes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StatusSet {
    /// Any 2xx.
    Any2xx,
    /// One of these.
    List(Vec<u16>),
}

impl StatusSet {
    /// `code` is accepted.
    pub fn accepts(&self, code: u16) -> bool {
        match self {
            StatusSet::Any2xx => (200..300).contains(&code),
            StatusSet::List(l) => l.contains(&code),
        }
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusSet::Any2xx => f.write_str("2xx"),
            StatusSet::List(l) => {
                for (i, c) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// A compiled regular expression that compares and hashes by its source,
/// so specs that use it can be deduplicated.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub source: String,
    pub re: Arc<regex_lite::Regex>,
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.source == o.source
    }
}
impl Eq for Pattern {}
impl Hash for Pattern {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.source.hash(h)
    }
}

/// An HTTP or HTTPS GET check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpProbe {
    pub target: SocketAddr,
    pub tls: bool,
    pub path: String,
    pub host: String,
    pub status: StatusSet,
    pub digest: Option<[u8; 16]>,
    pub regex: Option<Pattern>,
    /// TLS server name; `None` sends no SNI (an IP address).
    pub sni: Option<String>,
}

/// A UDP check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpProbe {
    pub target: SocketAddr,
    pub payload: Vec<u8>,
    /// The reply must start with these bytes (empty: any reply).
    pub expect: Vec<u8>,
    pub require_reply: bool,
}

/// A DNS check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsProbe {
    pub target: SocketAddr,
    /// Validated, without the trailing dot.
    pub name: String,
    pub qtype: QueryType,
}

/// An external command check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecProbe {
    pub argv: Vec<String>,
    /// Passed to the command as `XVS_CHECK_ADDR` / `XVS_CHECK_PORT`.
    pub target: DestId,
    pub dynamic: bool,
}

/// An agent check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AgentProbe {
    pub target: SocketAddr,
    pub send: Option<String>,
}

/// What a check does, validated and bound to its target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    Icmp { addr: IpAddr },
    Tcp { target: SocketAddr },
    Http(HttpProbe),
    Udp(UdpProbe),
    Dns(DnsProbe),
    Exec(ExecProbe),
    Agent(AgentProbe),
}

impl Probe {
    /// The kind of check.
    pub fn kind(&self) -> CheckType {
        match self {
            Probe::Icmp { .. } => CheckType::Icmp,
            Probe::Tcp { .. } => CheckType::Tcp,
            Probe::Http(h) if h.tls => CheckType::Https,
            Probe::Http(_) => CheckType::Http,
            Probe::Udp(_) => CheckType::Udp,
            Probe::Dns(_) => CheckType::Dns,
            Probe::Exec(_) => CheckType::Exec,
            Probe::Agent(_) => CheckType::Agent,
        }
    }
}

impl fmt::Display for Probe {
    /// A short name for logs, e.g. `http 10.0.1.1:80/health`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Icmp { addr } => write!(f, "icmp {addr}"),
            Probe::Tcp { target } => write!(f, "tcp {target}"),
            Probe::Http(h) => write!(f, "{} {}{}", self.kind().name(), h.target, h.path),
            Probe::Udp(u) => write!(f, "udp {}", u.target),
            Probe::Dns(d) => write!(f, "dns {} {:?} {}", d.target, d.qtype, d.name),
            Probe::Exec(e) => write!(f, "exec {}", e.argv.first().map_or("", String::as_str)),
            Probe::Agent(a) => write!(f, "agent {}", a.target),
        }
    }
}

/// A validated check: what it does and when. Equal specs are the same
/// check and run once (see [`super::plan::HealthPlan`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    pub probe: Probe,
    pub timing: Timing,
}

impl fmt::Display for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.probe.fmt(f)
    }
}

/// Parses hex digits (whitespace and `:` allowed between bytes).
fn parse_hex(field: &str, s: &str) -> Result<Vec<u8>, ConfigError> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if digits.len() % 2 != 0 {
        return Err(cerr(field, "has an odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|p| {
            let t = std::str::from_utf8(p).unwrap_or("??");
            u8::from_str_radix(t, 16).map_err(|_| cerr(field, format!("'{t}' is not a hex byte")))
        })
        .collect()
}

/// A DNS name: labels of 1..=63 letters, digits, `-` or `_`, 253 bytes at
/// most; one trailing dot allowed.
fn valid_dns_name(field: &str, s: &str) -> Result<String, ConfigError> {
    let n = s.strip_suffix('.').unwrap_or(s);
    if n.is_empty() {
        return Err(cerr(field, "is empty"));
    }
    if n.len() > 253 {
        return Err(cerr(field, "is longer than 253 bytes"));
    }
    for l in n.split('.') {
        if l.is_empty() || l.len() > 63 {
            return Err(cerr(
                field,
                format!("'{s}' has a label that is empty or longer than 63 bytes"),
            ));
        }
        if let Some(c) = l
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(cerr(
                field,
                format!("'{s}' has the character '{c}' (letters, digits, '-' and '_' only)"),
            ));
        }
    }
    Ok(n.to_string())
}

fn no_ctl(field: &str, s: &str) -> Result<(), ConfigError> {
    match s.chars().find(|c| c.is_control() || *c == ' ') {
        Some(c) => Err(cerr(
            field,
            format!("must not contain spaces or control characters (found {c:?})"),
        )),
        None => Ok(()),
    }
}

impl CheckConfig {
    /// A check of `kind` with every other key unset (defaults apply).
    pub fn new(kind: CheckType) -> CheckConfig {
        CheckConfig {
            kind,
            interval: None,
            timeout: None,
            rise: None,
            fall: None,
            jitter: None,
            on_failure: None,
            alpha: None,
            addr: None,
            port: None,
            path: None,
            host: None,
            status: None,
            digest: None,
            regex: None,
            sni: None,
            payload: None,
            payload_hex: None,
            expect: None,
            expect_hex: None,
            require_reply: None,
            name: None,
            query_type: None,
            command: None,
            misc_dynamic: None,
            send: None,
        }
    }

    /// The keys set in this config that belong to one kind only, with the
    /// kinds they belong to.
    fn kind_keys(&self) -> Vec<(&'static str, &'static [CheckType])> {
        use CheckType::*;
        const HTTP: &[CheckType] = &[Http, Https];
        let mut v = Vec::new();
        let mut k = |set: bool, name: &'static str, kinds: &'static [CheckType]| {
            if set {
                v.push((name, kinds));
            }
        };
        k(self.path.is_some(), "path", HTTP);
        k(self.host.is_some(), "host", HTTP);
        k(self.status.is_some(), "status", HTTP);
        k(self.digest.is_some(), "digest", HTTP);
        k(self.regex.is_some(), "regex", HTTP);
        k(self.sni.is_some(), "sni", &[Https]);
        k(self.payload.is_some(), "payload", &[Udp]);
        k(self.payload_hex.is_some(), "payload_hex", &[Udp]);
        k(self.expect.is_some(), "expect", &[Udp]);
        k(self.expect_hex.is_some(), "expect_hex", &[Udp]);
        k(self.require_reply.is_some(), "require_reply", &[Udp]);
        k(self.name.is_some(), "name", &[Dns]);
        k(self.query_type.is_some(), "query_type", &[Dns]);
        k(self.command.is_some(), "command", &[Exec]);
        k(self.misc_dynamic.is_some(), "misc_dynamic", &[Exec]);
        k(self.send.is_some(), "send", &[Agent]);
        k(
            self.port.is_some(),
            "port",
            &[Tcp, Http, Https, Udp, Dns, Exec, Agent],
        );
        v
    }

    fn timing(&self) -> Result<Timing, ConfigError> {
        let interval = self.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT.min(interval), |d| d.0);
        if interval < MIN_INTERVAL {
            return Err(cerr(
                "interval",
                format!("{interval:?} is below the minimum {MIN_INTERVAL:?}"),
            ));
        }
        if timeout.is_zero() {
            return Err(cerr("timeout", "must be above 0"));
        }
        if timeout > interval {
            return Err(cerr(
                "timeout",
                format!("{timeout:?} exceeds the interval {interval:?} (a check would still run when the next is due)"),
            ));
        }
        let count = |field: &str, v: Option<u32>, def: u32| -> Result<u32, ConfigError> {
            let v = v.unwrap_or(def);
            if v == 0 || v > MAX_COUNT {
                return Err(cerr(field, format!("{v} is not in 1..={MAX_COUNT}")));
            }
            Ok(v)
        };
        let jitter = self.jitter.unwrap_or(DEFAULT_JITTER);
        if jitter > MAX_JITTER {
            return Err(cerr("jitter", format!("{jitter}% exceeds {MAX_JITTER}%")));
        }
        Ok(Timing {
            interval,
            timeout,
            rise: count("rise", self.rise, DEFAULT_RISE)?,
            fall: count("fall", self.fall, DEFAULT_FALL)?,
            jitter,
            alpha: self.alpha.unwrap_or(false),
        })
    }

    /// Validates the check of real server `dest` and binds it to its
    /// target (`addr` / `port` override the real server's).
    ///
    /// # Errors
    /// The first bad key, named as `check.<key>`.
    pub fn validate(&self, dest: DestId) -> Result<(CheckSpec, OnFailure), ConfigError> {
        let kind = self.kind;
        for (name, kinds) in self.kind_keys() {
            if !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                return Err(cerr(
                    name,
                    format!(
                        "does not apply to type \"{}\" (only to {})",
                        kind.name(),
                        names.join(", ")
                    ),
                ));
            }
        }
        let timing = self.timing()?;
        let addr = self.addr.unwrap_or(dest.addr);
        let port = self.port.unwrap_or(dest.port);
        let target = || -> Result<SocketAddr, ConfigError> {
            if port == 0 {
                return Err(cerr(
                    "port",
                    format!(
                        "a {} check needs a port (the real server's is 0)",
                        kind.name()
                    ),
                ));
            }
            Ok(SocketAddr::new(addr, port))
        };
        let probe = match kind {
            CheckType::Icmp => Probe::Icmp { addr },
            CheckType::Tcp => Probe::Tcp { target: target()? },
            CheckType::Http | CheckType::Https => {
                Probe::Http(self.http(target()?, kind == CheckType::Https)?)
            }
            CheckType::Udp => Probe::Udp(self.udp(target()?)?),
            CheckType::Dns => {
                let name = self
                    .name
                    .as_deref()
                    .ok_or_else(|| cerr("name", "a dns check needs the name to query"))?;
                Probe::Dns(DnsProbe {
                    target: target()?,
                    name: valid_dns_name("name", name)?,
                    qtype: self.query_type.unwrap_or(QueryType::A),
                })
            }
            CheckType::Exec => {
                let argv = self
                    .command
                    .clone()
                    .ok_or_else(|| cerr("command", "an exec check needs a command"))?;
                match argv.first() {
                    None => {
                        return Err(cerr(
                            "command",
                            "is empty (give the program and its arguments)",
                        ))
                    }
                    Some(p) if p.is_empty() => {
                        return Err(cerr("command", "the program name is empty"))
                    }
                    _ => {}
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(cerr("command", "contains a NUL character"));
                }
                Probe::Exec(ExecProbe {
                    argv,
                    target: DestId { addr, port },
                    dynamic: self.misc_dynamic.unwrap_or(false),
                })
            }
            CheckType::Agent => {
                if self.port.is_none() {
                    return Err(cerr("port", "an agent check needs the agent's port"));
                }
                if let Some(s) = &self.send {
                    if s.contains(['\r', '\n']) {
                        return Err(cerr("send", "must be one line (a newline is added)"));
                    }
                }
                Probe::Agent(AgentProbe {
                    target: target()?,
                    send: self.send.clone(),
                })
            }
        };
        Ok((
            CheckSpec { probe, timing },
            self.on_failure.unwrap_or_default(),
        ))
    }

    fn http(&self, target: SocketAddr, tls: bool) -> Result<HttpProbe, ConfigError> {
        let path = self.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            return Err(cerr("path", format!("'{path}' must start with '/'")));
        }
        no_ctl("path", &path)?;
        let default_port = if tls { 443 } else { 80 };
        let host = match &self.host {
            Some(h) if h.is_empty() => return Err(cerr("host", "is empty")),
            Some(h) => {
                no_ctl("host", h)?;
                h.clone()
            }
            None if target.port() == default_port => match target.ip() {
                IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            },
            None => target.to_string(),
        };
        let status = match &self.status {
            None => StatusSet::Any2xx,
            Some(l) if l.is_empty() => {
                return Err(cerr("status", "is empty (omit it to accept any 2xx)"))
            }
            Some(l) => {
                if let Some(c) = l.iter().find(|c| !(100..=599).contains(*c)) {
                    return Err(cerr(
                        "status",
                        format!("{c} is not an HTTP status code (100..=599)"),
                    ));
                }
                StatusSet::List(l.clone())
            }
        };
        let digest = match &self.digest {
            None => None,
            Some(d) => {
                let b = parse_hex("digest", d)?;
                let arr: [u8; 16] = b.try_into().map_err(|_| {
                    cerr(
                        "digest",
                        "an MD5 digest is 32 hex digits (e.g. from `md5sum`)",
                    )
                })?;
                Some(arr)
            }
        };
        let regex = match &self.regex {
            None => None,
            Some(r) => {
                let re = regex_lite::Regex::new(r).map_err(|e| {
                    cerr("regex", format!("'{r}' is not a regular expression: {e}"))
                })?;
                Some(Pattern {
                    source: r.clone(),
                    re: Arc::new(re),
                })
            }
        };
        let sni = match &self.sni {
            None => None,
            Some(s) => {
                rustls::pki_types::ServerName::try_from(s.as_str())
                    .map_err(|_| cerr("sni", format!("'{s}' is not a valid TLS server name")))?;
                Some(s.clone())
            }
        };
        Ok(HttpProbe {
            target,
            tls,
            path,
            host,
            status,
            digest,
            regex,
            sni,
        })
    }

    fn udp(&self, target: SocketAddr) -> Result<UdpProbe, ConfigError> {
        if self.payload.is_some() && self.payload_hex.is_some() {
            return Err(cerr(
                "payload_hex",
                "give either payload or payload_hex, not both",
            ));
        }
        if self.expect.is_some() && self.expect_hex.is_some() {
            return Err(cerr(
                "expect_hex",
                "give either expect or expect_hex, not both",
            ));
        }
        let payload = match (&self.payload, &self.payload_hex) {
            (Some(p), _) => p.as_bytes().to_vec(),
            (_, Some(h)) => parse_hex("payload_hex", h)?,
            _ => Vec::new(),
        };
        let expect = match (&self.expect, &self.expect_hex) {
            (Some(p), _) => p.as_bytes().to_vec(),
            (_, Some(h)) => parse_hex("expect_hex", h)?,
            _ => Vec::new(),
        };
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(cerr(
                "payload",
                format!("{} bytes exceed {MAX_UDP_PAYLOAD}", payload.len()),
            ));
        }
        if expect.len() > MAX_UDP_PAYLOAD {
            return Err(cerr(
                "expect",
                format!("{} bytes exceed {MAX_UDP_PAYLOAD}", expect.len()),
            ));
        }
        let require_reply = self.require_reply.unwrap_or(true);
        if !require_reply && !expect.is_empty() {
            return Err(cerr(
                "require_reply",
                "is false but an expected reply is given",
            ));
        }
        Ok(UdpProbe {
            target,
            payload,
            expect,
            require_reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> DestId {
        DestId {
            addr: "10.0.1.1".parse().unwrap(),
            port: 80,
        }
    }

    fn parse(s: &str) -> Result<CheckConfig, String> {
        toml::from_str::<CheckConfig>(s).map_err(|e| e.to_string())
    }

    fn validate(s: &str) -> Result<(CheckSpec, OnFailure), ConfigError> {
        parse(s).unwrap().validate(dest())
    }

    #[test]
    fn durations() {
        assert_eq!(ConfDuration::parse("2s").unwrap().0, Duration::from_secs(2));
        assert_eq!(
            ConfDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            ConfDuration::parse("1.5s").unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!(
            ConfDuration::parse("1m").unwrap().0,
            Duration::from_secs(60)
        );
        assert_eq!(ConfDuration::parse("3").unwrap().0, Duration::from_secs(3));
        assert!(ConfDuration::parse("2x")
            .unwrap_err()
            .contains("unknown unit 'x'"));
        assert!(ConfDuration::parse("s")
            .unwrap_err()
            .contains("not a duration"));
        assert!(ConfDuration::parse("1.2.3s")
            .unwrap_err()
            .contains("not a duration"));
        assert!(ConfDuration::parse("100h").unwrap_err().contains("exceeds"));
        let c = parse("type = \"tcp\"\ninterval = 0.25\ntimeout = \"100ms\"").unwrap();
        assert_eq!(c.interval, Some(ConfDuration(Duration::from_millis(250))));
        assert_eq!(c.timeout, Some(ConfDuration(Duration::from_millis(100))));
        let e = parse("type = \"tcp\"\ninterval = -1").unwrap_err();
        assert!(e.contains("interval") && e.contains("non-negative"), "{e}");
        let e = parse("type = \"tcp\"\ninterval = true").unwrap_err();
        assert!(e.contains("a duration"), "{e}");
    }

    #[test]
    fn full_http_example_parses() {
        let (spec, of) = validate(
            r#"
            type = "http"
            interval = "2s"
            timeout = "1s"
            rise = 2
            fall = 3
            on_failure = "remove"
            path = "/health"
            status = [200, 204]
            digest = "9A0364B9E99BB480DD25E1F0284C8555"
            regex = "o+k"
            "#,
        )
        .unwrap();
        assert_eq!(of, OnFailure::Remove);
        assert_eq!(
            spec.timing,
            Timing {
                interval: DEFAULT_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                rise: 2,
                fall: 3,
                jitter: 10,
                alpha: false
            }
        );
        let Probe::Http(h) = &spec.probe else {
            panic!("{spec:?}")
        };
        assert_eq!(h.target, "10.0.1.1:80".parse().unwrap());
        assert_eq!(h.host, "10.0.1.1");
        assert!(h.status.accepts(204) && !h.status.accepts(201));
        assert_eq!(h.digest.unwrap()[0], 0x9a);
        assert!(h.regex.as_ref().unwrap().re.is_match("ooook"));
        assert_eq!(spec.to_string(), "http 10.0.1.1:80/health");
    }

    #[test]
    fn defaults_and_overrides() {
        let (spec, of) =
            validate("type = \"https\"\naddr = \"::1\"\nport = 8443\nsni = \"www.example.org\"")
                .unwrap();
        assert_eq!(of, OnFailure::Quiesce);
        let Probe::Http(h) = &spec.probe else {
            panic!()
        };
        assert!(h.tls && h.status == StatusSet::Any2xx && h.path == "/");
        assert_eq!(h.host, "[::1]:8443");
        assert_eq!(h.sni.as_deref(), Some("www.example.org"));
        let (spec, _) = validate("type = \"icmp\"").unwrap();
        assert_eq!(spec.probe, Probe::Icmp { addr: dest().addr });
        let (spec, _) = validate(
            "type = \"dns\"\nname = \"www.example.org.\"\nquery_type = \"aaaa\"\nport = 53",
        )
        .unwrap();
        assert_eq!(
            spec.probe,
            Probe::Dns(DnsProbe {
                target: "10.0.1.1:53".parse().unwrap(),
                name: "www.example.org".into(),
                qtype: QueryType::AAAA
            })
        );
        let (spec, _) =
            validate("type = \"udp\"\npayload_hex = \"de:ad be ef\"\nexpect = \"ok\"").unwrap();
        let Probe::Udp(u) = &spec.probe else { panic!() };
        assert_eq!(
            (u.payload.as_slice(), u.expect.as_slice(), u.require_reply),
            (&[0xde, 0xad, 0xbe, 0xef][..], &b"ok"[..], true)
        );
        let (spec, _) = validate(
            "type = \"exec\"\ncommand = [\"/bin/true\"]\nmisc_dynamic = true\nalpha = true",
        )
        .unwrap();
        assert!(spec.timing.alpha);
        assert!(matches!(
            spec.probe,
            Probe::Exec(ExecProbe { dynamic: true, .. })
        ));
        // timeout defaults to min(1s, interval)
        let (spec, _) = validate("type = \"tcp\"\ninterval = \"200ms\"").unwrap();
        assert_eq!(spec.timing.timeout, Duration::from_millis(200));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "type = \"tcp\"\npath = \"/\"",
                "check.path",
                "does not apply to type \"tcp\"",
            ),
            (
                "type = \"http\"\nsni = \"a.b\"",
                "check.sni",
                "only to https",
            ),
            (
                "type = \"http\"\npath = \"health\"",
                "check.path",
                "must start with '/'",
            ),
            ("type = \"http\"\npath = \"/a b\"", "check.path", "spaces"),
            (
                "type = \"http\"\nhost = \"a\\r\\nX: y\"",
                "check.host",
                "control",
            ),
            ("type = \"http\"\nstatus = []", "check.status", "empty"),
            (
                "type = \"http\"\nstatus = [200, 999]",
                "check.status",
                "999",
            ),
            (
                "type = \"http\"\ndigest = \"abc\"",
                "check.digest",
                "odd number",
            ),
            (
                "type = \"http\"\ndigest = \"abcd\"",
                "check.digest",
                "32 hex digits",
            ),
            ("type = \"http\"\ndigest = \"zz\"", "check.digest", "'zz'"),
            (
                "type = \"http\"\nregex = \"(\"",
                "check.regex",
                "not a regular expression",
            ),
            (
                "type = \"https\"\nsni = \"bad name!\"",
                "check.sni",
                "not a valid",
            ),
            ("type = \"tcp\"\nrise = 0", "check.rise", "not in 1..="),
            ("type = \"tcp\"\nfall = 5000", "check.fall", "not in 1..="),
            ("type = \"tcp\"\njitter = 60", "check.jitter", "exceeds 50%"),
            (
                "type = \"tcp\"\ninterval = \"1ms\"",
                "check.interval",
                "below the minimum",
            ),
            ("type = \"tcp\"\ntimeout = 0", "check.timeout", "above 0"),
            (
                "type = \"tcp\"\ninterval = \"1s\"\ntimeout = \"2s\"",
                "check.timeout",
                "exceeds the interval",
            ),
            ("type = \"tcp\"\nport = 0", "check.port", "needs a port"),
            ("type = \"dns\"", "check.name", "needs the name"),
            (
                "type = \"dns\"\nname = \"a..b\"",
                "check.name",
                "empty or longer",
            ),
            ("type = \"dns\"\nname = \"a b\"", "check.name", "' '"),
            ("type = \"exec\"", "check.command", "needs a command"),
            ("type = \"exec\"\ncommand = []", "check.command", "is empty"),
            (
                "type = \"exec\"\ncommand = [\"\"]",
                "check.command",
                "program name is empty",
            ),
            ("type = \"agent\"", "check.port", "agent's port"),
            (
                "type = \"agent\"\nport = 1\nsend = \"a\\nb\"",
                "check.send",
                "one line",
            ),
            (
                "type = \"udp\"\npayload = \"a\"\npayload_hex = \"00\"",
                "check.payload_hex",
                "not both",
            ),
            (
                "type = \"udp\"\nexpect = \"a\"\nexpect_hex = \"00\"",
                "check.expect_hex",
                "not both",
            ),
            (
                "type = \"udp\"\nexpect = \"a\"\nrequire_reply = false",
                "check.require_reply",
                "expected reply",
            ),
        ];
        for (src, field, why) in cases {
            let e = validate(src).unwrap_err();
            assert_eq!(e.field, *field, "{src}: {e}");
            assert!(e.why.contains(why), "{src}: '{e}' should contain '{why}'");
        }
        let mut long = CheckConfig::new(CheckType::Udp);
        long.payload = Some("x".repeat(MAX_UDP_PAYLOAD + 1));
        assert_eq!(long.validate(dest()).unwrap_err().field, "check.payload");
        let e = ConfigError::new("check.x", "y");
        assert_eq!(
            e.within("service TCP 10.0.0.1:80, real server 10.0.1.1:80")
                .to_string(),
            "service TCP 10.0.0.1:80, real server 10.0.1.1:80: check.x: y"
        );
    }

    #[test]
    fn serde_rejects_unknown_keys_and_types() {
        let e = parse("type = \"tcp\"\nbogus = 1").unwrap_err();
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = parse("type = \"smtp\"").unwrap_err();
        assert!(e.contains("unknown variant `smtp`"), "{e}");
        let e = parse("type = \"tcp\"\non_failure = \"drop\"").unwrap_err();
        assert!(e.contains("unknown variant `drop`"), "{e}");
        let e = parse("interval = 1").unwrap_err();
        assert!(e.contains("missing field `type`"), "{e}");
    }

    #[test]
    fn one_check_or_several() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RealServer {
            #[allow(dead_code)]
            addr: IpAddr,
            check: Option<Checks>,
        }
        let one: RealServer =
            toml::from_str("addr = \"10.0.1.1\"\n[check]\ntype = \"tcp\"\n").unwrap();
        assert_eq!(one.check.unwrap().0, vec![CheckConfig::new(CheckType::Tcp)]);
        let two: RealServer =
            toml::from_str("addr = \"10.0.1.1\"\n[[check]]\ntype = \"http\"\n[[check]]\ntype = \"agent\"\nport = 8081\n").unwrap();
        let kinds: Vec<CheckType> = two.check.unwrap().0.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec![CheckType::Http, CheckType::Agent]);
        let none: RealServer = toml::from_str("addr = \"10.0.1.1\"").unwrap();
        assert!(none.check.is_none());
        let e = toml::from_str::<RealServer>(
            "addr = \"10.0.1.1\"\n[check]\ntype = \"tcp\"\nintervall = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `intervall`"), "{e}");
        let e = toml::from_str::<RealServer>(
            "addr = \"10.0.1.1\"\n[[check]]\ntype = \"tcp\"\nfall = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fall") || e.contains("invalid type"), "{e}");
        let e = toml::from_str::<RealServer>("addr = \"10.0.1.1\"\ncheck = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a check table or an array of check tables"),
            "{e}"
        );
    }

    /// Every fragment in `configs/health/health-*.toml` and every TOML example of
    /// `docs/health.md` holding a check or a sorry server is valid.
    #[test]
    fn shipped_examples_are_valid() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources: Vec<(String, String)> = Vec::new();
        for e in std::fs::read_dir(root.join("configs/health")).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("health-") && name.ends_with(".toml") {
                sources.push((name, std::fs::read_to_string(&p).unwrap()));
            }
        }
        assert!(
            sources.len() >= 9,
            "one fragment per check kind and one for the sorry server"
        );
        let doc = std::fs::read_to_string(root.join("docs/health.md")).unwrap();
        for (i, block) in doc.split("```toml").skip(1).enumerate() {
            let body = block.split("```").next().unwrap();
            sources.push((format!("docs/health.md block {}", i + 1), body.to_string()));
        }
        let mut kinds = std::collections::HashSet::new();
        let mut checked = 0;
        for (name, text) in &sources {
            let v: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let Some(svc) = v.get("service") else {
                continue;
            };
            if let Some(rs) = svc.get("real_server") {
                let rs = rs
                    .as_table()
                    .unwrap_or_else(|| panic!("{name}: real_server"));
                if let Some(c) = rs.get("check") {
                    let checks: Checks = c
                        .clone()
                        .try_into()
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    for c in checks.0 {
                        c.validate(dest()).unwrap_or_else(|e| panic!("{name}: {e}"));
                        kinds.insert(c.kind);
                        checked += 1;
                    }
                }
            }
            if let Some(s) = svc.get("sorry_server") {
                let s: SorryServerConfig = s
                    .clone()
                    .try_into()
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                s.to_dest(&[]).unwrap_or_else(|e| panic!("{name}: {e}"));
                checked += 1;
            }
        }
        assert_eq!(kinds.len(), 8, "every kind has an example: {kinds:?}");
        assert!(checked >= 18, "{checked}");
    }

    #[test]
    fn sorry_server_config() {
        let s: SorryServerConfig =
            toml::from_str("addr = \"10.0.9.9\"\nport = 8080\nfwd = \"nat\"").unwrap();
        let d = s.to_dest(&[]).unwrap();
        assert_eq!((d.port, d.weight, d.fwd), (8080, 1, FwdMethod::Nat));
        let s: SorryServerConfig = toml::from_str("addr = \"10.0.9.9\"").unwrap();
        let rs = Dest {
            addr: dest().addr,
            port: 80,
            weight: 5,
            fwd: FwdMethod::Tun,
            u_threshold: 0,
            l_threshold: 0,
            proxy: None,
        };
        assert_eq!(
            s.to_dest(&[rs]).unwrap().fwd,
            FwdMethod::Tun,
            "defaults to the real servers' method"
        );
        assert_eq!(s.to_dest(&[]).unwrap().fwd, FwdMethod::Dr);
        let s: SorryServerConfig = toml::from_str("addr = \"10.0.9.9\"\nweight = 0").unwrap();
        assert_eq!(s.to_dest(&[]).unwrap_err().field, "sorry_server.weight");
        let e = toml::from_str::<SorryServerConfig>("addr = \"10.0.9.9\"\nmode = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `mode`"), "{e}");
        let e = toml::from_str::<SorryServerConfig>("addr = \"nope\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("addr") || e.contains("invalid"), "{e}");
    }

    #[test]
    fn equal_configs_give_equal_specs() {
        let a = validate("type = \"http\"\nregex = \"ok\"").unwrap().0;
        let b = validate("type = \"http\"\nregex = \"ok\"\non_failure = \"remove\"")
            .unwrap()
            .0;
        let c = validate("type = \"http\"\nregex = \"OK\"").unwrap().0;
        assert_eq!(
            a, b,
            "on_failure is the dest's policy, not part of the check"
        );
        assert_ne!(a, c);
    }
}
