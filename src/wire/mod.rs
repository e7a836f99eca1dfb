//! Packet views over frame buffers: parsing, in-place rewrites, checksums.
//!
//! # Contract
//!
//! - A frame is a `&[u8]` / `&mut [u8]` starting at the Ethernet header.
//!   [`parse`] validates it once and returns a [`Meta`] of offsets and the few
//!   fields every stage needs; after a successful parse every accessor in this
//!   module that takes the same frame and `Meta` stays in bounds, so nothing
//!   reachable from packet bytes panics.
//! - Bad input is a [`Reject`]: a counted drop or a pass to the kernel, never
//!   a panic and never a transmitted frame.
//! - Rewrites are in place and keep every checksum valid by RFC 1624
//!   incremental updates ([`checksum`]); no payload is summed and nothing is
//!   allocated.
//! - Headers are parsed with etherparse's slices (validation); writes go
//!   through the small helpers here, which know only offsets.

pub mod checksum;
pub mod frame;
pub mod icmp;
pub mod ip;
pub mod proxy;
pub mod tcpseq;
pub mod toa;

use crate::stats::{DropReason, PassReason};
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};
use std::net::{Ipv4Addr, Ipv6Addr};

pub use frame::Frame;
pub use ip::Ip;

/// Ethernet header length (no VLAN tag).
pub const ETH_HLEN: usize = 14;
/// One 802.1Q (or 802.1ad) tag.
pub const VLAN_HLEN: usize = 4;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;

/// IP protocol numbers xvs knows.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Why a frame is not forwarded: dropped (counted) or passed to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    Drop(DropReason),
    Pass(PassReason),
}

impl From<DropReason> for Reject {
    fn from(r: DropReason) -> Self {
        Reject::Drop(r)
    }
}

/// What [`parse`] learned about a frame. Offsets are from the frame start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Offset of the IP header.
    pub l3: u16,
    /// Offset of the L4 (TCP/UDP/ICMP) header.
    pub l4: u16,
    /// End of the IP datagram (`l3` + IP total length). Bytes after it are
    /// Ethernet padding and are not forwarded.
    pub end: u16,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The frame carries one 802.1Q (or 802.1ad) tag.
    pub vlan: bool,
    /// IPv4 Don't Fragment (always true for IPv6: routers never fragment).
    pub df: bool,
    /// L4 protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TCP/UDP ports (zero for ICMP).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (zero otherwise).
    pub tcp_flags: u8,
    /// ICMP / ICMPv6 type and code (zero otherwise).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The TCP/UDP checksum field holds a partial checksum (the folded
    /// pseudo-header sum a sender with TX checksum offload leaves): see
    /// [`checksum::is_partial`]; [`checksum::complete`] finishes it. Never
    /// set on a fragment: a sender completes the checksum before it
    /// fragments (the kernel's `ip_fragment` / `ip6_fragment`), and a
    /// fragment's segment is not the one the checksum covers.
    pub partial: bool,
    /// A fragment: [`FRAG_FIRST`] (offset 0, more follow: its L4 header is
    /// parsed, its length is the whole datagram's), [`FRAG_LATER`] (no L4
    /// header: `l4` is where its payload starts, ports and flags are zero),
    /// or 0.
    pub frag: u8,
}

/// [`Meta::frag`] of the first fragment of a datagram.
pub const FRAG_FIRST: u8 = 1;
/// [`Meta::frag`] of a fragment at a non-zero offset.
pub const FRAG_LATER: u8 = 2;

impl Meta {
    /// Length of the IP datagram.
    #[inline]
    pub fn ip_len(&self) -> usize {
        (self.end - self.l3) as usize
    }
    /// Offset of the L4 checksum field, if the protocol has one we maintain.
    #[inline]
    pub fn l4_csum_off(&self) -> Option<usize> {
        let l4 = self.l4 as usize;
        match self.proto {
            proto::TCP => Some(l4 + 16),
            proto::UDP => Some(l4 + 6),
            // ICMPv6's checksum covers a pseudo header, ICMPv4's does not.
            proto::ICMPV6 => Some(l4 + 2),
            _ => None,
        }
    }
    /// True for ICMP(v6) error messages that quote the packet they concern.
    #[inline]
    pub fn is_icmp_error(&self) -> bool {
        match (self.v6, self.proto) {
            (false, proto::ICMP) => icmp::v4_is_error(self.icmp_type),
            (true, proto::ICMPV6) => icmp::v6_is_error(self.icmp_type),
            _ => false,
        }
    }
}

