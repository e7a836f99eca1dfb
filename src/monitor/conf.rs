//! `[monitor]` in the configuration file: where the monitor listens, its
//! certificate, its users and its limits.
//!
//! The config loader (`ctl::config`) deserializes the table into
//! [`RawMonitor`] (unknown keys are errors there, as everywhere) and calls
//! [`RawMonitor::build`], whose errors name the field under `monitor`
//! (`user[1].password_hash`) for the loader to place in the file.

use crate::health::config::ConfDuration;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the monitor listens unless told otherwise: localhost only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9443";
/// Where a generated certificate and key are kept.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xvs";
/// How long a login lasts.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Failed logins a source may make before it must wait.
pub const DEFAULT_LOGIN_BURST: u32 = 5;
/// One more failed login allowed per source this often.
pub const DEFAULT_LOGIN_REFILL: Duration = Duration::from_secs(60);

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads, and changes real servers and schedulers.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// One user of the monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// A PHC string (`$argon2id$v=19$...`), as `xvs passwd` prints it.
    pub password_hash: String,
}

/// Where the TLS certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files given in the config (`cert`, `key`).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate made at the first start and kept in `dir`
    /// (`monitor-cert.pem`, `monitor-key.pem`).
    SelfSigned { dir: PathBuf },
}

/// The monitor's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorConf {
    /// `None`: `listen = "off"`.
    pub listen: Option<SocketAddr>,
    pub tls: TlsSource,
    pub users: Vec<User>,
    pub session_ttl: Duration,
    /// Also append audit lines here (they always go to the log).
    pub audit_log: Option<PathBuf>,
    pub login_burst: u32,
    pub login_refill: Duration,
}

impl Default for MonitorConf {
    fn default() -> Self {
        MonitorConf {
            listen: DEFAULT_LISTEN.parse().ok(),
            tls: TlsSource::SelfSigned { dir: DEFAULT_STATE_DIR.into() },
            users: Vec::new(),
            session_ttl: DEFAULT_SESSION_TTL,
            audit_log: None,
            login_burst: DEFAULT_LOGIN_BURST,
            login_refill: DEFAULT_LOGIN_REFILL,
        }
    }
}

/// `[monitor]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    listen: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    state_dir: Option<String>,
    session_ttl: Option<ConfDuration>,
    audit_log: Option<String>,
    login_burst: Option<i64>,
    login_refill: Option<ConfDuration>,
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: String,
    password_hash: String,
}

/// A segment of a field path under `monitor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(&'static str),
    Idx(usize),
}

/// A bad field: where under `monitor`, and why.
pub type Bad = (Vec<PathSeg>, String);

fn bad(path: &[PathSeg], why: impl Into<String>) -> Bad {
    (path.to_vec(), why.into())
}

/// Reads `listen` (or `--monitor`): `"off"` or `address:port`.
///
/// # Errors
/// What is wrong with `text`.
pub fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!("'{text}' is not \"off\" or an address:port such as \"{DEFAULT_LISTEN}\" or \"[::1]:9443\"")
    })
}

fn path_value(p: &str, at: &[PathSeg]) -> Result<PathBuf, Bad> {
    if p.is_empty() || p.contains('\0') {
        return Err(bad(at, format!("'{p}' is not a file path")));
    }
    Ok(PathBuf::from(p))
}

/// A user name: 1 to 64 letters, digits, `.`, `_`, `-`, `@`.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

