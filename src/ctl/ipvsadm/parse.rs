//! ipvsadm's argument syntax → [`Command`].
//!
//! A hand parser, not clap: ipvsadm (popt) has an option with an optional
//! value (`-p [timeout]`, which takes the next word only when it does not
//! start with `-`), clusters of short options with a value glued on
//! (`-Ln`, `-p600`, `-w3`), a command that is just another option (`-A`),
//! a table of which options each command requires or forbids, and its own
//! error messages, which scripts and people recognise. Emulating all that
//! through clap would cost more than these few hundred lines.
//!
//! Differences from ipvsadm, all on the lenient side: the command may come
//! anywhere on the line (ipvsadm wants it first), `-M` may be given before
//! `-t`, `-M` also takes a prefix length for IPv4, and every usage error
//! exits with 2 (ipvsadm exits 255 for a few popt-level ones, e.g. an
//! unknown option). Names are not resolved: hosts and ports are numeric.

use super::{
    Command, DestSpec, ListOpts, ListWhat, ServiceSpec, SvcAddr, UsageError, DEFAULT_SCHED,
    MAX_TIMEOUT,
};
use crate::ipvs::sched::SchedFlags;
use crate::sync::conf::{DaemonConf, Role};
use crate::ipvs::service::DEFAULT_PERSISTENCE;
use crate::ipvs::{FwdMethod, Proto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The commands, in the order of ipvsadm's `cmdnames` (plus DPVS's and xvs's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    Restore,
    Save,
    Zero,
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Reload,
    Stats,
    StartDaemon,
    StopDaemon,
    SyncStatus,
    Sloppy,
}

const CMD_NAMES: [&str; 21] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "restore",
    "save",
    "zero",
    "add-laddr",
    "del-laddr",
    "get-laddr",
    "reload",
    "stats",
    "start-daemon",
    "stop-daemon",
    "sync-status",
    "sloppy-tcp",
];

/// Options that the command table talks about, in ipvsadm's `optnames` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Exact,
    SchedFlags,
    TunInfo,
    TunType,
    Laddr,
    Ifname,
    McastIf,
    SyncId,
    SyncMaxlen,
    McastGroup,
    McastPort,
    McastTtl,
    /// xvs: `--proxy-protocol v1|v2` on a real server.
    ProxyProtocol,
    /// xvs: `--synproxy` on a service (DPVS's `-j`).
    Synproxy,
}

const NOPT: usize = 32;

const OPT_NAMES: [&str; NOPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "exact",
    "sched-flags",
    "tun-info",
    "tun-type",
    "local-address",
    "ifname",
    "mcast-interface",
    "syncid",
    "sync-maxlen",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "proxy-protocol",
    "synproxy",
];

/// Legal combinations of commands and options, as ipvsadm's
/// `commands_v_options`: '+' compulsory, 'x' illegal, '1' exclusive (at
/// most one of them), ' ' optional. Columns follow [`OPT_NAMES`]:
///
/// ```text
///  n c s s p M r f w x y t d s r t p s e b t t l i m s s m m m p s
///      v c     v w       o m t t h c r x   i y a f c i m g p t p y
/// ```
const TABLE: [&[u8; NOPT]; 21] = [
    /* add-service    */ b"xx+   xxxxxxxxxxxxx xxxxxxxxxxx ",
    /* edit-service   */ b"xx+   xxxxxxxxxxxxx xxxxxxxxxxx ",
    /* delete-service */ b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* flush          */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* list           */ b" 11xxxxxxxx11      x xxxxxxxxxxx",
    /* add-server     */ b"xx+xxx+    xxxxxxxxxx xxxxxxxx x",
    /* delete-server  */ b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxx",
    /* edit-server    */ b"xx+xxx+    xxxxxxxxxx xxxxxxxx x",
    /* set            */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* restore        */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* save           */ b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* zero           */ b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* add-laddr      */ b"xx+xxxxxxxxxxxxxxxxxxx+ xxxxxxxx",
    /* del-laddr      */ b"xx+xxxxxxxxxxxxxxxxxxx+ xxxxxxxx",
    /* get-laddr      */ b" x xxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* reload         */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* stats          */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* start-daemon   */ b"xxxxxxxxxxxxxxxxxxxxxxxx      xx",
    /* stop-daemon    */ b"xxxxxxxxxxxxxxxxxxxxxxxxx xxxxxx",
    /* sync-status    */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* sloppy-tcp     */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// Does an option take a value?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    /// popt's POPT_ARGFLAG_OPTIONAL: glued (`-p600`, `--persistent=600`)
    /// or the next word when it does not start with `-`.
    Optional,
}

/// What an option word means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Cmd(Cmd),
    Help,
    Version,
    Tcp,
    Udp,
    Fwmark,
    Sched,
    Persistent,
    Netmask,
    Server,
    Fwd(FwdMethod),
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    SchedFlags,
    TunInfo,
    TunType,
    Laddr,
    Ifname,
    StartDaemon,
    StopDaemon,
    McastIf,
    SyncId,
    SyncMaxlen,
    McastGroup,
    McastPort,
    McastTtl,
    /// xvs: `--sloppy-tcp on|off` (IPVS's `sloppy_tcp` sysctl).
    SloppyTcp,
    ProxyProtocol,
    Synproxy,
    /// An ipvsadm option xvs does not implement, with the reason.
    Unsupported(&'static str),
}

/// How an ipvsadm option takes its value (for the manual and the shell
/// completions, [`options`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptValue {
    None,
    Required,
    /// Glued or the next word when it does not start with `-` (`-p`).
    Optional,
}

