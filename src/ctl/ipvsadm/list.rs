//! What the read-only commands print, laid out byte for byte as ipvsadm
//! 1.31 does (its `print_title`, `print_service_entry`, `print_largenum`,
//! `list_conn`, `list_timeout`; DPVS's `--get-laddr`), so scripts that
//! parse ipvsadm's output work unchanged.
//!
//! Input: the model, plus a [`StatsView`] (live figures per service, real
//! server and local address) and a list of [`ConnEntry`] for `-c`, both
//! filled in by the daemon. Missing figures print as zero.
//!
//! As ipvsadm, listings are sorted (services by mark, family, protocol,
//! address, port; real servers by address, port) unless `--nosort`, which
//! keeps configuration order. Addresses are always numeric.

use super::save::{mask_text, svc_v6};
use super::{
    fmt_addr_port, help, version, CmdError, Command, IpvsError, ListOpts, ListWhat, SvcAddr,
};
use crate::ctl::model::Model;
use crate::ipvs::dest::Dest;
use crate::ipvs::service::{Service, ServiceKey};
use crate::ipvs::{FwdMethod, Proto};
use crate::stats::DestStats;
use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// The connection table size ipvsadm's header shows (IPVS's default
/// `1 << 12`); xvs's table is sized per worker instead.
pub const TABLE_SIZE: u32 = 4096;

/// Rates, per second (IPVS's estimator: `--rate`).
pub use crate::stats::Rate;

/// Live figures of a service or a real server (defined with the counters
/// they are made of, so that the metrics need not import the CLI).
pub use crate::stats::Figures;

/// Live figures of a FULLNAT local address (DPVS's `--get-laddr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaddrFigures {
    /// Times a local port was found taken.
    pub conflicts: u64,
    /// Connections using it.
    pub conns: u32,
}

/// The daemon's figures, keyed the way the model names things.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsView {
    /// Per service. A service without an entry shows the sum of its real
    /// servers'.
    pub services: HashMap<ServiceKey, Figures>,
    /// Per real server: (service, address, port).
    pub dests: HashMap<(ServiceKey, IpAddr, u16), Figures>,
    /// Per local address: (service, address).
    pub laddrs: HashMap<(ServiceKey, IpAddr), LaddrFigures>,
}

impl StatsView {
    /// `-Z`: zeroes the totals and rates (not the connection counts, which
    /// are state, not statistics) of one service, or of everything.
    pub fn zero(&mut self, svc: Option<&ServiceKey>) {
        let hit = |k: &ServiceKey| svc.map_or(true, |s| s == k);
        for (k, f) in self.services.iter_mut() {
            if hit(k) {
                f.zero();
            }
        }
        for ((k, _, _), f) in self.dests.iter_mut() {
            if hit(k) {
                f.zero();
            }
        }
    }

    fn dest(&self, svc: &ServiceKey, d: &Dest) -> Figures {
        self.dests
            .get(&(svc.clone(), d.addr, d.port))
            .copied()
            .unwrap_or_default()
    }

    fn service(&self, s: &Service) -> Figures {
        if let Some(f) = self.services.get(&s.key) {
            return *f;
        }
        let mut sum = Figures::default();
        for d in &s.dests {
            let f = self.dest(&s.key, d);
            sum.active += f.active;
            sum.inactive += f.inactive;
            sum.persist += f.persist;
            sum.stats.merge(&f.stats);
            sum.rate.add(&f.rate);
        }
        sum
    }
}

/// One connection entry for `-c` (what `/proc/net/ip_vs_conn` holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    pub proto: Proto,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub dest: SocketAddr,
    /// State name as IPVS prints it (`ESTABLISHED`, `FIN_WAIT`, `UDP`,
    /// `NONE` for templates).
    pub state: String,
    /// Seconds until it expires.
    pub expire: u32,
}

/// What the daemon knows beyond the model.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub stats: &'a StatsView,
    pub conns: &'a [ConnEntry],
    /// The size the header shows ([`TABLE_SIZE`]).
    pub table_size: u32,
}

/// The output of a read-only command (see [`super::Outcome::Query`]).
///
/// # Errors
/// `No such service` for a listing of a service that is not there, or
/// [`CmdError::NotHere`] for a command that prints nothing.
pub fn render(cmd: &Command, model: &Model, view: &View<'_>) -> Result<String, CmdError> {
    let mut out = String::new();
    match cmd {
        Command::List(opts) => list(&mut out, model, view, opts)?,
        Command::Save { .. } => out = super::save(model),
        Command::GetLaddr(svc) => get_laddr(&mut out, model, view, svc.as_ref())?,
        Command::Help => out = help("xvsadm"),
        Command::Version => out = version(),
        _ => {
            return Err(CmdError::NotHere(
                "the command changes the table and prints nothing".into(),
            ))
        }
    }
    Ok(out)
}

/// The `--stats` columns of a service or real server: Conns, InPkts,
/// OutPkts, InBytes, OutBytes, each a [`largenum`].
fn totals(out: &mut String, s: &DestStats, exact: bool) {
    for v in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
        largenum(out, v, exact);
    }
}

