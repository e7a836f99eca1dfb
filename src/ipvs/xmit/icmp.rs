//! Relaying ICMP errors about tracked connections (IPVS `ip_vs_in_icmp`,
//! `ip_vs_out_icmp`): the quoted packet and the outer header are
//! translated the way the connection translates its packets, then the
//! error is sent on like one of them. Without this, path MTU discovery
//! through a NAT/FULLNAT director breaks.
//!
//! The quoted packet is one that went through the director, so the
//! connection is found by the *reversed* quoted tuple: an error about a
//! packet we sent to the real server matches the out key (it travels back
//! to the client: [`relay_out`]); an error about a reply we sent to the
//! client matches the in key (it travels on to the real server:
//! [`relay_in`]).

use super::tun::{self, TunError};
use super::{route, to_hop, trim};
use crate::ipvs::netif::Links;
use crate::ipvs::conn::Conn;
use crate::ipvs::FwdMethod;
use crate::stats::DropReason;
use crate::wire::icmp::{refresh_checksum, Quoted};
use crate::wire::{ip, Frame, Ip, Meta};

/// An error about a packet sent towards the real server, travelling back
/// to the client (NAT, FULLNAT).
///
/// # Errors
/// TTL exceeded, unsupported method (DR/TUN have no reply path), no port.
pub fn relay_out<A: Ip>(
    fr: &mut Frame<'_>,
    m: &mut Meta,
    q: &mut Quoted,
    c: &Conn<A>,
    links: &Links,
) -> Result<u8, DropReason> {
    trim(fr, m);
    let f = fr.data_mut();
    route(f, m)?;
    match c.fwd {
        FwdMethod::Nat => {
            // quoted: C:cp -> R:rp  =>  C:cp -> V:vp
            q.set_addr(f, false, c.vaddr);
            q.set_port(f, false, c.vport);
        }
        FwdMethod::FullNat => {
            // quoted: L:lp -> R:rp  =>  C:cp -> V:vp ; outer dst L -> C
            q.set_addr(f, true, c.caddr);
            q.set_port(f, true, c.cport);
            q.set_addr(f, false, c.vaddr);
            q.set_port(f, false, c.vport);
            ip::set_dst(f, m, c.caddr);
        }
        FwdMethod::Dr | FwdMethod::Tun => return Err(DropReason::BadIcmp),
    }
    ip::set_src(f, m, c.vaddr);
    refresh_checksum(f, m);
    to_hop(fr, m, &c.client_hop, links)
}

/// An error about a reply sent to the client, travelling on to the real
/// server (every method: DR forwards it as is, TUN encapsulates it).
///
/// # Errors
/// TTL exceeded, encapsulation failures, no port.
pub fn relay_in<A: Ip>(
    fr: &mut Frame<'_>,
    m: &mut Meta,
    q: &mut Quoted,
    c: &Conn<A>,
    links: &Links,
    ip_id: &mut tun::IpIds,
) -> Result<u8, TunError> {
    match c.fwd {
        FwdMethod::Dr => {
            trim(fr, m);
            return Ok(to_hop(fr, m, &c.dest_hop, links)?);
        }
        FwdMethod::Tun => return tun::xmit(fr, m, c, links, ip_id),
        _ => {}
    }
    trim(fr, m);
    let f = fr.data_mut();
    route(f, m)?;
    // quoted: V:vp -> C:cp
    q.set_addr(f, true, c.daddr);
    q.set_port(f, true, c.dport);
    if c.fwd == FwdMethod::FullNat {
        // => R:rp -> L:lp ; outer src C -> L
        q.set_addr(f, false, c.laddr);
        q.set_port(f, false, c.lport);
        ip::set_src(f, m, c.laddr);
    }
    ip::set_dst(f, m, c.daddr);
    refresh_checksum(f, m);
    Ok(to_hop(fr, m, &c.dest_hop, links)?)
}
