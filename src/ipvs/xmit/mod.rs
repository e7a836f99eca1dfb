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
use crate::ipvs::netif::{Egress, Link, Links, NO_LINK};
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
pub fn to_hop(fr: &mut Frame<'_>, m: &mut Meta, hop: &Hop, links: &Links) -> Result<u8, DropReason> {
    to_egress(fr, m, hop, links.egress(hop.link))
}

/// [`to_hop`] on the hop's link's entry `l`, already looked up by the
/// caller.
///
/// # Errors
/// As [`to_hop`].
#[inline(always)]
pub fn to_egress(fr: &mut Frame<'_>, m: &mut Meta, hop: &Hop, l: &Egress) -> Result<u8, DropReason> {
    if tagged(m, l.vid) {
        // A link that does not exist is caught here, off the common path.
        if l.vid == NO_LINK {
            return Err(DropReason::NoNeighbour);
        }
        set_vlan(fr, m, l.vid)?;
    }
    set_macs(fr.data_mut(), &hop.mac, &l.mac);
    Ok(l.port)
}

/// [`to_hop`] on the hop's link `l` (from the list), already looked up by
/// the caller.
///
/// # Errors
/// [`DropReason::NoHeadroom`] when a tag does not fit.
#[inline(always)]
pub fn to_link(fr: &mut Frame<'_>, m: &mut Meta, hop: &Hop, l: &Link) -> Result<u8, DropReason> {
    if tagged(m, l.vid) {
        set_vlan(fr, m, l.vid)?;
    }
    set_macs(fr.data_mut(), &hop.mac, &l.mac);
    Ok(l.port)
}

/// Whether the frame has a tag to put in, change or take out on its way
/// to a link with VLAN id `vid`: one test for the common untagged-in,
/// untagged-out frame (and true for [`NO_LINK`]).
#[inline(always)]
pub fn tagged(m: &Meta, vid: u16) -> bool {
    (u16::from(m.vlan) | vid) != 0
}