/// Reads a big-endian u16. Callers guarantee bounds (after [`parse`]).
#[inline]
pub fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Writes a big-endian u16.
#[inline]
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Parses and validates a frame (Ethernet, at most one 802.1Q or 802.1ad
/// tag, IPv4 (options included) or IPv6, then TCP/UDP/ICMP/ICMPv6
/// headers; fragments are marked in [`Meta::frag`]).
///
/// The common frame (untagged IPv4 without options, TCP or UDP, valid)
/// takes a fast path that accepts exactly what [`parse_checked`] accepts
/// and gives the same [`Meta`]; anything else, valid or not, goes the
/// etherparse-validated way, which names the reason. A property test
/// holds the two together.
///
/// # Errors
/// A [`Reject`] naming why the frame cannot be forwarded: truncation, bad
/// header fields or lengths, malformed or source-routing IPv4 options
/// (which the kernel drops too) are drops; non-IP frames are passes. TTL is the forwarding stage's business. Unknown L4 protocols parse fine (`proto` tells)
/// and are the caller's decision.
#[inline(always)]
pub fn parse(f: &[u8]) -> Result<Meta, Reject> {
    match parse_fast_v4::<true>(f) {
        Some(m) => Ok(m),
        None => parse_checked(f),
    }
}

/// [`parse`] for a frame received on a NIC, whose checksums are complete
/// (only a local sender on a virtual device leaves a partial one): the
/// fast path does not test for a partial checksum and leaves
/// [`Meta::partial`] false. Other frames go [`parse_checked`]'s way and
/// are tested as by [`parse`] (harmless: a full checksum that looks
/// partial survives completion). Otherwise the same [`Meta`] as [`parse`].
///
/// # Errors
/// As [`parse`].
#[inline(always)]
pub fn parse_nic(f: &[u8]) -> Result<Meta, Reject> {
    match parse_fast_v4::<false>(f) {
        Some(m) => Ok(m),
        None => parse_checked(f),
    }
}

/// The fast path of [`parse`]: `Some` only for an untagged, valid IPv4
/// frame without options or fragmentation carrying a valid TCP or UDP
/// header; `None` leaves the frame to [`parse_checked`]. `PARTIAL`:
/// test the L4 checksum for a partial one ([`parse_nic`] does not).
#[inline(always)]
pub(crate) fn parse_fast_v4<const PARTIAL: bool>(f: &[u8]) -> Option<Meta> {
    // Ethernet + IPv4 header + the 8 bytes UDP needs, in one bounds check.
    let h: &[u8; 42] = f.get(..42)?.try_into().ok()?;
    if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 || f.len() > u16::MAX as usize {
        return None;
    }
    let total = u16::from_be_bytes([h[16], h[17]]) as usize;
    let end = ETH_HLEN + total;
    // Fragment offset and more-fragments bits.
    if total < IPV4_HLEN || end > f.len() || (h[20] & 0x3f) | h[21] != 0 {
        return None;
    }
    // One's complement sum of the header: 0xffff when the checksum holds
    // (summed in native order: the sum is byte-order independent). The
    // addresses' part is kept for the pseudo header.
    let word = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]) as u64;
    let addrs = word(26) + word(30);
    if fold_ne(word(14) + word(18) + word(22) + addrs) != 0xffff {
        return None;
    }
    let l4 = ETH_HLEN + IPV4_HLEN;
    let seg = end - l4;
    let pr = h[23];
    let mut m = Meta {
        l3: ETH_HLEN as u16,
        l4: l4 as u16,
        end: end as u16,
        v6: false,
        vlan: false,
        df: h[20] & 0x40 != 0,
        proto: pr,
        ttl: h[22],
        sport: u16::from_be_bytes([h[34], h[35]]),
        dport: u16::from_be_bytes([h[36], h[37]]),
        ..Meta::default()
    };
    // The L4 checksum field, in native order like `addrs`.
    let ck = match pr {
        proto::TCP => {
            let t: &[u8; 18] = f.get(l4..l4 + 18)?.try_into().ok()?;
            let doff = (t[12] >> 4) as usize * 4;
            if seg < 20 || doff < 20 || seg < doff {
                return None;
            }
            m.tcp_flags = t[13];
            u16::from_ne_bytes([t[16], t[17]])
        }
        proto::UDP => {
            let ulen = u16::from_be_bytes([h[38], h[39]]) as usize;
            if seg < 8 || ulen < 8 || ulen > seg {
                return None;
            }
            u16::from_ne_bytes([h[40], h[41]])
        }
        _ => return None,
    };
    // checksum::is_partial on the words at hand: the addresses, and the
    // pseudo header's protocol and length words in native order.
    if PARTIAL {
        let ps = addrs + u16::from_ne_bytes([0, pr]) as u64 + u16::from_ne_bytes((seg as u16).to_be_bytes()) as u64;
        m.partial = fold_ne(ps) == ck;
    }
    Some(m)
}

