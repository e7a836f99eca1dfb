//! NAT — masquerading (`ipvsadm -m`, IPVS `ip_vs_nat_xmit` and the SNAT of
//! replies in `ip_vs_out`): VIP:vport ↔ RIP:rport; the real server's
//! default route points at the director so replies come back through it.

use super::{routable, to_hop, trim};
use crate::ipvs::netif::Netif;
use crate::ipvs::conn::Conn;
use crate::stats::DropReason;
use crate::wire::{ip, Frame, Ip, Meta};

/// Client → real server: destination becomes RIP:rport.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[inline]
pub fn xmit_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate(f, m, None, Some((c.daddr, c.dport)));
    to_hop(f, &c.dest_hop, ports)
}

/// Real server → client: source becomes VIP:vport.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[inline]
pub fn xmit_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate(f, m, Some((c.vaddr, c.vport)), None);
    to_hop(f, &c.client_hop, ports)
}

/// A later fragment (no L4 header), client → real server: destination
/// becomes RIP; the port lives in the first fragment.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[cold]
pub fn frag_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate_l3(f, m, None, Some(c.daddr));
    to_hop(f, &c.dest_hop, ports)
}

/// A later fragment, real server → client: source becomes VIP.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[cold]
pub fn frag_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate_l3(f, m, Some(c.vaddr), None);
    to_hop(f, &c.client_hop, ports)
}
