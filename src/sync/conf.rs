//! What the sync daemons do: the `[sync]` section of the configuration
//! and ipvsadm's `--start-daemon` options.
//!
//! ```toml
//! [sync]
//! peers = ["10.0.0.2"]          # unicast to these instead of multicast
//! auth_key_file = "/etc/xvs/sync.key"
//! threshold = 3                 # IPVS sync_threshold
//! period = 50                   # IPVS sync_period
//! refresh_period = 0            # IPVS sync_refresh_period (seconds)
//! syn_recv = false              # also sync SYN_RECV connections
//!
//! [sync.master]                 # ipvsadm --start-daemon master ...
//! interface = "eth0"            # --mcast-interface
//! syncid = 1                    # --syncid
//!
//! [sync.backup]                 # ipvsadm --start-daemon backup ...
//! interface = "eth0"
//! syncid = 2
//! ```
//!
//! Every field is documented in `docs/config.md`; `docs/ha.md` shows them
//! at work with keepalived.

use super::wire::{GROUP_V4, PORT};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// ipvsadm's default multicast interface (`DEF_MCAST_IFN`).
pub const DEFAULT_IFACE: &str = "eth0";
/// Longest interface name (`IP_VS_IFNAME_MAXLEN` less the NUL).
pub const MAX_IFNAME: usize = 15;
/// IPv4 + UDP headers.
const HLEN4: usize = 28;
/// IPv6 + UDP headers.
const HLEN6: usize = 48;

/// The two roles of IPVS's sync daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Backup,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One daemon's settings: `ipvsadm --start-daemon`'s options. `None`
/// takes IPVS's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonConf {
    /// `--mcast-interface`.
    pub interface: String,
    /// `--syncid` (0..255; a backup with 0 takes every sync id).
    pub syncid: u8,
    /// `--sync-maxlen`: largest message (UDP payload).
    pub maxlen: Option<u16>,
    /// `--mcast-group` (default 224.0.0.81).
    pub group: Option<IpAddr>,
    /// `--mcast-port` (default 8848).
    pub port: Option<u16>,
    /// `--mcast-ttl` (default 1).
    pub ttl: Option<u8>,
}

impl Default for DaemonConf {
    fn default() -> Self {
        DaemonConf { interface: DEFAULT_IFACE.into(), syncid: 0, maxlen: None, group: None, port: None, ttl: None }
    }
}

impl DaemonConf {
    pub fn group(&self) -> IpAddr {
        self.group.unwrap_or(IpAddr::V4(GROUP_V4))
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(PORT)
    }

    pub fn ttl(&self) -> u8 {
        self.ttl.unwrap_or(1)
    }

    /// The largest message, as IPVS computes it: the given one (at least
    /// 1, or 1024 for a backup, which must take what masters send), else
    /// 1500 less the headers for a master and the interface's MTU (at
    /// least 1500) less the headers for a backup.
    pub fn maxlen(&self, role: Role, mtu: usize) -> usize {
        let hlen = if self.group().is_ipv6() { HLEN6 } else { HLEN4 };
        let (mtu, min) = match role {
            Role::Master => (1500, 1),
            Role::Backup => (mtu.clamp(1500, 65535), 1024),
        };
        match self.maxlen {
            Some(m) => (m as usize).clamp(min, 65535 - hlen),
            None => mtu - hlen,
        }
    }

    /// Checks what ipvsadm's parser cannot: the interface name.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let n = &self.interface;
        if n.is_empty() || n.len() > MAX_IFNAME || n.contains(['/', ' ', '\0']) {
            return Err(("interface".into(), format!("'{n}' is not an interface name (1 to {MAX_IFNAME} characters)")));
        }
        if let Some(g) = self.group {
            if !g.is_multicast() {
                return Err(("group".into(), format!("{g} is not a multicast address")));
            }
        }
        Ok(())
    }
}

/// The whole sync configuration: settings shared by both daemons, and
/// the daemons to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConf {
    /// Send to and take from these (unicast) instead of a multicast group.
    pub peers: Vec<IpAddr>,
    /// A file holding the shared key: messages are signed and only signed
    /// ones are taken.
    pub auth_key_file: Option<PathBuf>,
    /// Largest difference between a signed message's clock and ours.
    pub max_skew: Duration,
    /// IPVS `sync_threshold`.
    pub threshold: u8,
    /// IPVS `sync_period` (0: once, at the threshold).
    pub period: u8,
    /// IPVS `sync_refresh_period`: connections with traffic are synced
    /// again at least this often (0: off).
    pub refresh_period: Duration,
    /// Sync TCP connections in SYN_RECV too.
    pub syn_recv: bool,
    /// Longest a record waits for its message to fill up.
    pub send_delay: Duration,
    /// A daemon that sent nothing for this long says hello.
    pub hello: Duration,
    /// TCP port of bulk pulls.
    pub bulk_port: u16,
    /// A starting node that finds no peer to pull from within this counts
    /// as in sync (there is nothing to pull).
    pub pull_timeout: Duration,
    pub master: Option<DaemonConf>,
    pub backup: Option<DaemonConf>,
}