/// `a` if `c`, else `b`: one choice of whole values where the callers
/// had a branch per field (a packet's direction in a NAT mix, data no
/// branch predictor learns). A plain `if`: the compiler picks a
/// conditional move or one branch. (`std::hint::select_unpredictable`,
/// Rust 1.88, above the MSRV of 1.80, which insists on a select, measured
/// about 30 instructions per packet more on est-nat.)
#[inline(always)]
pub(crate) fn pick<T>(c: bool, a: T, b: T) -> T {
    if c {
        a
    } else {
        b
    }
}

/// Folds a one's complement sum of at most 48 bits into 16 (a value in
/// 1..=0xffff for a non-zero sum): 64 to 32 bits with the end-around
/// carry, then 32 to 16 by adding the word to itself rotated by 16,
/// whose high half is the folded sum with its carry (Linux's
/// `csum_fold`): seven instructions instead of four fold steps.
#[inline(always)]
pub(crate) fn fold_ne(acc: u64) -> u16 {
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let s = s.wrapping_add(c as u32);
    (s.wrapping_add(s.rotate_left(16)) >> 16) as u16
}

/// [`parse`] without its fast path: every frame through etherparse's
/// validating header slices. Same results as [`parse`].
///
/// # Errors
/// As [`parse`].
pub fn parse_checked(f: &[u8]) -> Result<Meta, Reject> {
    if f.len() < ETH_HLEN {
        return Err(DropReason::Truncated.into());
    }
    let mut et = be16(f, 12);
    let mut l3 = ETH_HLEN;
    let mut vlan = false;
    // 802.1ad (an S-tag alone) reads like 802.1Q: the steering program
    // takes both, so the parser must.
    if et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ {
        if f.len() < ETH_HLEN + VLAN_HLEN {
            return Err(DropReason::Truncated.into());
        }
        et = be16(f, 16);
        l3 += VLAN_HLEN;
        vlan = true;
    }
    if f.len() > u16::MAX as usize {
        return Err(DropReason::BadIpLength.into());
    }
    match et {
        ETHERTYPE_IPV4 => parse_v4(f, l3, vlan),
        ETHERTYPE_IPV6 => parse_v6(f, l3, vlan),
        _ => Err(Reject::Pass(PassReason::NonIp)),
    }
}

#[inline]
fn parse_v4(f: &[u8], l3: usize, vlan: bool) -> Result<Meta, Reject> {
    let h = Ipv4HeaderSlice::from_slice(&f[l3..]).map_err(|e| match e {
        etherparse::err::ipv4::HeaderSliceError::Len(_) => DropReason::Truncated,
        etherparse::err::ipv4::HeaderSliceError::Content(_) => DropReason::BadIpHeader,
    })?;
    let ihl = h.slice().len();
    let total = h.total_len() as usize;
    if total < ihl {
        return Err(DropReason::BadIpLength.into());
    }
    if l3 + total > f.len() {
        return Err(DropReason::Truncated.into());
    }
    if checksum::checksum(h.slice()) != 0 {
        return Err(DropReason::BadIpChecksum.into());
    }
    if ihl != IPV4_HLEN {
        ipv4_options(&h.slice()[IPV4_HLEN..])?;
    }
    let offset = h.fragments_offset().value() as usize * 8;
    let frag = if offset != 0 {
        // The kernel refuses a fragment reaching past 64 KiB.
        if offset + total - ihl > u16::MAX as usize {
            return Err(DropReason::BadIpLength.into());
        }
        FRAG_LATER
    } else if h.more_fragments() {
        FRAG_FIRST
    } else {
        0
    };
    let mut m = Meta {
        l3: l3 as u16,
        l4: (l3 + ihl) as u16,
        end: (l3 + total) as u16,
        v6: false,
        vlan,
        df: h.dont_fragment(),
        proto: h.protocol().0,
        ttl: h.ttl(),
        frag,
        ..Meta::default()
    };
    if frag != FRAG_LATER {
        parse_l4(f, &mut m)?;
    }
    Ok(m)
}