/// ipvsadm's print_largenum: a 9-wide column, K/M/G/T above 10^8 unless
/// `--exact` (which widens the column as needed).
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{i:>w$}")
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

fn title(out: &mut String, o: &ListOpts) {
    let head = "Prot LocalAddress:Port";
    if o.stats {
        let _ = writeln!(
            out,
            "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else if o.rate {
        let _ = writeln!(
            out,
            "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        );
    } else if o.thresholds {
        let _ = writeln!(
            out,
            "{head:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else if o.persistent_conn {
        let _ = writeln!(
            out,
            "{head:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        );
    } else if o.tun_info {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        );
    } else {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        );
    }
}

/// Sort key of a service: ipvsadm's `ipvs_cmp_services` (fwmark first, so
/// address services lead; then family, protocol, address, port).
fn svc_order(model: &Model, s: &Service) -> (u32, bool, u8, IpAddr, u16) {
    match &s.key {
        ServiceKey::Addr { proto, addr, port } => (0, addr.is_ipv6(), proto.number(), *addr, *port),
        ServiceKey::Group(id) => {
            let v6 = svc_v6(model, &s.key);
            let unspecified = if v6 {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0u8; 4])
            };
            (*id, v6, Proto::Tcp.number(), unspecified, 0)
        }
    }
}

/// ipvsadm's service name column: `TCP  10.0.0.1:80`, `FWM  5 IPv6`.
fn svc_name(model: &Model, key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { proto, addr, port } => {
            let mut n = format!("{:<4} {}", proto.name(), fmt_addr_port(*addr, *port));
            if addr.is_ipv4() {
                n.truncate(33);
            }
            n
        }
        ServiceKey::Group(id) if svc_v6(model, key) => format!("FWM  {id} IPv6"),
        ServiceKey::Group(id) => format!("FWM  {id}"),
    }
}

fn print_service(out: &mut String, model: &Model, view: &View<'_>, s: &Service, o: &ListOpts) {
    let name = svc_name(model, &s.key);
    let f = view.stats.service(s);
    if o.stats {
        let _ = write!(out, "{name:<33}");
        totals(out, &f.stats, o.exact);
    } else if o.rate {
        let _ = write!(out, "{name:<33}");
        for v in [
            f.rate.cps,
            f.rate.inpps,
            f.rate.outpps,
            f.rate.inbps,
            f.rate.outbps,
        ] {
            largenum(out, v, o.exact);
        }
    } else {
        let _ = write!(out, "{name} {}", s.sched);
        if s.sched_flags.0 != 0 {
            let _ = write!(out, " ({})", s.sched_flags.names(&s.sched).join(","));
        }
        if let Some(p) = s.persistence {
            let v6 = svc_v6(model, &s.key);
            let _ = write!(out, " persistent {}", p.timeout);
            if p.netmask != if v6 { 128 } else { 32 } {
                let _ = write!(out, " mask {}", mask_text(v6, p.netmask));
            }
        }
        if s.synproxy {
            out.push_str(" synproxy");
        }
    }
    out.push('\n');

    let mut dests: Vec<&Dest> = s.dests.iter().collect();
    if !o.nosort {
        dests.sort_by_key(|d| (d.addr.is_ipv6(), d.addr, d.port));
    }
    for d in dests {
        let mut dname = fmt_addr_port(d.addr, d.port);
        if d.addr.is_ipv4() {
            dname.truncate(28);
        }
        let f = view.stats.dest(&s.key, d);
        let _ = if o.stats {
            let _ = write!(out, "  -> {dname:<28}");
            totals(out, &f.stats, o.exact);
            writeln!(out)
        } else if o.rate {
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                f.rate.cps, f.rate.inpps, f.rate.outpps
            );
            largenum(out, f.rate.inbps, o.exact);
            largenum(out, f.rate.outbps, o.exact);
            writeln!(out)
        } else if o.thresholds {
            writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.u_threshold, d.l_threshold, f.active, f.inactive
            )
        } else if o.persistent_conn {
            writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.weight, f.persist, f.active, f.inactive
            )
        } else if o.tun_info {
            let ti = if d.fwd == FwdMethod::Tun {
                "ipip"
            } else {
                "n/a"
            };
            writeln!(
                out,
                "  -> {dname:<28} {:<7} {ti:<13} {:<6} {:<10} {:<10}{}",
                d.fwd.ipvsadm_name(),
                d.weight,
                f.active,
                f.inactive,
                dest_flags(d)
            )
        } else {
            writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}{}",
                d.fwd.ipvsadm_name(),
                d.weight,
                f.active,
                f.inactive,
                dest_flags(d)
            )
        };
    }
}

/// xvs's per real server options after ipvsadm's columns, in the words
/// of the option that sets them (`--proxy-protocol v1`); nothing for a
/// real server ipvsadm could list, so its lines stay ipvsadm's.
fn dest_flags(d: &Dest) -> String {
    match d.proxy {
        Some(v) => format!(" proxy-protocol {}", v.name()),
        None => String::new(),
    }
}

fn sorted(model: &Model, nosort: bool) -> Vec<&Service> {
    let mut v: Vec<&Service> = model.services.iter().collect();
    if !nosort {
        v.sort_by_key(|s| svc_order(model, s));
    }
    v
}