impl Default for SyncConf {
    fn default() -> Self {
        SyncConf {
            peers: Vec::new(),
            auth_key_file: None,
            max_skew: Duration::from_secs(30),
            threshold: 3,
            period: 50,
            refresh_period: Duration::ZERO,
            syn_recv: false,
            send_delay: Duration::from_millis(100),
            hello: Duration::from_secs(1),
            bulk_port: PORT,
            pull_timeout: Duration::from_secs(3),
            master: None,
            backup: None,
        }
    }
}

impl SyncConf {
    /// The daemon of `role`, if configured.
    pub fn daemon(&self, role: Role) -> Option<&DaemonConf> {
        match role {
            Role::Master => self.master.as_ref(),
            Role::Backup => self.backup.as_ref(),
        }
    }

    pub fn daemon_mut(&mut self, role: Role) -> &mut Option<DaemonConf> {
        match role {
            Role::Master => &mut self.master,
            Role::Backup => &mut self.backup,
        }
    }
}

/// The `[sync]` section as written.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    #[serde(default)]
    peers: Vec<String>,
    auth_key_file: Option<String>,
    max_skew: Option<i64>,
    threshold: Option<i64>,
    period: Option<i64>,
    refresh_period: Option<i64>,
    syn_recv: Option<bool>,
    send_delay_ms: Option<i64>,
    hello_ms: Option<i64>,
    bulk_port: Option<i64>,
    pull_timeout: Option<i64>,
    master: Option<RawDaemon>,
    backup: Option<RawDaemon>,
}

/// `[sync.master]` / `[sync.backup]` as written.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    interface: Option<String>,
    syncid: Option<i64>,
    maxlen: Option<i64>,
    group: Option<String>,
    port: Option<i64>,
    ttl: Option<i64>,
}

/// A bad field: its path under `[sync]` (e.g. `master.syncid`) and why.
pub type Bad = (String, String);

fn int(v: Option<i64>, field: &str, lo: i64, hi: i64) -> Result<Option<i64>, Bad> {
    match v {
        Some(x) if x < lo || x > hi => Err((field.into(), format!("{x} is out of range ({lo} to {hi})"))),
        other => Ok(other),
    }
}

fn daemon(raw: &RawDaemon, role: Role) -> Result<DaemonConf, Bad> {
    let at = |f: &str| format!("{}.{f}", role.name());
    let mut d = DaemonConf::default();
    if let Some(i) = &raw.interface {
        d.interface = i.clone();
    }
    if let Some(v) = int(raw.syncid, &at("syncid"), 0, 255)? {
        d.syncid = v as u8;
    }
    d.maxlen = int(raw.maxlen, &at("maxlen"), 1, 65535 - 28)?.map(|v| v as u16);
    d.port = int(raw.port, &at("port"), 1, 65535)?.map(|v| v as u16);
    d.ttl = int(raw.ttl, &at("ttl"), 1, 255)?.map(|v| v as u8);
    if let Some(g) = &raw.group {
        d.group = Some(g.parse().map_err(|_| (at("group"), format!("'{g}' is not an IP address")))?);
    }
    d.validate().map_err(|(f, why)| (at(&f), why))?;
    Ok(d)
}

/// Checks and converts the `[sync]` section.
///
/// # Errors
/// The first bad field, by its path under `[sync]`.
pub fn build(raw: &RawSync) -> Result<SyncConf, Bad> {
    let mut c = SyncConf::default();
    for (i, p) in raw.peers.iter().enumerate() {
        let a: IpAddr = p.parse().map_err(|_| (format!("peers[{i}]"), format!("'{p}' is not an IP address")))?;
        if a.is_multicast() || a.is_unspecified() {
            return Err((format!("peers[{i}]"), format!("{a} is not a unicast address")));
        }
        c.peers.push(a);
    }
    if let Some(f) = &raw.auth_key_file {
        if !f.starts_with('/') {
            return Err(("auth_key_file".into(), format!("'{f}' is not an absolute path")));
        }
        c.auth_key_file = Some(f.into());
    }
    let secs = |v: Option<i64>, f: &str, lo: i64, hi: i64, d: Duration| -> Result<Duration, Bad> {
        Ok(int(v, f, lo, hi)?.map_or(d, |s| Duration::from_secs(s as u64)))
    };
    let millis = |v: Option<i64>, f: &str, lo: i64, hi: i64, d: Duration| -> Result<Duration, Bad> {
        Ok(int(v, f, lo, hi)?.map_or(d, |s| Duration::from_millis(s as u64)))
    };
    c.max_skew = secs(raw.max_skew, "max_skew", 1, 86400, c.max_skew)?;
    c.period = int(raw.period, "period", 0, 255)?.map_or(c.period, |v| v as u8);
    c.threshold = int(raw.threshold, "threshold", 0, 255)?.map_or(c.threshold, |v| v as u8);
    // IPVS: the threshold must be below a non-zero period.
    if c.period > 0 && c.threshold >= c.period {
        return Err(("threshold".into(), format!("{} must be below period ({})", c.threshold, c.period)));
    }
    c.refresh_period = secs(raw.refresh_period, "refresh_period", 0, 86400, c.refresh_period)?;
    c.syn_recv = raw.syn_recv.unwrap_or(c.syn_recv);
    c.send_delay = millis(raw.send_delay_ms, "send_delay_ms", 1, 10_000, c.send_delay)?;
    c.hello = millis(raw.hello_ms, "hello_ms", 50, 60_000, c.hello)?;
    c.bulk_port = int(raw.bulk_port, "bulk_port", 1, 65535)?.map_or(c.bulk_port, |v| v as u16);
    c.pull_timeout = secs(raw.pull_timeout, "pull_timeout", 1, 3600, c.pull_timeout)?;
    if let Some(m) = &raw.master {
        c.master = Some(daemon(m, Role::Master)?);
    }
    if let Some(b) = &raw.backup {
        c.backup = Some(daemon(b, Role::Backup)?);
    }
    Ok(c)
}

