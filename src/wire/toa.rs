//! TOA, "TCP option address" (Alibaba's FULLNAT LVS, DPVS): the client's
//! address and port carried to a FULLNAT real server in TCP option 254, so
//! the server (with the `toa` kernel module, or anything that reads the
//! segment's options) knows who its peer behind the local address is.
//!
//! Layout, as the `toa` module reads it: kind 254, length 8, the client
//! port and its IPv4 address (network order); for IPv6 clients length 20
//! and the 16-byte address (DPVS's IPv6 TOA).
//!
//! The option goes after the segment's own options. The frame grows by
//! the option's length at the front (headroom), so only the headers move,
//! never the payload; the IP length, the TCP data offset and both
//! checksums are updated incrementally (RFC 1624), as every rewrite here.

use super::checksum::update16;
use super::ip::Ip;
use super::{be16, put16, Frame, Meta};

/// The TOA option kind.
pub const KIND: u8 = 254;
/// Option length for an IPv4 client.
pub const LEN_V4: usize = 8;
/// Option length for an IPv6 client.
pub const LEN_V6: usize = 20;

/// Why a segment was forwarded without the option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The TCP header has no 8 (20) bytes of option space left (at most 60).
    NoOptionSpace,
    /// The segment would exceed the egress MTU.
    Mtu,
    /// The frame buffer has no headroom to grow into.
    NoHeadroom,
}

/// Adds the TOA option for client `addr`:`port` to the TCP segment in
/// `fr` (parsed as `m`, ending at `m.end`: trimmed), unless it would not
/// fit in the option space, the egress `mtu` (IP bytes) or the headroom.
/// `m` follows the frame (its `end` grows; offsets from the frame start
/// stay valid because the frame's start moves with the headers).
///
/// # Errors
/// Why it was not added; the frame is then unchanged.
pub fn insert<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, addr: A, port: u16, mtu: u16) -> Result<(), Skip> {
    let len = if A::V6 { LEN_V6 } else { LEN_V4 };
    let l3 = m.l3 as usize;
    let l4 = m.l4 as usize;
    let hl = ((fr.data()[l4 + 12] >> 4) as usize) * 4;
    if hl + len > 60 {
        return Err(Skip::NoOptionSpace);
    }
    if m.ip_len() + len > mtu as usize {
        return Err(Skip::Mtu);
    }
    if !fr.push_front(len) {
        return Err(Skip::NoHeadroom);
    }
    let f = fr.data_mut();
    let opt = l4 + hl;
    // Every header moves forward into the headroom; the payload stays.
    f.copy_within(len..len + opt, 0);
    f[opt] = KIND;
    f[opt + 1] = len as u8;
    f[opt + 2..opt + 4].copy_from_slice(&port.to_be_bytes());
    f[opt + 4..opt + len].copy_from_slice(addr.bytes().as_ref());
    // The TCP checksum covers the new option words (the option starts on
    // a 4-byte boundary), the data offset and the pseudo header's length.
    let csum = l4 + 16;
    let mut hc = be16(f, csum);
    for w in (opt..opt + len).step_by(2) {
        hc = update16(hc, 0, be16(f, w));
    }
    let old_off = be16(f, l4 + 12);
    f[l4 + 12] += ((len / 4) as u8) << 4;
    hc = update16(hc, old_off, be16(f, l4 + 12));
    let seg = (m.end as usize - l4) as u16;
    hc = update16(hc, seg, seg + len as u16);
    put16(f, csum, hc);
    if m.v6 {
        let old = be16(f, l3 + 4);
        put16(f, l3 + 4, old + len as u16);
    } else {
        let old = be16(f, l3 + 2);
        put16(f, l3 + 2, old + len as u16);
        let ic = be16(f, l3 + 10);
        put16(f, l3 + 10, update16(ic, old, old + len as u16));
    }
    m.end += len as u16;
    Ok(())
}

