//! Single-frame builders and a from-scratch checksum verifier.

use crate::wire::checksum::{checksum, fold, pseudo_v4, pseudo_v6, sum};
use crate::wire::{be16, proto, tcp_flags, Reject};
use crate::stats::DropReason;
use etherparse::PacketBuilder;

/// MAC of the client side (source of generated client frames).
pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the director (destination of generated client frames).
pub const MAC_DIRECTOR: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
/// Two IPv6 test addresses.
pub const V6A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const V6B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn builder4(src: [u8; 4], dst: [u8; 4]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(MAC_CLIENT, MAC_DIRECTOR).ipv4(src, dst, 64)
}

fn builder6(src: [u8; 16], dst: [u8; 16]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(MAC_CLIENT, MAC_DIRECTOR).ipv6(src, dst, 64)
}

fn with_flags(
    mut b: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    flags: u8,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    if flags & tcp_flags::SYN != 0 {
        b = b.syn();
    }
    if flags & tcp_flags::FIN != 0 {
        b = b.fin();
    }
    if flags & tcp_flags::RST != 0 {
        b = b.rst();
    }
    if flags & tcp_flags::PSH != 0 {
        b = b.psh();
    }
    if flags & tcp_flags::ACK != 0 {
        b = b.ack(1);
    }
    b
}

/// An Ethernet/IPv4/TCP frame with the given flags (`ACK` sets ack number 1).
pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let b = with_flags(builder4(src, dst).tcp(sport, dport, 1000, 65535), flags);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("tcp4 builds");
    set_df(&mut v, 14);
    v
}

/// An Ethernet/IPv6/TCP frame.
pub fn tcp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let b = with_flags(builder6(src, dst).tcp(sport, dport, 1000, 65535), flags);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("tcp6 builds");
    v
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    builder4(src, dst).udp(sport, dport).write(&mut v, payload).expect("udp4 builds");
    v
}

/// An Ethernet/IPv6/UDP frame.
pub fn udp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    builder6(src, dst).udp(sport, dport).write(&mut v, payload).expect("udp6 builds");
    v
}

/// An ICMP echo request.
pub fn icmp4_echo(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    builder4(src, dst).icmpv4_echo_request(1, 1).write(&mut v, b"ping").expect("icmp builds");
    v
}

/// Sets the IPv4 DF bit of the header at `l3` and fixes its checksum.
pub fn set_df(f: &mut [u8], l3: usize) {
    f[l3 + 6] |= 0x40;
    refresh_ipv4_checksum(f, l3);
}