/// Rewrites the frame with `edit`, then sends it towards `hop` as
/// [`to_hop`] does — for the common frame (no tag to put in, change or
/// take out) in one pass over the same slice.
///
/// # Errors
/// As [`to_hop`] (checked after `edit` ran: a frame dropped for them
/// is dropped edited).
#[inline(always)]
pub fn rewrite_to_hop(
    fr: &mut Frame<'_>,
    m: &mut Meta,
    hop: &Hop,
    links: &Links,
    edit: impl FnOnce(&mut [u8], &mut Meta),
) -> Result<u8, DropReason> {
    let f = fr.data_mut();
    edit(f, m);
    // The link after the edit: nothing of it is live across `edit`'s call.
    let l = links.egress(hop.link);
    if !tagged(m, l.vid) {
        set_macs(f, &hop.mac, &l.mac);
        return Ok(l.port);
    }
    to_egress(fr, m, hop, l)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::tcp4;
    use crate::wire::{parse, ETHERTYPE_VLAN};

    const OURS: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const THEIRS: [u8; 6] = [2, 0, 0, 0, 9, 9];

    fn links() -> Links {
        let l = |port, vid, mac| Link { port, vid, mac, mtu: 1500, v4: None, v6: None };
        vec![l(0, 0, OURS), l(3, 20, [2, 0, 0, 0, 0, 2])].into()
    }

    /// Runs `send` on an untagged TCP frame with 4 bytes of headroom: the
    /// result and the bytes after it.
    fn sent(send: impl FnOnce(&mut Frame<'_>, &mut Meta) -> Result<u8, DropReason>) -> (Result<u8, DropReason>, Vec<u8>, Vec<u8>) {
        let f = tcp4([192, 0, 2, 1], 40000, [10, 0, 0, 100], 80, 0x10, b"x");
        let mut b = vec![0u8; 4 + f.len()];
        b[4..].copy_from_slice(&f);
        let mut fr = Frame::new(&mut b, 4, f.len());
        let mut m = parse(fr.data()).unwrap();
        let r = send(&mut fr, &mut m);
        (r, fr.data().to_vec(), f)
    }

    /// An untagged link takes the MACs; a tagged one the tag too; an index
    /// no link has (past the list, and `Hop::LEARN`'s) drops the frame as
    /// `NoNeighbour` with its L2 untouched — both ways of sending.
    #[test]
    fn the_hops_link_decides_tag_macs_and_port_and_a_missing_one_drops() {
        let links = links();
        for rewrite in [false, true] {
            let send = |link: u8| {
                let hop = Hop { link, mac: THEIRS };
                sent(|fr, m| if rewrite { rewrite_to_hop(fr, m, &hop, &links, |_, _| {}) } else { to_hop(fr, m, &hop, &links) })
            };
            let (r, out, f) = send(0);
            assert_eq!(r, Ok(0), "rewrite {rewrite}");
            assert_eq!((&out[..6], &out[6..12], &out[12..]), (&THEIRS[..], &OURS[..], &f[12..]), "rewrite {rewrite}");
            let (r, out, f) = send(1);
            assert_eq!(r, Ok(3), "rewrite {rewrite}");
            assert_eq!((&out[..6], &out[6..12]), (&THEIRS[..], &[2, 0, 0, 0, 0, 2][..]), "rewrite {rewrite}");
            assert_eq!((u16::from_be_bytes([out[12], out[13]]), u16::from_be_bytes([out[14], out[15]]) & 0xfff), (ETHERTYPE_VLAN, 20));
            assert_eq!(&out[16..], &f[12..], "rewrite {rewrite}");
            for link in [2, 200, Hop::LEARN.link] {
                let (r, out, f) = send(link);
                assert_eq!((r, out), (Err(DropReason::NoNeighbour), f), "rewrite {rewrite}, link {link}");
            }
        }
    }

    /// `nat::xmit` and `fullnat::xmit` (the direction picks the rewrite
    /// and the hop as one choice) send what the rewrite each direction
    /// stands for sends: client → real server to the dest's hop, the
    /// reply to the client's, NAT's one side or FULLNAT's both rewritten;
    /// same bytes, port and meta, on either link (tagged or not).
    #[test]
    fn nat_and_fullnat_xmit_rewrite_each_direction_to_its_hop() {
        use crate::ipvs::conn::Conn;
        use crate::ipvs::FwdMethod;
        use crate::stats::Dir;
        use std::net::Ipv4Addr;
        let links = links();
        for (dest_link, client_link) in [(0, 1), (1, 0), (0, 0)] {
            let c = Conn {
                lport: 5001,
                dest_hop: Hop { link: dest_link, mac: [2, 0, 0, 0, 7, 7] },
                client_hop: Hop { link: client_link, mac: THEIRS },
                ..crate::ipvs::conn::tests::conn(1, 40000, FwdMethod::Nat, 0)
            };
            // A client's segment and a real server's reply, each as the
            // direction's lookup found it.
            let frames = [
                (Dir::In, tcp4([192, 0, 2, 1], 40000, [10, 0, 0, 100], 80, 0x10, b"x")),
                (Dir::Out, tcp4([10, 0, 1, 1], 8080, [192, 0, 2, 1], 40000, 0x10, b"yy")),
                (Dir::Out, tcp4([10, 0, 1, 1], 8080, [10, 0, 0, 200], 5001, 0x10, b"zzz")),
            ];
            for (dir, f) in frames {
                type Rw = Option<(Ipv4Addr, u16)>;
                let run = |send: &dyn Fn(&mut Frame<'_>, &mut Meta) -> Result<u8, DropReason>| {
                    let mut b = vec![0u8; 4 + f.len()];
                    b[4..].copy_from_slice(&f);
                    let mut fr = Frame::new(&mut b, 4, f.len());
                    let mut m = parse(fr.data()).unwrap();
                    let r = send(&mut fr, &mut m);
                    (r, fr.data().to_vec(), m)
                };
                let want = |hop: &Hop, src: Rw, dst: Rw| run(&|fr, m| rewrite_to_hop(fr, m, hop, &links, |f, m| ip::translate(f, m, src, dst)));
                let (nat_want, full_want) = match dir {
                    Dir::In => (want(&c.dest_hop, None, Some((c.daddr, c.dport))), want(&c.dest_hop, Some((c.laddr, c.lport)), Some((c.daddr, c.dport)))),
                    Dir::Out => (want(&c.client_hop, Some((c.vaddr, c.vport)), None), want(&c.client_hop, Some((c.vaddr, c.vport)), Some((c.caddr, c.cport)))),
                };
                let nat = run(&|fr, m| nat::xmit(fr, m, &c, &links, dir));
                assert_eq!(nat, nat_want, "NAT {dir:?}, links {dest_link}/{client_link}");
                let c = Conn { fwd: FwdMethod::FullNat, ..c };
                let full = run(&|fr, m| fullnat::xmit(fr, m, &c, &links, dir, false).map(|(p, added)| {
                    assert_eq!(added, None);
                    p
                }));
                assert_eq!(full, full_want, "FULLNAT {dir:?}, links {dest_link}/{client_link}");
            }
        }
    }
}