/// The TOA option of a TCP segment (`tcp` from its header on), if any:
/// the client's port and address bytes (4 or 16). For tests and tools.
pub fn find(tcp: &[u8]) -> Option<(u16, &[u8])> {
    let hl = ((*tcp.get(12)? >> 4) as usize) * 4;
    tcp.get(20..hl)?;
    let mut w = super::tcpseq::Options::new(20, hl);
    while let Some((kind, i, l)) = w.next(tcp) {
        if kind == KIND && (l == LEN_V4 || l == LEN_V6) {
            return Some((u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]), &tcp[i + 4..i + l]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::{tcp4, tcp6, verify};
    use crate::wire::{parse, tcp_flags};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const HEAD: usize = 64;

    /// A frame buffer with `HEAD` bytes of headroom holding `frame`.
    fn framed(frame: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEAD + frame.len()];
        b[HEAD..].copy_from_slice(frame);
        b
    }

    /// Inserts the option into `frame` and returns the new frame.
    fn with_toa<A: Ip>(frame: &[u8], addr: A, port: u16, mtu: u16) -> Result<Vec<u8>, Skip> {
        let mut buf = framed(frame);
        let mut m = parse(frame).unwrap();
        let mut fr = Frame::new(&mut buf, HEAD, frame.len());
        insert(&mut fr, &mut m, addr, port, mtu)?;
        let out = fr.data().to_vec();
        // (`partial` aside, on both sides: a full checksum looks partial
        // once in 65536, in the frame given as in the frame made.)
        assert_eq!(Meta { partial: false, ..parse(&out).unwrap() }, Meta { partial: false, ..m }, "the meta follows the frame");
        Ok(out)
    }

    /// `tcp` with its TCP header grown to `hl` bytes by NOP options.
    fn with_nops(mut f: Vec<u8>, hl: usize) -> Vec<u8> {
        let m = parse(&f).unwrap();
        let l4 = m.l4 as usize;
        let extra = hl - 20;
        for _ in 0..extra {
            f.insert(l4 + 20, 1);
        }
        f[l4 + 12] = ((hl / 4) as u8) << 4;
        // Recompute the lengths and checksums from scratch.
        let l3 = m.l3 as usize;
        if m.v6 {
            let pl = be16(&f, l3 + 4) + extra as u16;
            put16(&mut f, l3 + 4, pl);
        } else {
            let tl = be16(&f, l3 + 2) + extra as u16;
            put16(&mut f, l3 + 2, tl);
            crate::gen::packet::refresh_ipv4_checksum(&mut f, 14);
        }
        crate::gen::packet::refresh_tcp_checksum(&mut f);
        assert!(verify(&f));
        f
    }

    #[test]
    fn ipv4_option_carries_the_client_and_every_checksum_verifies() {
        let f = tcp4([10, 0, 0, 200], 5000, [10, 0, 1, 1], 8080, tcp_flags::ACK, b"hello");
        let out = with_toa(&f, Ipv4Addr::new(192, 0, 2, 7), 40000, 1500).unwrap();
        assert_eq!(out.len(), f.len() + LEN_V4);
        assert!(verify(&out), "IP and TCP checksums from scratch");
        let m = parse(&out).unwrap();
        let tcp = &out[m.l4 as usize..];
        assert_eq!(tcp[12] >> 4, 7, "data offset 28 bytes");
        assert_eq!(find(tcp), Some((40000, &[192, 0, 2, 7][..])));
        assert_eq!(&out[out.len() - 5..], b"hello", "payload intact");
        assert_eq!(&out[..14], &f[..14], "Ethernet header moved whole");
        assert_eq!(be16(&out, 16) as usize, f.len() - 14 + 8, "IP total length");
    }

    #[test]
    fn ipv6_option_is_twenty_bytes() {
        let c: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let s: Ipv6Addr = "2001:db8:1::200".parse().unwrap();
        let r: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let f = tcp6(s.octets(), 5000, r.octets(), 8080, tcp_flags::ACK, b"");
        let out = with_toa(&f, c, 40000, 1500).unwrap();
        assert_eq!(out.len(), f.len() + LEN_V6);
        assert!(verify(&out));
        let m = parse(&out).unwrap();
        assert_eq!(find(&out[m.l4 as usize..]), Some((40000, &c.octets()[..])));
    }

    #[test]
    fn no_room_leaves_the_frame_alone() {
        let a = Ipv4Addr::new(192, 0, 2, 7);
        // 56 bytes of TCP header: 8 more would pass 60
        let full = with_nops(tcp4([10, 0, 0, 200], 5000, [10, 0, 1, 1], 8080, tcp_flags::ACK, b""), 56);
        assert_eq!(with_toa(&full, a, 1, 1500), Err(Skip::NoOptionSpace));
        // 52 is the most that takes it
        let room = with_nops(tcp4([10, 0, 0, 200], 5000, [10, 0, 1, 1], 8080, tcp_flags::ACK, b""), 52);
        assert!(verify(&with_toa(&room, a, 1, 1500).unwrap()));
        // a full-size segment would pass the MTU
        let big = tcp4([10, 0, 0, 200], 5000, [10, 0, 1, 1], 8080, tcp_flags::ACK, &[0u8; 1460]);
        assert_eq!(with_toa(&big, a, 1, 1500), Err(Skip::Mtu));
        assert!(with_toa(&big, a, 1, 1508).is_ok());
        // no headroom
        let f = tcp4([10, 0, 0, 200], 5000, [10, 0, 1, 1], 8080, tcp_flags::ACK, b"");
        let mut buf = f.clone();
        let mut m = parse(&f).unwrap();
        let len = f.len();
        let mut fr = Frame::new(&mut buf, 0, len);
        assert_eq!(insert(&mut fr, &mut m, a, 1, 1500), Err(Skip::NoHeadroom));
        assert_eq!(fr.data(), &f[..]);
    }

    #[test]
    fn find_walks_options_and_refuses_garbage() {
        let mut t = vec![0u8; 20];
        t[12] = 8 << 4;
        t.extend_from_slice(&[1, 1, 2, 4, 0x05, 0xb4, 0, 0]); // NOP NOP MSS EOL pad
        assert_eq!(find(&t), None);
        t.truncate(20);
        t.extend_from_slice(&[1, 1, 254, 8, 0x9c, 0x40, 192, 0, 2, 7, 0, 0]);
        assert_eq!(find(&t), Some((40000, &[192, 0, 2, 7][..])));
        t[23] = 30; // a length past the header
        assert_eq!(find(&t), None);
        assert_eq!(find(&[0u8; 5]), None);
    }

    proptest! {
        /// Whatever the segment (flags, options already there, payload,
        /// checksum), the result verifies from scratch and carries the
        /// client, or the frame is untouched.
        #[test]
        fn result_verifies_or_frame_is_untouched(
            nops in 0usize..=10,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            flags in any::<u8>(),
            client in any::<[u8; 4]>(),
            port in any::<u16>(),
        ) {
            let f = with_nops(tcp4([10, 0, 0, 200], 5000, [10, 0, 1, 1], 8080, flags, &payload), 20 + 4 * nops);
            match with_toa(&f, Ipv4Addr::from(client), port, 1500) {
                Ok(out) => {
                    prop_assert!(verify(&out));
                    let m = parse(&out).unwrap();
                    prop_assert_eq!(find(&out[m.l4 as usize..]), Some((port, &client[..])));
                    prop_assert_eq!(&out[out.len() - payload.len()..], &payload[..]);
                }
                Err(e) => prop_assert_eq!(e, Skip::NoOptionSpace),
            }
        }
    }
}