/// Recomputes the IPv4 header checksum at `l3` from scratch.
pub fn refresh_ipv4_checksum(f: &mut [u8], l3: usize) {
    let ihl = ((f[l3] & 0x0f) as usize) * 4;
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let c = checksum(&f[l3..l3 + ihl]);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the TCP checksum of an Ethernet frame (IPv4 or IPv6, no
/// extension headers) from scratch, after a test edited the segment.
pub fn refresh_tcp_checksum(f: &mut [u8]) {
    let v6 = be16(f, 12) == 0x86dd;
    let l3 = 14;
    let (l4, end) = if v6 {
        (l3 + 40, l3 + 40 + be16(f, l3 + 4) as usize)
    } else {
        (l3 + ((f[l3] & 0x0f) as usize) * 4, l3 + be16(f, l3 + 2) as usize)
    };
    f[l4 + 16] = 0;
    f[l4 + 17] = 0;
    let ps = if v6 {
        let a: [u8; 16] = f[l3 + 8..l3 + 24].try_into().expect("16 bytes");
        let b: [u8; 16] = f[l3 + 24..l3 + 40].try_into().expect("16 bytes");
        pseudo_v6(&a, &b, proto::TCP, (end - l4) as u32)
    } else {
        let a: [u8; 4] = f[l3 + 12..l3 + 16].try_into().expect("4 bytes");
        let b: [u8; 4] = f[l3 + 16..l3 + 20].try_into().expect("4 bytes");
        pseudo_v4(&a, &b, proto::TCP, (end - l4) as u16)
    };
    let c = !fold(sum(ps, &f[l4..end]));
    f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}

/// Inserts an 802.1Q tag with VLAN id `vid`.
pub fn vlan(f: Vec<u8>, vid: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(f.len() + 4);
    v.extend_from_slice(&f[..12]);
    v.extend_from_slice(&0x8100u16.to_be_bytes());
    v.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    v.extend_from_slice(&f[12..]);
    v
}

/// Verifies every checksum in an Ethernet frame from scratch: the IPv4
/// header, the TCP/UDP/ICMP/ICMPv6 checksum, and recursively the inner
/// packet of IPIP / IPv6-in-IP and the IP header quoted in ICMP errors.
/// Fragments get their IP header checked only (see [`reassemble`]).
/// Returns false on any mismatch or unparseable frame.
pub fn verify(f: &[u8]) -> bool {
    if f.len() < 14 {
        return false;
    }
    let (mut et, mut l3) = (be16(f, 12), 14);
    if et == 0x8100 || et == 0x88a8 {
        if f.len() < 18 {
            return false;
        }
        et = be16(f, 16);
        l3 = 18;
    }
    match et {
        0x0800 => verify_ip(&f[l3..], false, false),
        0x86dd => verify_ip(&f[l3..], true, false),
        _ => true,
    }
}

/// Verifies an IP packet starting at `p[0]`. `quoted`: the packet is quoted
/// inside an ICMP error and may be truncated; only its IPv4 header checksum
/// is checked then.
pub fn verify_ip(p: &[u8], v6: bool, quoted: bool) -> bool {
    if !v6 {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return false;
        }
        let ihl = ((p[0] & 0xf) as usize) * 4;
        if p.len() < ihl || checksum(&p[..ihl]) != 0 {
            return false;
        }
        // A fragment has no whole L4 segment to check (reassemble first).
        if quoted || be16(p, 6) & 0x3fff != 0 {
            return true;
        }
        let total = be16(p, 2) as usize;
        if total > p.len() || total < ihl {
            return false;
        }
        let (src, dst) = (arr4(&p[12..16]), arr4(&p[16..20]));
        let seg = &p[ihl..total];
        let pseudo = pseudo_v4(&src, &dst, p[9], seg.len() as u16);
        verify_l4(p[9], seg, pseudo, false)
    } else {
        if p.len() < 40 || p[0] >> 4 != 6 {
            return false;
        }
        if quoted || p[6] == 44 {
            return true;
        }
        let total = 40 + be16(p, 4) as usize;
        if total > p.len() {
            return false;
        }
        let (src, dst) = (arr16(&p[8..24]), arr16(&p[24..40]));
        let seg = &p[40..total];
        let pseudo = pseudo_v6(&src, &dst, p[6], seg.len() as u32);
        verify_l4(p[6], seg, pseudo, true)
    }
}

fn verify_l4(pr: u8, seg: &[u8], pseudo: u64, v6: bool) -> bool {
    match pr {
        proto::TCP => seg.len() >= 20 && fold(sum(pseudo, seg)) == 0xffff,
        proto::UDP => {
            if seg.len() < 8 {
                return false;
            }
            // IPv4 UDP may omit its checksum.
            (!v6 && be16(seg, 6) == 0) || fold(sum(pseudo, seg)) == 0xffff
        }
        proto::ICMP => {
            if seg.len() < 8 || checksum(seg) != 0 {
                return false;
            }
            // errors quote an IP packet: check its header too
            match seg[0] {
                3 | 4 | 5 | 11 | 12 => verify_ip(&seg[8..], false, true),
                _ => true,
            }
        }
        proto::ICMPV6 => {
            if seg.len() < 8 || fold(sum(pseudo, seg)) != 0xffff {
                return false;
            }
            match seg[0] {
                1..=4 => verify_ip(&seg[8..], true, true),
                _ => true,
            }
        }
        proto::IPIP => verify_ip(seg, false, false),
        proto::IPV6 => verify_ip(seg, true, false),
        _ => true,
    }
}

fn arr4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn arr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0; 16];
    a.copy_from_slice(b);
    a
}

