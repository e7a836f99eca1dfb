//! The connection as sync moves it: [`SyncConn`], a small `Copy` value
//! that a worker pushes into its event queue (no allocation), that the
//! sync thread turns into a wire [`Record`], and that a received record
//! becomes before it goes into the owning worker's inbox.
//!
//! A persistence template travels as IPVS sends one: the TEMPLATE flag,
//! client port 0, the service's virtual port (0 for a port-0 service), and
//! for a service group (IPVS's firewall-mark service) protocol 0 and the
//! group id as the firewall mark. In a worker's table its key is
//! [`crate::worker::template_key`]'s.

use super::wire::{flags as f, Record, XvsOpt};
use crate::ipvs::conn::{flags as cf, Conn};
use crate::ipvs::seqadj::SeqAdj;
use crate::ipvs::proto::TcpState;
use crate::ipvs::FwdMethod;
use crate::wire::Ip;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Protocol byte of a service group's template key.
pub const GROUP_TEMPLATE: u8 = 0xc0;
/// High bit of a template key's protocol byte.
pub const TEMPLATE_BIT: u8 = 0x80;

/// One connection or template, as synced. Addresses are of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncConn {
    /// Client (a template: the masked client).
    pub caddr: IpAddr,
    /// Virtual address (a group template: unspecified).
    pub vaddr: IpAddr,
    /// Real server.
    pub daddr: IpAddr,
    /// FULLNAT local address (unspecified otherwise).
    pub laddr: IpAddr,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub lport: u16,
    /// IP protocol; for a template, its key's protocol byte (0x80 | IP
    /// protocol, or [`GROUP_TEMPLATE`]).
    pub proto: u8,
    /// `TcpState as u8` for TCP, 0 otherwise.
    pub state: u8,
    pub fwd: FwdMethod,
    pub template: bool,
    /// Counted inactive (not ESTABLISHED, or UDP).
    pub inactive: bool,
    /// Seconds the receiver keeps it without news.
    pub timeout: u32,
    /// Its sequence adjustment (`ipvs::seqadj`), if it has one.
    pub seqadj: Option<SeqAdj>,
}

impl SyncConn {
    /// From a worker's table entry, with its timeout in seconds (and no
    /// sequence adjustment: the worker adds its entry).
    #[inline]
    pub fn of<A: Ip>(c: &Conn<A>, timeout: u32) -> SyncConn {
        SyncConn {
            caddr: c.caddr.into(),
            vaddr: c.vaddr.into(),
            daddr: c.daddr.into(),
            laddr: c.laddr.into(),
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            lport: c.lport,
            proto: c.proto,
            state: c.state,
            fwd: c.fwd,
            template: c.is_template(),
            inactive: c.flags & cf::INACTIVE != 0,
            timeout,
            seqadj: None,
        }
    }

    /// A service group's template: its group id (from its key's ports).
    pub fn group(&self) -> Option<u32> {
        (self.template && self.proto == GROUP_TEMPLATE).then_some(((self.cport as u32) << 16) | self.vport as u32)
    }

    /// The wire record.
    pub fn to_record(&self) -> Record {
        let mut flags = match self.fwd {
            FwdMethod::Nat => f::MASQ,
            FwdMethod::Tun => f::TUNNEL | f::NOOUTPUT,
            FwdMethod::Dr => f::DROUTE | f::NOOUTPUT,
            FwdMethod::FullNat => f::FULLNAT,
        };
        if self.inactive && !self.template {
            flags |= f::INACTIVE;
        }
        let (proto, vaddr, cport, vport, fwmark) = match self.group() {
            Some(id) => {
                flags |= f::TEMPLATE;
                (0, unspecified(self.caddr), 0, 0, id)
            }
            None if self.template => {
                flags |= f::TEMPLATE;
                (self.proto & !TEMPLATE_BIT, self.vaddr, 0, self.vport, 0)
            }
            None => (self.proto, self.vaddr, self.cport, self.vport, 0),
        };
        let local = (self.fwd == FwdMethod::FullNat && !self.template).then_some((self.laddr, self.lport));
        let seqadj = self.seqadj.filter(|_| !self.template);
        let xvs = (local.is_some() || seqadj.is_some()).then_some(XvsOpt { local, seqadj });
        Record {
            proto,
            flags,
            state: if self.template { 0 } else { self.state as u16 },
            caddr: self.caddr,
            vaddr,
            daddr: self.daddr,
            cport,
            vport,
            dport: self.dport,
            fwmark,
            timeout: self.timeout,
            seq: None,
            pe_data: None,
            pe_name: None,
            xvs,
        }
    }

