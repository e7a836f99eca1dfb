//! NAT — masquerading (`ipvsadm -m`, IPVS `ip_vs_nat_xmit` and the SNAT of
//! replies in `ip_vs_out`): VIP:vport ↔ RIP:rport; the real server's
//! default route points at the director so replies come back through it.

use super::{rewrite_to_hop, routable, trim};
use crate::ipvs::netif::Links;
use crate::ipvs::conn::Conn;
use crate::stats::DropReason;
use crate::wire::{ip, Frame, Ip, Meta};

/// Client → real server: destination becomes RIP:rport.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline(always)]
pub fn xmit_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    rewrite_to_hop(fr, m, &c.dest_hop, links, |f, m| ip::translate(f, m, None, Some((c.daddr, c.dport))))
}

/// Real server → client: source becomes VIP:vport.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline(always)]
pub fn xmit_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    rewrite_to_hop(fr, m, &c.client_hop, links, |f, m| ip::translate(f, m, Some((c.vaddr, c.vport)), None))
}

/// A later fragment (no L4 header), client → real server: destination
/// becomes RIP; the port lives in the first fragment.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[cold]
pub fn frag_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    rewrite_to_hop(fr, m, &c.dest_hop, links, |f, m| ip::translate_l3(f, m, None, Some(c.daddr)))
}

/// A later fragment, real server → client: source becomes VIP.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[cold]
pub fn frag_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    rewrite_to_hop(fr, m, &c.client_hop, links, |f, m| ip::translate_l3(f, m, Some(c.vaddr), None))
}