/// A corpus of malformed frames, each with the one reason the parser must
/// give. Used by the parser's unit tests and the replay tests.
pub fn bad_corpus() -> Vec<(&'static str, Vec<u8>, Reject)> {
    let good = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::SYN, b"data");
    let d = |r: DropReason| Reject::Drop(r);
    let mut v = Vec::new();
    v.push(("empty", vec![], d(DropReason::Truncated)));
    v.push(("eth only", good[..14].to_vec(), d(DropReason::Truncated)));
    v.push(("half ip header", good[..24].to_vec(), d(DropReason::Truncated)));
    v.push(("vlan tag cut", {
        let mut f = good[..15].to_vec();
        f[12] = 0x81;
        f[13] = 0;
        f
    }, d(DropReason::Truncated)));
    let mut f = good.clone();
    f[14] = 0x65; // version 6 in an IPv4 ethertype
    v.push(("wrong ip version", f, d(DropReason::BadIpHeader)));
    let mut f = good.clone();
    f[14] = 0x44; // IHL 4
    v.push(("ihl below 5", f, d(DropReason::BadIpHeader)));
    let mut f = good.clone();
    f[16..18].copy_from_slice(&10u16.to_be_bytes()); // total length < IHL
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("total length below header", f, d(DropReason::BadIpLength)));
    let mut f = good.clone();
    f[16..18].copy_from_slice(&1500u16.to_be_bytes()); // longer than the frame
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("total length beyond frame", f, d(DropReason::Truncated)));
    let mut f = good.clone();
    f[24] ^= 0xff; // break the header checksum
    v.push(("bad ip checksum", f, d(DropReason::BadIpChecksum)));
    let mut f = with_ipv4_options(&good);
    f[34..38].copy_from_slice(&[1, 7, 9, 0]); // record route, length past the header
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("ip option beyond header", f, d(DropReason::BadIpOptions)));
    let mut f = with_ipv4_options(&good);
    f[34..38].copy_from_slice(&[0x44, 1, 0, 0]); // timestamp, length 1
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("ip option length below 2", f, d(DropReason::BadIpOptions)));
    let mut f = with_ipv4_options(&good);
    f[34..38].copy_from_slice(&[1, 0x83, 3, 4]); // loose source route
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("ip source route", f, d(DropReason::SourceRoute)));
    let mut f = good.clone();
    f[20] = 0x1f; // fragment offset 8184 * 8: past 64 KiB with its payload
    f[21] = 0xff;
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("fragment beyond 64 KiB", f, d(DropReason::BadIpLength)));
    let mut f = good.clone();
    f[20] |= 0x20; // more fragments: the first fragment's TCP header must be whole
    f[16..18].copy_from_slice(&30u16.to_be_bytes());
    refresh_ipv4_checksum(&mut f, 14);
    f.truncate(14 + 30);
    v.push(("first fragment with a cut tcp header", f, d(DropReason::BadL4Header)));
    let mut f = good.clone();
    f[14 + 20 + 12] = 0x40; // TCP data offset 4
    v.push(("tcp data offset below 5", f, d(DropReason::BadL4Header)));
    let mut f = good.clone();
    f[14 + 20 + 12] = 0xf0; // data offset 15: longer than the segment
    v.push(("tcp data offset beyond segment", f, d(DropReason::BadL4Header)));
    let u = udp4([10, 0, 0, 1], 1, [10, 0, 0, 100], 53, b"abcd");
    let mut f = u.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    v.push(("udp length below 8", f, d(DropReason::BadL4Header)));
    let mut f = u.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&400u16.to_be_bytes());
    v.push(("udp length beyond datagram", f, d(DropReason::BadL4Header)));
    // an IP datagram that ends inside the TCP header
    let mut f = good[..14 + 20 + 10].to_vec();
    f[16..18].copy_from_slice(&30u16.to_be_bytes());
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("tcp header truncated", f, d(DropReason::BadL4Header)));
    let e = icmp4_echo([1, 1, 1, 1], [2, 2, 2, 2]);
    let mut f = e[..14 + 20 + 4].to_vec();
    f[16..18].copy_from_slice(&24u16.to_be_bytes());
    refresh_ipv4_checksum(&mut f, 14);
    v.push(("icmp header truncated", f, d(DropReason::BadL4Header)));
    let g6 = tcp6(V6A, 1, V6B, 80, tcp_flags::SYN, b"");
    v.push(("ipv6 header cut", g6[..14 + 30].to_vec(), d(DropReason::Truncated)));
    let mut f = g6.clone();
    f[18..20].copy_from_slice(&500u16.to_be_bytes());
    v.push(("ipv6 payload beyond frame", f, d(DropReason::Truncated)));
    let mut f = g6[..14 + 40].to_vec();
    f[18..20].copy_from_slice(&4u16.to_be_bytes());
    f[14 + 6] = 44; // a fragment header cut short
    f.extend_from_slice(&[6, 0, 0, 1]);
    v.push(("ipv6 fragment header cut", f, d(DropReason::BadIpv6Ext)));
    let mut f = g6.clone();
    f[14 + 6] = 0; // hop-by-hop whose length runs past the end
    f[14 + 40 + 1] = 200;
    v.push(("ipv6 ext beyond end", f, d(DropReason::BadIpv6Ext)));
    v
}

