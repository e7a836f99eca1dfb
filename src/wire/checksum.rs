//! Internet checksum (RFC 1071) and incremental updates (RFC 1624).
//!
//! The forwarding path never sums a payload: every rewrite adjusts the
//! existing checksum with [`update16`] / [`update_bytes`] (RFC 1624 eqn. 3,
//! `HC' = ~(~HC + ~m + m')`, as IPVS's `ip_vs_check_diff*` do). The full
//! computations exist for packets we build ourselves (ICMP errors, outer
//! IPIP headers) and for tests to compare against.
//!
//! # Partial checksums
//!
//! A kernel TCP/UDP sender on a device with TX checksum offload (every
//! veth by default, virtio, ...) does not compute the L4 checksum: it
//! leaves the folded pseudo-header sum in the field (CHECKSUM_PARTIAL)
//! for the "hardware" to complete, which for an XDP peer never happens:
//! XDP and AF_XDP see the bytes raw. An incremental update of such a
//! field is wrong (RFC 1624 assumes a complemented sum of everything),
//! and the receiver drops the frame as corrupt. [`is_partial`] tells it
//! with no payload read — the field equals the folded pseudo-header sum
//! of the packet as it arrived — and [`complete`] does the hardware's job
//! (a sum of the segment) before any rewrite.
//!
//! A full checksum equals the pseudo-header sum by chance for about one
//! packet in 65536. Completing it then changes nothing: the sum of the
//! segment with the field holding `fold(pseudo)` is the sum the sender
//! made, so [`complete`] writes back the same value (a test proves it).
//! The only costs of that false positive are one payload sum for that
//! packet, and, for a packet corrupted on the wire whose field happens to
//! equal the pseudo-header sum (one corrupted packet in 65536), a valid
//! checksum over corrupted bytes — the same odds at which the TCP/UDP
//! checksum itself misses a random corruption.

use super::ip::Ip;
use super::{be16, proto, put16, Meta};

/// Adds `data` (big-endian 16-bit words, odd tail padded with zero) to a
/// running 64-bit sum. Fold with [`fold`].
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    tail(acc, chunks.remainder())
}

/// [`sum`] for a long buffer (a whole segment): the 32-bit words summed in
/// native order (the one's complement sum is byte-order independent: RFC
/// 1071), which the compiler vectorises, folded and put in network order
/// once at the end. Congruent to [`sum`] modulo 0xffff, which is all a one's
/// complement sum is. Short buffers (addresses, headers) are better served
/// by [`sum`], which has no fold to pay.
#[inline]
pub fn sum_wide(acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    let mut ne = 0u64;
    for c in &mut chunks {
        ne += u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let ne = fold(ne);
    tail(acc + u16::from_be_bytes(ne.to_ne_bytes()) as u64, chunks.remainder())
}

/// The last 0 to 3 bytes of a sum, as big-endian words padded with zero.
#[inline(always)]
fn tail(mut acc: u64, rest: &[u8]) -> u64 {
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        acc += (rest[i] as u64) << 8;
    }
    acc
}

/// Folds a running sum into 16 bits (one's complement, end-around carry).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `data` (the value to store in a zeroed field).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// Sum of the IPv4 pseudo header for an L4 checksum.
#[inline]
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u16) -> u64 {
    sum(sum(0, src), dst) + proto as u64 + l4_len as u64
}

/// Sum of the IPv6 pseudo header for an L4 checksum.
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u64 {
    sum(sum(0, src), dst) + proto as u64 + l4_len as u64
}

/// RFC 1624 eqn. 3 for one 16-bit field: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = (!hc) as u64 + (!old) as u64 + new as u64;
    !fold(acc)
}

/// RFC 1624 for a field of even length (an address: 4 or 16 bytes, or a
/// port pair). `old` and `new` must have the same even length.
#[inline]
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    debug_assert_eq!(old.len() % 2, 0);
    let mut acc = (!hc) as u64;
    let mut i = 0;
    while i + 1 < old.len() {
        acc += (!u16::from_be_bytes([old[i], old[i + 1]])) as u64;
        acc += u16::from_be_bytes([new[i], new[i + 1]]) as u64;
        i += 2;
    }
    !fold(acc)
}