    /// From a received record: `None` for what xvs cannot hold (a
    /// persistence engine's data, which no xvs service uses). The
    /// forwarding method is a hint: the receiver takes its real server's.
    pub fn from_record(r: &Record) -> Option<SyncConn> {
        if r.pe_data.is_some() || r.pe_name.is_some() {
            return None;
        }
        let template = r.flags & f::TEMPLATE != 0;
        // A template's key carries its protocol under TEMPLATE_BIT: only
        // TCP's and UDP's (those of xvs's services) are told from a group's
        // (0x80 | 64 is GROUP_TEMPLATE).
        if template && !matches!(r.proto, 0 | 6 | 17) {
            return None;
        }
        let fwd = match r.flags & f::FWD_MASK {
            f::MASQ => FwdMethod::Nat,
            f::TUNNEL => FwdMethod::Tun,
            f::DROUTE => FwdMethod::Dr,
            f::FULLNAT => FwdMethod::FullNat,
            _ => FwdMethod::Nat,
        };
        // A local address only for a FULLNAT connection (xvs writes it for
        // no other): on any other it would pick the owning worker by a
        // local port the connection does not hold (`sync_owner`).
        let local = r
            .xvs
            .and_then(|x| x.local)
            .filter(|(a, _)| a.is_ipv6() == r.caddr.is_ipv6() && fwd == FwdMethod::FullNat && !template);
        let (laddr, lport) = local.unwrap_or((unspecified(r.caddr), 0));
        let (proto, vaddr, cport, vport) = if template && r.proto == 0 && r.fwmark != 0 {
            (GROUP_TEMPLATE, unspecified(r.caddr), (r.fwmark >> 16) as u16, r.fwmark as u16)
        } else if template {
            (TEMPLATE_BIT | r.proto, r.vaddr, 0, r.vport)
        } else {
            (r.proto, r.vaddr, r.cport, r.vport)
        };
        let state = if template { 0 } else { r.state.min(u8::MAX as u16) as u8 };
        let inactive = !template && (r.flags & f::INACTIVE != 0 || (proto == 6 && state != TcpState::Established as u8));
        Some(SyncConn {
            caddr: r.caddr,
            vaddr,
            daddr: r.daddr,
            laddr,
            cport,
            vport,
            dport: r.dport,
            lport,
            proto,
            state,
            fwd,
            template,
            inactive,
            timeout: r.timeout,
            // (Checked by the decoder: `wire::seqadj_fits`.)
            seqadj: r.xvs.and_then(|x| x.seqadj).filter(|_| !template),
        })
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn conn() -> SyncConn {
        SyncConn {
            caddr: ip("192.0.2.1"),
            vaddr: ip("10.0.0.100"),
            daddr: ip("10.0.1.11"),
            laddr: ip("0.0.0.0"),
            cport: 40000,
            vport: 80,
            dport: 8080,
            lport: 0,
            proto: 6,
            state: TcpState::Established as u8,
            fwd: FwdMethod::Nat,
            template: false,
            inactive: false,
            timeout: 900,
            seqadj: None,
        }
    }

    #[test]
    fn every_kind_survives_the_wire() {
        let mut all = vec![conn()];
        for fwd in FwdMethod::ALL {
            let mut c = conn();
            c.fwd = fwd;
            if fwd == FwdMethod::FullNat {
                c.laddr = ip("10.0.1.200");
                c.lport = 1027;
            }
            all.push(c);
        }
        let mut udp = conn();
        udp.proto = 17;
        udp.state = 0;
        udp.inactive = true;
        all.push(udp);
        let mut syn = conn();
        syn.state = TcpState::SynRecv as u8;
        syn.inactive = true;
        all.push(syn);
        // Sequence adjustments, NAT (the xvs option without a local
        // address) and FULLNAT (with one).
        let mut adj = conn();
        adj.seqadj = Some(SeqAdj { start: 7, out_delta: 0, len: 42, proxy: 1, acked: true, ..SeqAdj::default() });
        all.push(adj);
        adj.fwd = FwdMethod::FullNat;
        adj.laddr = ip("10.0.1.200");
        adj.lport = 1030;
        adj.seqadj = Some(SeqAdj { start: u32::MAX, out_delta: 0x8000_0001, len: 0, proxy: 0, acked: false, syn: crate::ipvs::seqadj::SPLICED, opts: 0x5a, win_shift: -5 });
        all.push(adj);
        let mut v6 = conn();
        v6.caddr = ip("2001:db8::1");
        v6.vaddr = ip("2001:db8::100");
        v6.daddr = ip("2001:db8:1::11");
        v6.laddr = ip("2001:db8:1::200");
        v6.lport = 2000;
        v6.fwd = FwdMethod::FullNat;
        all.push(v6);
        let mut t = conn();
        t.template = true;
        t.proto = TEMPLATE_BIT | 6;
        t.caddr = ip("192.0.2.0");
        t.cport = 0;
        t.state = 0;
        t.timeout = 300;
        all.push(t);
        let mut g = t;
        g.proto = GROUP_TEMPLATE;
        g.vaddr = ip("0.0.0.0");
        g.cport = 0x0001;
        g.vport = 0x0002;
        all.push(g);
        for c in all {
            let r = c.to_record();
            assert_eq!(SyncConn::from_record(&r), Some(c), "{r:?}");
        }
        assert_eq!(g.group(), Some(0x0001_0002));
        assert_eq!(g.to_record().fwmark, 0x0001_0002);
        assert_eq!(t.to_record().proto, 6);
    }

    #[test]
    fn records_from_a_kernel_are_taken_as_ipvs_means_them() {
        // A kernel master's TCP record: no xvs option, flags as IPVS sets them.
        let mut r = conn().to_record();
        r.flags = f::DROUTE | f::NOOUTPUT | f::HASHED | f::INACTIVE;
        r.state = TcpState::FinWait as u16;
        let c = SyncConn::from_record(&r).unwrap();
        assert_eq!((c.fwd, c.inactive, c.state), (FwdMethod::Dr, true, TcpState::FinWait as u8));
        // A persistence engine's data: xvs has none.
        r.pe_name = Some(b"sip".iter().copied().collect());
        r.pe_data = Some([1u8].into_iter().collect());
        assert_eq!(SyncConn::from_record(&r), None);
        // A FULLNAT record whose local address is of the other family
        // loses it (the receiver then refuses it: no local address).
        let mut fnat = conn();
        fnat.fwd = FwdMethod::FullNat;
        fnat.lport = 5;
        fnat.laddr = ip("10.0.1.200");
        let mut r = fnat.to_record();
        r.xvs = Some(XvsOpt { local: Some((ip("2001:db8::1"), 5)), seqadj: None });
        assert_eq!(SyncConn::from_record(&r).unwrap().lport, 0);
    }

    /// Found by the `sync` fuzz target (fuzz/regressions/sync/local-*): a
    /// record that is not a FULLNAT connection but carries xvs's local
    /// address kept it, so a NAT connection was given to the worker that
    /// owns that local port rather than its client's (`sync_owner`), and it
    /// did not re-encode to itself. The option only counts on a FULLNAT
    /// connection, as xvs writes it.
    #[test]
    fn a_local_address_counts_only_on_a_fullnat_connection() {
        let local = Some(XvsOpt { local: Some((ip("10.0.1.200"), 1027)), seqadj: None });
        for (flags, template) in [(f::MASQ, false), (f::LOCALNODE | f::INACTIVE, false), (f::DROUTE, false), (f::FULLNAT | f::TEMPLATE, true)] {
            let mut r = conn().to_record();
            r.flags = flags;
            r.xvs = local;
            let c = SyncConn::from_record(&r).unwrap();
            assert_eq!((c.template, c.lport, c.laddr), (template, 0, ip("0.0.0.0")), "{r:?}");
            assert_eq!(SyncConn::from_record(&c.to_record()), Some(c), "{r:?}");
        }
        let mut r = conn().to_record();
        r.flags = f::FULLNAT;
        r.xvs = local;
        let c = SyncConn::from_record(&r).unwrap();
        assert_eq!((c.fwd, c.laddr, c.lport), (FwdMethod::FullNat, ip("10.0.1.200"), 1027));
    }

    /// Found by the `sync` fuzz target
    /// (fuzz/regressions/sync/template-of-protocol-64-*): a template of
    /// protocol 64 became a group template (0x80 | 64 is GROUP_TEMPLATE),
    /// and any protocol's template was taken. Only TCP's, UDP's and a
    /// group's are.
    #[test]
    fn a_template_of_another_protocol_is_not_taken() {
        let mut r = conn().to_record();
        r.flags = f::TEMPLATE | f::TUNNEL;
        r.cport = 0;
        for p in [1, 64, 132, 255] {
            r.proto = p;
            assert_eq!(SyncConn::from_record(&r), None, "protocol {p}");
        }
        for p in [6, 17] {
            r.proto = p;
            let c = SyncConn::from_record(&r).unwrap();
            assert_eq!((c.template, c.proto, c.group()), (true, TEMPLATE_BIT | p, None));
        }
    }
}
