//! Address-family generic IP field access and rewrites.
//!
//! [`Ip`] is implemented for `Ipv4Addr` and `Ipv6Addr`; the worker is generic
//! over it, so the IPv4 path is compiled with 4-byte addresses and the IPv6
//! path with 16-byte ones, and no code assumes a `u32` address.
//!
//! Every setter keeps the IPv4 header checksum and the L4 checksum (TCP, UDP,
//! ICMPv6 — the ones covering a pseudo header or the field) valid by RFC 1624.

use super::checksum::{update16, update_bytes};
use super::{be16, fold_ne, proto, put16, pick, Meta};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP address family as the data path sees it.
pub trait Ip: Copy + Eq + Ord + Hash + Debug + Send + Sync + 'static + Into<IpAddr> {
    /// IPv6 (else IPv4).
    const V6: bool;
    /// Address length in bytes.
    const LEN: usize;
    /// Offset of the source address in the IP header.
    const SRC_OFF: usize;
    /// Fixed header length (20 / 40).
    const HLEN: usize;
    /// The unspecified address (0.0.0.0 / ::).
    const UNSPECIFIED: Self;
    /// Owned bytes of the address.
    type Bytes: AsRef<[u8]> + AsMut<[u8]> + Copy + Default + Debug;

    fn bytes(self) -> Self::Bytes;
    /// `b` must be exactly `LEN` bytes long.
    fn from_slice(b: &[u8]) -> Self;
    /// The address if it is of this family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// Keeps the high `bits` bits (persistence netmasks).
    fn mask(self, bits: u8) -> Self;

    #[inline]
    fn dst_off() -> usize {
        Self::SRC_OFF + Self::LEN
    }
    #[inline]
    fn src(f: &[u8], m: &Meta) -> Self {
        let o = m.l3 as usize + Self::SRC_OFF;
        Self::from_slice(&f[o..o + Self::LEN])
    }
    #[inline]
    fn dst(f: &[u8], m: &Meta) -> Self {
        let o = m.l3 as usize + Self::dst_off();
        Self::from_slice(&f[o..o + Self::LEN])
    }
}