impl RawMonitor {
    /// Checks every value and builds the configuration.
    ///
    /// # Errors
    /// The first bad field, with its path under `monitor`.
    pub fn build(&self) -> Result<MonitorConf, Bad> {
        use PathSeg::{Idx, Key};
        let mut c = MonitorConf::default();
        if let Some(l) = &self.listen {
            c.listen = parse_listen(l).map_err(|why| bad(&[Key("listen")], why))?;
        }
        c.tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                if self.state_dir.is_some() {
                    return Err(bad(&[Key("state_dir")], "is only used for a generated certificate: give cert and key, or state_dir"));
                }
                TlsSource::Files { cert: path_value(cert, &[Key("cert")])?, key: path_value(key, &[Key("key")])? }
            }
            (Some(_), None) => return Err(bad(&[Key("key")], "missing: cert needs its key")),
            (None, Some(_)) => return Err(bad(&[Key("cert")], "missing: key needs its certificate")),
            (None, None) => TlsSource::SelfSigned {
                dir: match &self.state_dir {
                    Some(d) => path_value(d, &[Key("state_dir")])?,
                    None => DEFAULT_STATE_DIR.into(),
                },
            },
        };
        if let Some(t) = self.session_ttl {
            if t.0 < Duration::from_secs(60) {
                return Err(bad(&[Key("session_ttl")], "must be at least 1 minute"));
            }
            c.session_ttl = t.0;
        }
        if let Some(a) = &self.audit_log {
            c.audit_log = Some(path_value(a, &[Key("audit_log")])?);
        }
        if let Some(b) = self.login_burst {
            if !(1..=1000).contains(&b) {
                return Err(bad(&[Key("login_burst")], format!("{b} is not in 1..=1000")));
            }
            c.login_burst = b as u32;
        }
        if let Some(r) = self.login_refill {
            if r.0 < Duration::from_secs(1) {
                return Err(bad(&[Key("login_refill")], "must be at least 1 second"));
            }
            c.login_refill = r.0;
        }
        for (i, u) in self.user.iter().enumerate() {
            let at = |k: &'static str| [Key("user"), Idx(i), Key(k)];
            if !valid_name(&u.name) {
                return Err(bad(&at("name"), format!("'{}' is not a user name (1 to 64 letters, digits, '.', '_', '-', '@')", u.name)));
            }
            if c.users.iter().any(|x| x.name == u.name) {
                return Err(bad(&at("name"), format!("user '{}' is defined twice", u.name)));
            }
            let role = match u.role.as_str() {
                "viewer" => Role::Viewer,
                "admin" => Role::Admin,
                other => return Err(bad(&at("role"), format!("'{other}' is not a role (viewer or admin)"))),
            };
            super::auth::check_hash(&u.password_hash).map_err(|why| bad(&at("password_hash"), why))?;
            c.users.push(User { name: u.name.clone(), role, password_hash: u.password_hash.clone() });
        }
        if c.listen.is_some() && c.users.is_empty() {
            return Err(bad(&[Key("user")], "no user: nobody could log in (add [[monitor.user]] with a hash from `xvs passwd`, or listen = \"off\")"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Bn2D0yr0dDcKX5N5hmF2w1y4bR0XVk9v4lMKcoQ2hU";

    fn build(text: &str) -> Result<MonitorConf, Bad> {
        let raw: RawMonitor = toml::from_str(text).map_err(|e| (vec![], e.to_string()))?;
        raw.build()
    }

    fn user(name: &str, role: &str) -> String {
        format!("[[user]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{HASH}\"\n")
    }

    #[test]
    fn defaults_are_localhost_and_self_signed() {
        let c = build(&user("alice", "admin")).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(c.tls, TlsSource::SelfSigned { dir: "/var/lib/xvs".into() });
        assert_eq!(c.users[0].role, Role::Admin);
        assert_eq!((c.session_ttl, c.login_burst), (DEFAULT_SESSION_TTL, 5));
        let c = build(&format!("listen = \"[::]:8443\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nsession_ttl = \"30m\"\n{}", user("v", "viewer"))).unwrap();
        assert_eq!(c.listen, Some("[::]:8443".parse().unwrap()));
        assert_eq!(c.tls, TlsSource::Files { cert: "/c.pem".into(), key: "/k.pem".into() });
        assert_eq!(c.session_ttl, Duration::from_secs(1800));
        assert_eq!(build("listen = \"off\"").unwrap().listen, None);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("listen = \"localhost:1\"".to_string(), vec![PathSeg::Key("listen")], "is not \"off\" or an address:port"),
            (format!("cert = \"/c\"\n{}", user("a", "admin")), vec![PathSeg::Key("key")], "cert needs its key"),
            (format!("key = \"/k\"\n{}", user("a", "admin")), vec![PathSeg::Key("cert")], "key needs its certificate"),
            (format!("session_ttl = \"5s\"\n{}", user("a", "admin")), vec![PathSeg::Key("session_ttl")], "at least 1 minute"),
            (format!("login_burst = 0\n{}", user("a", "admin")), vec![PathSeg::Key("login_burst")], "not in 1..=1000"),
            (user("a b", "admin"), vec![PathSeg::Key("user"), PathSeg::Idx(0), PathSeg::Key("name")], "is not a user name"),
            (user("a", "root"), vec![PathSeg::Key("user"), PathSeg::Idx(0), PathSeg::Key("role")], "'root' is not a role"),
            (user("a", "admin") + &user("a", "viewer"), vec![PathSeg::Key("user"), PathSeg::Idx(1), PathSeg::Key("name")], "defined twice"),
            (user("a", "admin").replace(HASH, "secret"), vec![PathSeg::Key("user"), PathSeg::Idx(0), PathSeg::Key("password_hash")], "not a password hash"),
            (String::new(), vec![PathSeg::Key("user")], "nobody could log in"),
        ];
        for (text, path, why) in cases {
            let (p, w) = build(&text).unwrap_err();
            assert_eq!(p, path, "{text}");
            assert!(w.contains(why), "{text}: {w}");
        }
        assert!(build("nosuch = 1").unwrap_err().1.contains("unknown field"));
    }

    #[test]
    fn the_config_file_places_monitor_errors() {
        let base = "[[service]]\nproto = \"tcp\"\nvip = \"10.0.0.1\"\nport = 80\n";
        let text = format!("{base}[monitor]\n[[monitor.user]]\nname = \"a\"\nrole = \"boss\"\npassword_hash = \"{HASH}\"\n");
        let e = crate::ctl::config::load_config_str(&text, "xvs.toml").unwrap_err().to_string();
        assert!(e.contains("monitor.user[0].role") && e.contains("'boss' is not a role") && e.contains("line 8, column 8"), "{e}");
        let c = crate::ctl::config::load_config_str(&text.replace("boss", "admin"), "xvs.toml").unwrap();
        assert_eq!(c.daemon.monitor.unwrap().users[0].name, "a");
        assert_eq!(crate::ctl::config::load_config_str(base, "t").unwrap().daemon.monitor, None, "no [monitor], no monitor");
    }
}