/// The options xvsadm accepts, as (long name, short letters, value), in
/// ipvsadm's order; a long name with two letters (`--list`, `-L`/`-l`)
/// comes once. The options xvs refuses are not listed.
pub fn options() -> Vec<(&'static str, Vec<char>, OptValue)> {
    let mut out: Vec<(&'static str, Vec<char>, OptValue)> = Vec::new();
    for (long, short, arg, tok) in OPTIONS {
        if matches!(tok, Tok::Unsupported(_)) {
            continue;
        }
        let value = match arg {
            Arg::No => OptValue::None,
            Arg::Required => OptValue::Required,
            Arg::Optional => OptValue::Optional,
        };
        match out.iter_mut().find(|(l, _, _)| l == long) {
            Some((_, shorts, _)) => shorts.extend(short),
            None => out.push((long, short.iter().copied().collect(), value)),
        }
    }
    out
}

/// (long name, short letter, value, meaning)
const OPTIONS: &[(&str, Option<char>, Arg, Tok)] = &[
    ("add-service", Some('A'), Arg::No, Tok::Cmd(Cmd::Add)),
    ("edit-service", Some('E'), Arg::No, Tok::Cmd(Cmd::Edit)),
    ("delete-service", Some('D'), Arg::No, Tok::Cmd(Cmd::Del)),
    ("clear", Some('C'), Arg::No, Tok::Cmd(Cmd::Flush)),
    ("list", Some('L'), Arg::No, Tok::Cmd(Cmd::List)),
    ("list", Some('l'), Arg::No, Tok::Cmd(Cmd::List)),
    ("zero", Some('Z'), Arg::No, Tok::Cmd(Cmd::Zero)),
    ("add-server", Some('a'), Arg::No, Tok::Cmd(Cmd::AddDest)),
    ("edit-server", Some('e'), Arg::No, Tok::Cmd(Cmd::EditDest)),
    ("delete-server", Some('d'), Arg::No, Tok::Cmd(Cmd::DelDest)),
    ("set", None, Arg::No, Tok::Cmd(Cmd::Timeout)),
    ("restore", Some('R'), Arg::No, Tok::Cmd(Cmd::Restore)),
    ("save", Some('S'), Arg::No, Tok::Cmd(Cmd::Save)),
    ("add-laddr", Some('P'), Arg::No, Tok::Cmd(Cmd::AddLaddr)),
    ("del-laddr", Some('Q'), Arg::No, Tok::Cmd(Cmd::DelLaddr)),
    ("get-laddr", Some('G'), Arg::No, Tok::Cmd(Cmd::GetLaddr)),
    ("reload", None, Arg::No, Tok::Cmd(Cmd::Reload)),
    ("help", Some('h'), Arg::No, Tok::Help),
    ("version", Some('v'), Arg::No, Tok::Version),
    ("tcp-service", Some('t'), Arg::Required, Tok::Tcp),
    ("udp-service", Some('u'), Arg::Required, Tok::Udp),
    ("fwmark-service", Some('f'), Arg::Required, Tok::Fwmark),
    ("scheduler", Some('s'), Arg::Required, Tok::Sched),
    ("persistent", Some('p'), Arg::Optional, Tok::Persistent),
    ("netmask", Some('M'), Arg::Required, Tok::Netmask),
    ("real-server", Some('r'), Arg::Required, Tok::Server),
    ("masquerading", Some('m'), Arg::No, Tok::Fwd(FwdMethod::Nat)),
    ("ipip", Some('i'), Arg::No, Tok::Fwd(FwdMethod::Tun)),
    ("gatewaying", Some('g'), Arg::No, Tok::Fwd(FwdMethod::Dr)),
    ("fullnat", None, Arg::No, Tok::Fwd(FwdMethod::FullNat)),
    ("weight", Some('w'), Arg::Required, Tok::Weight),
    ("u-threshold", Some('x'), Arg::Required, Tok::UThreshold),
    ("l-threshold", Some('y'), Arg::Required, Tok::LThreshold),
    ("numeric", Some('n'), Arg::No, Tok::Numeric),
    ("connection", Some('c'), Arg::No, Tok::Connection),
    ("timeout", None, Arg::No, Tok::Timeout),
    ("daemon", None, Arg::No, Tok::Daemon),
    ("stats", None, Arg::No, Tok::Stats),
    ("rate", None, Arg::No, Tok::Rate),
    ("thresholds", None, Arg::No, Tok::Thresholds),
    ("persistent-conn", None, Arg::No, Tok::PersistentConn),
    ("nosort", None, Arg::No, Tok::NoSort),
    ("sort", None, Arg::No, Tok::Sort),
    ("exact", Some('X'), Arg::No, Tok::Exact),
    ("ipv6", Some('6'), Arg::No, Tok::Ipv6),
    ("sched-flags", Some('b'), Arg::Required, Tok::SchedFlags),
    ("tun-info", None, Arg::No, Tok::TunInfo),
    ("tun-type", None, Arg::Required, Tok::TunType),
    ("laddr", Some('z'), Arg::Required, Tok::Laddr),
    ("ifname", Some('F'), Arg::Required, Tok::Ifname),
    (
        "sctp-service",
        None,
        Arg::Required,
        Tok::Unsupported("SCTP services"),
    ),
    (
        "ops",
        Some('o'),
        Arg::No,
        Tok::Unsupported("one-packet scheduling"),
    ),
    (
        "pe",
        None,
        Arg::Required,
        Tok::Unsupported("persistence engines"),
    ),
    ("start-daemon", None, Arg::Required, Tok::StartDaemon),
    ("stop-daemon", None, Arg::Required, Tok::StopDaemon),
    ("mcast-interface", None, Arg::Required, Tok::McastIf),
    ("syncid", None, Arg::Required, Tok::SyncId),
    ("sync-maxlen", None, Arg::Required, Tok::SyncMaxlen),
    ("mcast-group", None, Arg::Required, Tok::McastGroup),
    ("mcast-port", None, Arg::Required, Tok::McastPort),
    ("mcast-ttl", None, Arg::Required, Tok::McastTtl),
    ("proxy-protocol", None, Arg::Required, Tok::ProxyProtocol),
    ("synproxy", Some('j'), Arg::No, Tok::Synproxy),
    ("sync-status", None, Arg::No, Tok::Cmd(Cmd::SyncStatus)),
    ("sloppy-tcp", None, Arg::Required, Tok::SloppyTcp),
    (
        "tun-port",
        None,
        Arg::Required,
        Tok::Unsupported("GUE tunnels"),
    ),
    (
        "tun-nocsum",
        None,
        Arg::No,
        Tok::Unsupported("GUE/GRE tunnel checksum options"),
    ),
    (
        "tun-csum",
        None,
        Arg::No,
        Tok::Unsupported("GUE/GRE tunnel checksum options"),
    ),
    (
        "tun-remcsum",
        None,
        Arg::No,
        Tok::Unsupported("GUE/GRE tunnel checksum options"),
    ),
];

fn opt_of(tok: Tok) -> Option<Opt> {
    Some(match tok {
        Tok::Tcp | Tok::Udp | Tok::Fwmark => Opt::Service,
        Tok::Sched => Opt::Scheduler,
        Tok::Persistent => Opt::Persistent,
        Tok::Netmask => Opt::Netmask,
        Tok::Server => Opt::Server,
        Tok::Fwd(_) => Opt::Forward,
        Tok::Weight => Opt::Weight,
        Tok::UThreshold => Opt::UThreshold,
        Tok::LThreshold => Opt::LThreshold,
        Tok::Numeric => Opt::Numeric,
        Tok::Connection => Opt::Connection,
        Tok::Timeout => Opt::Timeout,
        Tok::Daemon => Opt::Daemon,
        Tok::Stats => Opt::Stats,
        Tok::Rate => Opt::Rate,
        Tok::Thresholds => Opt::Thresholds,
        Tok::PersistentConn => Opt::PersistentConn,
        Tok::NoSort => Opt::NoSort,
        Tok::Exact => Opt::Exact,
        Tok::SchedFlags => Opt::SchedFlags,
        Tok::TunInfo => Opt::TunInfo,
        Tok::TunType => Opt::TunType,
        Tok::Laddr => Opt::Laddr,
        Tok::Ifname => Opt::Ifname,
        Tok::McastIf => Opt::McastIf,
        Tok::SyncId => Opt::SyncId,
        Tok::SyncMaxlen => Opt::SyncMaxlen,
        Tok::McastGroup => Opt::McastGroup,
        Tok::McastPort => Opt::McastPort,
        Tok::McastTtl => Opt::McastTtl,
        Tok::ProxyProtocol => Opt::ProxyProtocol,
        Tok::Synproxy => Opt::Synproxy,
        _ => return None,
    })
}

/// Everything gathered from the words, checked and defaulted at the end.
#[derive(Default)]
struct Acc {
    cmd: Option<Cmd>,
    opts: u32,
    help: bool,
    version: bool,
    svc: Option<SvcAddr>,
    sched: Option<String>,
    persistent: Option<u32>,
    netmask: Option<String>,
    server: Option<(IpAddr, Option<u16>)>,
    fwd: Option<FwdMethod>,
    weight: Option<u32>,
    u_threshold: u32,
    l_threshold: u32,
    sched_flags: Option<String>,
    v6: bool,
    laddr: Option<IpAddr>,
    ifname: Option<String>,
    proxy: Option<crate::wire::proxy::Version>,
    synproxy: bool,
    /// `--start-daemon` / `--stop-daemon`'s state and the daemon options.
    role: Option<Role>,
    daemon: DaemonConf,
    /// `--sloppy-tcp`'s value.
    sloppy: bool,
    list: ListOpts,
    positional: Vec<String>,
}

impl Acc {
    fn has(&self, o: Opt) -> bool {
        self.opts & (1 << o as u32) != 0
    }

    fn set_option(&mut self, o: Opt) -> Result<(), UsageError> {
        if self.has(o) {
            return Err(UsageError::new(format!(
                "multiple '{}' options specified",
                OPT_NAMES[o as usize]
            )));
        }
        self.opts |= 1 << o as u32;
        Ok(())
    }

    fn set_command(&mut self, c: Cmd) -> Result<(), UsageError> {
        if self.cmd.is_some() {
            return Err(UsageError::new("multiple commands specified"));
        }
        self.cmd = Some(c);
        Ok(())
    }

    fn take(&mut self, tok: Tok, word: &str, value: Option<&str>) -> Result<(), UsageError> {
        if let Some(o) = opt_of(tok) {
            self.set_option(o)?;
        }
        let v = value.unwrap_or("");
        match tok {
            Tok::Cmd(c) => self.set_command(c)?,
            Tok::Help => self.help = true,
            Tok::Version => self.version = true,
            Tok::Tcp | Tok::Udp => {
                let proto = if tok == Tok::Tcp {
                    Proto::Tcp
                } else {
                    Proto::Udp
                };
                let (addr, port) = parse_service(v).ok_or_else(|| {
                    UsageError::new("illegal virtual server address[:port] specified")
                })?;
                self.svc = Some(SvcAddr::Addr {
                    proto,
                    addr,
                    port: port.unwrap_or(0),
                });
            }
            Tok::Fwmark => {
                self.svc = Some(SvcAddr::Mark {
                    mark: parse_fwmark(v)?,
                    v6: false,
                })
            }
            Tok::Sched => self.sched = Some(v.to_string()),
            Tok::Persistent => self.persistent = Some(parse_timeout(value, 1)?),
            Tok::Netmask => self.netmask = Some(v.to_string()),
            Tok::Server => {
                let s = parse_service(v).ok_or_else(|| {
                    UsageError::new("illegal real server address[:port] specified")
                })?;
                self.server = Some(s);
            }
            Tok::Fwd(f) => self.fwd = Some(f),
            Tok::Weight => {
                self.weight = Some(
                    number(v, 0, 65535)
                        .ok_or_else(|| UsageError::new("illegal weight specified"))?,
                )
            }
            Tok::UThreshold => {
                self.u_threshold = number(v, 0, i32::MAX as u32)
                    .ok_or_else(|| UsageError::new("illegal u_threshold specified"))?
            }
            Tok::LThreshold => {
                self.l_threshold = number(v, 0, i32::MAX as u32)
                    .ok_or_else(|| UsageError::new("illegal l_threshold specified"))?
            }
            Tok::Numeric => self.list.numeric = true,
            Tok::Connection => self.list.what = ListWhat::Connections,
            Tok::Timeout => self.list.what = ListWhat::Timeout,
            Tok::Daemon => self.list.what = ListWhat::Daemon,
            Tok::Stats => self.list.stats = true,
            Tok::Rate => self.list.rate = true,
            Tok::Thresholds => self.list.thresholds = true,
            Tok::PersistentConn => self.list.persistent_conn = true,
            Tok::NoSort => self.list.nosort = true,
            // Sorting is the default; ipvsadm keeps --sort as a no-op.
            Tok::Sort => {}
            Tok::Exact => self.list.exact = true,
            Tok::Synproxy => self.synproxy = true,
            Tok::Ipv6 => self.v6 = true,
            Tok::SchedFlags => self.sched_flags = Some(v.to_string()),
            Tok::TunInfo => self.list.tun_info = true,
            Tok::TunType => match v {
                "ipip" => {}
                "gue" | "gre" => {
                    return Err(UsageError::new(format!(
                        "xvs does not support the '{v}' tunnel type (only ipip)"
                    )))
                }
                _ => return Err(UsageError::new("illegal tunnel type specified")),
            },
            Tok::ProxyProtocol => {
                self.proxy = Some(crate::wire::proxy::Version::from_name(v).ok_or_else(|| {
                    UsageError::new("illegal proxy-protocol specified (v1 or v2)")
                })?)
            }
            Tok::Laddr => {
                self.laddr = Some(v.parse().map_err(|_| {
                    UsageError::new(format!("illegal local address `{v}' specified"))
                })?)
            }
            Tok::Ifname => self.ifname = Some(v.to_string()),
            Tok::StartDaemon | Tok::StopDaemon => {
                let (cmd, what) = if tok == Tok::StartDaemon { (Cmd::StartDaemon, "start_daemon") } else { (Cmd::StopDaemon, "stop_daemon") };
                self.set_command(cmd)?;
                self.role = Some(match v {
                    "master" => Role::Master,
                    "backup" => Role::Backup,
                    _ => return Err(UsageError::new(format!("illegal {what} parameter specified (master or backup): '{v}'"))),
                });
            }
            Tok::McastIf => {
                if v.is_empty() || v.len() > crate::sync::conf::MAX_IFNAME {
                    return Err(UsageError::new(format!(
                        "illegal mcast-interface specified: '{v}' (1 to {} characters)",
                        crate::sync::conf::MAX_IFNAME
                    )));
                }
                self.daemon.interface = v.to_string();
            }
            Tok::SyncId => {
                self.daemon.syncid = number(v, 0, 255).ok_or_else(|| UsageError::new(format!("illegal syncid specified: '{v}' (0 to 255)")))? as u8
            }
            Tok::SyncMaxlen => {
                self.daemon.maxlen = Some(
                    number(v, 1, 65535 - 20 - 8).ok_or_else(|| UsageError::new(format!("illegal sync-maxlen specified: '{v}' (1 to 65507)")))? as u16,
                )
            }
            Tok::McastGroup => {
                let g: IpAddr = v
                    .parse()
                    .ok()
                    .filter(|g: &IpAddr| g.is_multicast())
                    .ok_or_else(|| UsageError::new(format!("invalid mcast-group specified: '{v}' is not a multicast address")))?;
                self.daemon.group = Some(g);
            }
            Tok::McastPort => {
                self.daemon.port =
                    Some(number(v, 1, 65535).ok_or_else(|| UsageError::new(format!("illegal mcast-port specified: '{v}' (1 to 65535)")))? as u16)
            }
            Tok::McastTtl => {
                self.daemon.ttl =
                    Some(number(v, 1, 255).ok_or_else(|| UsageError::new(format!("illegal mcast-ttl specified: '{v}' (1 to 255)")))? as u8)
            }
            Tok::SloppyTcp => {
                self.set_command(Cmd::Sloppy)?;
                self.sloppy = match v {
                    "on" | "1" => true,
                    "off" | "0" => false,
                    _ => return Err(UsageError::new(format!("illegal sloppy-tcp value specified (on or off): '{v}'"))),
                };
            }
            Tok::Unsupported(what) => {
                return Err(UsageError::new(format!(
                    "xvs does not support {word} ({what})"
                )))
            }
        }
        Ok(())
    }
}

fn lookup_long(name: &str) -> Option<(Arg, Tok)> {
    OPTIONS.iter().find(|o| o.0 == name).map(|o| (o.2, o.3))
}

fn lookup_short(c: char) -> Option<(Arg, Tok)> {
    OPTIONS.iter().find(|o| o.1 == Some(c)).map(|o| (o.2, o.3))
}

/// Parses an ipvsadm command line (the words after the program name).
/// No words at all means `-L`, as ipvsadm.
///
/// # Errors
/// ipvsadm's message for the first problem; xvsadm exits with code 2.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, UsageError> {
    let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    if args.is_empty() {
        return Ok(Command::List(ListOpts::default()));
    }
    let mut acc = Acc::default();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let w = args[i];
        i += 1;
        if only_positional || w == "-" || !w.starts_with('-') {
            acc.positional.push(w.to_string());
            continue;
        }
        if w == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, glued) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let (arg, tok) = lookup_long(name)
                .ok_or_else(|| UsageError::try_help(format!("{w}: unknown option")))?;
            let shown = format!("--{name}");
            let value = match arg {
                Arg::No if glued.is_some() => {
                    return Err(UsageError::try_help(format!(
                        "{shown}: option does not take an argument"
                    )))
                }
                Arg::No => None,
                Arg::Required | Arg::Optional => value_of(arg, glued, &args, &mut i, &shown)?,
            };
            acc.take(tok, &shown, value)?;
            continue;
        }
        // A cluster of short options: -Ln, -p600, -w 3.
        let cluster = &w[1..];
        for (pos, c) in cluster.char_indices() {
            let (arg, tok) = lookup_short(c)
                .ok_or_else(|| UsageError::try_help(format!("-{c}: unknown option")))?;
            let shown = format!("-{c}");
            if arg == Arg::No {
                acc.take(tok, &shown, None)?;
                continue;
            }
            // The rest of the cluster is the value (`-p600`), if any.
            let rest = &cluster[pos + c.len_utf8()..];
            let glued = (!rest.is_empty()).then_some(rest);
            let value = value_of(arg, glued, &args, &mut i, &shown)?;
            acc.take(tok, &shown, value)?;
            break;
        }
    }
    finish(acc)
}

