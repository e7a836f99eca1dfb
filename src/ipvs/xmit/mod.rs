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
//! RFC 1624), sets the MACs and the VLAN tag for the next hop
//! ([`to_hop`]) and returns the egress port,
//! or a [`DropReason`]. The method is bound to the connection at creation,
//! so the worker's transmit is a single `match`.

pub mod dr;
pub mod fullnat;
pub mod icmp;
pub mod nat;
pub mod tun;

use crate::ipvs::dest::Hop;
use crate::ipvs::netif::Link;
use crate::stats::DropReason;
use crate::wire::{ip, set_macs, set_vlan, Frame, Meta};

/// Sends the frame towards `hop`: the hop's link decides the 802.1Q tag
/// (put in, changed or taken out — egress follows the route, not the
/// ingress), the MACs are the neighbour's and ours on that link. Returns
/// the link's port.
///
/// # Errors
/// [`DropReason::NoNeighbour`] when the hop's link does not exist;
/// [`DropReason::NoHeadroom`] when a tag does not fit.
#[inline]
pub fn to_hop(fr: &mut Frame<'_>, m: &mut Meta, hop: &Hop, links: &[Link]) -> Result<u8, DropReason> {
    let l = links.get(hop.link as usize).ok_or(DropReason::NoNeighbour)?;
    // One test for the common untagged-in, untagged-out frame.
    if m.vlan || l.vid != 0 {
        set_vlan(fr, m, l.vid)?;
    }
    set_macs(fr.data_mut(), &hop.mac, &l.mac);
    Ok(l.port)
}

/// Rewrites the frame with `edit`, then sends it towards `hop` as
/// [`to_hop`] does — for the common frame (no tag to put in, change or
/// take out) in one pass over the same slice.
///
/// # Errors
/// As [`to_hop`] (checked before `edit` runs).
#[inline(always)]
pub fn rewrite_to_hop(
    fr: &mut Frame<'_>,
    m: &mut Meta,
    hop: &Hop,
    links: &[Link],
    edit: impl FnOnce(&mut [u8], &mut Meta),
) -> Result<u8, DropReason> {
    let l = links.get(hop.link as usize).ok_or(DropReason::NoNeighbour)?;
    let tagged = m.vlan || l.vid != 0;
    let f = fr.data_mut();
    edit(f, m);
    if !tagged {
        set_macs(f, &hop.mac, &l.mac);
        return Ok(l.port);
    }
    to_hop(fr, m, hop, links)
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
