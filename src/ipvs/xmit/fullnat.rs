//! FULLNAT (DPVS): both ends rewritten. Client → real server becomes
//! LIP:lport → RIP:rport, so the real server needs no route back through
//! the director and may sit in another network; replies to LIP:lport
//! become VIP:vport → CIP:cport. The real server sees the local address
//! as its peer; the client's address and port reach it in the TOA option
//! ([`crate::wire::toa`]) of the client's handshake ACK.

use super::{rewrite_to_hop, routable, to_hop, trim};
use crate::ipvs::netif::Links;
use crate::ipvs::conn::Conn;
use crate::stats::{Dir, DropReason};
use crate::wire::toa::{self, Skip};
use crate::wire::{ip, Frame, Ip, Meta};
use crate::wire::pick;

/// Either direction: client → real server (`Dir::In`) becomes
/// LIP:lport → RIP:rport, real server → client (`Dir::Out`) VIP:vport →
/// CIP:cport. With `toa` (a client packet only), the client's address and
/// port are added in a TOA option. Returns the egress port and, when
/// `toa` was asked for, whether the option went in.
///
/// The direction picks the addresses, the ports and the hop as one
/// choice, not a branch for each (as [`super::nat::xmit`]): requests and
/// replies come in no order a branch predictor could learn.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline(always)]
pub fn xmit<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links, dir: Dir, toa: bool) -> Result<(u8, Option<Result<(), Skip>>), DropReason> {
    if toa {
        debug_assert!(dir == Dir::In, "TOA on a reply");
        return xmit_in(fr, m, c, links, true);
    }
    trim(fr, m);
    routable(m)?;
    let out = dir == Dir::Out;
    let (src, dst) = pick(out, ((c.vaddr, c.vport), (c.caddr, c.cport)), ((c.laddr, c.lport), (c.daddr, c.dport)));
    let hop = pick(out, &c.client_hop, &c.dest_hop);
    rewrite_to_hop(fr, m, hop, links, #[inline(always)] |f, m| ip::translate(f, m, Some(src), Some(dst))).map(|p| (p, None))
}

/// Client → real server; with `toa`, the client's address and port are
/// added in a TOA option. Returns the egress port and, when `toa` was
/// asked for, whether the option went in.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline]
pub fn xmit_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links, toa: bool) -> Result<(u8, Option<Result<(), Skip>>), DropReason> {
    if !toa {
        return xmit(fr, m, c, links, Dir::In, false);
    }
    trim(fr, m);
    routable(m)?;
    ip::translate(fr.data_mut(), m, Some((c.laddr, c.lport)), Some((c.daddr, c.dport)));
    let added = add_toa(fr, m, c, links);
    to_hop(fr, m, &c.dest_hop, links).map(|p| (p, Some(added)))
}

#[cold]
#[inline(never)]
fn add_toa<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<(), Skip> {
    let mtu = links.get(c.dest_hop.link as usize).map_or(0, |l| l.mtu);
    toa::insert(fr, m, c.caddr, c.cport, mtu)
}

/// Real server → client.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[inline]
pub fn xmit_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    xmit(fr, m, c, links, Dir::Out, false).map(|(p, _)| p)
}

/// A later fragment (no L4 header), client → real server: LIP → RIP.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[cold]
pub fn frag_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    rewrite_to_hop(fr, m, &c.dest_hop, links, |f, m| ip::translate_l3(f, m, Some(c.laddr), Some(c.daddr)))
}

/// A later fragment, real server → client: VIP → CIP.
///
/// # Errors
/// TTL exceeded, no such egress link, no headroom for a VLAN tag.
#[cold]
pub fn frag_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    rewrite_to_hop(fr, m, &c.client_hop, links, |f, m| ip::translate_l3(f, m, Some(c.vaddr), Some(c.caddr)))
}