/// The value of option `shown` that takes one, by popt's rules, for long
/// and short options alike: the `glued` one (`--name=v`, `-p600`), else
/// the next word `args[*i]` (consumed), which an optional value takes only
/// when it does not start with `-`. `None`: an optional value not given.
fn value_of<'a>(
    arg: Arg,
    glued: Option<&'a str>,
    args: &[&'a str],
    i: &mut usize,
    shown: &str,
) -> Result<Option<&'a str>, UsageError> {
    if glued.is_some() {
        return Ok(glued);
    }
    match args.get(*i) {
        Some(&next) if arg == Arg::Required || !next.starts_with('-') => {
            *i += 1;
            Ok(Some(next))
        }
        _ if arg == Arg::Required => {
            Err(UsageError::try_help(format!("{shown}: missing argument")))
        }
        _ => Ok(None),
    }
}

fn finish(mut acc: Acc) -> Result<Command, UsageError> {
    if acc.help {
        return Ok(Command::Help);
    }
    if acc.version {
        return Ok(Command::Version);
    }
    let cmd = match acc.cmd {
        Some(c) => c,
        // xvs: `--stats` alone asks for the daemon's counters.
        None if acc.opts == 1 << Opt::Stats as u32 => Cmd::Stats,
        None => {
            return Err(UsageError::try_help(
                "no command given (for example -A, -a, -L; see -h)",
            ))
        }
    };
    if cmd == Cmd::Stats {
        // --stats is both the command and a list option: it set the bit.
        acc.opts = 0;
    }
    generic_opt_check(cmd, acc.opts)?;

    if cmd != Cmd::Timeout {
        if let Some(extra) = acc.positional.first() {
            return Err(UsageError::new(format!("unexpected argument {extra}")));
        }
    }
    if acc.v6 {
        match &mut acc.svc {
            Some(SvcAddr::Mark { v6, .. }) => *v6 = true,
            _ => return Err(UsageError::new("-6 used before -f")),
        }
    }

    let svc = acc.svc.clone();
    let need_svc = || {
        svc.clone()
            .ok_or_else(|| UsageError::new("internal: service checked by the table"))
    };
    Ok(match cmd {
        Cmd::Add | Cmd::Edit => {
            let svc = need_svc()?;
            if let SvcAddr::Addr { port: 0, .. } = svc {
                if acc.persistent.is_none() {
                    return Err(UsageError::new(
                        "Zero port specified for non-persistent service",
                    ));
                }
            }
            let sched = acc
                .sched
                .clone()
                .unwrap_or_else(|| DEFAULT_SCHED.to_string());
            let sched_flags = match &acc.sched_flags {
                Some(f) => parse_sched_flags(&sched, f)?,
                None => 0,
            };
            let netmask = match &acc.netmask {
                Some(m) => Some(parse_netmask(m, svc.is_v6())?),
                None => None,
            };
            let spec = ServiceSpec {
                svc,
                sched,
                sched_flags,
                persistent: acc.persistent,
                netmask,
                synproxy: acc.synproxy,
            };
            if cmd == Cmd::Add {
                Command::AddService(spec)
            } else {
                Command::EditService(spec)
            }
        }
        Cmd::Del => Command::DelService(need_svc()?),
        Cmd::Flush => Command::Clear,
        Cmd::AddDest | Cmd::EditDest => {
            let svc = need_svc()?;
            let (addr, port) = acc
                .server
                .ok_or_else(|| UsageError::new("internal: server checked by the table"))?;
            let fwd = acc.fwd.unwrap_or(FwdMethod::Dr);
            // DR and TUN do not rewrite the port: the real server's is the
            // service's (ipvsadm forces it too; marks have no port).
            let mut port = port.unwrap_or(svc.port());
            if matches!(fwd, FwdMethod::Dr | FwdMethod::Tun) && !matches!(svc, SvcAddr::Mark { .. })
            {
                port = svc.port();
            }
            if addr.is_ipv6() != svc.is_v6() && fwd != FwdMethod::Tun {
                return Err(UsageError::new(
                    "Different address family is allowed only for tunneling servers",
                ));
            }
            if acc.has(Opt::TunType) && fwd != FwdMethod::Tun {
                return Err(UsageError::new(
                    "Tunnel options conflict with forward method",
                ));
            }
            if acc.proxy.is_some() && !matches!(fwd, FwdMethod::Nat | FwdMethod::FullNat) {
                return Err(UsageError::new(
                    "--proxy-protocol needs masquerading (-m) or --fullnat",
                ));
            }
            let spec = DestSpec {
                svc,
                addr,
                port,
                fwd,
                weight: acc.weight.unwrap_or(1),
                u_threshold: acc.u_threshold,
                l_threshold: acc.l_threshold,
                proxy: acc.proxy,
            };
            if cmd == Cmd::AddDest {
                Command::AddDest(spec)
            } else {
                Command::EditDest(spec)
            }
        }
        Cmd::DelDest => {
            let svc = need_svc()?;
            let (addr, port) = acc
                .server
                .ok_or_else(|| UsageError::new("internal: server checked by the table"))?;
            let port = port.unwrap_or(svc.port());
            Command::DelDest { svc, addr, port }
        }
        Cmd::List => {
            let l = &acc.list;
            let conn_like = matches!(
                l.what,
                ListWhat::Connections | ListWhat::Timeout | ListWhat::Daemon
            );
            let time_like = matches!(l.what, ListWhat::Timeout | ListWhat::Daemon);
            if (conn_like && (l.stats || l.rate || l.thresholds))
                || (time_like && l.persistent_conn)
            {
                return Err(UsageError::new("options conflicts in the list command"));
            }
            let mut list = acc.list.clone();
            if let Some(s) = svc {
                list.what = ListWhat::Service(s);
            }
            Command::List(list)
        }
        Cmd::Restore => Command::Restore {
            rules: String::new(),
        },
        Cmd::Save => Command::Save {
            numeric: acc.list.numeric,
        },
        Cmd::Zero => Command::Zero(svc),
        Cmd::AddLaddr | Cmd::DelLaddr => {
            let svc = need_svc()?;
            let addr = acc
                .laddr
                .ok_or_else(|| UsageError::new("internal: laddr checked by the table"))?;
            if addr.is_ipv6() != svc.is_v6() {
                return Err(UsageError::new(
                    "local address and service are of different address families",
                ));
            }
            if cmd == Cmd::AddLaddr {
                Command::AddLaddr {
                    svc,
                    addr,
                    ifname: acc.ifname,
                }
            } else {
                Command::DelLaddr {
                    svc,
                    addr,
                    ifname: acc.ifname,
                }
            }
        }
        Cmd::GetLaddr => Command::GetLaddr(svc),
        Cmd::Reload => Command::Reload,
        Cmd::Stats => Command::DaemonStats,
        Cmd::StartDaemon | Cmd::StopDaemon => {
            let role = acc.role.ok_or_else(|| UsageError::new("internal: daemon state checked by the parser"))?;
            if cmd == Cmd::StartDaemon {
                Command::StartDaemon { role, daemon: acc.daemon }
            } else {
                Command::StopDaemon(role)
            }
        }
        Cmd::SyncStatus => Command::SyncStatus,
        Cmd::Sloppy => Command::SetSloppyTcp(acc.sloppy),
        Cmd::Timeout => {
            if acc.positional.len() < 3 {
                return Err(UsageError::new("--set option requires 3 timeout values"));
            }
            let vals: Vec<u32> = acc.positional[..3]
                .iter()
                .map(|v| parse_timeout(Some(v), 0))
                .collect::<Result<_, _>>()?;
            if let Some(extra) = acc.positional.get(3) {
                return Err(UsageError::new(format!("unexpected argument {extra}")));
            }
            Command::SetTimeouts {
                tcp: vals[0],
                tcpfin: vals[1],
                udp: vals[2],
            }
        }
    })
}