/// `ipvsadm -L --daemon`'s line for a running daemon.
pub fn daemon_line(role: Role, d: &DaemonConf, maxlen: usize) -> String {
    format!(
        "{role} sync daemon (mcast={}, syncid={}, maxlen={maxlen}, group={}, port={}, ttl={})\n",
        d.interface,
        d.syncid,
        d.group(),
        d.port(),
        d.ttl()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawSync {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_are_ipvs_s() {
        let c = build(&RawSync::default()).unwrap();
        assert_eq!(c, SyncConf::default());
        assert_eq!((c.threshold, c.period, c.refresh_period), (3, 50, Duration::ZERO));
        let d = DaemonConf::default();
        assert_eq!((d.interface.as_str(), d.group(), d.port(), d.ttl()), ("eth0", IpAddr::V4(GROUP_V4), 8848, 1));
        assert_eq!(d.maxlen(Role::Master, 9000), 1472);
        assert_eq!(d.maxlen(Role::Backup, 9000), 9000 - 28);
        assert_eq!(d.maxlen(Role::Backup, 1400), 1472);
        let small = DaemonConf { maxlen: Some(100), ..DaemonConf::default() };
        assert_eq!((small.maxlen(Role::Master, 1500), small.maxlen(Role::Backup, 1500)), (100, 1024));
        assert_eq!(
            daemon_line(Role::Master, &DaemonConf { interface: "d0".into(), syncid: 7, ..DaemonConf::default() }, 1472),
            "master sync daemon (mcast=d0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        );
    }

    #[test]
    fn a_full_section_is_read() {
        let c = build(&raw(
            r#"
peers = ["10.0.0.2", "2001:db8::2"]
auth_key_file = "/etc/xvs/sync.key"
threshold = 1
period = 10
refresh_period = 30
syn_recv = true
send_delay_ms = 20
hello_ms = 200
bulk_port = 9000
pull_timeout = 5
[master]
interface = "d0"
syncid = 1
maxlen = 1400
group = "239.1.1.1"
port = 9999
ttl = 2
[backup]
interface = "d1"
syncid = 2
"#,
        ))
        .unwrap();
        assert_eq!(c.peers.len(), 2);
        assert_eq!((c.threshold, c.period, c.syn_recv, c.bulk_port), (1, 10, true, 9000));
        assert_eq!((c.send_delay, c.hello), (Duration::from_millis(20), Duration::from_millis(200)));
        let m = c.master.unwrap();
        assert_eq!((m.interface.as_str(), m.syncid, m.maxlen, m.port(), m.ttl()), ("d0", 1, Some(1400), 9999, 2));
        assert_eq!(m.group(), "239.1.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.backup.unwrap().syncid, 2);
    }

    #[test]
    fn bad_fields_are_named() {
        for (text, field, why) in [
            ("peers = [\"nope\"]", "peers[0]", "not an IP address"),
            ("peers = [\"224.0.0.81\"]", "peers[0]", "not a unicast address"),
            ("auth_key_file = \"key\"", "auth_key_file", "not an absolute path"),
            ("threshold = 50", "threshold", "must be below period (50)"),
            ("period = -1", "period", "out of range"),
            ("send_delay_ms = 0", "send_delay_ms", "out of range"),
            ("[master]\nsyncid = 256", "master.syncid", "out of range (0 to 255)"),
            ("[backup]\ninterface = \"a-very-long-interface\"", "backup.interface", "not an interface name"),
            ("[master]\ngroup = \"10.0.0.1\"", "master.group", "not a multicast address"),
            ("[master]\nttl = 0", "master.ttl", "out of range (1 to 255)"),
            ("[master]\nport = 70000", "master.port", "out of range"),
        ] {
            let (f, w) = build(&raw(text)).unwrap_err();
            assert_eq!(f, field, "{text}");
            assert!(w.contains(why), "{text}: {w}");
        }
        assert!(toml::from_str::<RawSync>("nope = 1").is_err(), "unknown keys are refused");
    }
}