/// Splits the IPv4 datagram of `f` (Ethernet, no VLAN tag) into fragments
/// carrying at most `max` bytes of payload each (rounded down to a
/// multiple of 8), identification `id`, as a sending kernel does; options
/// are kept in every fragment.
pub fn fragment4(f: &[u8], max: usize, id: u16) -> Vec<Vec<u8>> {
    let ihl = (f[14] & 0x0f) as usize * 4;
    let total = be16(f, 16) as usize;
    let payload = &f[14 + ihl..14 + total];
    let step = (max & !7).max(8);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() || out.is_empty() {
        let n = step.min(payload.len() - off);
        let more = off + n < payload.len();
        let mut g = f[..14 + ihl].to_vec();
        g.extend_from_slice(&payload[off..off + n]);
        g[16..18].copy_from_slice(&((ihl + n) as u16).to_be_bytes());
        g[18..20].copy_from_slice(&id.to_be_bytes());
        let fo = (be16(f, 20) & 0x4000) | if more { 0x2000 } else { 0 } | (off / 8) as u16;
        g[20..22].copy_from_slice(&fo.to_be_bytes());
        refresh_ipv4_checksum(&mut g, 14);
        out.push(g);
        off += n;
    }
    out
}

/// Splits the IPv6 datagram of `f` (Ethernet, no VLAN tag, no extension
/// headers) into fragments of at most `max` bytes of payload each (rounded
/// down to a multiple of 8) behind a fragment header with identification
/// `id`.
pub fn fragment6(f: &[u8], max: usize, id: u32) -> Vec<Vec<u8>> {
    let nh = f[14 + 6];
    let plen = be16(f, 18) as usize;
    let payload = &f[54..54 + plen];
    let step = (max & !7).max(8);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() || out.is_empty() {
        let n = step.min(payload.len() - off);
        let more = off + n < payload.len();
        let mut g = f[..54].to_vec();
        g[14 + 6] = 44;
        g[18..20].copy_from_slice(&((8 + n) as u16).to_be_bytes());
        let fo = off as u16 | more as u16;
        g.extend_from_slice(&[nh, 0]);
        g.extend_from_slice(&fo.to_be_bytes());
        g.extend_from_slice(&id.to_be_bytes());
        g.extend_from_slice(&payload[off..off + n]);
        out.push(g);
        off += n;
    }
    out
}

