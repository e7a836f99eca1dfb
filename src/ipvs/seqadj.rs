//! Sequence adjustment of a connection: the client and the real server
//! number the stream's bytes differently, and every segment is rewritten
//! on its way through ([`crate::wire::tcpseq`]) for the rest of the
//! connection's life. Two uses:
//!
//! - **PROXY protocol** (this module's [`SeqAdj::start`], [`SeqAdj::len`]):
//!   the director puts a header of `len` bytes into the client's stream
//!   at its first byte `start` (the client's ISN + 1). Server-side, the
//!   client's byte `x ≥ start` is `x + len`; an acknowledgement (or SACK
//!   edge) `y` from the server is `y − len` past the header, `start`
//!   inside it, `y` before it. Until the server has acknowledged the whole
//!   header, a client segment at `start` (its handshake ACK, its first
//!   data, their retransmissions, the pure ACKs of a client that speaks
//!   second) carries the header again in front of its payload with its
//!   sequence number unchanged — the same bytes at the same place, so a
//!   retransmission never makes a second offset. Once acknowledged,
//!   every client segment is simply shifted.
//! - **The other direction** ([`SeqAdj::out_delta`]): the server's byte
//!   `x` is the client's `x − out_delta` (a SYN proxy's spliced
//!   connection, whose two halves chose different ISNs). 0 for PROXY.
//!
//! # Where it lives (no growth of the connection entry)
//!
//! An IPv4 [`Conn`] is one cache line with no byte to spare, so the state
//! (16 bytes) is kept beside the table, per worker, indexed by the
//! connection's slot: [`SeqAdjTable`], chunks of 1024 entries allocated
//! the first time a connection of their slot range uses it (a bounded
//! number over a worker's life: the table's slots / 1024). A connection
//! that uses it has the [`SEQ_ADJ`] bit set in `in_pkts` (above the
//! count, which stops at [`IN_PKTS_MAX`], enough for drop_entry, which
//! reads counts up to 8): connections with neither it nor
//! [`HOP_TO_LEARN`] pay one test of those two bits per packet
//! (`Worker::forward`), and a stale entry of a freed slot is never read
//! (a new connection starts with the bit clear and writes its entry
//! before setting it).

use super::conn::Conn;
use crate::wire::proxy::{self, Version};
use crate::wire::{tcp_flags, tcpseq, Frame, Ip, Meta};

/// `Conn::in_pkts` bit: the connection has a [`SeqAdj`] entry.
pub const SEQ_ADJ: u8 = 0x80;
/// `Conn::in_pkts` bit: the connection's hop towards the client is still
/// to learn from its next packet (a connection received by sync whose
/// client no route names: `Hop::LEARN`). Cleared once the hop is known;
/// set only with the hop to learn (a hop is never unlearnt).
pub const HOP_TO_LEARN: u8 = 0x40;
/// The bits that send a connection's packets the long way
/// (`Worker::forward_unsettled`): a sequence adjustment or a SYN proxy's
/// splice pending, a hop to learn.
pub const UNUSUAL: u8 = SEQ_ADJ | HOP_TO_LEARN;
/// `Conn::in_pkts` bits of the packet count.
pub const IN_PKTS: u8 = 0x3f;
/// Where the count stops: drop_entry reads counts 1 to 8 only.
pub const IN_PKTS_MAX: u8 = 9;

/// One connection's offsets (16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqAdj {
    /// The client's first stream byte (ISN + 1), where the header goes.
    pub start: u32,
    /// Server's sequence number minus the client's view of it.
    pub out_delta: u32,
    /// Bytes put into the client's stream at `start`.
    pub len: u16,
    /// [`Version::code`] of the header (0: none).
    pub proxy: u8,
    /// The server acknowledged the whole header.
    pub acked: bool,
    /// SYN proxy phase ([`SYN_SENT`], [`SPLICED`]; 0: not proxied).
    /// While [`SYN_SENT`], `out_delta` holds the cookie (the ISN the
    /// client was given) until the server's SYN-ACK names the offset.
    pub syn: u8,
    /// The client's SYN options as the cookie kept them
    /// (`synproxy::SynOpts::encode`).
    pub opts: u8,
    /// The server's window scale minus the one the client was given: its
    /// windows are rescaled on the way to the client (0: as they are).
    pub win_shift: i8,
}