fn find<'a>(model: &'a Model, svc: &SvcAddr) -> Result<&'a Service, CmdError> {
    let key = svc.key();
    model
        .services
        .iter()
        .find(|s| s.key == key)
        .ok_or_else(|| IpvsError::NoService.into())
}

fn list(out: &mut String, model: &Model, view: &View<'_>, o: &ListOpts) -> Result<(), CmdError> {
    match &o.what {
        ListWhat::All => {
            let _ = writeln!(
                out,
                "IP Virtual Server version 1.2.1 (size={})",
                view.table_size
            );
            title(out, o);
            for s in sorted(model, o.nosort) {
                print_service(out, model, view, s, o);
            }
        }
        ListWhat::Service(svc) => {
            let s = find(model, svc)?;
            title(out, o);
            print_service(out, model, view, s, o);
        }
        ListWhat::Timeout => {
            let (tcp, fin, udp) = model.timeouts.triple();
            let _ = writeln!(out, "Timeout (tcp tcpfin udp): {tcp} {fin} {udp}");
        }
        // No connection-sync daemon runs in xvs: ipvsadm prints nothing then.
        ListWhat::Daemon => {}
        ListWhat::Connections => {
            out.push_str("IPVS connection entries\n");
            if o.persistent_conn {
                let _ = writeln!(
                    out,
                    "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
                    "state", "source", "virtual", "destination", "pe name"
                );
            } else {
                let _ = writeln!(
                    out,
                    "pro expire {:<11} {:<18} {:<18} destination",
                    "state", "source", "virtual"
                );
            }
            for c in view.conns {
                let expire = format!("{:02}:{:02}", c.expire / 60, c.expire % 60);
                let _ = writeln!(
                    out,
                    "{:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
                    c.proto.name(),
                    c.state,
                    fmt_addr_port(c.client.ip(), c.client.port()),
                    fmt_addr_port(c.vip.ip(), c.vip.port()),
                    fmt_addr_port(c.dest.ip(), c.dest.port())
                );
            }
        }
    }
    Ok(())
}

/// DPVS's `--get-laddr` table: one block per service that has local
/// addresses (or the one asked for).
fn get_laddr(
    out: &mut String,
    model: &Model,
    view: &View<'_>,
    svc: Option<&SvcAddr>,
) -> Result<(), CmdError> {
    let services: Vec<&Service> = match svc {
        Some(s) => vec![find(model, s)?],
        None => sorted(model, false)
            .into_iter()
            .filter(|s| !s.laddrs.is_empty())
            .collect(),
    };
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:<20} {:<10} {:<10}",
        "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"
    );
    for s in services {
        let vname = match &s.key {
            ServiceKey::Addr { addr, port, .. } => fmt_addr_port(*addr, *port),
            ServiceKey::Group(id) => format!("FWM {id}"),
        };
        let _ = writeln!(out, "{vname:<20} {:<8} ", s.laddrs.len());
        for l in &s.laddrs {
            let f = view
                .stats
                .laddrs
                .get(&(s.key.clone(), *l))
                .copied()
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "",
                "",
                l.to_string(),
                f.conflicts,
                f.conns
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u64, exact: bool) -> String {
        let mut s = String::new();
        largenum(&mut s, i, exact);
        s
    }

    #[test]
    fn largenum_is_print_largenum() {
        assert_eq!(n(0, false), "        0");
        assert_eq!(n(99_999_999, false), " 99999999");
        assert_eq!(n(100_000_000, false), "  100000K");
        assert_eq!(n(999_999_999, false), "  999999K");
        assert_eq!(n(1_000_000_000, false), "    1000M");
        assert_eq!(n(99_999_999_999, false), "   99999M");
        assert_eq!(n(100_000_000_000, false), "     100G");
        assert_eq!(n(100_000_000_000_000, false), "     100T");
        assert_eq!(n(u64::MAX, false), "18446744T");
        assert_eq!(n(12, true), "       12");
        assert_eq!(n(12_345_678, true), " 12345678");
        assert_eq!(n(123_456_789, true), " 123456789");
        assert_eq!(n(u64::MAX, true), " 18446744073709551615");
    }

    #[test]
    fn conn_header_with_persistent_conn_and_empty_daemon_list() {
        let m = Model::default();
        let stats = StatsView::default();
        let view = View {
            stats: &stats,
            conns: &[],
            table_size: TABLE_SIZE,
        };
        let opts = ListOpts {
            what: ListWhat::Connections,
            persistent_conn: true,
            ..Default::default()
        };
        assert_eq!(
            render(&Command::List(opts), &m, &view).unwrap(),
            "IPVS connection entries\n\
             pro expire state       source             virtual            destination        pe name          pe_data\n"
        );
        let opts = ListOpts {
            what: ListWhat::Daemon,
            ..Default::default()
        };
        assert_eq!(render(&Command::List(opts), &m, &view).unwrap(), "");
        let e = render(&Command::Clear, &m, &view).unwrap_err();
        assert!(matches!(e, CmdError::NotHere(_)));
    }
}