impl Ip for Ipv4Addr {
    const V6: bool = false;
    const LEN: usize = 4;
    const SRC_OFF: usize = 12;
    const HLEN: usize = 20;
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    type Bytes = [u8; 4];
    #[inline]
    fn bytes(self) -> [u8; 4] {
        self.octets()
    }
    #[inline]
    fn from_slice(b: &[u8]) -> Self {
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn mask(self, bits: u8) -> Self {
        let bits = bits.min(32) as u32;
        let m = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        Ipv4Addr::from(u32::from(self) & m)
    }
}

impl Ip for Ipv6Addr {
    const V6: bool = true;
    const LEN: usize = 16;
    const SRC_OFF: usize = 8;
    const HLEN: usize = 40;
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    type Bytes = [u8; 16];
    #[inline]
    fn bytes(self) -> [u8; 16] {
        self.octets()
    }
    #[inline]
    fn from_slice(b: &[u8]) -> Self {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        Ipv6Addr::from(a)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn mask(self, bits: u8) -> Self {
        let bits = bits.min(128) as u32;
        let m = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
        Ipv6Addr::from(u128::from(self) & m)
    }
}

/// Updates the L4 checksum at `m.l4_csum_off()` for a change of `old` →
/// `new` in a field it covers (pseudo-header address or port).
#[inline]
fn fix_l4(f: &mut [u8], m: &Meta, old: &[u8], new: &[u8]) {
    let Some(co) = m.l4_csum_off() else { return };
    let hc = be16(f, co);
    // An IPv4 UDP checksum of zero means "none": leave it so.
    if m.proto == proto::UDP && !m.v6 && hc == 0 {
        return;
    }
    let mut c = update_bytes(hc, old, new);
    if m.proto == proto::UDP && c == 0 {
        c = 0xffff;
    }
    put16(f, co, c);
}

/// Rewrites the address at IP header offset `at` (source or destination).
#[inline]
fn set_addr<A: Ip>(f: &mut [u8], m: &Meta, at: usize, new: A) {
    let o = m.l3 as usize + at;
    let mut old = A::Bytes::default();
    old.as_mut().copy_from_slice(&f[o..o + A::LEN]);
    let nb = new.bytes();
    f[o..o + A::LEN].copy_from_slice(nb.as_ref());
    if !A::V6 {
        let co = m.l3 as usize + 10;
        put16(f, co, update_bytes(be16(f, co), old.as_ref(), nb.as_ref()));
    }
    fix_l4(f, m, old.as_ref(), nb.as_ref());
}

/// Sets the source address; IPv4 header and L4 checksums follow.
#[inline]
pub fn set_src<A: Ip>(f: &mut [u8], m: &Meta, new: A) {
    set_addr(f, m, A::SRC_OFF, new)
}

/// Sets the destination address; IPv4 header and L4 checksums follow.
#[inline]
pub fn set_dst<A: Ip>(f: &mut [u8], m: &Meta, new: A) {
    set_addr(f, m, A::dst_off(), new)
}

#[inline]
fn set_port(f: &mut [u8], m: &Meta, at: usize, new: u16) {
    let o = m.l4 as usize + at;
    let old = be16(f, o);
    if old == new {
        return;
    }
    put16(f, o, new);
    fix_l4(f, m, &old.to_be_bytes(), &new.to_be_bytes());
}

/// Sets the TCP/UDP source port; the L4 checksum follows.
#[inline]
pub fn set_sport(f: &mut [u8], m: &mut Meta, new: u16) {
    set_port(f, m, 0, new);
    m.sport = new;
}

/// Sets the TCP/UDP destination port; the L4 checksum follows.
#[inline]
pub fn set_dport(f: &mut [u8], m: &mut Meta, new: u16) {
    set_port(f, m, 2, new);
    m.dport = new;
}

/// Decrements TTL / hop limit (the caller has checked it is > 1).
#[inline]
pub fn dec_ttl(f: &mut [u8], m: &mut Meta) {
    let l3 = m.l3 as usize;
    if m.v6 {
        f[l3 + 7] -= 1;
    } else {
        // TTL shares a 16-bit word with the protocol byte.
        let old = be16(f, l3 + 8);
        f[l3 + 8] -= 1;
        let new = be16(f, l3 + 8);
        put16(f, l3 + 10, update16(be16(f, l3 + 10), old, new));
    }
    m.ttl -= 1;
}

/// Translates a fragment at a non-zero offset, which has no L4 header:
/// decrements the TTL / hop limit (the caller has checked it is > 1) and
/// sets the source and/or destination address; only the IPv4 header
/// checksum follows. (The datagram's L4 checksum is in its first
/// fragment, which [`translate`] updated for the same addresses.)
#[inline]
pub fn translate_l3<A: Ip>(f: &mut [u8], m: &mut Meta, src: Option<A>, dst: Option<A>) {
    let l3 = m.l3 as usize;
    let mut ip_acc = 0u64;
    if m.v6 {
        f[l3 + 7] -= 1;
    } else {
        let old = be16(f, l3 + 8);
        f[l3 + 8] -= 1;
        ip_acc += (!old) as u64 + be16(f, l3 + 8) as u64;
    }
    m.ttl -= 1;
    for (at, new) in [(A::SRC_OFF, src), (A::dst_off(), dst)] {
        let Some(addr) = new else { continue };
        let o = l3 + at;
        let nb = addr.bytes();
        diff_words(&mut ip_acc, &f[o..o + A::LEN], nb.as_ref());
        f[o..o + A::LEN].copy_from_slice(nb.as_ref());
    }
    if !m.v6 {
        let co = l3 + 10;
        put16(f, co, !fold((!be16(f, co)) as u64 + ip_acc));
    }
}

/// Adds `!old + new` over 16-bit words (RFC 1624 eqn. 3 terms) to `acc`.
#[inline(always)]
fn diff_words(acc: &mut u64, old: &[u8], new: &[u8]) {
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        *acc += (!u16::from_be_bytes([o[0], o[1]])) as u64 + u16::from_be_bytes([n[0], n[1]]) as u64;
    }
}

/// Folds a running sum into 16 bits (end-around carry).
#[inline(always)]
fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

/// Translates a routed TCP/UDP packet in one pass: decrements the TTL /
/// hop limit (the caller has checked it is > 1), then sets the source
/// and/or destination address and port, each checksum updated once.
///
/// The bytes are exactly those of [`dec_ttl`], [`set_src`], [`set_sport`],
/// [`set_dst`], [`set_dport`] applied in turn (a test compares them): RFC
/// 1624 updates add non-negative terms, so one fold of their sum equals a
/// fold after each, including the ±0 representation; the UDP "no
/// checksum" rules are applied the same way.
///
/// The IPv4 fast path is inlined into each caller, where which of `src`
/// and `dst` is given is known; every other shape takes the generic path,
/// a call.
#[inline(always)]
pub fn translate<A: Ip>(f: &mut [u8], m: &mut Meta, src: Option<(A, u16)>, dst: Option<(A, u16)>) {
    if !A::V6 {
        let word = |a: A| {
            let b = a.bytes();
            let b = b.as_ref();
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        };
        if translate_v4(f, m, src.map(|(a, p)| (word(a), p)), dst.map(|(a, p)| (word(a), p))) {
            return;
        }
    }
    translate_any(f, m, src, dst);
}

/// [`translate`] for any shape (IPv6, IPv4 with options, no L4 header to
/// rewrite).
#[inline(never)]
fn translate_any<A: Ip>(f: &mut [u8], m: &mut Meta, src: Option<(A, u16)>, dst: Option<(A, u16)>) {
    let l3 = m.l3 as usize;
    let l4 = m.l4 as usize;
    // Terms of the IPv4 header checksum and of the L4 checksum.
    let mut ip_acc = 0u64;
    let mut l4_acc = 0u64;
    let mut l4_touched = false;
    if m.v6 {
        f[l3 + 7] -= 1;
    } else {
        let old = be16(f, l3 + 8);
        f[l3 + 8] -= 1;
        ip_acc += (!old) as u64 + be16(f, l3 + 8) as u64;
    }
    m.ttl -= 1;
    for (at, port_at, new) in [(A::SRC_OFF, 0, src), (A::dst_off(), 2, dst)] {
        let Some((addr, port)) = new else { continue };
        let o = l3 + at;
        let nb = addr.bytes();
        let mut a = 0u64;
        diff_words(&mut a, &f[o..o + A::LEN], nb.as_ref());
        f[o..o + A::LEN].copy_from_slice(nb.as_ref());
        if !A::V6 {
            ip_acc += a;
        }
        l4_acc += a;
        l4_touched = true;
        let po = l4 + port_at;
        let old = be16(f, po);
        if old != port {
            put16(f, po, port);
            l4_acc += (!old) as u64 + port as u64;
        }
        if port_at == 0 {
            m.sport = port;
        } else {
            m.dport = port;
        }
    }
    if !m.v6 {
        let co = l3 + 10;
        put16(f, co, !fold((!be16(f, co)) as u64 + ip_acc));
    }
    if let Some(co) = m.l4_csum_off().filter(|_| l4_touched) {
        let hc = be16(f, co);
        // An IPv4 UDP checksum of zero means "none": leave it so.
        if m.proto == proto::UDP && !m.v6 && hc == 0 {
            return;
        }
        let mut c = !fold((!hc) as u64 + l4_acc);
        if m.proto == proto::UDP && c == 0 {
            c = 0xffff;
        }
        put16(f, co, c);
    }
}

/// The headers of an IPv4 TCP/UDP packet without IP options as
/// fixed-size arrays (one length check): the IP header and the L4 bytes
/// up to TCP's checksum, and the L4 checksum's offset in them. `None` for
/// any other shape, and for a UDP datagram with fewer than 10 bytes of
/// payload (the generic path takes them).
#[inline(always)]
fn v4_headers<'a>(f: &'a mut [u8], m: &Meta) -> Option<(&'a mut [u8; 20], &'a mut [u8; 18], usize)> {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let udp = m.proto == proto::UDP;
    // An IPv6 header is 40 bytes: L4 20 bytes after L3 is IPv4 without
    // options.
    if l4 != l3 + 20 || !(udp | (m.proto == proto::TCP)) {
        return None;
    }
    debug_assert!(!m.v6);
    let (ip, l4b) = f.get_mut(l3..)?.split_first_chunk_mut::<20>()?;
    Some((ip, l4b.first_chunk_mut::<18>()?, if udp { 6 } else { 16 }))
}