/// [`SeqAdj::syn`]: the SYN went to the real server, its SYN-ACK is due.
pub const SYN_SENT: u8 = 1;
/// [`SeqAdj::syn`]: the two halves are spliced.
pub const SPLICED: u8 = 2;

impl SeqAdj {
    /// A client sequence number (or a server SACK edge of the other
    /// direction's data, which does not move) as the server sees it.
    #[inline(always)]
    pub fn in_seq(&self, x: u32) -> u32 {
        if (x.wrapping_sub(self.start) as i32) >= 0 {
            x.wrapping_add(self.len as u32)
        } else {
            x
        }
    }

    /// A server acknowledgement or SACK edge (of client data) as the
    /// client sees it.
    #[inline(always)]
    pub fn out_ack(&self, y: u32) -> u32 {
        let d = y.wrapping_sub(self.start) as i32;
        if d < 0 {
            y
        } else if d < self.len as i32 {
            self.start
        } else {
            y.wrapping_sub(self.len as u32)
        }
    }

    /// A server sequence number as the client sees it.
    #[inline(always)]
    pub fn out_seq(&self, x: u32) -> u32 {
        x.wrapping_sub(self.out_delta)
    }

    /// A client acknowledgement or SACK edge as the server sees it.
    #[inline(always)]
    pub fn in_ack(&self, y: u32) -> u32 {
        y.wrapping_add(self.out_delta)
    }
}

const CHUNK: usize = 1024;

/// A worker's [`SeqAdj`] entries, by connection slot (see the module
/// docs).
#[derive(Default)]
pub struct SeqAdjTable {
    chunks: Vec<Option<Box<[SeqAdj; CHUNK]>>>,
}

impl SeqAdjTable {
    /// The entry of slot `idx`, made (zeroed) if its chunk is new.
    #[cold]
    #[inline(never)]
    pub fn make(&mut self, idx: u32) -> &mut SeqAdj {
        let (c, i) = (idx as usize / CHUNK, idx as usize % CHUNK);
        if c >= self.chunks.len() {
            self.chunks.resize_with(c + 1, || None);
        }
        let ch = self.chunks[c].get_or_insert_with(|| Box::new([SeqAdj::default(); CHUNK]));
        let e = &mut ch[i];
        *e = SeqAdj::default();
        e
    }

    /// The entry of slot `idx`, if one was ever made there (read only:
    /// sync's table walks).
    pub fn get(&self, idx: u32) -> Option<&SeqAdj> {
        self.chunks.get(idx as usize / CHUNK)?.as_ref().map(|c| &c[idx as usize % CHUNK])
    }

    /// The entry of slot `idx`, if one was ever made there.
    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> Option<&mut SeqAdj> {
        self.chunks.get_mut(idx as usize / CHUNK)?.as_mut().map(|c| &mut c[idx as usize % CHUNK])
    }

    /// Bytes held (for reports and tests).
    pub fn bytes(&self) -> usize {
        self.chunks.iter().flatten().count() * std::mem::size_of::<[SeqAdj; CHUNK]>()
    }
}

/// The PROXY header of connection `c` (client → the address it
/// connected to) into `out`; its length.
#[inline]
pub fn header<A: Ip>(c: &Conn<A>, v: Version, out: &mut [u8; proxy::MAX_LEN]) -> usize {
    proxy::header(v, c.caddr, c.cport, c.vaddr, c.vport, out)
}

