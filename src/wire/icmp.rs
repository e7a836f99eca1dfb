//! ICMP / ICMPv6 errors: reading the packet they quote, translating it, and
//! building errors of our own (fragmentation needed / packet too big, port
//! unreachable) in place, in the frame that caused them.
//!
//! These are the rare paths; callers keep them out of line (`#[cold]`).
//! Building an error and translating a quoted packet recompute the ICMP
//! checksum in full, as IPVS does: the message is at most 576 (IPv4) or
//! 1280 (IPv6) bytes.

use super::checksum::{checksum, fold, pseudo_v6, sum, update_bytes};
use super::frame::Frame;
use super::ip::Ip;
use super::{be16, proto, put16, Meta, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::stats::DropReason;

/// ICMPv4 error types that quote a packet.
#[inline]
pub fn v4_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 error types (1..=4) that quote a packet.
#[inline]
pub fn v6_is_error(t: u8) -> bool {
    (1..=4).contains(&t)
}

/// The packet quoted in an ICMP error. Offsets are from the frame start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    /// Offset of the quoted IP header.
    pub l3: u16,
    /// Offset of the quoted L4 header (at least 8 bytes of it are present).
    pub l4: u16,
    /// End of the quoted bytes (the ICMP message's end).
    pub end: u16,
    pub proto: u8,
    pub v6: bool,
    /// Ports as quoted: `sport` is the port of the original sender.
    pub sport: u16,
    pub dport: u16,
}

/// Parses the packet quoted by the ICMP error `m` describes. The quoted
/// packet must have a full IP header (IPv4 options included; no IPv6
/// extension headers) and the first 8 bytes of its TCP/UDP header.
///
/// # Errors
/// [`DropReason::BadIcmp`] when the quote is short or not TCP/UDP of the
/// same family.
pub fn quoted(f: &[u8], m: &Meta) -> Result<Quoted, DropReason> {
    quoted_at(f, m.l4 as usize + 8, m.end as usize, m.v6)
}

/// The packet quoted at `q` (up to `end`) of family `v6`: see [`quoted`].
fn quoted_at(f: &[u8], q: usize, end: usize, v6: bool) -> Result<Quoted, DropReason> {
    if q + 20 > end || end > f.len() {
        return Err(DropReason::BadIcmp);
    }
    let hlen = if v6 { 40 } else { (f[q] & 0x0f) as usize * 4 };
    if hlen < 20 || q + hlen + 8 > end {
        return Err(DropReason::BadIcmp);
    }
    let (ver, pr) = if v6 { (6, f[q + 6]) } else { (4, f[q + 9]) };
    if f[q] >> 4 != ver {
        return Err(DropReason::BadIcmp);
    }
    if pr != proto::TCP && pr != proto::UDP {
        return Err(DropReason::BadIcmp);
    }
    let l4 = q + hlen;
    Ok(Quoted {
        l3: q as u16,
        l4: l4 as u16,
        end: end as u16,
        proto: pr,
        v6,
        sport: be16(f, l4),
        dport: be16(f, l4 + 2),
    })
}

/// Whether the ICMP error `m` describes quotes a tunnelled packet of its
/// own family — IPIP (an IPv4 header, protocol 4) for ICMPv4, IPv6 in
/// IPv6 (an IPv6 header, next header 41) for ICMPv6: one of xvs's own
/// tunnelled packets, when its source is ours.
#[inline]
pub fn quotes_ipip(f: &[u8], m: &Meta) -> bool {
    let q = m.l4 as usize + 8;
    let end = (m.end as usize).min(f.len());
    if m.v6 {
        q + 40 <= end && f[q] >> 4 == 6 && f[q + 6] == proto::IPV6
    } else {
        q + 20 <= end && f[q] >> 4 == 4 && f[q + 9] == proto::IPIP
    }
}

/// The outer header an ICMP error quotes (a tunnelled packet, see
/// [`quotes_ipip`]) and the TCP/UDP packet inside it: (offset of the
/// outer quoted header, the inner packet). An IPv4 outer header must be
/// the first fragment (a later one holds no inner header); an IPv6 one is
/// followed by the inner header at once (xvs's carry no extension
/// header). The inner packet must be quoted with its full header and 8
/// bytes of TCP/UDP.
///
/// # Errors
/// [`DropReason::BadIcmp`] when the quote is short or not of that shape.
pub fn quoted_ipip(f: &[u8], m: &Meta) -> Result<(usize, Quoted), DropReason> {
    let q = m.l4 as usize + 8;
    let end = m.end as usize;
    if !quotes_ipip(f, m) {
        return Err(DropReason::BadIcmp);
    }
    if m.v6 {
        return Ok((q, quoted_at(f, q + 40, end, true)?));
    }
    if be16(f, q + 6) & 0x1fff != 0 {
        return Err(DropReason::BadIcmp);
    }
    let hlen = (f[q] & 0x0f) as usize * 4;
    if hlen < 20 {
        return Err(DropReason::BadIcmp);
    }
    Ok((q, quoted_at(f, q + hlen, end, false)?))
}