/// A 16-bit field in memory order.
#[inline(always)]
fn word_ne(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// Writes `addr` (in memory order) at `at` of the IP header and `port` at
/// `port_at` of the L4 header. Returns the checksum terms, in memory
/// order: the address's (both checksums) and the port's (L4 only).
#[inline(always)]
fn put_v4(ip: &mut [u8; 20], l4b: &mut [u8; 18], at: usize, port_at: usize, addr: u32, port: u16) -> (u64, u64) {
    let old = u32::from_ne_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
    ip[at..at + 4].copy_from_slice(&addr.to_ne_bytes());
    let old_port = word_ne(l4b, port_at);
    let new_port = port.to_be_bytes();
    l4b[port_at..port_at + 2].copy_from_slice(&new_port);
    // An unchanged port adds 0xffff, which is 0 to a one's complement sum.
    ((!old) as u64 + addr as u64, (!old_port) as u64 + u16::from_ne_bytes(new_port) as u64)
}

/// Decrements the TTL (at least 2) and updates both checksums by the
/// address terms `addrs` and the port terms `ports` (memory order).
#[inline(always)]
fn finish_v4(ip: &mut [u8; 20], l4b: &mut [u8; 18], csum: usize, m: &mut Meta, addrs: u64, ports: u64) {
    ip[8] -= 1;
    m.ttl -= 1;
    // The TTL's word goes from w to w - 0x100 (the TTL is at least 2), so
    // its term `!w + (w - 0x100)` is 0xfeff whatever the TTL: in memory
    // order, 0xfeff's bytes read as a native word.
    let ttl = u16::from_ne_bytes(0xfeffu16.to_be_bytes()) as u64;
    // (`fold_ne`: Linux's csum_fold, fewer steps than `fold` and the same
    // value for any sum below 2^48; these are below 2^36.)
    let hc = word_ne(ip, 10);
    ip[10..12].copy_from_slice(&(!fold_ne((!hc) as u64 + ttl + addrs)).to_ne_bytes());
    let udp = m.proto == proto::UDP;
    let hc = word_ne(l4b, csum);
    // An IPv4 UDP checksum of zero means "none": leave it so (zero and
    // 0xffff are the same in either byte order).
    if udp && hc == 0 {
        return;
    }
    let mut c = !fold_ne((!hc) as u64 + addrs + ports);
    if udp && c == 0 {
        c = 0xffff;
    }
    l4b[csum..csum + 2].copy_from_slice(&c.to_ne_bytes());
}

/// [`translate`] for an IPv4 TCP/UDP packet without IP options, on
/// fixed-size views of the headers ([`v4_headers`]) and with the
/// addresses as 32-bit words, every field and checksum read and written
/// in memory order (`src`/`dst` addresses are given so: `from_ne_bytes`
/// of their octets). A one's complement sum of byte-swapped words is the
/// byte-swapped sum (RFC 1071 2(B)), so summing in memory order needs no
/// byte swap per field; one's complement sums are congruent mod 0xffff
/// whatever the word width, and neither sum can be zero, so the bytes are
/// exactly those of the generic path. Returns `false`, changing nothing,
/// for any other shape (the generic path then handles it). At least one
/// of `src` and `dst` is given.
#[inline(always)]
fn translate_v4(f: &mut [u8], m: &mut Meta, src: Option<(u32, u16)>, dst: Option<(u32, u16)>) -> bool {
    debug_assert!(src.is_some() || dst.is_some());
    let Some((ip, l4b, csum)) = v4_headers(f, m) else {
        return false;
    };
    let (mut addrs, mut ports) = (0, 0);
    if let Some((a, p)) = src {
        (addrs, ports) = put_v4(ip, l4b, 12, 0, a, p);
        m.sport = p;
    }
    if let Some((a, p)) = dst {
        let (x, y) = put_v4(ip, l4b, 16, 2, a, p);
        (addrs, ports) = (addrs + x, ports + y);
        m.dport = p;
    }
    finish_v4(ip, l4b, csum, m, addrs, ports);
    true
}

/// [`translate`] of one side, chosen by a flag rather than by the
/// caller's code: the source (`src_side`) or the destination becomes
/// `addr`:`port`. For NAT, whose two directions rewrite opposite sides:
/// a packet's direction is data, and one path for both (the side picked
/// as one choice, not a branch per field) mispredicts less when requests and
/// replies alternate. The same bytes as `translate` with `(addr, port)`
/// as `src` or as `dst` (a test compares them).
#[inline(always)]
pub fn translate_side<A: Ip>(f: &mut [u8], m: &mut Meta, src_side: bool, addr: A, port: u16) {
    if !A::V6 {
        if let Some((ip, l4b, csum)) = v4_headers(f, m) {
            let b = addr.bytes();
            let b = b.as_ref();
            let a = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            let (at, port_at) = pick(src_side, (12, 0), (16, 2));
            let (addrs, ports) = put_v4(ip, l4b, at, port_at, a, port);
            (m.sport, m.dport) = pick(src_side, (port, m.dport), (m.sport, port));
            finish_v4(ip, l4b, csum, m, addrs, ports);
            return;
        }
    }
    translate_side_any(f, m, src_side, addr, port);
}

/// [`translate_side`] for any shape, a call.
#[inline(never)]
fn translate_side_any<A: Ip>(f: &mut [u8], m: &mut Meta, src_side: bool, addr: A, port: u16) {
    if src_side {
        translate_any(f, m, Some((addr, port)), None);
    } else {
        translate_any(f, m, None, Some((addr, port)));
    }
}

#[cfg(test)]
mod tests {
    use crate::gen::packet::*;
    use super::super::{parse, tcp_flags};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mask_keeps_prefix() {
        assert_eq!(Ipv4Addr::new(10, 1, 2, 3).mask(24), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(Ipv4Addr::new(10, 1, 2, 3).mask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(Ipv4Addr::new(10, 1, 2, 3).mask(32), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!("2001:db8::1".parse::<Ipv6Addr>().unwrap().mask(32), "2001:db8::".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut f = udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, b"abc");
        let m = parse(&f).unwrap();
        put16(&mut f, m.l4 as usize + 6, 0);
        set_dst(&mut f, &m, Ipv4Addr::new(9, 9, 9, 9));
        assert_eq!(be16(&f, m.l4 as usize + 6), 0);
        assert!(verify(&f), "ip header must still verify");
    }

    fn rewrite_all<A: Ip>(f: &mut [u8], s: A, d: A, sp: u16, dp: u16) {
        let mut m = parse(f).unwrap();
        set_src(f, &m, s);
        set_dst(f, &m, d);
        set_sport(f, &mut m, sp);
        set_dport(f, &mut m, dp);
        if m.ttl > 1 {
            dec_ttl(f, &mut m);
        }
    }

    fn sequential<A: Ip>(f: &mut [u8], m: &mut Meta, src: Option<(A, u16)>, dst: Option<(A, u16)>) {
        dec_ttl(f, m);
        if let Some((a, p)) = src {
            set_src(f, m, a);
            set_sport(f, m, p);
        }
        if let Some((a, p)) = dst {
            set_dst(f, m, a);
            set_dport(f, m, p);
        }
    }

    /// `one` and `other`, each on a copy of `f` whose L4 checksum is set
    /// to `csum` (when given), leave the same bytes and meta.
    fn same_result(f: &[u8], csum: Option<u16>, one: impl FnOnce(&mut [u8], &mut Meta), other: impl FnOnce(&mut [u8], &mut Meta)) -> Result<(), TestCaseError> {
        let mut a = f.to_vec();
        let m0 = parse(&a).unwrap();
        if let (Some(c), Some(co)) = (csum, m0.l4_csum_off()) {
            put16(&mut a, co, c);
        }
        let mut b = a.clone();
        let (mut ma, mut mb) = (m0, m0);
        one(&mut a, &mut ma);
        other(&mut b, &mut mb);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(ma, mb);
        Ok(())
    }

    /// `translate` gives the bytes of the setters applied in turn, also
    /// for checksums of 0 / 0xffff and unchanged ports.
    fn same_as_sequential<A: Ip>(f: &[u8], src: Option<(A, u16)>, dst: Option<(A, u16)>, csum: Option<u16>) -> Result<(), TestCaseError> {
        same_result(f, csum, |f, m| translate(f, m, src, dst), |f, m| sequential(f, m, src, dst))
    }

    proptest! {
        #[test]
        fn translate_equals_the_setters(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
                                        s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(),
                                        sp in prop_oneof![Just(1000u16), Just(0), Just(0xffff), any::<u16>()],
                                        dp in prop_oneof![Just(80u16), Just(0), Just(0xffff), any::<u16>()],
                                        which in 0u8..3,
                                        csum in prop_oneof![Just(None), Just(Some(0u16)), Just(Some(0xffff)), any::<u16>().prop_map(Some)],
                                        payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            fn pick<T>(which: u8, x: T, y: T) -> (Option<T>, Option<T>) {
                match which { 0 => (Some(x), None), 1 => (None, Some(y)), _ => (Some(x), Some(y)) }
            }
            let (a, b) = pick(which, (Ipv4Addr::from(s), sp), (Ipv4Addr::from(d), dp));
            same_as_sequential(&tcp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, tcp_flags::ACK, &payload), a, b, csum)?;
            same_as_sequential(&udp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, &payload), a, b, csum)?;
            let (a, b) = pick(which, (Ipv6Addr::from(s6), sp), (Ipv6Addr::from(d6), dp));
            same_as_sequential(&tcp6(V6A, 1000, V6B, 80, tcp_flags::SYN, &payload), a, b, csum)?;
            same_as_sequential(&udp6(V6A, 1000, V6B, 80, &payload), a, b, csum)?;
        }

        /// `translate_side` (the side a flag) gives the
        /// bytes and meta of `translate` with the same address and port as
        /// `src` or as `dst`: IPv4 and IPv6, TCP and UDP, short and long
        /// payloads (a UDP datagram too short for the IPv4 fast path takes
        /// the generic one), checksums of 0 / 0xffff.
        #[test]
        fn translate_side_equals_translate(a4 in any::<[u8; 4]>(), a6 in any::<[u8; 16]>(),
                                           port in prop_oneof![Just(80u16), Just(1000), Just(0), Just(0xffff), any::<u16>()],
                                           src_side in any::<bool>(),
                                           csum in prop_oneof![Just(None), Just(Some(0u16)), Just(Some(0xffff)), any::<u16>().prop_map(Some)],
                                           payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            fn check<A: Ip>(f: &[u8], src_side: bool, addr: A, port: u16, csum: Option<u16>) -> Result<(), TestCaseError> {
                let (s, d) = if src_side { (Some((addr, port)), None) } else { (None, Some((addr, port))) };
                same_result(f, csum, |f, m| translate_side(f, m, src_side, addr, port), |f, m| translate(f, m, s, d))
            }
            check(&tcp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, tcp_flags::ACK, &payload), src_side, Ipv4Addr::from(a4), port, csum)?;
            check(&udp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, &payload), src_side, Ipv4Addr::from(a4), port, csum)?;
            check(&tcp6(V6A, 1000, V6B, 80, tcp_flags::ACK, &payload), src_side, Ipv6Addr::from(a6), port, csum)?;
            check(&udp6(V6A, 1000, V6B, 80, &payload), src_side, Ipv6Addr::from(a6), port, csum)?;
        }

        /// The IPv4 fast path (fields and checksums summed in memory order,
        /// the TTL's term a constant) writes exactly the bytes of the
        /// generic path, and takes every TCP segment and every UDP datagram
        /// with 10 bytes of payload or more.
        #[test]
        fn the_v4_fast_path_equals_the_generic_path(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
                                                    sp in any::<u16>(), dp in any::<u16>(), which in 0u8..3,
                                                    ttl in 2u8..=255,
                                                    csum in prop_oneof![Just(None), Just(Some(0u16)), Just(Some(0xffff)), any::<u16>().prop_map(Some)],
                                                    payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            let src = (which != 1).then_some((Ipv4Addr::from(s), sp));
            let dst = (which != 0).then_some((Ipv4Addr::from(d), dp));
            let word = |x: Option<(Ipv4Addr, u16)>| x.map(|(a, p)| (u32::from_ne_bytes(a.octets()), p));
            for (f, udp) in [(tcp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, tcp_flags::ACK, &payload), false),
                             (udp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, &payload), true)] {
                let m0 = parse(&f).unwrap();
                let mut a = f.clone();
                a[22] = ttl;
                put16(&mut a, 24, 0);
                let hc = !super::super::checksum::fold(super::super::checksum::sum(0, &a[14..34]));
                put16(&mut a, 24, hc);
                if let (Some(c), Some(co)) = (csum, m0.l4_csum_off()) {
                    put16(&mut a, co, c);
                }
                let m0 = Meta { ttl, ..m0 };
                let mut b = a.clone();
                let (mut ma, mut mb) = (m0, m0);
                let fast = translate_v4(&mut a, &mut ma, word(src), word(dst));
                prop_assert_eq!(fast, !udp || payload.len() >= 10);
                if !fast {
                    prop_assert_eq!(&a, &b);
                    continue;
                }
                translate_any(&mut b, &mut mb, src, dst);
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(ma, mb);
            }
        }

        /// Rewriting every field leaves all checksums equal to a from-scratch
        /// recomputation, for TCP/UDP over IPv4/IPv6.
        #[test]
        fn rewrites_keep_checksums(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
                                   s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(),
                                   sp in any::<u16>(), dp in any::<u16>(),
                                   payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut t4 = tcp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, tcp_flags::ACK, &payload);
            rewrite_all(&mut t4, Ipv4Addr::from(s), Ipv4Addr::from(d), sp, dp);
            prop_assert!(verify(&t4));
            let mut u4 = udp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 53, &payload);
            rewrite_all(&mut u4, Ipv4Addr::from(s), Ipv4Addr::from(d), sp, dp);
            prop_assert!(verify(&u4));
            let mut t6 = tcp6(V6A, 1000, V6B, 80, tcp_flags::SYN, &payload);
            rewrite_all(&mut t6, Ipv6Addr::from(s6), Ipv6Addr::from(d6), sp, dp);
            prop_assert!(verify(&t6));
            let mut u6 = udp6(V6A, 1000, V6B, 53, &payload);
            rewrite_all(&mut u6, Ipv6Addr::from(s6), Ipv6Addr::from(d6), sp, dp);
            prop_assert!(verify(&u6));
        }
    }
}