/// Checks IPv4 options as the kernel's `ip_options_compile` walks them:
/// each option fits the header; source routes (LSRR, SSRR) are refused,
/// as the kernel refuses them with `accept_source_route` off (its
/// default). Other options are forwarded as they are.
#[cold]
fn ipv4_options(o: &[u8]) -> Result<(), Reject> {
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => break, // end of options
            1 => i += 1, // no-op
            t => {
                let len = *o.get(i + 1).ok_or(DropReason::BadIpOptions)? as usize;
                if len < 2 || i + len > o.len() {
                    return Err(DropReason::BadIpOptions.into());
                }
                if t == 0x83 || t == 0x89 {
                    return Err(DropReason::SourceRoute.into());
                }
                i += len;
            }
        }
    }
    Ok(())
}

/// The identification of a fragment (IPv4's 16 bits, IPv6's 32), for a
/// frame [`parse`] marked as one (0 otherwise).
pub fn frag_id(f: &[u8], m: &Meta) -> u32 {
    let l3 = m.l3 as usize;
    if !m.v6 {
        return be16(f, l3 + 4) as u32;
    }
    // Walk the chain again to the fragment header (parse checked it).
    let (mut nh, mut off) = (f[l3 + 6], l3 + IPV6_HLEN);
    for _ in 0..=MAX_V6_EXT {
        match nh {
            44 => return u32::from_be_bytes([f[off + 4], f[off + 5], f[off + 6], f[off + 7]]),
            0 | 43 | 60 => {
                nh = f[off];
                off += (f[off + 1] as usize + 1) * 8;
            }
            _ => break,
        }
    }
    0
}

/// Most extension headers xvs walks before giving up (counted drop).
const MAX_V6_EXT: usize = 4;

#[inline]
fn parse_v6(f: &[u8], l3: usize, vlan: bool) -> Result<Meta, Reject> {
    let h = Ipv6HeaderSlice::from_slice(&f[l3..]).map_err(|e| match e {
        etherparse::err::ipv6::HeaderSliceError::Len(_) => DropReason::Truncated,
        etherparse::err::ipv6::HeaderSliceError::Content(_) => DropReason::BadIpHeader,
    })?;
    let end = l3 + IPV6_HLEN + h.payload_length() as usize;
    if end > f.len() {
        return Err(DropReason::Truncated.into());
    }
    let mut nh = h.next_header().0;
    let mut off = l3 + IPV6_HLEN;
    let mut n = 0;
    let mut frag = 0;
    // Hop-by-hop, routing, destination options: skipped; a fragment
    // header too (its first fragment holds the rest of the chain and the
    // L4 header, RFC 7112), unless its offset is not zero.
    while let 0 | 43 | 60 | 44 = nh {
        n += 1;
        if n > MAX_V6_EXT || off + 8 > end {
            return Err(DropReason::BadIpv6Ext.into());
        }
        let len = if nh == 44 { 8 } else { (f[off + 1] as usize + 1) * 8 };
        if nh == 44 {
            let fo = be16(f, off + 2);
            // Offset 0 and no more fragments: an atomic fragment
            // (RFC 6946), a whole datagram.
            frag = if fo & 0xfff8 != 0 {
                FRAG_LATER
            } else if fo & 1 != 0 {
                FRAG_FIRST
            } else {
                frag
            };
        }
        nh = f[off];
        off += len;
        if off > end {
            return Err(DropReason::BadIpv6Ext.into());
        }
        if frag == FRAG_LATER {
            if (fo6(f, off - 8) as usize) + (end - off) > u16::MAX as usize {
                return Err(DropReason::BadIpLength.into());
            }
            break;
        }
    }
    let mut m = Meta {
        l3: l3 as u16,
        l4: off as u16,
        end: end as u16,
        v6: true,
        vlan,
        df: true,
        proto: nh,
        ttl: h.hop_limit(),
        frag,
        ..Meta::default()
    };
    if frag != FRAG_LATER {
        parse_l4(f, &mut m)?;
    }
    Ok(m)
}

/// The byte offset an IPv6 fragment header at `off` gives.
#[inline]
fn fo6(f: &[u8], off: usize) -> u16 {
    be16(f, off + 2) & 0xfff8
}