impl Quoted {
    /// Quoted source and destination addresses.
    pub fn addrs<A: Ip>(&self, f: &[u8]) -> (A, A) {
        let o = self.l3 as usize + A::SRC_OFF;
        (A::from_slice(&f[o..o + A::LEN]), A::from_slice(&f[o + A::LEN..o + 2 * A::LEN]))
    }

    /// Offset of the quoted L4 checksum if it lies inside the quote.
    fn l4_csum(&self) -> Option<usize> {
        let o = self.l4 as usize + if self.proto == proto::TCP { 16 } else { 6 };
        (o + 2 <= self.end as usize).then_some(o)
    }

    fn fix_l4(&self, f: &mut [u8], old: &[u8], new: &[u8]) {
        if let Some(co) = self.l4_csum() {
            let hc = be16(f, co);
            if self.proto == proto::UDP && hc == 0 && !self.v6 {
                return; // IPv4 UDP without checksum
            }
            put16(f, co, update_bytes(hc, old, new));
        }
    }

    /// Rewrites a quoted address (`src` or destination), keeping the quoted
    /// IPv4 header checksum and (when quoted) the L4 checksum consistent.
    /// The ICMP checksum must be refreshed afterwards ([`refresh_checksum`]).
    pub fn set_addr<A: Ip>(&self, f: &mut [u8], src: bool, new: A) {
        let o = self.l3 as usize + if src { A::SRC_OFF } else { A::SRC_OFF + A::LEN };
        let mut old = A::Bytes::default();
        old.as_mut().copy_from_slice(&f[o..o + A::LEN]);
        let nb = new.bytes();
        f[o..o + A::LEN].copy_from_slice(nb.as_ref());
        if !A::V6 {
            let co = self.l3 as usize + 10;
            put16(f, co, update_bytes(be16(f, co), old.as_ref(), nb.as_ref()));
        }
        self.fix_l4(f, old.as_ref(), nb.as_ref());
    }

    /// Maps the numbers of a quoted TCP segment (a connection with a
    /// sequence offset, `ipvs::seqadj`): its sequence number by `seq`;
    /// when its flags are quoted and carry ACK, its acknowledgement number
    /// and the edges of the SACK blocks among the options quoted by `ack`.
    /// The quoted TCP checksum, when quoted, follows. Nothing for UDP.
    /// The ICMP checksum must be refreshed afterwards ([`refresh_checksum`]).
    pub fn map_seq(&self, f: &mut [u8], seq: impl Fn(u32) -> u32, ack: impl Fn(u32) -> u32) {
        let (l4, end) = (self.l4 as usize, (self.end as usize).min(f.len()));
        if self.proto != proto::TCP || l4 + 8 > end {
            return;
        }
        if l4 + 20 <= end {
            // The whole fixed header: the segment's own rewrite.
            let m = Meta { l4: self.l4, end: end as u16, ..Meta::default() };
            super::tcpseq::rewrite(f, &m, seq, ack);
            return;
        }
        // A short quote (RFC 792's 8 bytes and a little): no checksum to
        // follow, the acknowledgement only when its flags are there.
        let s = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
        f[l4 + 4..l4 + 8].copy_from_slice(&seq(s).to_be_bytes());
        if l4 + 14 <= end && f[l4 + 13] & super::tcp_flags::ACK != 0 {
            let a = u32::from_be_bytes([f[l4 + 8], f[l4 + 9], f[l4 + 10], f[l4 + 11]]);
            f[l4 + 8..l4 + 12].copy_from_slice(&ack(a).to_be_bytes());
        }
    }

    /// Rewrites a quoted port (`src` or destination).
    pub fn set_port(&mut self, f: &mut [u8], src: bool, new: u16) {
        let o = self.l4 as usize + if src { 0 } else { 2 };
        let old = be16(f, o);
        put16(f, o, new);
        self.fix_l4(f, &old.to_be_bytes(), &new.to_be_bytes());
        if src {
            self.sport = new;
        } else {
            self.dport = new;
        }
    }
}

/// Recomputes the ICMP (v4) or ICMPv6 checksum of the message `m` describes
/// from scratch (after its outer addresses or quoted packet changed).
pub fn refresh_checksum(f: &mut [u8], m: &Meta) {
    let (l4, end) = (m.l4 as usize, m.end as usize);
    put16(f, l4 + 2, 0);
    let c = if m.v6 {
        let l3 = m.l3 as usize;
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&f[l3 + 8..l3 + 24]);
        d.copy_from_slice(&f[l3 + 24..l3 + 40]);
        !fold(sum(pseudo_v6(&s, &d, proto::ICMPV6, (end - l4) as u32), &f[l4..end]))
    } else {
        checksum(&f[l4..end])
    };
    put16(f, l4 + 2, c);
}

