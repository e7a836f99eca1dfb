//! Transmit functions, one module per forwarding method, as IPVS's
//! `ip_vs_xmit.c` (and DPVS's FULLNAT):
//!
//! | method  | in (client → real server)                | out (reply → client)              |
//! |---------|------------------------------------------|-----------------------------------|
//! | DR      | dst MAC = real server, src MAC = ours    | — (bypasses the director)         |
//! | TUN     | outer IP header in the headroom (IPIP / IPv6-in-IPv6) | —                    |
//! | NAT     | dst VIP:vport → RIP:rport, TTL − 1       | src RIP:rport → VIP:vport, TTL − 1 |
//! | FULLNAT | src → LIP:lport, dst → RIP:rport, TTL − 1 | src → VIP:vport, dst → CIP:cport |
//!
//! Every function rewrites the frame in place (checksums follow by
//! RFC 1624), sets the MACs for the next hop and returns the egress port,
//! or a [`DropReason`]. The method is bound to the connection at creation,
//! so the worker's transmit is a single `match`.

pub mod dr;
pub mod fullnat;
pub mod icmp;
pub mod nat;
pub mod tun;

use crate::ipvs::dest::Hop;
use crate::ipvs::netif::Netif;
use crate::stats::DropReason;
use crate::wire::{ip, set_macs, Frame, Meta};

/// Sets the MACs towards `hop` (source = our MAC on its port).
///
/// # Errors
/// [`DropReason::NoNeighbour`] when the hop's port does not exist.
#[inline]
pub fn to_hop(f: &mut [u8], hop: &Hop, ports: &[Netif]) -> Result<u8, DropReason> {
    let p = ports.get(hop.port as usize).ok_or(DropReason::NoNeighbour)?;
    set_macs(f, &hop.mac, &p.mac);
    Ok(hop.port)
}

/// Decrements TTL / hop limit as a router does before forwarding.
///
/// # Errors
/// [`DropReason::TtlExceeded`] when it is 1 or 0.
#[inline]
pub fn route(f: &mut [u8], m: &mut Meta) -> Result<(), DropReason> {
    routable(m)?;
    ip::dec_ttl(f, m);
    Ok(())
}

/// The check of [`route`] alone, for paths that decrement the TTL within
/// their rewrite ([`ip::translate`]).
///
/// # Errors
/// [`DropReason::TtlExceeded`] when it is 1 or 0.
#[inline]
pub fn routable(m: &Meta) -> Result<(), DropReason> {
    if m.ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    Ok(())
}

/// Drops Ethernet padding so the frame ends with its IP datagram.
#[inline]
pub fn trim(fr: &mut Frame<'_>, m: &Meta) {
    fr.truncate(m.end as usize);
}