fn generic_opt_check(cmd: Cmd, opts: u32) -> Result<(), UsageError> {
    let row = TABLE[cmd as usize];
    let cname = CMD_NAMES[cmd as usize];
    let mut first_exclusive: Option<usize> = None;
    for (j, rule) in row.iter().enumerate() {
        let given = opts & (1 << j) != 0;
        match (*rule, given) {
            (b'+', false) => {
                return Err(UsageError::new(format!(
                    "You need to supply the '{}' option for the '{cname}' command",
                    OPT_NAMES[j]
                )))
            }
            (b'x', true) => {
                return Err(UsageError::new(format!(
                    "Illegal '{}' option with the '{cname}' command",
                    OPT_NAMES[j]
                )))
            }
            (b'1', true) => match first_exclusive {
                None => first_exclusive = Some(j),
                Some(last) => {
                    return Err(UsageError::new(format!(
                        "The option '{}' conflicts with the '{}' option in the '{cname}' command",
                        OPT_NAMES[j], OPT_NAMES[last]
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// A decimal number in `min..=max` (the whole word, as strtol + end check).
fn number(s: &str, min: u32, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    (v >= min as u64 && v <= max as u64).then_some(v as u32)
}

/// A timeout; `None` (a bare `-p`) is ipvsadm's default persistence.
fn parse_timeout(s: Option<&str>, min: u32) -> Result<u32, UsageError> {
    match s {
        None => Ok(DEFAULT_PERSISTENCE),
        Some(v) => number(v, min, MAX_TIMEOUT)
            .ok_or_else(|| UsageError::new(format!("invalid timeout value `{v}' specified"))),
    }
}

fn parse_fwmark(s: &str) -> Result<u32, UsageError> {
    number(s, 1, u32::MAX)
        .ok_or_else(|| UsageError::new(format!("invalid fwmark value `{s}' specified")))
}

/// `host[:port]` with a numeric host: `10.0.0.1`, `10.0.0.1:80`,
/// `2001:db8::1`, `[2001:db8::1]:80`. `None` when it is none of these.
pub(crate) fn parse_service(s: &str) -> Option<(IpAddr, Option<u16>)> {
    // A bare number is not an address (ipvsadm's str_is_digit check).
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = |p: &str| number(p, 0, 65535).map(|v| v as u16);
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let p = after.strip_prefix(':')?;
        let a: Ipv6Addr = host.parse().ok()?;
        return Some((IpAddr::V6(a), Some(port(p)?)));
    }
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(a), None));
    }
    match s.rsplit_once(':') {
        Some((host, p)) => Some((IpAddr::V4(host.parse::<Ipv4Addr>().ok()?), Some(port(p)?))),
        None => Some((IpAddr::V4(s.parse::<Ipv4Addr>().ok()?), None)),
    }
}

/// `-M`: IPv4 takes a dotted mask (contiguous) or a prefix length 0–32;
/// IPv6 takes a prefix length 1–128 (ipvsadm's rules).
fn parse_netmask(s: &str, v6: bool) -> Result<u8, UsageError> {
    if v6 {
        return number(s, 1, 128)
            .map(|v| v as u8)
            .ok_or_else(|| UsageError::new("illegal ipv6 netmask specified"));
    }
    let bad = || UsageError::new("illegal virtual server persistent mask specified");
    if s.contains('.') {
        let m = u32::from(s.parse::<Ipv4Addr>().map_err(|_| bad())?);
        let len = m.leading_ones();
        // Only contiguous masks: a prefix is all the model can hold.
        if len < 32 && m << len != 0 {
            return Err(bad());
        }
        Ok(len as u8)
    } else {
        number(s, 0, 32).map(|v| v as u8).ok_or_else(bad)
    }
}

/// `-b`: ipvsadm's comma-separated flag names; the sh-/mh- names only go
/// with their scheduler.
fn parse_sched_flags(sched: &str, s: &str) -> Result<u8, UsageError> {
    let mut f = 0;
    for name in s.split(',').filter(|n| !n.is_empty()) {
        let (bit, only) = match name {
            "flag-1" => (SchedFlags::FLAG1, None),
            "flag-2" => (SchedFlags::FLAG2, None),
            "flag-3" => (SchedFlags::FLAG3, None),
            "sh-fallback" => (SchedFlags::FLAG1, Some("sh")),
            "sh-port" => (SchedFlags::FLAG2, Some("sh")),
            "mh-fallback" => (SchedFlags::FLAG1, Some("mh")),
            "mh-port" => (SchedFlags::FLAG2, Some("mh")),
            _ => return Err(UsageError::new(format!("invalid scheduler flag `{name}'"))),
        };
        if only.is_some_and(|o| o != sched) {
            return Err(UsageError::new(format!(
                "incompatible scheduler flag `{name}'"
            )));
        }
        f |= bit;
    }
    Ok(f)
}

/// Reads ipvsadm-save rules (what `-S` writes and `-R` reads): one command
/// per line, blank lines and `#` comments skipped. Each command comes with
/// its line number. Only commands that change the table may appear.
///
/// # Errors
/// The first bad line, by number.
pub fn parse_rules(text: &str) -> Result<Vec<(usize, Command)>, super::CmdError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let words: Vec<&str> = line
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect();
        if words.is_empty() {
            continue;
        }
        let at = |e: super::CmdError| super::CmdError::Line {
            line: line_no,
            source: Box::new(e),
        };
        let cmd = parse(&words).map_err(|e| at(e.into()))?;
        match cmd {
            Command::AddService(_)
            | Command::EditService(_)
            | Command::DelService(_)
            | Command::AddDest(_)
            | Command::EditDest(_)
            | Command::DelDest { .. }
            | Command::Clear
            | Command::SetTimeouts { .. }
            | Command::SetSloppyTcp(_)
            | Command::AddLaddr { .. }
            | Command::DelLaddr { .. } => out.push((line_no, cmd)),
            _ => {
                return Err(at(super::CmdError::NotHere(format!(
                    "'{}' does not change the table; rules may hold only -A -E -D -a -e -d -C --set --sloppy-tcp --add-laddr --del-laddr",
                    words.join(" ")
                ))))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, UsageError> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    fn ok(s: &str) -> Command {
        p(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match p(s) {
            Ok(c) => panic!("{s} parsed as {c:?}"),
            Err(e) => e.message,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tcp(a: &str, port: u16) -> SvcAddr {
        SvcAddr::Addr {
            proto: Proto::Tcp,
            addr: ip(a),
            port,
        }
    }

    #[test]
    fn add_service_defaults_are_ipvsadm() {
        assert_eq!(
            ok("-A -t 10.0.0.100:80"),
            Command::AddService(ServiceSpec {
                svc: tcp("10.0.0.100", 80),
                sched: "wlc".into(),
                sched_flags: 0,
                persistent: None,
                netmask: None,
                synproxy: false
            })
        );
        assert_eq!(
            ok("-A -t 172.16.29.4:80 -s wrr"),
            Command::AddService(ServiceSpec {
                svc: tcp("172.16.29.4", 80),
                sched: "wrr".into(),
                sched_flags: 0,
                persistent: None,
                netmask: None,
                synproxy: false
            })
        );
        // xvs's --synproxy (DPVS's -j), on -A and -E
        for line in ["-A -t 10.0.0.100:80 -s rr --synproxy", "-E -t 10.0.0.100:80 -s rr -j"] {
            let (Command::AddService(s) | Command::EditService(s)) = ok(line) else { panic!("{line}") };
            assert!(s.synproxy, "{line}");
        }
    }

    #[test]
    fn persistence_optional_value_forms() {
        let pers = |s: &str| match ok(s) {
            Command::AddService(sp) | Command::EditService(sp) => {
                (sp.persistent, sp.netmask, sp.sched)
            }
            c => panic!("{c:?}"),
        };
        assert_eq!(pers("-A -t 1.2.3.4:80 -p"), (Some(300), None, "wlc".into()));
        assert_eq!(
            pers("-A -t 1.2.3.4:80 -p -s rr"),
            (Some(300), None, "rr".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 -p 600 -s rr"),
            (Some(600), None, "rr".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 -p600"),
            (Some(600), None, "wlc".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 --persistent=60"),
            (Some(60), None, "wlc".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 --persistent 60"),
            (Some(60), None, "wlc".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 --persistent -s rr"),
            (Some(300), None, "rr".into())
        );
        assert_eq!(
            pers("-A --scheduler=rr -t 1.2.3.4:80 -p"),
            (Some(300), None, "rr".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 -s -p"),
            (None, None, "-p".into()),
            "a required value takes the next word, dash or not (popt)"
        );
        assert_eq!(
            pers("-E -t 1.2.3.4:0 -p 60 -M 255.255.255.0"),
            (Some(60), Some(24), "wlc".into())
        );
        assert_eq!(
            pers("-A -t 1.2.3.4:80 -M 16 -p"),
            (Some(300), Some(16), "wlc".into()),
            "-M before -p, prefix form"
        );
        assert_eq!(
            pers("-A -t [2001:db8::1]:80 -p -M 64"),
            (Some(300), Some(64), "wlc".into())
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 0"),
            "invalid timeout value `0' specified"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p 2678401"),
            "invalid timeout value `2678401' specified"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p abc"),
            "invalid timeout value `abc' specified"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p -M 255.0.255.0"),
            "illegal virtual server persistent mask specified"
        );
        assert_eq!(
            err("-A -t 1.2.3.4:80 -p -M 33"),
            "illegal virtual server persistent mask specified"
        );
        assert_eq!(
            err("-A -t [::1]:80 -p -M 255.255.0.0"),
            "illegal ipv6 netmask specified"
        );
        assert_eq!(
            err("-A -t [::1]:80 -p -M 0"),
            "illegal ipv6 netmask specified"
        );
    }

    #[test]
    fn long_forms_and_clusters() {
        assert_eq!(
            ok("--add-service --tcp-service 10.0.0.1:80 --scheduler rr"),
            ok("-A -t 10.0.0.1:80 -s rr")
        );
        assert_eq!(ok("-At 10.0.0.1:80 -srr"), ok("-A -t 10.0.0.1:80 -s rr"));
        assert_eq!(
            ok("--add-server --tcp-service=10.0.0.1:80 --real-server=10.0.1.1 --masquerading --weight=3"),
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3")
        );
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1 --gatewaying -w3"),
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1 -g -w 3")
        );
        assert_eq!(
            ok("-Ln"),
            Command::List(ListOpts {
                numeric: true,
                ..Default::default()
            })
        );
        assert_eq!(ok("-l -n"), ok("-Ln"));
        assert_eq!(ok("--list --numeric --sort"), ok("-Ln"));
        assert_eq!(ok("-S -n"), Command::Save { numeric: true });
        assert_eq!(ok("-Sn"), Command::Save { numeric: true });
        assert_eq!(
            parse::<&str>(&[]).unwrap(),
            Command::List(ListOpts::default()),
            "no arguments lists"
        );
        assert_eq!(ok("-h"), Command::Help);
        assert_eq!(ok("-A -t 1.2.3.4:80 --help"), Command::Help);
        assert_eq!(ok("--version"), Command::Version);
    }

    #[test]
    fn dests_follow_ipvsadm_rules() {
        let d = |s: &str| match ok(s) {
            Command::AddDest(d) | Command::EditDest(d) => d,
            c => panic!("{c:?}"),
        };
        let x = d("-a -t 172.16.29.4:80 -r 192.168.95.2 -m -w 1");
        assert_eq!(
            (x.addr, x.port, x.fwd, x.weight),
            (ip("192.168.95.2"), 80, FwdMethod::Nat, 1)
        );
        let x = d("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m");
        assert_eq!(
            (x.port, x.weight),
            (8080, 1),
            "NAT may change the port; weight defaults to 1"
        );
        let x = d("-a -t 10.0.0.1:80 -r 10.0.1.1:8080");
        assert_eq!(
            (x.port, x.fwd),
            (80, FwdMethod::Dr),
            "-g is the default and keeps the service port"
        );
        let x = d("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 0 -x 100 -y 50 --tun-type ipip");
        assert_eq!(
            (x.fwd, x.weight, x.u_threshold, x.l_threshold),
            (FwdMethod::Tun, 0, 100, 50)
        );
        let x = d("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 --fullnat");
        assert_eq!((x.fwd, x.port), (FwdMethod::FullNat, 8080));
        assert_eq!(x.proxy, None);
        let x = d("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 --fullnat --proxy-protocol v2");
        assert_eq!((x.fwd, x.proxy), (FwdMethod::FullNat, Some(crate::wire::proxy::Version::V2)));
        let x = d("-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m --proxy-protocol=v1");
        assert_eq!((x.fwd, x.proxy), (FwdMethod::Nat, Some(crate::wire::proxy::Version::V1)));
        let x = d("-a -f 7 -r 10.0.1.1 -g");
        assert_eq!((x.svc, x.port), (SvcAddr::Mark { mark: 7, v6: false }, 0));
        let x = d("-e -f 7 -6 -r [2001:db8::2]:0 -m");
        assert_eq!(
            (x.svc, x.addr),
            (SvcAddr::Mark { mark: 7, v6: true }, ip("2001:db8::2"))
        );
        let x = d("-a -t [2001:db8::1]:443 -r 2001:db8::2 -m");
        assert_eq!((x.addr, x.port), (ip("2001:db8::2"), 443));
        let x = d("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i");
        assert_eq!(x.fwd, FwdMethod::Tun, "tunnels may cross families");
        assert_eq!(
            ok("-d -t 10.0.0.1:80 -r 10.0.1.1"),
            Command::DelDest {
                svc: tcp("10.0.0.1", 80),
                addr: ip("10.0.1.1"),
                port: 80
            }
        );
    }

    #[test]
    fn usage_errors_are_ipvsadm_words() {
        let cases = [
            ("-A -t 10.0.0.1:80 -w 3", "Illegal 'weight' option with the 'add-service' command"),
            ("-A -s rr", "You need to supply the 'service-address' option for the 'add-service' command"),
            ("-a -t 10.0.0.1:80", "You need to supply the 'real-server' option for the 'add-server' command"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -w 65536", "illegal weight specified"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -w -1", "illegal weight specified"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -x x", "illegal u_threshold specified"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -y 1.5", "illegal l_threshold specified"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -m --proxy-protocol v3", "illegal proxy-protocol specified (v1 or v2)"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -g --proxy-protocol v1", "--proxy-protocol needs masquerading (-m) or --fullnat"),
            ("-A -t 10.0.0.1:80 --proxy-protocol v1", "Illegal 'proxy-protocol' option with the 'add-service' command"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -m --synproxy", "Illegal 'synproxy' option with the 'add-server' command"),
            ("-D -t 10.0.0.1:80 -j", "Illegal 'synproxy' option with the 'delete-service' command"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -w 1 -w 2", "multiple 'weight' options specified"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -m -g", "multiple 'forwarding-method' options specified"),
            ("-A -t 10.0.0.1:80 -a", "multiple commands specified"),
            ("-A -t 10.0.0.1", "Zero port specified for non-persistent service"),
            ("-A -t 10.0.0.1:http", "illegal virtual server address[:port] specified"),
            ("-A -t www.example.com:80", "illegal virtual server address[:port] specified"),
            ("-A -t 80", "illegal virtual server address[:port] specified"),
            ("-A -t [::1]80", "illegal virtual server address[:port] specified"),
            ("-A -t 10.0.0.1:65536", "illegal virtual server address[:port] specified"),
            ("-a -t 10.0.0.1:80 -r nohost", "illegal real server address[:port] specified"),
            ("-a -t 10.0.0.1:80 -r 2001:db8::2 -m", "Different address family is allowed only for tunneling servers"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -m --tun-type ipip", "Tunnel options conflict with forward method"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue", "xvs does not support the 'gue' tunnel type (only ipip)"),
            ("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type foo", "illegal tunnel type specified"),
            ("-A -f 0", "invalid fwmark value `0' specified"),
            ("-A -f x1", "invalid fwmark value `x1' specified"),
            ("-A -t 10.0.0.1:80 -6", "-6 used before -f"),
            ("-A -t 10.0.0.1:80 -s sh -b mh-port", "incompatible scheduler flag `mh-port'"),
            ("-A -t 10.0.0.1:80 -b sh-port", "incompatible scheduler flag `sh-port'"),
            ("-A -t 10.0.0.1:80 -b flag-9", "invalid scheduler flag `flag-9'"),
            ("--set 1 2", "--set option requires 3 timeout values"),
            ("--set 1 2 x", "invalid timeout value `x' specified"),
            ("--set 1 2 3 4", "unexpected argument 4"),
            ("-L extra", "unexpected argument extra"),
            ("-L -c --stats", "options conflicts in the list command"),
            ("-L --timeout --persistent-conn", "options conflicts in the list command"),
            ("-L -c --timeout", "The option 'timeout' conflicts with the 'connection' option in the 'list' command"),
            ("-L -t 10.0.0.1:80 -c", "The option 'service-address' conflicts with the 'connection' option in the 'list' command"),
            ("-S --stats", "Illegal 'stats' option with the 'save' command"),
            ("-C -n", "Illegal 'numeric' option with the 'flush' command"),
            ("-A -t 10.0.0.1:80 --ops", "xvs does not support --ops (one-packet scheduling)"),
            ("-o", "xvs does not support -o (one-packet scheduling)"),
            ("--start-daemon primary", "illegal start_daemon parameter specified (master or backup): 'primary'"),
            ("--stop-daemon both", "illegal stop_daemon parameter specified (master or backup): 'both'"),
            ("--start-daemon master --syncid 256", "illegal syncid specified: '256' (0 to 255)"),
            ("--start-daemon master --syncid -1", "illegal syncid specified: '-1' (0 to 255)"),
            ("--start-daemon master --sync-maxlen 0", "illegal sync-maxlen specified: '0' (1 to 65507)"),
            ("--start-daemon master --mcast-group 10.0.0.1", "invalid mcast-group specified: '10.0.0.1' is not a multicast address"),
            ("--start-daemon master --mcast-port 0", "illegal mcast-port specified: '0' (1 to 65535)"),
            ("--start-daemon master --mcast-ttl 256", "illegal mcast-ttl specified: '256' (1 to 255)"),
            ("--start-daemon master --mcast-interface a-very-long-name0", "illegal mcast-interface specified: 'a-very-long-name0' (1 to 15 characters)"),
            ("--stop-daemon master --mcast-port 9", "Illegal 'mcast-port' option with the 'stop-daemon' command"),
            ("--start-daemon master -n", "Illegal 'numeric' option with the 'start-daemon' command"),
            ("-A -t 10.0.0.1:80 --syncid 1", "Illegal 'syncid' option with the 'add-service' command"),
            ("--start-daemon master --stop-daemon backup", "multiple commands specified"),
            ("--sync-status -n", "Illegal 'numeric' option with the 'sync-status' command"),
            ("--sloppy-tcp yes", "illegal sloppy-tcp value specified (on or off): 'yes'"),
            ("--sloppy-tcp", "--sloppy-tcp: missing argument"),
            ("--sloppy-tcp on -n", "Illegal 'numeric' option with the 'sloppy-tcp' command"),
            ("--sloppy-tcp on --set 1 2 3", "multiple commands specified"),
            ("--add-laddr -t 10.0.0.1:80", "You need to supply the 'local-address' option for the 'add-laddr' command"),
            ("--add-laddr -t 10.0.0.1:80 -z 10.9.9.9.9", "illegal local address `10.9.9.9.9' specified"),
            ("--add-laddr -t 10.0.0.1:80 -z 2001:db8::9", "local address and service are of different address families"),
            ("--reload -n", "Illegal 'numeric' option with the 'reload' command"),
        ];
        for (line, want) in cases {
            assert_eq!(err(line), want, "{line}");
        }
    }

    #[test]
    fn sloppy_tcp_switch() {
        assert_eq!(ok("--sloppy-tcp on"), Command::SetSloppyTcp(true));
        assert_eq!(ok("--sloppy-tcp=1"), Command::SetSloppyTcp(true));
        assert_eq!(ok("--sloppy-tcp off"), Command::SetSloppyTcp(false));
        let mut m = crate::ctl::model::Model::default();
        super::super::apply(&mut m, &ok("--sloppy-tcp on")).unwrap();
        assert!(m.sloppy_tcp);
        // -S writes it, -R reads it back.
        let saved = super::super::save(&m);
        assert!(saved.starts_with("--sloppy-tcp on\n"), "{saved}");
        assert_eq!(parse_rules(&saved).unwrap(), vec![(1, Command::SetSloppyTcp(true))]);
        let mut back = crate::ctl::model::Model::default();
        super::super::restore(&mut back, &saved).unwrap();
        assert!(back.sloppy_tcp);
    }

    #[test]
    fn sync_daemon_commands_as_ipvsadm() {
        use crate::sync::conf::{DaemonConf, Role};
        assert_eq!(ok("--start-daemon master"), Command::StartDaemon { role: Role::Master, daemon: DaemonConf::default() });
        assert_eq!(
            ok("--start-daemon backup --mcast-interface d0 --syncid 7 --sync-maxlen 1400 --mcast-group 239.0.0.9 --mcast-port 9000 --mcast-ttl 3"),
            Command::StartDaemon {
                role: Role::Backup,
                daemon: DaemonConf {
                    interface: "d0".into(),
                    syncid: 7,
                    maxlen: Some(1400),
                    group: Some("239.0.0.9".parse().unwrap()),
                    port: Some(9000),
                    ttl: Some(3),
                },
            }
        );
        assert_eq!(ok("--start-daemon=master --mcast-group=ff02::81").to_owned(), ok("--mcast-group ff02::81 --start-daemon master"));
        assert_eq!(ok("--stop-daemon backup"), Command::StopDaemon(Role::Backup));
        assert_eq!(ok("--stop-daemon master --syncid 3"), Command::StopDaemon(Role::Master));
        assert_eq!(ok("-L --daemon"), Command::List(ListOpts { what: ListWhat::Daemon, ..ListOpts::default() }));
        assert_eq!(ok("--sync-status"), Command::SyncStatus);
        // It crosses the control socket as JSON.
        let c = ok("--start-daemon master --mcast-interface d0 --syncid 1");
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&j).unwrap(), c);
    }

    #[test]
    fn popt_level_errors_suggest_help() {
        for (line, want) in [
            ("-A -t", "-t: missing argument"),
            ("-A --tcp-service", "--tcp-service: missing argument"),
            ("-A -t 1.2.3.4:80 -s", "-s: missing argument"),
            ("--frobnicate", "--frobnicate: unknown option"),
            ("-Lq", "-q: unknown option"),
            (
                "--numeric=yes -L",
                "--numeric: option does not take an argument",
            ),
            ("-n", "no command given (for example -A, -a, -L; see -h)"),
        ] {
            let e = p(line).unwrap_err();
            assert_eq!(e.message, want, "{line}");
            assert!(e.try_help, "{line}");
        }
    }

    #[test]
    fn lists_and_others() {
        let l = |s: &str| match ok(s) {
            Command::List(l) => l,
            c => panic!("{c:?}"),
        };
        let x = l("-L -n --stats --exact");
        assert!(x.numeric && x.stats && x.exact && x.what == ListWhat::All);
        assert_eq!(l("-L -n -c").what, ListWhat::Connections);
        assert_eq!(l("-L --timeout").what, ListWhat::Timeout);
        assert_eq!(
            l("-L -n -t 10.0.0.1:80 --rate").what,
            ListWhat::Service(tcp("10.0.0.1", 80))
        );
        assert!(l("-L -n -c --persistent-conn").persistent_conn);
        assert!(l("-L --nosort --thresholds --tun-info").nosort);
        assert_eq!(
            ok("--set 900 120 300"),
            Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(
            ok("--set 0 0 0"),
            Command::SetTimeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 0
            }
        );
        assert_eq!(ok("-Z"), Command::Zero(None));
        assert_eq!(
            ok("-Z -u 10.0.0.1:53"),
            Command::Zero(Some(SvcAddr::Addr {
                proto: Proto::Udp,
                addr: ip("10.0.0.1"),
                port: 53
            }))
        );
        assert_eq!(ok("-C"), Command::Clear);
        assert_eq!(
            ok("-R"),
            Command::Restore {
                rules: String::new()
            }
        );
        assert_eq!(ok("--stats"), Command::DaemonStats);
        assert_eq!(ok("--reload"), Command::Reload);
        assert_eq!(
            ok("--add-laddr -t 10.0.0.1:80 -z 10.0.0.9 -F dpdk0"),
            Command::AddLaddr {
                svc: tcp("10.0.0.1", 80),
                addr: ip("10.0.0.9"),
                ifname: Some("dpdk0".into())
            }
        );
        assert_eq!(
            ok("-Q -t 10.0.0.1:80 -z 10.0.0.9"),
            Command::DelLaddr {
                svc: tcp("10.0.0.1", 80),
                addr: ip("10.0.0.9"),
                ifname: None
            }
        );
        assert_eq!(ok("--get-laddr"), Command::GetLaddr(None));
        assert_eq!(
            ok("-G -t 10.0.0.1:80"),
            Command::GetLaddr(Some(tcp("10.0.0.1", 80)))
        );
        match ok("-A -t 10.0.0.1:80 -s sh -b sh-fallback,sh-port") {
            Command::AddService(s) => {
                assert_eq!(s.sched_flags, SchedFlags::FLAG1 | SchedFlags::FLAG2)
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn service_address_forms() {
        assert_eq!(parse_service("10.0.0.1"), Some((ip("10.0.0.1"), None)));
        assert_eq!(parse_service("10.0.0.1:0"), Some((ip("10.0.0.1"), Some(0))));
        assert_eq!(
            parse_service("2001:db8::1"),
            Some((ip("2001:db8::1"), None))
        );
        assert_eq!(
            parse_service("[2001:db8::1]:443"),
            Some((ip("2001:db8::1"), Some(443)))
        );
        for bad in [
            "",
            "123",
            "[2001:db8::1]",
            "[2001:db8::1]:",
            "[10.0.0.1]:80",
            "10.0.0.1:",
            "10.0.0.1:+80",
            "10.0.0:80",
        ] {
            assert_eq!(parse_service(bad), None, "{bad}");
        }
    }

    #[test]
    fn rules_name_their_line() {
        let text = "# saved\n-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1   # first\n";
        let r = parse_rules(text).unwrap();
        assert_eq!(r.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![2, 4]);
        let e = parse_rules("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w x\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "line 2: illegal weight specified");
        assert_eq!(e.exit_code(), 2);
        let e = parse_rules("-L -n\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 1: '-L -n' does not change the table"),
            "{e}"
        );
    }

    #[test]
    fn no_input_panics() {
        // Every prefix of a few long lines, and some junk words.
        let lines = [
            "-a -t [2001:db8::1]:80 -r [2001:db8::2]:8080 -m -w 3 -x 10 -y 5",
            "-A -f 4294967295 -6 -s sh -b sh-port,sh-fallback -p 86400 -M 64",
            "--add-laddr -t 10.0.0.1:80 -z 10.0.0.9 -F eth0",
        ];
        for l in lines {
            let w: Vec<&str> = l.split_whitespace().collect();
            for n in 0..=w.len() {
                let _ = parse(&w[..n]);
            }
        }
        for junk in [
            "-",
            "--",
            "---",
            "-=",
            "--=",
            "-pé",
            "-é",
            "--persistent=",
            "-w",
            "-p",
            "--set",
        ] {
            let _ = parse(&[junk]);
            let _ = parse(&["-A", junk]);
        }
    }
}
