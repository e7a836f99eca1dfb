//! The PROXY protocol (haproxy's specification, versions 1 and 2): a
//! header in front of a TCP stream that tells the server the client's
//! address and port and the address and port it connected to — for a
//! FULLNAT (or NAT) real server that cannot read TOA.
//!
//! - v1, text: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (`TCP6` for
//!   IPv6), at most 107 bytes.
//! - v2, binary: the 12-byte signature `\r\n\r\n\0\r\nQUIT\n`, version and
//!   command `0x21` (v2, PROXY), family and transport `0x11` (TCP over
//!   IPv4) or `0x21` (TCP over IPv6), the address block's length (12 or
//!   36), then source address, destination address, source port,
//!   destination port: 28 or 52 bytes.
//!
//! [`header`] writes one into a stack buffer (no allocation);
//! [`insert`] puts bytes in front of a TCP segment's payload.

use super::checksum::{fold, pseudo_v4, pseudo_v6, sum_wide, update16};
use super::ip::Ip;
use super::{be16, put16, tcp_flags, Frame, Meta};
use std::io::Write;

/// A PROXY protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

impl Version {
    /// The configuration's name of it (`v1`, `v2`).
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    /// Parses `v1` / `v2`.
    pub fn from_name(s: &str) -> Option<Version> {
        match s {
            "v1" => Some(Version::V1),
            "v2" => Some(Version::V2),
            _ => None,
        }
    }

    /// Its number in the connection's side entry (1, 2; 0 is none).
    pub fn code(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    /// The version of a side entry's code.
    pub fn from_code(c: u8) -> Option<Version> {
        match c {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            _ => None,
        }
    }
}

/// The v2 signature.
pub const SIG_V2: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest header: v1 for IPv6 addresses is at most 104 bytes
/// (the specification's limit for any v1 line is 107).
pub const MAX_LEN: usize = 108;

/// Writes the header for a TCP connection from `src`:`sport` to
/// `dst`:`dport` into `out`; returns its length.
pub fn header<A: Ip>(v: Version, src: A, sport: u16, dst: A, dport: u16, out: &mut [u8; MAX_LEN]) -> usize {
    match v {
        Version::V1 => {
            let (s, d): (std::net::IpAddr, std::net::IpAddr) = (src.into(), dst.into());
            let fam = if A::V6 { "TCP6" } else { "TCP4" };
            let mut w = &mut out[..];
            // Display of addresses and integers writes no heap; 104 bytes
            // always fit in 108.
            let _ = write!(w, "PROXY {fam} {s} {d} {sport} {dport}\r\n");
            MAX_LEN - w.len()
        }
        Version::V2 => {
            let (fam, alen) = if A::V6 { (0x21, 36u16) } else { (0x11, 12u16) };
            out[..12].copy_from_slice(&SIG_V2);
            out[12] = 0x21;
            out[13] = fam;
            out[14..16].copy_from_slice(&alen.to_be_bytes());
            let n = A::LEN;
            out[16..16 + n].copy_from_slice(src.bytes().as_ref());
            out[16 + n..16 + 2 * n].copy_from_slice(dst.bytes().as_ref());
            out[16 + 2 * n..18 + 2 * n].copy_from_slice(&sport.to_be_bytes());
            out[18 + 2 * n..20 + 2 * n].copy_from_slice(&dport.to_be_bytes());
            16 + alen as usize
        }
    }
}

/// Why bytes could not be put in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not even the bytes alone fit in the egress MTU.
    Mtu,
    /// The frame buffer has no room after the frame to grow into.
    NoTailroom,
}

