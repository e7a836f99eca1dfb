//! FULLNAT (DPVS): both ends rewritten. Client → real server becomes
//! LIP:lport → RIP:rport, so the real server needs no route back through
//! the director and may sit in another network; replies to LIP:lport
//! become VIP:vport → CIP:cport. The real server sees the local address,
//! not the client's (carrying the client address, e.g. by the TOA option,
//! is not done yet).

use super::{routable, to_hop, trim};
use crate::ctl::snapshot::Port;
use crate::ipvs::conn::Conn;
use crate::stats::DropReason;
use crate::wire::{ip, Frame, Ip, Meta};

/// Client → real server.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[inline]
pub fn xmit_in<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Port]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate(f, m, Some((c.laddr, c.lport)), Some((c.daddr, c.dport)));
    to_hop(f, &c.dest_hop, ports)
}

/// Real server → client.
///
/// # Errors
/// TTL exceeded, or no such egress port.
#[inline]
pub fn xmit_out<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, ports: &[Port]) -> Result<u8, DropReason> {
    trim(fr, m);
    routable(m)?;
    let f = fr.data_mut();
    ip::translate(f, m, Some((c.vaddr, c.vport)), Some((c.caddr, c.cport)));
    to_hop(f, &c.client_hop, ports)
}
