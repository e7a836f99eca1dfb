//! NAT — masquerading (`ipvsadm -m`, IPVS `ip_vs_nat_xmit` and the SNAT of
//! replies in `ip_vs_out`): VIP:vport ↔ RIP:rport; the real server's
//! default route points at the director so replies come back through it.

use super::{rewrite_to_hop, routable, trim};
use crate::ipvs::netif::Links;
use crate::ipvs::conn::Conn;
use crate::stats::{Dir, DropReason};
use crate::wire::{ip, Frame, Ip, Meta};
use crate::wire::pick;

/// Either direction: client → real server (`Dir::In`), the destination
/// becomes RIP:rport; real server → client (`Dir::Out`), the source
/// becomes VIP:vport.
///
/// The direction picks the side, the address, the port and the hop as
/// one choice ([`crate::wire::pick`]), not a branch for each: requests and
/// replies come in no order a branch predictor could learn, and a
/// mispredicted branch costs more than the whole rewrite.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline(always)]
pub fn xmit<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links, dir: Dir) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let out = dir == Dir::Out;
    let (addr, port) = pick(out, (c.vaddr, c.vport), (c.daddr, c.dport));
    let hop = pick(out, &c.client_hop, &c.dest_hop);
    rewrite_to_hop(fr, m, hop, links, #[inline(always)] |f, m| ip::translate_side(f, m, out, addr, port))
}

/// Client → real server: destination becomes RIP:rport.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline]
pub fn xmit_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    xmit(fr, m, c, links, Dir::In)
}

/// Real server → client: source becomes VIP:vport.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline]
pub fn xmit_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    xmit(fr, m, c, links, Dir::Out)
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