/// Puts fragments (Ethernet frames, IPv4 or IPv6 with the fragment header
/// right after the fixed one) back together: the Ethernet and IP header of
/// the first, the payloads in offset order. `None` when a piece is missing
/// or they overlap.
pub fn reassemble(frags: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut parts: Vec<(usize, bool, &Vec<u8>)> = frags
        .iter()
        .map(|g| {
            if be16(g, 12) == 0x86dd {
                let fo = be16(g, 56);
                ((fo & 0xfff8) as usize, fo & 1 != 0, g)
            } else {
                let fo = be16(g, 20);
                ((fo & 0x1fff) as usize * 8, fo & 0x2000 != 0, g)
            }
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let first = parts.first()?.2;
    let v6 = be16(first, 12) == 0x86dd;
    let hl = if v6 { 54 } else { 14 + (first[14] & 0x0f) as usize * 4 };
    let mut out = if v6 {
        let mut h = first[..54].to_vec();
        h[14 + 6] = first[54];
        h
    } else {
        first[..hl].to_vec()
    };
    let mut next = 0;
    for (i, (off, more, g)) in parts.iter().enumerate() {
        if *off != next || (*more != (i + 1 < parts.len())) {
            return None;
        }
        let (start, end) = if v6 {
            (62, 54 + be16(g, 18) as usize)
        } else {
            (14 + (g[14] & 0x0f) as usize * 4, 14 + be16(g, 16) as usize)
        };
        out.extend_from_slice(g.get(start..end)?);
        next += end - start;
    }
    if v6 {
        let plen = (out.len() - 54) as u16;
        out[18..20].copy_from_slice(&plen.to_be_bytes());
    } else {
        let tl = (out.len() - 14) as u16;
        out[16..18].copy_from_slice(&tl.to_be_bytes());
        out[20..22].copy_from_slice(&(be16(first, 20) & 0x4000).to_be_bytes());
        refresh_ipv4_checksum(&mut out, 14);
    }
    Some(out)
}

/// Returns `f` (Ethernet/IPv4, no options) with 4 bytes of IPv4 options
/// (NOP NOP NOP EOL) inserted, lengths and header checksum fixed.
pub fn with_ipv4_options(f: &[u8]) -> Vec<u8> {
    let mut v = f[..34].to_vec();
    v.extend_from_slice(&[1, 1, 1, 0]);
    v.extend_from_slice(&f[34..]);
    v[14] = 0x46;
    let tl = be16(&v, 16) + 4;
    v[16..18].copy_from_slice(&tl.to_be_bytes());
    refresh_ipv4_checksum(&mut v, 14);
    v
}


/// Addresses the steering samples draw from (IPv4): a VIP, two real
/// servers, a FULLNAT local address, the director, a client, a stranger.
pub const SAMPLE_V4: [[u8; 4]; 7] = [[10, 0, 0, 100], [10, 0, 1, 1], [10, 0, 1, 2], [10, 0, 0, 200], [10, 0, 0, 1], [192, 0, 2, 1], [198, 51, 100, 7]];
/// The same roles in IPv6 (VIP, real server, director, client, stranger).
pub const SAMPLE_V6: [&str; 5] = ["2001:db8::100", "2001:db8:1::1", "2001:db8::1", "2001:db8::2", "2001:db8:9::9"];

/// A frame built from `c` (a vector of random choices, so a property
/// test shrinks it): Ethernet with or without an 802.1Q / 802.1ad tag,
/// ARP or IPv4 (options, fragments, bad checksums) or IPv6 (extension and
/// fragment headers), TCP / UDP / ICMP errors and echoes / other
/// protocols, between the [`SAMPLE_V4`] / [`SAMPLE_V6`] addresses and
/// the ports services use, sometimes cut short or with a byte flipped.
/// Meant to reach every branch of the steering program and the parser.
pub fn steering_sample(c: &[u8]) -> Vec<u8> {
    let at = |i: usize| c.get(i).copied().unwrap_or(0);
    const PORTS: [u16; 7] = [80, 8080, 53, 0, 40000, 443, 5353];
    let port = |i: usize| PORTS[at(i) as usize % PORTS.len()];
    let payload = vec![0x5a; at(9) as usize % 64];
    let v6 = at(0) % 3 == 0;
    let pr = match at(1) % 8 {
        0..=2 => proto::TCP,
        3..=4 => proto::UDP,
        5 => if v6 { proto::ICMPV6 } else { proto::ICMP },
        6 => 47,
        _ => if v6 { 0 } else { proto::ICMP },
    };
    let mut f = if v6 {
        let a = |i: usize| -> [u8; 16] { SAMPLE_V6[at(i) as usize % SAMPLE_V6.len()].parse::<std::net::Ipv6Addr>().map(|a| a.octets()).unwrap_or([0; 16]) };
        let (s, d) = (a(2), a(3));
        match pr {
            proto::TCP => tcp6(s, port(4), d, port(5), at(6), &payload),
            proto::UDP => udp6(s, port(4), d, port(5), &payload),
            _ => {
                let mut f = udp6(s, port(4), d, port(5), &payload);
                f[20] = pr;
                if pr == proto::ICMPV6 {
                    f[54] = at(7) % 6; // 1-4 errors, 0/5 not
                    if at(15) % 2 == 0 && f.len() >= 62 + 7 {
                        // quoting an IPv6 header, IPv6-in-IPv6 or not
                        f[62] = 0x60;
                        f[62 + 6] = [41, 6][at(16) as usize % 2];
                    }
                }
                f
            }
        }
    } else {
        let a = |i: usize| SAMPLE_V4[at(i) as usize % SAMPLE_V4.len()];
        let (s, d) = (a(2), a(3));
        let mut f = match pr {
            proto::TCP => tcp4(s, port(4), d, port(5), at(6), &payload),
            proto::UDP => udp4(s, port(4), d, port(5), &payload),
            _ => {
                let mut f = udp4(s, port(4), d, port(5), &payload);
                f[23] = pr;
                if pr == proto::ICMP {
                    f[34] = [0, 3, 8, 11, 5, 12][at(7) as usize % 6];
                    if at(15) % 2 == 0 && f.len() >= 42 + 10 {
                        // quoting an IPv4 header, IPIP or not
                        f[42] = 0x45;
                        f[42 + 9] = [4, 6][at(16) as usize % 2];
                    }
                }
                refresh_ipv4_checksum(&mut f, 14);
                f
            }
        };
        if at(8) % 4 == 0 {
            f = with_ipv4_options(&f);
        }
        if at(10) % 5 == 0 {
            f = fragment4(&f, 8 * (1 + at(11) as usize % 4), at(12) as u16).swap_remove(at(13) as usize % 2 * (payload.len() > 40) as usize);
        }
        f
    };
    if v6 && at(10) % 5 == 0 && f[20] != 0 {
        let frags = fragment6(&f, 8 * (1 + at(11) as usize % 4), at(12) as u32);
        let n = frags.len();
        f = frags.into_iter().nth(at(13) as usize % n).unwrap_or_default();
    }
    if v6 && pr == 0 {
        // a hop-by-hop header (PadN) in front of a UDP header
        let mut g = f[..54].to_vec();
        g.extend_from_slice(&[proto::UDP, 0, 1, 4, 0, 0, 0, 0]);
        g.extend_from_slice(&f[54..]);
        let pl = be16(&g, 18) + 8;
        g[18..20].copy_from_slice(&pl.to_be_bytes());
        f = g;
    }
    match at(14) % 8 {
        0 => f = vlan(f, 20),
        1 => {
            f = vlan(f, 20);
            f[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
        }
        2 if at(15) % 4 == 0 => f[12..14].copy_from_slice(&0x0806u16.to_be_bytes()),
        _ => {}
    }
    match at(16) % 10 {
        0 => f.truncate(at(17) as usize % (f.len() + 1)),
        1 => {
            let i = at(17) as usize % f.len().max(1);
            if let Some(b) = f.get_mut(i) {
                *b ^= 1 << (at(18) % 8);
            }
        }
        _ => {}
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_verify() {
        assert!(verify(&tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 2, tcp_flags::SYN | tcp_flags::ACK, b"x")));
        assert!(verify(&udp6(V6A, 1, V6B, 2, b"hello")));
        assert!(verify(&icmp4_echo([1, 2, 3, 4], [5, 6, 7, 8])));
        assert!(verify(&vlan(udp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 2, b"q"), 3)));
        let mut f = tcp4([1, 2, 3, 4], 1, [5, 6, 7, 8], 2, tcp_flags::ACK, b"x");
        let n = f.len();
        f[n - 1] ^= 1;
        assert!(!verify(&f), "a flipped payload bit must fail the TCP checksum");
    }
}