/// What [`apply`] did beyond the shift, for the worker's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Numbers shifted (or nothing to do).
    Shifted,
    /// The header went in front of the segment's payload; `cut` payload
    /// bytes were left out for the MTU.
    Header { cut: usize },
}

/// Rewrites the TCP segment in `fr` (already translated for its
/// direction: parsed as `m`, trimmed) of connection `c`, whose entry is
/// `e`; `in_dir`: client → server. `mtu`: the egress link's.
///
/// # Errors
/// The header was due but could not go in (see [`proxy::Skip`]): the
/// segment must be dropped (the client sends it again).
pub fn apply<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, c: &Conn<A>, e: &mut SeqAdj, in_dir: bool, mtu: u16) -> Result<Applied, proxy::Skip> {
    let fl = m.tcp_flags;
    if !in_dir {
        if fl & tcp_flags::ACK != 0 && !e.acked {
            let a = tcpseq::ack(fr.data(), m);
            let past = a.wrapping_sub(e.start.wrapping_add(e.len as u32)) as i32;
            e.acked = past >= 0 && (a.wrapping_sub(e.start) as i32) > 0;
        }
        let e = *e;
        tcpseq::rewrite(fr.data_mut(), m, |x| e.out_seq(x), |y| e.out_ack(y));
        if e.win_shift != 0 {
            rescale_window(fr.data_mut(), m, e.win_shift);
        }
        return Ok(Applied::Shifted);
    }
    let s = tcpseq::seq(fr.data(), m);
    if fl & tcp_flags::SYN != 0 {
        // The client's (re)started handshake names the first byte.
        if fl & tcp_flags::ACK == 0 && !e.acked {
            e.start = s.wrapping_add(1);
        }
        let e = *e;
        tcpseq::rewrite(fr.data_mut(), m, |x| x, |y| e.in_ack(y));
        return Ok(Applied::Shifted);
    }
    let e = *e;
    if s != e.start || e.acked || e.len == 0 {
        tcpseq::rewrite(fr.data_mut(), m, |x| e.in_seq(x), |y| e.in_ack(y));
        return Ok(Applied::Shifted);
    }
    // At the header's place: a RST keeps its number (the server has not
    // seen the header for sure), anything else carries the header.
    tcpseq::rewrite(fr.data_mut(), m, |x| x, |y| e.in_ack(y));
    let Some(v) = Version::from_code(e.proxy).filter(|_| fl & tcp_flags::RST == 0) else {
        return Ok(Applied::Shifted);
    };
    let mut h = [0u8; proxy::MAX_LEN];
    let n = header(c, v, &mut h);
    let cut = proxy::insert::<A>(fr, m, &h[..n], mtu)?;
    Ok(Applied::Header { cut })
}

