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
//! MTU the client must use (the caller sends it); an IPv4 one without DF
//! is encapsulated whole and then fragmented (the outer datagram, as
//! IPVS's `ip_vs_tunnel_xmit` leaves to `ip_fragment`): the frame becomes
//! the first fragment, the others are written into the worker's
//! [`Staged`] frames ([`fragment`]), which its driver sends after the
//! burst.

use super::{tagged, to_link};
use crate::ipvs::netif::{Egress, Links};
use crate::ipvs::conn::Conn;
use crate::stats::DropReason;
use crate::wire::checksum::checksum;
use crate::wire::{be16, proto, put16, set_macs, Frame, Ip, Meta, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Why a packet could not be encapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunError {
    Drop(DropReason),
    /// Too big for the egress MTU with DF set: tell the client to use `mtu`.
    NeedFrag { mtu: u16 },
    /// Encapsulated and addressed for `port`, but longer than the egress
    /// `mtu` and allowed to be fragmented: the caller [`fragment`]s it.
    Fragment { port: u8, mtu: u16 },
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
/// fragmentation is not allowed; [`TunError::Fragment`] when it would and
/// it is (IPv4 without DF: the frame is encapsulated, to be fragmented);
/// a drop for no headroom, no tunnel source address on the egress link,
/// no headroom for a VLAN tag.
///
/// The common frame (IPv4 in IPv4, untagged in and out, DF clear or
/// within the MTU) is encapsulated inline; every other takes a call.
#[inline(always)]
pub fn xmit<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links, ip_id: &mut IpIds) -> Result<u8, TunError> {
    if !A::V6 {
        // (A link that does not exist reads as tagged: the call drops it.)
        let link = links.egress(c.dest_hop.link);
        let too_big = m.ip_len() + 20 > link.mtu as usize;
        if !(m.v6 || m.l3 != 14 || tagged(m, link.vid) || too_big && m.df) && link.has_v4 {
            return xmit_v4(fr, m, c, link, u32::from_be_bytes(link.v4), ip_id, too_big);
        }
    }
    xmit_any(fr, m, c, links, ip_id)
}

/// [`xmit`] for any frame.
#[inline(never)]
fn xmit_any<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, links: &Links, ip_id: &mut IpIds) -> Result<u8, TunError> {
    let link = links.get(c.dest_hop.link as usize).ok_or(DropReason::NoNeighbour)?;
    let outer = A::HLEN;
    let inner_len = m.ip_len();
    let too_big = inner_len + outer > link.mtu as usize;
    if too_big && (m.df || A::V6) {
        return Err(TunError::NeedFrag { mtu: link.mtu.saturating_sub(outer as u16) });
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
    let port = if !tagged(m, link.vid) {
        set_macs(f, &c.dest_hop.mac, &link.mac);
        link.port
    } else {
        to_link(fr, m, &c.dest_hop, link)?
    };
    if too_big {
        return Err(TunError::Fragment { port, mtu: link.mtu });
    }
    Ok(port)
}

/// [`xmit`] for an IPv4 packet to an IPv4 real server, untagged in and
/// out (`m.l3 == 14`, no tag on the egress link): the Ethernet header is
/// written whole (MACs and type) instead of moved, and the outer header's
/// checksum summed from its words, with the same bytes as the generic
/// path (both sums are non-zero, so their folds agree: RFC 1071).
#[inline(always)]
fn xmit_v4<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, link: &Egress, src: u32, ip_id: &mut IpIds, too_big: bool) -> Result<u8, TunError> {
    let inner_len = m.ip_len();
    fr.truncate(m.end as usize);
    if !fr.push_front(20) {
        return Err(DropReason::NoHeadroom.into());
    }
    // Ethernet, the outer header and the inner header's first two bytes
    // (every parsed IPv4 packet has them).
    let Some(f) = fr.data_mut().first_chunk_mut::<36>() else {
        return Err(DropReason::NoHeadroom.into());
    };
    let tos = f[35];
    let dst = {
        let b = c.daddr.bytes();
        let b = b.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    };
    let id = if m.df { 0 } else { ip_id.take() };
    let len = (inner_len + 20) as u16;
    let frag = if m.df { 0x4000u16 } else { 0 };
    let ttl_proto = u16::from_be_bytes([m.ttl, proto::IPIP]);
    let sum = (0x4500 | tos as u32) + len as u32 + id as u32 + frag as u32 + ttl_proto as u32
        + (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff);
    // Below 2^20 and non-zero: one end-around carry folds it.
    let cs = !((sum.wrapping_add(sum.rotate_left(16)) >> 16) as u16);
    f[..6].copy_from_slice(&c.dest_hop.mac);
    f[6..12].copy_from_slice(&link.mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f[14] = 0x45;
    f[15] = tos;
    f[16..18].copy_from_slice(&len.to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[22..24].copy_from_slice(&ttl_proto.to_be_bytes());
    f[24..26].copy_from_slice(&cs.to_be_bytes());
    f[26..30].copy_from_slice(&src.to_be_bytes());
    f[30..34].copy_from_slice(&dst.to_be_bytes());
    m.l3 = 14;
    m.l4 = 34;
    m.end = (34 + inner_len) as u16;
    m.proto = proto::IPIP;
    if too_big {
        return Err(TunError::Fragment { port: link.port, mtu: link.mtu });
    }
    Ok(link.port)
}

/// Frames made beside the burst's own (the fragments after the first of
/// an outer datagram), kept in one buffer allocated with the worker, until
/// its driver sends them ([`Staged::drain`]) after the burst.
pub struct Staged {
    buf: Box<[u8]>,
    /// (origin, port, start, len) of each frame in `buf`, in order; the
    /// origin is the address of the buffer of the frame it was cut from
    /// (drivers that write frames in order find their place by it).
    frames: Vec<(usize, u8, u32, u32)>,
    used: usize,
}

/// Bytes of staged frames a worker holds at most: a burst of 32 frames of
/// 1500 bytes tunnelled over a 1500-byte MTU makes 32 second fragments.
pub const STAGED_BYTES: usize = 128 * 1024;
/// Staged frames at most.
pub const STAGED_FRAMES: usize = 96;

impl Default for Staged {
    fn default() -> Self {
        Staged::new()
    }
}

impl Staged {
    /// Empty, with its room allocated (once, with the worker).
    pub fn new() -> Staged {
        Staged { buf: vec![0u8; STAGED_BYTES].into_boxed_slice(), frames: Vec::with_capacity(STAGED_FRAMES), used: 0 }
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Room for `n` more frames of `bytes` in all?
    fn fits(&self, n: usize, bytes: usize) -> bool {
        self.frames.len() + n <= STAGED_FRAMES && self.used + bytes <= self.buf.len()
    }

    /// Appends a frame of `len` bytes for `port`, written by `write`.
    fn push(&mut self, origin: usize, port: u8, len: usize, write: impl FnOnce(&mut [u8])) {
        let at = self.used;
        write(&mut self.buf[at..at + len]);
        self.frames.push((origin, port, at as u32, len as u32));
        self.used += len;
    }

    /// Gives each frame to `send` (port, bytes), in order, and empties the
    /// store. Returns (frames, bytes) `send` refused (returned false for).
    pub fn drain(&mut self, mut send: impl FnMut(u8, &[u8]) -> bool) -> (u64, u64) {
        let mut refused = (0, 0);
        for &(_, port, at, len) in &self.frames {
            let b = &self.buf[at as usize..(at + len) as usize];
            if !send(port, b) {
                refused.0 += 1;
                refused.1 += len as u64;
            }
        }
        self.frames.clear();
        self.used = 0;
        refused
    }

    /// The frames held, in order: (origin, port, bytes).
    pub fn iter(&self) -> impl Iterator<Item = (usize, u8, &[u8])> {
        self.frames.iter().map(|&(o, port, at, len)| (o, port, &self.buf[at as usize..(at + len) as usize]))
    }

    /// Empties the store.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.used = 0;
    }
}

/// Fragments the encapsulated IPv4 datagram in `fr` (its outer header at
/// `m.l3`, as [`xmit`] left it) for an egress `mtu`, as the kernel's
/// `ip_fragment`: every fragment but the last carries a multiple of 8
/// bytes of the outer payload, all carry the outer header with their
/// offset, more-fragments flag, length and checksum. The frame becomes the
/// first fragment; the others, each behind a copy of the frame's Ethernet
/// header, go to `out` for `port`. Returns the (frames, bytes) added to
/// `out`.
///
/// # Errors
/// [`DropReason::TooBig`] when the MTU leaves no room for 8 bytes of
/// payload, or `out` has no room for the fragments (nothing is added).
#[cold]
#[inline(never)]
pub fn fragment(fr: &mut Frame<'_>, m: &mut Meta, port: u8, mtu: u16, out: &mut Staged) -> Result<(u64, u64), DropReason> {
    let l3 = m.l3 as usize;
    let origin = fr.buf.as_ptr() as usize;
    let f = fr.data_mut();
    let ihl = ((f.get(l3).copied().unwrap_or(0) & 0x0f) as usize) * 4;
    let total = m.end as usize;
    if ihl < 20 || total > f.len() || l3 + ihl > total {
        return Err(DropReason::TooBig);
    }
    let payload = total - l3 - ihl;
    let per = (mtu as usize).saturating_sub(ihl) & !7;
    if per == 0 || payload <= per {
        return Err(DropReason::TooBig);
    }
    let rest = payload - per;
    let n = rest.div_ceil(per);
    let bytes = rest + n * (l3 + ihl);
    if !out.fits(n, bytes) {
        return Err(DropReason::TooBig);
    }
    // The offset bits of the header as it is (0: the datagram is whole).
    let base_off = be16(f, l3 + 6) & 0x1fff;
    let head = &f[..l3 + ihl];
    let mut off = per;
    while off < payload {
        let len = per.min(payload - off);
        let more = off + len < payload;
        out.push(origin, port, l3 + ihl + len, |b| {
            b[..l3 + ihl].copy_from_slice(head);
            b[l3 + ihl..].copy_from_slice(&f[l3 + ihl + off..l3 + ihl + off + len]);
            frag_header(&mut b[l3..l3 + ihl], ihl + len, base_off + (off / 8) as u16, more);
        });
        off += len;
    }
    frag_header(&mut f[l3..l3 + ihl], ihl + per, base_off, true);
    fr.truncate(l3 + ihl + per);
    m.end = (l3 + ihl + per) as u16;
    Ok((n as u64, bytes as u64))
}

/// Sets an IPv4 header's total length, fragment offset (in 8-byte units)
/// and more-fragments flag, and its checksum anew.
fn frag_header(h: &mut [u8], total: usize, off8: u16, more: bool) {
    put16(h, 2, total as u16);
    let flags = (be16(h, 6) & 0x4000) | if more { 0x2000 } else { 0 };
    put16(h, 6, flags | (off8 & 0x1fff));
    put16(h, 10, 0);
    let cs = checksum(h);
    put16(h, 10, cs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::{fragment4, reassemble, tcp4, udp4};
    use std::collections::HashSet;

    /// `inner` (an Ethernet frame) in an IPIP header with id `id`, no DF,
    /// as `xmit` leaves it before fragmenting.
    fn ipip(inner: &[u8], id: u16) -> Vec<u8> {
        let ip = &inner[14..];
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((ip.len() + 20) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h[8] = 63;
        h[9] = proto::IPIP;
        h[12..16].copy_from_slice(&[10, 0, 1, 254]);
        h[16..20].copy_from_slice(&[10, 0, 1, 1]);
        let cs = checksum(&h);
        h[10..12].copy_from_slice(&cs.to_be_bytes());
        let mut f = inner[..14].to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(ip);
        f
    }

    /// Fragments `whole` for `mtu`: the frame and the staged ones, in order.
    fn cut(whole: &[u8], mtu: u16, st: &mut Staged) -> Result<Vec<Vec<u8>>, DropReason> {
        let mut b = vec![0u8; 64 + whole.len()];
        b[64..].copy_from_slice(whole);
        let mut fr = Frame::new(&mut b, 64, whole.len());
        let mut m = Meta { l3: 14, l4: 34, end: whole.len() as u16, proto: proto::IPIP, ..Meta::default() };
        let (n, bytes) = fragment(&mut fr, &mut m, 3, mtu, st)?;
        assert_eq!(m.end as usize, fr.len, "the meta follows the frame");
        let mut out = vec![fr.data().to_vec()];
        let mut got = (0, 0);
        st.drain(|port, f| {
            assert_eq!(port, 3);
            got = (got.0 + 1, got.1 + f.len() as u64);
            out.push(f.to_vec());
            true
        });
        assert_eq!(got, (n, bytes), "what it says it staged");
        Ok(out)
    }

    /// The fragments are the kernel's: offsets in 8-byte units, every one
    /// but the last a multiple of 8 long and as long as the MTU allows,
    /// more-fragments on all but the last, the id kept, each header's
    /// checksum right; put together they are the datagram.
    #[test]
    fn outer_fragments_have_the_kernels_offsets_lengths_and_checksums() {
        let mut st = Staged::new();
        for (payload, mtu) in [(1441usize, 1500u16), (1460, 1500), (3000, 1500), (1000, 576), (2000, 1280), (1453, 1480)] {
            let whole = ipip(&tcp4([192, 0, 2, 1], 4000, [10, 0, 0, 100], 80, 0x10, &vec![7u8; payload]), 0x1234);
            let got = cut(&whole, mtu, &mut st).unwrap();
            assert_eq!(got, fragment4(&whole, mtu as usize - 20, 0x1234), "payload {payload}, mtu {mtu}");
            for (i, g) in got.iter().enumerate() {
                assert!(g.len() - 14 <= mtu as usize);
                let fo = u16::from_be_bytes([g[20], g[21]]);
                assert_eq!(fo & 0x2000 != 0, i + 1 < got.len(), "more fragments");
                assert_eq!(fo & 0x4000, 0, "no DF");
                assert_eq!(checksum(&g[14..34]), 0, "header checksum");
            }
            assert_eq!(reassemble(&got).unwrap(), whole);
        }
    }

    /// A frame that fits needs no fragment; a full store refuses the
    /// fragments whole (nothing staged, the frame untouched).
    #[test]
    fn fragmenting_refuses_what_it_cannot_do_whole() {
        let mut st = Staged::new();
        let small = ipip(&udp4([192, 0, 2, 1], 4000, [10, 0, 0, 100], 53, b"q"), 1);
        assert_eq!(cut(&small, 1500, &mut st), Err(DropReason::TooBig));
        let big = ipip(&udp4([192, 0, 2, 1], 4000, [10, 0, 0, 100], 53, &[1u8; 3000]), 2);
        let mut n = 0;
        loop {
            let mut b = vec![0u8; 64 + big.len()];
            b[64..].copy_from_slice(&big);
            let mut fr = Frame::new(&mut b, 64, big.len());
            let mut m = Meta { l3: 14, l4: 34, end: big.len() as u16, proto: proto::IPIP, ..Meta::default() };
            match fragment(&mut fr, &mut m, 0, 1500, &mut st) {
                Ok((k, _)) => n += k,
                Err(r) => {
                    assert_eq!(r, DropReason::TooBig);
                    assert_eq!(fr.len, big.len(), "untouched");
                    break;
                }
            }
        }
        assert_eq!(st.len() as u64, n);
        assert!(st.len() <= STAGED_FRAMES && n > 10);
        assert_eq!(st.drain(|_, _| false), (n, (n / 2) * (14 + 20 + 1480) + (n / 2) * (14 + 20 + 68)));
        assert!(st.is_empty());
    }

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
