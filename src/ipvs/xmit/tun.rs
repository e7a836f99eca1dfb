//! TUN — IP-in-IP (`ipvsadm -i`, IPVS `ip_vs_tunnel_xmit`): an outer IP
//! header addressed to the real server goes in front of the untouched
//! client packet, written into the frame's headroom (no copy). The real
//! server decapsulates and, holding the VIP locally, answers the client
//! directly. IPv4 services use IPIP (protocol 4), IPv6 services
//! IPv6-in-IPv6 (next header 41). As in IPVS, the outer header copies the
//! inner TTL / hop limit, TOS / traffic class and DF.
//!
//! The outer header makes the packet longer: one that no longer fits the
//! egress MTU and may not be fragmented (IPv4 DF, or any IPv6 packet) is
//! answered with ICMP fragmentation-needed / packet-too-big carrying the
//! MTU the client must use (the caller sends it); one without DF is
//! dropped, counted (xvs does not fragment).

use super::{tagged, to_link};
use crate::ipvs::netif::Link;
use crate::ipvs::conn::Conn;
use crate::stats::DropReason;
use crate::wire::checksum::checksum;
use crate::wire::{proto, put16, set_macs, Frame, Ip, Meta, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Why a packet could not be encapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunError {
    Drop(DropReason),
    /// Too big for the egress MTU with DF set: tell the client to use `mtu`.
    NeedFrag { mtu: u16 },
}

impl From<DropReason> for TunError {
    fn from(r: DropReason) -> Self {
        TunError::Drop(r)
    }
}

/// The IPv4 identifications one worker gives the outer headers it makes:
/// worker `w` of `n` uses only ids `≡ w (mod n)`, so two workers never
/// give the same id to packets for the same real server at the same time
/// (a reassembler would mix their fragments).
#[derive(Clone, Copy, Debug)]
pub struct IpIds {
    worker: u32,
    workers: u32,
    /// Ids per worker (`65536 / workers`).
    per: u32,
    next: u32,
}

impl IpIds {
    /// Worker `worker`'s ids among `workers`.
    pub fn new(worker: u16, workers: u16) -> IpIds {
        let workers = workers.max(1) as u32;
        IpIds { worker: worker as u32 % workers, workers, per: 65536 / workers, next: 0 }
    }

    /// The next id.
    #[inline]
    pub fn take(&mut self) -> u16 {
        self.next = if self.next + 1 >= self.per { 0 } else { self.next + 1 };
        // < per * workers <= 65536
        (self.next * self.workers + self.worker) as u16
    }
}

/// Encapsulates towards the connection's real server. `ip_id` is the
/// worker's IPv4 identifications (used when the inner packet may be
/// fragmented, so the outer may be too).
///
/// # Errors
/// [`TunError::NeedFrag`] when the result would exceed the egress MTU and
/// fragmentation is not allowed; a drop for no headroom, no tunnel source
/// address on the egress link, a packet too big without DF, no headroom
/// for a VLAN tag.
pub fn xmit<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &[Link], ip_id: &mut IpIds) -> Result<u8, TunError> {
    let link = links.get(c.dest_hop.link as usize).ok_or(DropReason::NoNeighbour)?;
    let outer = A::HLEN;
    let inner_len = m.ip_len();
    if inner_len + outer > link.mtu as usize {
        return if m.df {
            Err(TunError::NeedFrag { mtu: link.mtu - outer as u16 })
        } else {
            Err(DropReason::TooBig.into())
        };
    }
    let src: A = match (A::V6, link.v4, link.v6) {
        (false, Some(a), _) => A::from_ip(a.into()),
        (true, _, Some(a)) => A::from_ip(a.into()),
        _ => None,
    }
    .ok_or(DropReason::NoNeighbour)?;
    let l2 = m.l3 as usize;
    fr.truncate(m.end as usize);
    if !fr.push_front(outer) {
        return Err(DropReason::NoHeadroom.into());
    }
    let f = fr.data_mut();
    // Move the Ethernet (+VLAN) header to the new front.
    f.copy_within(outer..outer + l2, 0);
    let inner = l2 + outer;
    let (tos, inner_proto) = if m.v6 {
        (((f[inner] & 0x0f) << 4) | (f[inner + 1] >> 4), proto::IPV6)
    } else {
        (f[inner + 1], proto::IPIP)
    };
    if A::V6 {
        put16(f, l2 - 2, ETHERTYPE_IPV6);
        let h = &mut f[l2..l2 + 40];
        h[0] = 0x60 | (tos >> 4);
        h[1] = tos << 4;
        h[2] = 0;
        h[3] = 0;
        h[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
        h[6] = inner_proto;
        h[7] = m.ttl;
        h[8..24].copy_from_slice(src.bytes().as_ref());
        h[24..40].copy_from_slice(c.daddr.bytes().as_ref());
    } else {
        put16(f, l2 - 2, ETHERTYPE_IPV4);
        let id = if m.df {
            0
        } else {
            ip_id.take()
        };
        let h = &mut f[l2..l2 + 20];
        h[0] = 0x45;
        h[1] = tos;
        h[2..4].copy_from_slice(&((inner_len + 20) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[6] = if m.df { 0x40 } else { 0 };
        h[7] = 0;
        h[8] = m.ttl;
        h[9] = inner_proto;
        h[10] = 0;
        h[11] = 0;
        h[12..16].copy_from_slice(src.bytes().as_ref());
        h[16..20].copy_from_slice(c.daddr.bytes().as_ref());
        let cs = checksum(h);
        h[10..12].copy_from_slice(&cs.to_be_bytes());
    }
    // The frame now starts `outer` bytes earlier; offsets in `m` shift.
    m.l3 = l2 as u16;
    m.l4 = (inner) as u16;
    m.end = (inner + inner_len) as u16;
    m.proto = inner_proto;
    // The copied Ethernet header still carries the ingress tag, if any:
    // to_link gives the frame the egress link's. The common frame (no tag
    // in or out) takes its MACs on the slice at hand, from the link
    // looked up above.
    if !tagged(m, link) {
        set_macs(f, &c.dest_hop.mac, &link.mac);
        return Ok(link.port);
    }
    Ok(to_link(fr, m, &c.dest_hop, link)?)
}

#[cfg(test)]
mod tests {
    use super::IpIds;
    use std::collections::HashSet;

    /// Workers' outer ids never meet, and each worker goes through all of
    /// its share before it repeats one.
    #[test]
    fn workers_outer_ids_are_disjoint() {
        for n in [1u16, 2, 3, 7, 64] {
            let mut seen = HashSet::new();
            for w in 0..n {
                let mut ids = IpIds::new(w, n);
                let per = 65536 / n as usize;
                let mine: Vec<u16> = (0..per).map(|_| ids.take()).collect();
                assert!(mine.iter().all(|id| id % n == w), "worker {w} of {n}");
                assert!(mine.iter().all(|&id| seen.insert(id)), "worker {w} of {n} repeats or meets another");
                assert_eq!(ids.take(), mine[0], "then it starts again");
            }
        }
    }
}