/// Puts `bytes` in front of the payload of the TCP segment in `fr`
/// (parsed as `m`; padding after `m.end` is dropped); its sequence number stays, so
/// the bytes take the place of the payload's first bytes in the stream
/// and the payload follows them. When the result would pass the egress
/// `mtu` (IP bytes), the payload's tail is left out (and a FIN with
/// it): the client sends those bytes again when the server's
/// acknowledgement does not cover them. Returns the payload bytes left
/// out. Lengths follow; the IPv4 header checksum is updated
/// incrementally, the TCP checksum recomputed over the segment — once per
/// connection, or per retransmission of its first segment.
///
/// # Errors
/// The frame is then unchanged.
#[cold]
#[inline(never)]
pub fn insert<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, bytes: &[u8], mtu: u16) -> Result<usize, Skip> {
    let l3 = m.l3 as usize;
    let l4 = m.l4 as usize;
    let end = m.end as usize;
    let n = bytes.len();
    let p = l4 + ((fr.data()[l4 + 12] >> 4) as usize) * 4;
    let plen = end.saturating_sub(p);
    let over = (m.ip_len() + n).saturating_sub(mtu as usize);
    if over > plen {
        return Err(Skip::Mtu);
    }
    let keep = plen - over;
    let new_end = p + n + keep;
    if new_end > fr.len && new_end - fr.len > fr.tailroom() {
        return Err(Skip::NoTailroom);
    }
    fr.len = new_end;
    let f = fr.data_mut();
    f.copy_within(p..p + keep, p + n);
    f[p..p + n].copy_from_slice(bytes);
    if over > 0 && f[l4 + 13] & tcp_flags::FIN != 0 {
        f[l4 + 13] &= !tcp_flags::FIN;
        m.tcp_flags &= !tcp_flags::FIN;
    }
    let grow = new_end as isize - end as isize;
    if m.v6 {
        let old = be16(f, l3 + 4);
        put16(f, l3 + 4, (old as isize + grow) as u16);
    } else {
        let old = be16(f, l3 + 2);
        let new = (old as isize + grow) as u16;
        put16(f, l3 + 2, new);
        let ic = be16(f, l3 + 10);
        put16(f, l3 + 10, update16(ic, old, new));
    }
    m.end = new_end as u16;
    let seg = new_end - l4;
    let ps = if A::V6 {
        let s: [u8; 16] = f[l3 + 8..l3 + 24].try_into().unwrap_or([0; 16]);
        let d: [u8; 16] = f[l3 + 24..l3 + 40].try_into().unwrap_or([0; 16]);
        pseudo_v6(&s, &d, super::proto::TCP, seg as u32)
    } else {
        let s: [u8; 4] = f[l3 + 12..l3 + 16].try_into().unwrap_or([0; 4]);
        let d: [u8; 4] = f[l3 + 16..l3 + 20].try_into().unwrap_or([0; 4]);
        pseudo_v4(&s, &d, super::proto::TCP, seg as u16)
    };
    put16(f, l4 + 16, 0);
    let c = !fold(sum_wide(ps, &f[l4..new_end]));
    put16(f, l4 + 16, c);
    Ok(plen - keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::verify;
    use crate::wire::parse;
    use crate::wire::tcpseq::{self, tests::segment};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn v1_text_for_both_families() {
        let mut b = [0u8; MAX_LEN];
        let n = header(Version::V1, Ipv4Addr::new(192, 0, 2, 7), 40000, Ipv4Addr::new(10, 0, 0, 1), 80, &mut b);
        assert_eq!(&b[..n], b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\r\n");
        let max = Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff);
        let n = header(Version::V1, max, 65535, max, 65535, &mut b);
        assert_eq!(n, 104, "the longest v1 header fits");
        assert!(b[..n].starts_with(b"PROXY TCP6 ffff:ffff:") && b[..n].ends_with(b" 65535 65535\r\n"));
    }

    #[test]
    fn v2_binary_for_both_families() {
        let mut b = [0u8; MAX_LEN];
        let n = header(Version::V2, Ipv4Addr::new(192, 0, 2, 7), 40000, Ipv4Addr::new(10, 0, 0, 1), 80, &mut b);
        assert_eq!(n, 28);
        assert_eq!(&b[..12], &SIG_V2);
        assert_eq!(&b[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&b[16..28], &[192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0x40, 0, 80]);
        let c: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let v: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let n = header(Version::V2, c, 1, v, 2, &mut b);
        assert_eq!(n, 52);
        assert_eq!(&b[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(&b[16..32], &c.octets());
        assert_eq!(&b[48..52], &[0, 1, 0, 2]);
    }

    #[test]
    fn names_round_trip() {
        for v in [Version::V1, Version::V2] {
            assert_eq!(Version::from_name(v.name()), Some(v));
            assert_eq!(Version::from_code(v.code()), Some(v));
        }
        assert_eq!(Version::from_name("v3"), None);
        assert_eq!(Version::from_code(0), None);
    }

    /// `frame` in a 4 KiB buffer, inserted into.
    fn with(frame: &[u8], bytes: &[u8], mtu: u16, v6: bool) -> (Result<usize, Skip>, Vec<u8>, Meta) {
        let mut buf = vec![0u8; 4096];
        buf[64..64 + frame.len()].copy_from_slice(frame);
        let mut m = parse(frame).unwrap();
        let mut fr = Frame::new(&mut buf, 64, frame.len());
        let r = if v6 { insert::<Ipv6Addr>(&mut fr, &mut m, bytes, mtu) } else { insert::<Ipv4Addr>(&mut fr, &mut m, bytes, mtu) };
        (r, fr.data().to_vec(), m)
    }

    #[test]
    fn header_goes_in_front_of_the_payload() {
        let f = segment(false, &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8], 1000, 5, tcp_flags::ACK | tcp_flags::PSH, b"GET /");
        let (r, out, m) = with(&f, b"PROXY x\r\n", 1500, false);
        assert_eq!(r, Ok(0));
        assert!(verify(&out));
        assert_eq!(Meta { partial: false, ..parse(&out).unwrap() }, m);
        assert_eq!(&out[out.len() - 14..], b"PROXY x\r\nGET /");
        assert_eq!(tcpseq::seq(&out, &m), 1000, "the sequence number stays");
    }

    #[test]
    fn past_the_mtu_the_payload_tail_and_fin_are_left_out() {
        let f = segment(false, &[], 1000, 5, tcp_flags::ACK | tcp_flags::FIN, &[7u8; 1460]);
        let (r, out, m) = with(&f, &[b'P'; 28], 1500, false);
        assert_eq!(r, Ok(28));
        assert_eq!(out.len(), f.len());
        assert!(verify(&out));
        assert_eq!(m.tcp_flags & tcp_flags::FIN, 0);
        assert_eq!(out[m.l4 as usize + 13] & tcp_flags::FIN, 0);
        // an MTU below the headers and the bytes alone
        let (r, out, _) = with(&f, &[b'P'; 28], 60, false);
        assert_eq!((r, out), (Err(Skip::Mtu), f.clone()));
        // no tailroom
        let mut buf = f.clone();
        let mut m = parse(&f).unwrap();
        let len = f.len();
        let mut fr = Frame::new(&mut buf, 0, len);
        assert_eq!(insert::<Ipv4Addr>(&mut fr, &mut m, b"x", 9000), Err(Skip::NoTailroom));
        assert_eq!(fr.data(), &f[..]);
    }

    proptest! {
        /// Any segment, any bytes, any MTU: the result verifies from
        /// scratch, holds the bytes then the payload's head, and is no
        /// longer than the MTU — or the frame is unchanged.
        #[test]
        fn result_verifies_and_fits(
            v6 in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            bytes in proptest::collection::vec(any::<u8>(), 1..MAX_LEN),
            mtu in 40u16..1600,
            fin in any::<bool>(),
        ) {
            let flags = tcp_flags::ACK | if fin { tcp_flags::FIN } else { 0 };
            let f = segment(v6, &[], 9, 9, flags, &payload);
            let (r, out, m) = with(&f, &bytes, mtu, v6);
            match r {
                Ok(dropped) => {
                    prop_assert!(verify(&out));
                    prop_assert!(m.ip_len() <= mtu as usize);
                    let p = m.l4 as usize + 20;
                    prop_assert_eq!(&out[p..p + bytes.len()], &bytes[..]);
                    prop_assert_eq!(&out[p + bytes.len()..], &payload[..payload.len() - dropped]);
                    prop_assert_eq!(fin && dropped == 0, m.tcp_flags & tcp_flags::FIN != 0);
                }
                Err(e) => {
                    prop_assert_eq!(e, Skip::Mtu);
                    prop_assert_eq!(out, f);
                }
            }
        }
    }
}