/// Folds a sum of at most 48 bits (a handful of 32-bit words) into 16,
/// without [`fold`]'s loop: the hot path's fold.
#[inline(always)]
fn fold48(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

/// Offset of the TCP/UDP checksum field of a parsed frame, `None` for
/// other protocols and for fragments (a fragment's segment is not what
/// the checksum covers, and senders complete it before fragmenting).
#[inline(always)]
fn tcp_udp_csum_off(m: &Meta) -> Option<usize> {
    if m.frag != 0 {
        return None;
    }
    match m.proto {
        proto::TCP => Some(m.l4 as usize + 16),
        proto::UDP => Some(m.l4 as usize + 6),
        _ => None,
    }
}

/// True when the TCP/UDP checksum of the parsed frame `f` is a partial
/// one: the field holds the folded sum of the pseudo header (addresses,
/// protocol, segment length) as a CHECKSUM_PARTIAL sender leaves it
/// (see the module docs; about one full checksum in 65536 also matches,
/// harmlessly). Reads the IP addresses and the field, never the payload.
/// `A` is the frame's family (`m.v6`). False for other protocols and for
/// IPv4 UDP without a checksum (0).
#[inline(always)]
pub fn is_partial<A: Ip>(f: &[u8], m: &Meta) -> bool {
    let Some(co) = tcp_udp_csum_off(m) else { return false };
    let l3 = m.l3 as usize;
    let mut acc = m.proto as u64 + (m.end - m.l4) as u64;
    let a = l3 + A::SRC_OFF;
    for w in f[a..a + 2 * A::LEN].chunks_exact(4) {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    fold48(acc) == be16(f, co)
}

/// Completes a partial TCP/UDP checksum as the offloading hardware would:
/// the checksum of the whole segment, the field (holding the
/// pseudo-header sum) included. Payload-long: called only for frames
/// [`is_partial`] picked.
#[cold]
#[inline(never)]
pub fn complete(f: &mut [u8], m: &Meta) {
    let Some(co) = tcp_udp_csum_off(m) else { return };
    let mut c = !fold(sum_wide(0, &f[m.l4 as usize..m.end as usize]));
    // UDP sends a computed 0 as 0xffff (0 means "no checksum").
    if m.proto == proto::UDP && c == 0 {
        c = 0xffff;
    }
    put16(f, co, c);
}

/// The partial checksum a CHECKSUM_PARTIAL sender would leave in the
/// TCP/UDP frame `f`: for tests, benchmarks and generators that need
/// such frames. Does nothing to other frames.
pub fn make_partial<A: Ip>(f: &mut [u8], m: &Meta) {
    let Some(co) = tcp_udp_csum_off(m) else { return };
    let l3 = m.l3 as usize;
    let a = l3 + A::SRC_OFF;
    let acc = sum(m.proto as u64 + (m.end - m.l4) as u64, &f[a..a + 2 * A::LEN]);
    put16(f, co, fold(acc));
}

/// True when `a` and `b` are the same one's complement value (0x0000 and
/// 0xffff both mean zero; an incremental update may produce either).
#[inline]
pub fn same(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0xab])), 0xab00);
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0xab])), 0x1234 + 0xab00);
    }

    #[test]
    fn known_ipv4_header() {
        // A real header (Wikipedia's example), checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    use crate::gen::packet::{tcp4, tcp6, udp4, udp6, verify, V6A, V6B};
    use crate::wire::{parse, tcp_flags, Meta};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// `f` with the partial checksum its sender would leave, and its meta.
    fn partial(f: &[u8]) -> (Vec<u8>, Meta) {
        let mut p = f.to_vec();
        let m = parse(&p).unwrap();
        if m.v6 {
            make_partial::<Ipv6Addr>(&mut p, &m);
        } else {
            make_partial::<Ipv4Addr>(&mut p, &m);
        }
        (p, m)
    }

    fn partial_of(f: &[u8], m: &Meta) -> bool {
        if m.v6 {
            is_partial::<Ipv6Addr>(f, m)
        } else {
            is_partial::<Ipv4Addr>(f, m)
        }
    }

    /// Frames captured on a veth (offloads at their defaults) from a
    /// Linux 6.18 sender, 10.99.0.1 -> 10.99.0.2: a TCP SYN (40-byte
    /// header) and a UDP datagram, each carrying the sender's partial sum
    /// (0x14f7, 0x14e7). tshark called them "incorrect, should be
    /// 0x72b2 / 0x1178 (maybe caused by checksum offload)".
    const VETH_SYN: [u8; 74] = [
        0x3a, 0xfa, 0xdb, 0xb2, 0x71, 0x26, 0xbe, 0xbe, 0x61, 0x37, 0xac, 0x9e, 0x08, 0x00, 0x45, 0x00, //
        0x00, 0x3c, 0xf1, 0x1d, 0x40, 0x00, 0x40, 0x06, 0x34, 0xd6, 0x0a, 0x63, 0x00, 0x01, 0x0a, 0x63, //
        0x00, 0x02, 0xd4, 0x36, 0x00, 0x50, 0xe4, 0xb4, 0x03, 0x5c, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, //
        0xfa, 0xf0, 0x14, 0xf7, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x67, 0xf9, //
        0xa1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];
    const VETH_UDP: [u8; 47] = [
        0x3a, 0xfa, 0xdb, 0xb2, 0x71, 0x26, 0xbe, 0xbe, 0x61, 0x37, 0xac, 0x9e, 0x08, 0x00, 0x45, 0x00, //
        0x00, 0x21, 0x66, 0x09, 0x40, 0x00, 0x40, 0x11, 0xbf, 0xfa, 0x0a, 0x63, 0x00, 0x01, 0x0a, 0x63, //
        0x00, 0x02, 0x80, 0xd8, 0x14, 0xe9, 0x00, 0x0d, 0x14, 0xe7, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    #[test]
    fn partial_sums_from_a_veth_are_recognised_and_completed() {
        for (frame, co, want) in [(&VETH_SYN[..], 50, 0x72b2u16), (&VETH_UDP[..], 40, 0x1178)] {
            let mut f = frame.to_vec();
            let m = parse(&f).unwrap();
            assert!(!verify(&f), "as captured, the checksum does not verify");
            assert!(is_partial::<Ipv4Addr>(&f, &m));
            complete(&mut f, &m);
            assert_eq!(be16(&f, co), want);
            assert!(verify(&f));
            assert!(!is_partial::<Ipv4Addr>(&f, &m), "a completed checksum is no longer partial");
            // and the generator's partial sum is the kernel's
            let (p, _) = partial(&f);
            assert_eq!(p, frame);
        }
    }

    #[test]
    fn other_protocols_and_udp_without_checksum_are_never_partial() {
        let f = crate::gen::packet::icmp4_echo([1, 2, 3, 4], [5, 6, 7, 8]);
        let m = parse(&f).unwrap();
        assert!(!is_partial::<Ipv4Addr>(&f, &m));
        let mut u = udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, b"x");
        let m = parse(&u).unwrap();
        put16(&mut u, m.l4 as usize + 6, 0);
        assert!(!is_partial::<Ipv4Addr>(&u, &m));
    }

    /// A UDP sum that completes to 0 is sent as 0xffff, as a sender does.
    #[test]
    fn udp_completed_to_zero_is_sent_as_ffff() {
        // Find a payload word whose checksum is 0 (searching is cheap).
        for w in 0..=u16::MAX {
            let f = udp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, &w.to_be_bytes());
            let m = parse(&f).unwrap();
            if be16(&f, m.l4 as usize + 6) == 0xffff {
                let (mut p, m) = partial(&f);
                assert!(is_partial::<Ipv4Addr>(&p, &m));
                complete(&mut p, &m);
                assert_eq!(p, f);
                return;
            }
        }
        panic!("no payload sums to zero");
    }

    /// The sum as RFC 1071 writes it: big-endian 16-bit words.
    fn reference_sum(mut acc: u64, data: &[u8]) -> u64 {
        for w in data.chunks(2) {
            acc += ((w[0] as u64) << 8) | *w.get(1).unwrap_or(&0) as u64;
        }
        acc
    }

    proptest! {
        /// Both sums fold to the reference sum, whatever the length
        /// (tails of 0 to 3 bytes) and running sum.
        #[test]
        fn sums_are_the_reference_sum(acc in prop_oneof![Just(0u64), any::<u32>().prop_map(u64::from)],
                                      data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(acc, &data)), fold(reference_sum(acc, &data)));
            prop_assert_eq!(fold(sum_wide(acc, &data)), fold(reference_sum(acc, &data)));
            prop_assert_eq!(fold(sum_wide(acc, &[0xff; 8])), fold(reference_sum(acc, &[0xff; 8])));
        }

        /// Every TCP/UDP frame made partial is recognised, and completing
        /// it gives back the sender's full checksum, byte for byte.
        #[test]
        fn complete_restores_the_full_checksum(payload in proptest::collection::vec(any::<u8>(), 0..80),
                                               s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
                                               s6 in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>()) {
            for f in [
                tcp4(s, sp, d, dp, tcp_flags::ACK, &payload),
                udp4(s, sp, d, dp, &payload),
                tcp6(s6, sp, V6B, dp, tcp_flags::SYN, &payload),
                udp6(V6A, sp, s6, dp, &payload),
            ] {
                let (mut p, m) = partial(&f);
                prop_assert!(partial_of(&p, &m));
                complete(&mut p, &m);
                prop_assert_eq!(&p, &f);
            }
        }

        /// A full checksum that equals the pseudo-header sum by chance (the
        /// false positive, made here on purpose by choosing one payload
        /// word) is recognised as partial, and completing it leaves it
        /// valid and unchanged.
        #[test]
        fn a_full_checksum_that_looks_partial_survives_completion(
            payload in proptest::collection::vec(any::<u8>(), 2..80),
            s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), udp in any::<bool>(), v6 in any::<bool>()) {
            let mut payload = payload;
            payload[0] = 0;
            payload[1] = 0;
            let build = |pl: &[u8]| match (udp, v6) {
                (false, false) => tcp4(s, 1000, d, 80, tcp_flags::ACK, pl),
                (true, false) => udp4(s, 1000, d, 53, pl),
                (false, true) => tcp6(V6A, 1000, V6B, 80, tcp_flags::ACK, pl),
                (true, true) => udp6(V6A, 1000, V6B, 53, pl),
            };
            let f = build(&payload);
            let (p, m) = partial(&f);
            let co = m.l4 as usize + if udp { 6 } else { 16 };
            let (c0, want) = (be16(&f, co), be16(&p, co));
            // The checksum falls by the word added (one's complement):
            // w = c0 - want.
            let w = fold(c0 as u64 + (!want) as u64);
            payload[..2].copy_from_slice(&w.to_be_bytes());
            let g = build(&payload);
            prop_assert!(verify(&g));
            prop_assert!(same(be16(&g, co), want), "{:04x} {:04x}", be16(&g, co), want);
            if be16(&g, co) == want {
                let mut h = g.clone();
                prop_assert!(partial_of(&h, &m));
                complete(&mut h, &m);
                prop_assert_eq!(&h, &g);
            }
        }

        /// An incremental update equals a full recomputation (up to ±0).
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 8..64),
                                   at in 0usize..28, new in proptest::collection::vec(any::<u8>(), 4)) {
            let len = data.len() & !1;
            data.truncate(len);
            let at = ((at * 2) % (len - 4 + 1)) & !1;
            let hc = checksum(&data);
            let old = data[at..at + 4].to_vec();
            data[at..at + 4].copy_from_slice(&new);
            let inc = update_bytes(hc, &old, &new);
            prop_assert!(same(inc, checksum(&data)), "inc {:04x} full {:04x}", inc, checksum(&data));
            // and the 16-bit variant agrees with the byte variant
            let o = u16::from_be_bytes([old[0], old[1]]);
            let n = u16::from_be_bytes([new[0], new[1]]);
            prop_assert!(same(update16(hc, o, n), update_bytes(hc, &old[..2], &new[..2])));
        }
    }
}