#[inline]
fn parse_l4(f: &[u8], m: &mut Meta) -> Result<(), Reject> {
    let l4 = m.l4 as usize;
    let seg = &f[l4..m.end as usize];
    match m.proto {
        proto::TCP => {
            let t = TcpHeaderSlice::from_slice(seg).map_err(|_| DropReason::BadL4Header)?;
            m.sport = t.source_port();
            m.dport = t.destination_port();
            m.tcp_flags = seg[13];
            m.partial = m.frag == 0 && partial(f, m);
        }
        proto::UDP => {
            if seg.len() < 8 {
                return Err(DropReason::BadL4Header.into());
            }
            let ulen = be16(seg, 4) as usize;
            // IPv6 jumbograms (ulen 0) are not supported: a counted drop.
            // A first fragment holds only the head of its datagram.
            if ulen < 8 || (ulen > seg.len() && m.frag == 0) {
                return Err(DropReason::BadL4Header.into());
            }
            m.sport = be16(seg, 0);
            m.dport = be16(seg, 2);
            m.partial = m.frag == 0 && partial(f, m);
        }
        proto::ICMP | proto::ICMPV6 => {
            if seg.len() < 8 {
                return Err(DropReason::BadL4Header.into());
            }
            m.icmp_type = seg[0];
            m.icmp_code = seg[1];
        }
        _ => {}
    }
    Ok(())
}

/// [`checksum::is_partial`] for either family.
#[inline]
fn partial(f: &[u8], m: &Meta) -> bool {
    if m.v6 {
        checksum::is_partial::<Ipv6Addr>(f, m)
    } else {
        checksum::is_partial::<Ipv4Addr>(f, m)
    }
}

/// Makes the frame's 802.1Q tag say `vid`, 0 meaning no tag: rewrites
/// the tag's id (priority bits 0, as the kernel's VLAN devices send, and
/// an 802.1ad tag's type to 802.1Q: the links are 802.1Q VLANs), puts
/// a tag in (4 bytes into the headroom) or takes it out; `m`'s offsets
/// follow the IP header. A frame already 802.1Q-tagged `vid` is left as it is.
///
/// # Errors
/// [`DropReason::NoHeadroom`] when there is no room for the tag.
#[cold]
#[inline(never)]
pub fn set_vlan(fr: &mut Frame<'_>, m: &mut Meta, vid: u16) -> Result<(), DropReason> {
    match (m.vlan, vid) {
        (false, 0) => {}
        (true, 0) => {
            // The MACs move 4 bytes on, over the tag.
            fr.data_mut().copy_within(0..12, VLAN_HLEN);
            if !fr.pop_front(VLAN_HLEN) {
                return Err(DropReason::Truncated);
            }
            m.l3 -= VLAN_HLEN as u16;
            m.l4 -= VLAN_HLEN as u16;
            m.end -= VLAN_HLEN as u16;
            m.vlan = false;
        }
        (true, v) => {
            // Our links are 802.1Q: an 802.1ad tag leaves as one.
            let f = fr.data_mut();
            if be16(f, 14) & 0x0fff != v || be16(f, 12) != ETHERTYPE_VLAN {
                put16(f, 12, ETHERTYPE_VLAN);
                put16(f, 14, v);
            }
        }
        (false, v) => {
            if !fr.push_front(VLAN_HLEN) {
                return Err(DropReason::NoHeadroom);
            }
            let f = fr.data_mut();
            f.copy_within(VLAN_HLEN..VLAN_HLEN + 12, 0);
            put16(f, 12, ETHERTYPE_VLAN);
            put16(f, 14, v);
            m.l3 += VLAN_HLEN as u16;
            m.l4 += VLAN_HLEN as u16;
            m.end += VLAN_HLEN as u16;
            m.vlan = true;
        }
    }
    Ok(())
}

/// The VLAN id of a frame `m` says is tagged (0 for an untagged one).
#[inline]
pub fn vlan_id(f: &[u8], m: &Meta) -> u16 {
    if m.vlan {
        be16(f, 14) & 0x0fff
    } else {
        0
    }
}

/// An Ethernet address.
pub type Mac = [u8; 6];

/// Sets destination and source MAC.
#[inline]
pub fn set_macs(f: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) {
    // One length test for both (a frame shorter than the two MACs, never
    // one the parser took, is left as it is).
    if let Some(h) = f.first_chunk_mut::<12>() {
        h[..6].copy_from_slice(dst);
        h[6..].copy_from_slice(src);
    }
}

/// Reads the source MAC.
#[inline]
pub fn src_mac(f: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&f[6..12]);
    m
}

/// Reads the destination MAC.
#[inline]
pub fn dst_mac(f: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&f[0..6]);
    m
}