/// The window of the TCP segment of `f` (parsed as `m`, not a SYN) in
/// the scale the client was given: shifted left by `shift` (clamped to
/// 65535: the client then under-reads the window, never over-reads it)
/// or right (rounded down); the checksum follows by RFC 1624.
#[cold]
#[inline(never)]
pub fn rescale_window(f: &mut [u8], m: &Meta, shift: i8) {
    let l4 = m.l4 as usize;
    if m.tcp_flags & tcp_flags::SYN != 0 {
        return;
    }
    let w = crate::wire::be16(f, l4 + 14) as u32;
    let n = if shift > 0 { (w << shift.min(16)).min(0xffff) } else { w >> (-shift).min(16) } as u16;
    let hc = crate::wire::checksum::update16(crate::wire::be16(f, l4 + 16), w as u16, n);
    crate::wire::put16(f, l4 + 14, n);
    crate::wire::put16(f, l4 + 16, hc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcpseq::tests::{csum_is_full_recompute, segment};
    use crate::gen::packet::verify;
    use crate::wire::parse;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn conn4() -> Conn<Ipv4Addr> {
        use crate::ipvs::FwdMethod;
        Conn { lport: 5000, in_pkts: SEQ_ADJ, ..crate::ipvs::conn::tests::conn(7, 40000, FwdMethod::FullNat, 0) }
    }

    #[test]
    fn maps_around_the_header() {
        let e = SeqAdj { start: 100, len: 10, ..Default::default() };
        assert_eq!((e.in_seq(99), e.in_seq(100), e.in_seq(150)), (99, 110, 160));
        assert_eq!((e.out_ack(99), e.out_ack(100), e.out_ack(105), e.out_ack(110), e.out_ack(160)), (99, 100, 100, 100, 150));
        // across the wrap
        let w = SeqAdj { start: u32::MAX - 3, len: 10, ..Default::default() };
        assert_eq!(w.in_seq(2), 12);
        assert_eq!(w.out_ack(12), 2);
        assert_eq!(w.out_ack(u32::MAX), u32::MAX - 3, "inside the header");
    }

    #[test]
    fn table_makes_zeroed_entries_by_slot() {
        let mut t = SeqAdjTable::default();
        assert!(t.get_mut(5000).is_none());
        t.make(5000).len = 7;
        assert_eq!(t.get_mut(5000).unwrap().len, 7);
        assert_eq!(t.bytes(), CHUNK * std::mem::size_of::<SeqAdj>());
        assert_eq!(*t.make(5000), SeqAdj::default(), "a new connection's entry starts clean");
        assert!(t.get_mut(10).is_none(), "chunk 0 was never made");
        assert_eq!(std::mem::size_of::<SeqAdj>(), 16);
    }

    proptest! {
        /// Past the header, client → server and server → client: for any
        /// offsets and any segment, the numbers move exactly by the
        /// entry's maps and the checksum equals a full recompute.
        #[test]
        fn established_segments_shift_exactly(
            v6 in any::<bool>(),
            start in any::<u32>(), len in 1u16..200, out_delta in any::<u32>(),
            after in 1u32..1_000_000, a in any::<u32>(), in_dir in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..99),
            sack in proptest::option::of((any::<u32>(), any::<u32>())),
        ) {
            let mut opts = vec![1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
            if let Some((l, r)) = sack {
                opts.extend_from_slice(&[1, 1, 5, 10]);
                opts.extend_from_slice(&l.to_be_bytes());
                opts.extend_from_slice(&r.to_be_bytes());
            }
            let s = start.wrapping_add(after);
            let f = segment(v6, &opts, s, a, tcp_flags::ACK, &payload);
            let mut buf = vec![0u8; 4096];
            buf[64..64 + f.len()].copy_from_slice(&f);
            let mut m = parse(&f).unwrap();
            let mut fr = Frame::new(&mut buf, 64, f.len());
            let mut e = SeqAdj { start, len, out_delta, proxy: 1, acked: true, ..Default::default() };
            let c = conn4();
            let r = apply(&mut fr, &mut m, &c, &mut e, in_dir, 1500);
            prop_assert_eq!(r, Ok(Applied::Shifted));
            let g = fr.data().to_vec();
            let e0 = e;
            if in_dir {
                prop_assert_eq!(tcpseq::seq(&g, &m), s.wrapping_add(len as u32));
                prop_assert_eq!(tcpseq::ack(&g, &m), a.wrapping_add(out_delta));
            } else {
                prop_assert_eq!(tcpseq::seq(&g, &m), s.wrapping_sub(out_delta));
                prop_assert_eq!(tcpseq::ack(&g, &m), e0.out_ack(a));
            }
            if let Some((l, r)) = sack {
                let want = if in_dir { vec![l.wrapping_add(out_delta), r.wrapping_add(out_delta)] } else { vec![e0.out_ack(l), e0.out_ack(r)] };
                prop_assert_eq!(tcpseq::sack_edges(&g, &m), want);
            }
            prop_assert!(verify(&g) && csum_is_full_recompute(&g));
        }
    }
}
