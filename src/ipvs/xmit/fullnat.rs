//! FULLNAT (DPVS): both ends rewritten. Client → real server becomes
//! LIP:lport → RIP:rport, so the real server needs no route back through
//! the director and may sit in another network; replies to LIP:lport
//! become VIP:vport → CIP:cport. The real server sees the local address
//! as its peer; the client's address and port reach it in the TOA option
//! ([`crate::wire::toa`]) of the client's handshake ACK.

use super::{routable, to_hop, trim};
use crate::ipvs::netif::Netif;
use crate::ipvs::conn::Conn;
use crate::stats::DropReason;
use crate::wire::toa::{self, Skip};
use crate::wire::{ip, Frame, Ip, Meta};

/// Client → real server; with `toa`, the client's address and port are
/// added in a TOA option. Returns the egress port and, when `toa` was
/// asked for, whether the option went in.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[inline]
pub fn xmit_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif], toa: bool) -> Result<(u8, Option<Result<(), Skip>>), DropReason> {
    trim(fr, m);
    routable(m)?;
    ip::translate(fr.data_mut(), m, Some((c.laddr, c.lport)), Some((c.daddr, c.dport)));
    let added = if toa { Some(add_toa(fr, m, c, ports)) } else { None };
    to_hop(fr.data_mut(), &c.dest_hop, ports).map(|p| (p, added))
}

#[cold]
#[inline(never)]
fn add_toa<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<(), Skip> {
    let mtu = ports.get(c.dest_hop.port as usize).map_or(0, |p| p.mtu);
    toa::insert(fr, m, c.caddr, c.cport, mtu)
}

/// Real server → client.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[inline]
pub fn xmit_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate(f, m, Some((c.vaddr, c.vport)), Some((c.caddr, c.cport)));
    to_hop(f, &c.client_hop, ports)
}

/// A later fragment (no L4 header), client → real server: LIP → RIP.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[cold]
pub fn frag_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate_l3(f, m, Some(c.laddr), Some(c.daddr));
    to_hop(f, &c.dest_hop, ports)
}

/// A later fragment, real server → client: VIP → CIP.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[cold]
pub fn frag_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Netif]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate_l3(f, m, Some(c.vaddr), Some(c.caddr));
    to_hop(f, &c.client_hop, ports)
}