#[cfg(test)]
mod tests {
    use crate::gen::packet::*;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn parses_tcp_v4() {
        let f = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::SYN, b"");
        let m = parse(&f).unwrap();
        assert_eq!((m.l3, m.l4, m.end as usize), (14, 34, f.len()));
        assert_eq!((m.sport, m.dport, m.proto, m.tcp_flags), (1234, 80, 6, tcp_flags::SYN));
        assert!(!m.v6);
        assert_eq!(Ipv4Addr::src(&f, &m), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(Ipv4Addr::dst(&f, &m), Ipv4Addr::new(10, 0, 0, 100));
    }

    #[test]
    fn parses_vlan_udp_v6() {
        let f = vlan(udp6(V6A, 53, V6B, 5353, b"hello"), 42);
        let m = parse(&f).unwrap();
        assert!(m.vlan && m.v6);
        assert_eq!((m.l3, m.l4), (18, 58));
        assert_eq!((m.sport, m.dport, m.proto), (53, 5353, 17));
        assert_eq!(Ipv6Addr::src(&f, &m), Ipv6Addr::from(V6A));
    }

    #[test]
    fn strips_ethernet_padding() {
        let mut f = udp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, b"");
        let ip_end = f.len();
        f.resize(60, 0);
        let m = parse(&f).unwrap();
        assert_eq!(m.end as usize, ip_end);
    }

    #[test]
    fn set_vlan_puts_in_changes_and_takes_out_a_tag() {
        let plain = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"data");
        let mut b = vec![0u8; 64 + plain.len() + 8];
        b[64..64 + plain.len()].copy_from_slice(&plain);
        let mut fr = Frame::new(&mut b, 64, plain.len());
        let mut m = parse(fr.data()).unwrap();
        set_vlan(&mut fr, &mut m, 20).unwrap();
        assert_eq!(fr.data(), &vlan(plain.clone(), 20)[..], "in");
        assert_eq!(m, parse(fr.data()).unwrap(), "the offsets follow");
        set_vlan(&mut fr, &mut m, 20).unwrap();
        assert_eq!(fr.data(), &vlan(plain.clone(), 20)[..], "the same tag: untouched");
        set_vlan(&mut fr, &mut m, 4094).unwrap();
        assert_eq!(fr.data(), &vlan(plain.clone(), 4094)[..], "changed");
        assert_eq!(vlan_id(fr.data(), &m), 4094);
        set_vlan(&mut fr, &mut m, 0).unwrap();
        assert_eq!(fr.data(), &plain[..], "out");
        assert_eq!((m, vlan_id(fr.data(), &m)), (parse(fr.data()).unwrap(), 0));
        set_vlan(&mut fr, &mut m, 0).unwrap();
        assert_eq!(fr.data(), &plain[..], "untagged stays so");
        // A priority tag's bits go when the id changes.
        let mut prio = vlan(plain.clone(), 7);
        prio[14] |= 0xe0;
        let mut b = vec![0u8; 64 + prio.len()];
        b[64..].copy_from_slice(&prio);
        let mut fr = Frame::new(&mut b, 64, prio.len());
        let mut m = parse(fr.data()).unwrap();
        set_vlan(&mut fr, &mut m, 8).unwrap();
        assert_eq!(fr.data(), &vlan(plain.clone(), 8)[..]);
        // An 802.1ad tag leaves as an 802.1Q one, the same id or not.
        for vid in [8, 9] {
            let mut ad = vlan(plain.clone(), 8);
            ad[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
            let mut b = vec![0u8; 64 + ad.len()];
            b[64..].copy_from_slice(&ad);
            let mut fr = Frame::new(&mut b, 64, ad.len());
            let mut m = parse(fr.data()).unwrap();
            set_vlan(&mut fr, &mut m, vid).unwrap();
            assert_eq!(fr.data(), &vlan(plain.clone(), vid)[..], "802.1ad to {vid}");
        }
        // No headroom: refused, the frame as it was.
        let mut b = plain.clone();
        let mut fr = Frame::new(&mut b, 0, plain.len());
        let mut m = parse(fr.data()).unwrap();
        assert_eq!(set_vlan(&mut fr, &mut m, 5), Err(DropReason::NoHeadroom));
        assert_eq!((fr.data(), m), (&plain[..], parse(&plain).unwrap()));
    }

    #[test]
    fn non_ip_passes() {
        let mut f = tcp4([1, 1, 1, 1], 1, [2, 2, 2, 2], 2, 0, b"");
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&f), Err(Reject::Pass(PassReason::NonIp)));
    }

    /// The bad-input corpus: each malformed frame has exactly one reason.
    #[test]
    fn bad_frames_are_counted_drops() {
        for (name, f, want) in bad_corpus() {
            assert_eq!(parse(&f), Err(want), "{name}");
        }
    }

    #[test]
    fn every_prefix_of_a_good_frame_is_rejected_without_panic() {
        for f in [
            tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"payload"),
            vlan(udp6(V6A, 53, V6B, 5353, b"x"), 7),
            icmp4_echo([1, 2, 3, 4], [5, 6, 7, 8]),
        ] {
            for n in 0..f.len() {
                assert!(parse(&f[..n]).is_err(), "prefix {n} parsed");
            }
            assert!(parse(&f).is_ok());
        }
    }

    /// `parse_nic` gives `parse`'s result, without the partial mark where
    /// the fast path took the frame (and with it elsewhere).
    fn nic_agrees(f: &[u8]) {
        let (mut a, b) = (parse(f), parse_nic(f));
        if let (Ok(m), true) = (&mut a, parse_fast_v4::<false>(f).is_some()) {
            m.partial = false;
        }
        assert_eq!(a, b);
    }

    /// A NIC's parse skips the fast path's partial test only: a partial
    /// sum it would have marked is left alone, a tagged (slow path) one
    /// is still marked.
    #[test]
    fn nic_parse_skips_the_partial_test_only() {
        let p = partial4(tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"payload"));
        assert!(parse(&p).unwrap().partial);
        let m = parse_nic(&p).unwrap();
        assert!(!m.partial);
        assert_eq!(Meta { partial: true, ..m }, parse(&p).unwrap());
        let mut tagged = p[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0, 0, 20]);
        tagged.extend_from_slice(&p[12..]);
        assert!(parse_nic(&tagged).unwrap().partial, "the validated path still tests");
    }

    /// The fast path agrees with the validated path on good frames of
    /// every shape and on every one-byte change of them.
    #[test]
    fn fast_path_agrees_with_etherparse_on_mutations() {
        let frames = [
            tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"payload"),
            tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::SYN, b""),
            udp4([10, 0, 0, 1], 53, [10, 0, 0, 100], 53, b"query"),
            udp4([10, 0, 0, 1], 53, [10, 0, 0, 100], 53, b""),
            icmp4_echo([1, 2, 3, 4], [5, 6, 7, 8]),
            partial4(tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"payload")),
            partial4(udp4([10, 0, 0, 1], 53, [10, 0, 0, 100], 53, b"query")),
        ];
        let mut fast = 0;
        for f in frames {
            let mut padded = f.clone();
            padded.resize(f.len().max(60), 0);
            for g in [f, padded] {
                if parse_fast_v4::<true>(&g).is_some() {
                    fast += 1;
                }
                assert_eq!(parse(&g), parse_checked(&g));
                nic_agrees(&g);
                for at in 0..g.len() {
                    for v in [0u8, 1, 0x0f, 0x40, 0x45, 0x46, 0x80, 0xff, g[at].wrapping_add(1), g[at] ^ 0x20] {
                        let mut h = g.clone();
                        h[at] = v;
                        assert_eq!(parse(&h), parse_checked(&h), "byte {at} = {v:#x}");
                        nic_agrees(&h);
                    }
                }
                for n in 0..g.len() {
                    assert_eq!(parse(&g[..n]), parse_checked(&g[..n]), "prefix {n}");
                }
            }
        }
        assert!(fast >= 12, "the good TCP/UDP frames take the fast path");
    }

    proptest::proptest! {
        /// The fast fold is the reference fold.
        #[test]
        fn fold_ne_is_fold(acc in 1u64..(1 << 48)) {
            proptest::prop_assert_eq!(fold_ne(acc), checksum::fold(acc));
        }
    }

    /// `pick` takes `a` when told and `b` otherwise, whole values.
    #[test]
    fn pick_picks_by_the_flag() {
        assert_eq!(pick(true, (1u32, 2u16), (3, 4)), (1, 2));
        assert_eq!(pick(false, (1u32, 2u16), (3, 4)), (3, 4));
    }

    #[test]
    fn fold_ne_edges() {
        for acc in [1u64, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, 0x1_ffff_fffe, 0xffff_ffff_ffff, 0xffff_0000] {
            assert_eq!(fold_ne(acc), checksum::fold(acc), "{acc:#x}");
        }
    }

    /// `f` (IPv4) with the partial checksum of a sender with offload.
    fn partial4(mut f: Vec<u8>) -> Vec<u8> {
        let m = parse(&f).unwrap();
        checksum::make_partial::<Ipv4Addr>(&mut f, &m);
        f
    }

    /// Both paths see partial checksums (and the fast path's congruence
    /// test is checksum::is_partial's fold), on every shape.
    #[test]
    fn partial_checksums_are_seen_by_both_paths() {
        let t = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"payload");
        let u = udp4([10, 0, 0, 1], 53, [10, 0, 0, 100], 53, b"q");
        for f in [t.clone(), u.clone()] {
            assert!(!parse(&f).unwrap().partial);
            let p = partial4(f);
            assert!(parse(&p).unwrap().partial, "fast path");
            assert!(parse_checked(&p).unwrap().partial, "validated path");
            assert!(parse(&vlan(p, 5)).unwrap().partial, "tagged: validated path");
        }
        for f in [tcp6(V6A, 1, V6B, 2, tcp_flags::SYN, b"abc"), udp6(V6A, 1, V6B, 2, b"abc")] {
            assert!(!parse(&f).unwrap().partial);
            let mut p = f.clone();
            let m = parse(&p).unwrap();
            checksum::make_partial::<Ipv6Addr>(&mut p, &m);
            assert!(parse(&p).unwrap().partial);
        }
        assert!(!parse(&icmp4_echo([1, 2, 3, 4], [5, 6, 7, 8])).unwrap().partial);
    }

    proptest::proptest! {
        /// The fast path and the validated path agree on arbitrary frames
        /// that start like IPv4 (so the fast path's checks are reached).
        #[test]
        fn fast_path_agrees_with_etherparse(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
                                            total in 0u16..140, l4 in proptest::prelude::any::<[u8; 14]>(),
                                            pr in proptest::prop_oneof![proptest::prelude::Just(6u8), proptest::prelude::Just(17u8), proptest::prelude::any::<u8>()],
                                            frag in proptest::prelude::any::<u16>(), fix in proptest::prelude::any::<bool>()) {
            let mut f = vec![0u8; 14];
            f[12] = 0x08;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&(if fix { frag & 0x4000 } else { frag }).to_be_bytes());
            f.extend_from_slice(&[64, pr, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            if fix {
                refresh_ipv4_checksum(&mut f, 14);
            }
            f.extend_from_slice(&l4);
            f.extend_from_slice(&tail);
            proptest::prop_assert_eq!(parse(&f), parse_checked(&f));
        }

        /// Partial checksums: the fast path's test agrees with
        /// `checksum::is_partial` for any addresses, lengths and field,
        /// and sees every partial sum.
        #[test]
        fn fast_path_partial_test_agrees(s in proptest::prelude::any::<[u8; 4]>(), d in proptest::prelude::any::<[u8; 4]>(),
                                         payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                                         ck in proptest::prelude::any::<u16>(), udp in proptest::prelude::any::<bool>()) {
            let f = if udp { udp4(s, 1, d, 2, &payload) } else { tcp4(s, 1, d, 2, tcp_flags::ACK, &payload) };
            let p = partial4(f.clone());
            let mut g = f.clone();
            let co = if udp { 40 } else { 50 };
            put16(&mut g, co, ck);
            for x in [&f, &p, &g] {
                let (a, b) = (parse(x).unwrap(), parse_checked(x).unwrap());
                proptest::prop_assert_eq!(a, b);
                proptest::prop_assert_eq!(a.partial, checksum::is_partial::<Ipv4Addr>(x, &a));
            }
            proptest::prop_assert!(parse(&p).unwrap().partial);
            for x in [&f, &p, &g] {
                nic_agrees(x);
            }
        }

        /// Arbitrary bytes never panic the parser, and whatever parses has
        /// in-bounds offsets.
        #[test]
        fn parse_never_panics(f in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(m) = parse(&f) {
                proptest::prop_assert!(m.l3 < m.l4 && m.l4 <= m.end && m.end as usize <= f.len());
            }
        }

        /// Mutating one byte of a valid frame never panics.
        #[test]
        fn mutated_frames_never_panic(at in 0usize..80, v in proptest::prelude::any::<u8>()) {
            let mut f = tcp4([10, 0, 0, 1], 1234, [10, 0, 0, 100], 80, tcp_flags::ACK, b"0123456789abcdefghijklmnopqrstuv");
            let at = at % f.len();
            f[at] = v;
            let _ = parse(&f);
            let mut g = udp6(V6A, 1, V6B, 2, b"0123456789");
            let at2 = at % g.len();
            g[at2] = v;
            let _ = parse(&g);
        }
    }
}