/// An error xvs sends back to a packet's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// IPv4 "fragmentation needed and DF set" / ICMPv6 "packet too big",
    /// with the MTU the sender must use.
    TooBig { mtu: u16 },
    /// Destination (port) unreachable: no real server for the service.
    PortUnreachable,
    /// Any other ICMPv4 error, by type, code and the 4 bytes after the
    /// checksum (an error about a tunnelled packet passed on to the
    /// client as IPVS's `ip_vs_in_icmp` does). ICMPv4 only.
    V4 { t: u8, code: u8, rest: u32 },
}

/// Largest ICMPv4 error datagram (RFC 1812 4.3.2.3).
const V4_MAX: usize = 576;
/// Largest ICMPv6 error datagram (RFC 4443 2.4(c)): the minimum MTU.
const V6_MAX: usize = 1280;

/// Turns `fr` (whose packet `m` describes) into an ICMP error about it,
/// addressed back to its sender: MACs swapped, the VLAN tag kept, source
/// address = the packet's destination, and as much of the packet quoted as
/// fits. Built in place by growing into the headroom; nothing is copied
/// but the Ethernet header.
///
/// # Errors
/// [`DropReason::NoHeadroom`] when the frame has too little headroom.
pub fn build_error<A: Ip>(fr: &mut Frame<'_>, m: &Meta, kind: ErrorKind) -> Result<(), DropReason> {
    let l2 = m.l3 as usize;
    let grow = A::HLEN + 8;
    if fr.headroom() < grow {
        return Err(DropReason::NoHeadroom);
    }
    let quote = m.ip_len().min(if A::V6 { V6_MAX } else { V4_MAX } - grow);
    let f = fr.data();
    let (src, dst) = (A::src(f, m), A::dst(f, m));
    let mut eth = [0u8; 18];
    eth[..l2].copy_from_slice(&f[..l2]);
    let ok = fr.push_front(grow);
    debug_assert!(ok);
    fr.truncate(l2 + grow + quote);
    let f = fr.data_mut();
    // Ethernet: back to where it came from.
    f[0..6].copy_from_slice(&eth[6..12]);
    f[6..12].copy_from_slice(&eth[0..6]);
    f[12..l2].copy_from_slice(&eth[12..l2]);
    put16(f, l2 - 2, if A::V6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 });
    let ip = l2;
    let icmp = ip + A::HLEN;
    let l4_len = 8 + quote;
    if A::V6 {
        f[ip..ip + 4].copy_from_slice(&[0x60, 0, 0, 0]);
        put16(f, ip + 4, l4_len as u16);
        f[ip + 6] = proto::ICMPV6;
        f[ip + 7] = 64;
    } else {
        f[ip] = 0x45;
        f[ip + 1] = 0xc0; // internetwork control, as Linux's icmp_send
        put16(f, ip + 2, (A::HLEN + l4_len) as u16);
        f[ip + 4..ip + 8].copy_from_slice(&[0, 0, 0, 0]);
        f[ip + 8] = 64;
        f[ip + 9] = proto::ICMP;
        put16(f, ip + 10, 0);
    }
    let o = ip + A::SRC_OFF;
    f[o..o + A::LEN].copy_from_slice(dst.bytes().as_ref());
    f[o + A::LEN..o + 2 * A::LEN].copy_from_slice(src.bytes().as_ref());
    if !A::V6 {
        let c = checksum(&f[ip..ip + 20]);
        put16(f, ip + 10, c);
    }
    let (t, c, rest) = match (A::V6, kind) {
        (false, ErrorKind::TooBig { mtu }) => (3, 4, mtu as u32),
        (false, ErrorKind::PortUnreachable) => (3, 3, 0),
        (true, ErrorKind::TooBig { mtu }) => (2, 0, mtu as u32),
        (true, ErrorKind::PortUnreachable) => (1, 4, 0),
        (false, ErrorKind::V4 { t, code, rest }) => (t, code, rest),
        // Not made for IPv6: a port unreachable if it ever were.
        (true, ErrorKind::V4 { .. }) => (1, 4, 0),
    };
    f[icmp] = t;
    f[icmp + 1] = c;
    f[icmp + 4..icmp + 8].copy_from_slice(&rest.to_be_bytes());
    let mm = Meta {
        l3: ip as u16,
        l4: icmp as u16,
        end: (icmp + l4_len) as u16,
        v6: A::V6,
        proto: if A::V6 { proto::ICMPV6 } else { proto::ICMP },
        ..Meta::default()
    };
    refresh_checksum(f, &mm);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::*;
    use crate::wire::frame::HEADROOM;
    use crate::wire::{parse, tcp_flags};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn in_buf(f: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADROOM + f.len() + 64];
        b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        b
    }

    #[test]
    fn frag_needed_v4_quotes_and_verifies() {
        let orig = tcp4([10, 0, 0, 1], 4000, [10, 0, 0, 100], 80, tcp_flags::ACK, &[7u8; 1000]);
        let mut b = in_buf(&orig);
        let mut fr = Frame::new(&mut b, HEADROOM, orig.len());
        let m = parse(fr.data()).unwrap();
        build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::TooBig { mtu: 1480 }).unwrap();
        let out = fr.data().to_vec();
        assert!(verify(&out));
        assert_eq!(out.len(), 14 + 576);
        let e = parse(&out).unwrap();
        assert_eq!((e.proto, e.icmp_type, e.icmp_code), (1, 3, 4));
        assert_eq!(be16(&out, e.l4 as usize + 6), 1480);
        assert_eq!(Ipv4Addr::src(&out, &e), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(Ipv4Addr::dst(&out, &e), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(&out[0..6], &orig[6..12]);
        // the quoted header is the original's
        assert_eq!(&out[42..62], &orig[14..34]);
        let q = quoted(&out, &e).unwrap();
        assert_eq!((q.sport, q.dport, q.proto), (4000, 80, 6));
    }

    #[test]
    fn port_unreachable_v6_small_packet_quoted_whole() {
        let orig = vlan(udp6(V6A, 5000, V6B, 53, b"q"), 9);
        let mut b = in_buf(&orig);
        let mut fr = Frame::new(&mut b, HEADROOM, orig.len());
        let m = parse(fr.data()).unwrap();
        build_error::<Ipv6Addr>(&mut fr, &m, ErrorKind::PortUnreachable).unwrap();
        let out = fr.data().to_vec();
        assert!(verify(&out));
        let e = parse(&out).unwrap();
        assert!(e.vlan);
        assert_eq!((e.proto, e.icmp_type, e.icmp_code), (58, 1, 4));
        assert_eq!(out.len(), 18 + 40 + 8 + (orig.len() - 18));
    }

    #[test]
    fn no_headroom_is_an_error() {
        let orig = udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, b"");
        let mut b = orig.clone();
        let n = b.len();
        let mut fr = Frame::new(&mut b, 0, n);
        let m = parse(fr.data()).unwrap();
        assert_eq!(
            build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::PortUnreachable),
            Err(DropReason::NoHeadroom)
        );
    }

    #[test]
    fn translating_quoted_packet_keeps_checksums() {
        // An error from a router about a packet 10.0.0.1:4000 -> 10.0.0.100:80.
        let orig = tcp4([10, 0, 0, 1], 4000, [10, 0, 0, 100], 80, tcp_flags::SYN, b"");
        let mut b = in_buf(&orig);
        let mut fr = Frame::new(&mut b, HEADROOM, orig.len());
        let m = parse(fr.data()).unwrap();
        build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::TooBig { mtu: 1400 }).unwrap();
        let f = fr.data_mut();
        let e = parse(f).unwrap();
        let mut q = quoted(f, &e).unwrap();
        q.set_addr(f, false, Ipv4Addr::new(192, 168, 1, 5));
        q.set_port(f, false, 8080);
        crate::wire::ip::set_src(f, &e, Ipv4Addr::new(10, 0, 0, 254));
        refresh_checksum(f, &e);
        assert!(verify(f));
        let q2 = quoted(f, &e).unwrap();
        assert_eq!(q2.addrs::<Ipv4Addr>(f).1, Ipv4Addr::new(192, 168, 1, 5));
        assert_eq!(q2.dport, 8080);
        // the whole SYN was quoted, so its TCP checksum must verify too
        let ql3 = q2.l3 as usize;
        assert!(verify_ip(&f[ql3..], false, false));
    }

    #[test]
    fn short_quote_is_bad_icmp() {
        let orig = tcp4([10, 0, 0, 1], 4000, [10, 0, 0, 100], 80, tcp_flags::SYN, b"");
        let mut b = in_buf(&orig);
        let mut fr = Frame::new(&mut b, HEADROOM, orig.len());
        let m = parse(fr.data()).unwrap();
        build_error::<Ipv4Addr>(&mut fr, &m, ErrorKind::PortUnreachable).unwrap();
        let f = fr.data();
        let mut e = parse(f).unwrap();
        e.end = e.l4 + 8 + 20 + 4; // quote cut inside the ports
        assert_eq!(quoted(f, &e), Err(DropReason::BadIcmp));
    }
}
