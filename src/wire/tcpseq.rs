//! TCP sequence adjustment: the rewrite of a segment's sequence number,
//! acknowledgement number and SACK blocks when the two halves of a
//! connection number their bytes differently (the director inserted bytes
//! into one direction's stream — the PROXY protocol header — or answered
//! the handshake itself — a SYN proxy).
//!
//! [`rewrite`] maps the sequence number with one function and the
//! acknowledgement number and every SACK edge (which number the other
//! direction's bytes) with another; what the maps are is the connection's
//! business (`ipvs::seqadj`). The checksum follows by RFC 1624, one
//! 16-bit word at a time; an edge at an odd offset in the header (a SACK
//! option after a single NOP) is updated byte-swapped, as a one's
//! complement sum of bytes at odd positions is the swapped sum (RFC 1071).
//! Nothing else is touched: timestamps, window, other options, payload.

use super::checksum::update16;
use super::{be16, put16, tcp_flags, Meta};

/// TCP option kinds this module walks past or rewrites.
pub mod opt {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const SACK: u8 = 5;
}

/// A walk over the TCP options in `f[at..end]`: each step gives an
/// option's kind, offset and length (kind and length bytes included).
/// It ends at EOL, at `end`, or at the first option whose length is
/// under 2 or runs past `end` (garbage is never read past). Holds no
/// borrow of the frame between steps, so a caller may rewrite the
/// option it was just given.
pub struct Options {
    at: usize,
    end: usize,
}

impl Options {
    #[inline]
    pub fn new(at: usize, end: usize) -> Options {
        Options { at, end }
    }

    /// The next option: (kind, offset, length).
    #[inline]
    pub fn next(&mut self, f: &[u8]) -> Option<(u8, usize, usize)> {
        while self.at < self.end {
            let i = self.at;
            match f[i] {
                opt::EOL => break,
                opt::NOP => self.at += 1,
                kind => {
                    let l = *f.get(i + 1)? as usize;
                    if l < 2 || i + l > self.end {
                        break;
                    }
                    self.at += l;
                    return Some((kind, i, l));
                }
            }
        }
        self.at = self.end;
        None
    }
}

#[inline(always)]
fn be32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

/// Writes `new` at `at` (`odd`: an odd offset from the TCP header) and
/// returns the checksum `hc` updated for it.
#[inline(always)]
fn set32(f: &mut [u8], at: usize, new: u32, odd: bool, hc: u16) -> u16 {
    let old = be32(f, at);
    if old == new {
        return hc;
    }
    f[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let (mut oh, mut ol, mut nh, mut nl) = ((old >> 16) as u16, old as u16, (new >> 16) as u16, new as u16);
    if odd {
        (oh, ol, nh, nl) = (oh.swap_bytes(), ol.swap_bytes(), nh.swap_bytes(), nl.swap_bytes());
    }
    update16(update16(hc, oh, nh), ol, nl)
}

/// The sequence number of the TCP segment of `f` (parsed as `m`).
#[inline]
pub fn seq(f: &[u8], m: &Meta) -> u32 {
    be32(f, m.l4 as usize + 4)
}

/// Its acknowledgement number (meaningful with the ACK flag).
#[inline]
pub fn ack(f: &[u8], m: &Meta) -> u32 {
    be32(f, m.l4 as usize + 8)
}

/// Payload bytes of the segment.
#[inline]
pub fn payload_len(f: &[u8], m: &Meta) -> usize {
    let l4 = m.l4 as usize;
    (m.end as usize).saturating_sub(l4 + ((f[l4 + 12] >> 4) as usize) * 4)
}

/// Rewrites the TCP segment of `f` (parsed as `m`: TCP, not a later
/// fragment, trimmed or not): its sequence number becomes `seq(seq)`;
/// with the ACK flag, its acknowledgement number and the edges of every
/// SACK block become `ack(value)`. The TCP checksum is updated
/// incrementally; nothing else changes. Options that run past the
/// header are left as they are (the walk stops), never read out of
/// bounds.
#[inline]
pub fn rewrite(f: &mut [u8], m: &Meta, seq: impl Fn(u32) -> u32, ack: impl Fn(u32) -> u32) {
    let l4 = m.l4 as usize;
    let co = l4 + 16;
    let mut hc = be16(f, co);
    let s = be32(f, l4 + 4);
    hc = set32(f, l4 + 4, seq(s), false, hc);
    if f[l4 + 13] & tcp_flags::ACK != 0 {
        let a = be32(f, l4 + 8);
        hc = set32(f, l4 + 8, ack(a), false, hc);
        let hl = ((f[l4 + 12] >> 4) as usize) * 4;
        if hl > 20 {
            hc = rewrite_sack(f, l4, (l4 + hl).min(m.end as usize), &ack, hc);
        }
    }
    put16(f, co, hc);
}

/// The SACK blocks among the options in `f[l4 + 20..end]`.
#[cold]
#[inline(never)]
fn rewrite_sack(f: &mut [u8], l4: usize, end: usize, ack: &impl Fn(u32) -> u32, mut hc: u16) -> u16 {
    let mut w = Options::new(l4 + 20, end);
    while let Some((kind, i, l)) = w.next(f) {
        if kind == opt::SACK {
            let mut e = i + 2;
            while e + 4 <= i + l {
                let v = be32(f, e);
                hc = set32(f, e, ack(v), (e - l4) % 2 == 1, hc);
                e += 4;
            }
        }
    }
    hc
}

/// The SACK edges of a segment's options, in order (tests and tools).
pub fn sack_edges(f: &[u8], m: &Meta) -> Vec<u32> {
    let l4 = m.l4 as usize;
    let hl = ((f[l4 + 12] >> 4) as usize) * 4;
    let mut out = Vec::new();
    let mut w = Options::new(l4 + 20, (l4 + hl).min(m.end as usize));
    while let Some((kind, i, l)) = w.next(f) {
        if kind == opt::SACK {
            let mut e = i + 2;
            while e + 4 <= i + l {
                out.push(be32(f, e));
                e += 4;
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gen::packet::{refresh_ipv4_checksum, refresh_tcp_checksum, verify};
    use crate::wire::checksum::same;
    use crate::wire::parse;
    use proptest::prelude::*;

    /// An Ethernet/IP/TCP frame with these options (padded with EOL to a
    /// multiple of 4), numbers, flags and payload; every checksum right.
    pub(crate) fn segment(v6: bool, opts: &[u8], seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut o = opts.to_vec();
        while o.len() % 4 != 0 {
            o.push(opt::EOL);
        }
        assert!(o.len() <= 40);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = (((20 + o.len()) / 4) as u8) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&501u16.to_be_bytes());
        tcp.extend_from_slice(&o);
        tcp.extend_from_slice(payload);
        let mut f = vec![2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 1];
        if v6 {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&crate::gen::packet::V6A);
            f.extend_from_slice(&crate::gen::packet::V6B);
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 7, 10, 0, 0, 1]);
        }
        f.extend_from_slice(&tcp);
        if !v6 {
            refresh_ipv4_checksum(&mut f, 14);
        }
        refresh_tcp_checksum(&mut f);
        assert!(verify(&f));
        f
    }

    /// The TCP checksum of `f` recomputed from scratch equals its field.
    pub(crate) fn csum_is_full_recompute(f: &[u8]) -> bool {
        let m = parse(f).unwrap();
        let co = m.l4 as usize + 16;
        let mut g = f.to_vec();
        refresh_tcp_checksum(&mut g);
        same(be16(f, co), be16(&g, co))
    }

    fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut o = vec![opt::SACK, (2 + 8 * blocks.len()) as u8];
        for (a, b) in blocks {
            o.extend_from_slice(&a.to_be_bytes());
            o.extend_from_slice(&b.to_be_bytes());
        }
        o
    }

    #[test]
    fn shifts_seq_ack_and_sack_and_nothing_else() {
        let ts = [8u8, 10, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut opts = vec![opt::NOP, opt::NOP];
        opts.extend_from_slice(&ts);
        opts.push(opt::NOP); // the SACK option lands on an odd offset
        opts.extend_from_slice(&sack(&[(1000, 2000), (3000, 4000)]));
        let f = segment(false, &opts, 0xffff_fff0, 5000, tcp_flags::ACK, b"odd");
        let m = parse(&f).unwrap();
        let mut g = f.clone();
        rewrite(&mut g, &m, |s| s.wrapping_add(0x20), |a| a.wrapping_sub(7));
        assert_eq!(seq(&g, &m), 0x10, "wraps");
        assert_eq!(ack(&g, &m), 4993);
        assert_eq!(sack_edges(&g, &m), vec![993, 1993, 2993, 3993]);
        assert!(verify(&g) && csum_is_full_recompute(&g));
        // every other byte is the same: timestamps, window, payload
        let l4 = m.l4 as usize;
        let diff: Vec<usize> = (0..f.len()).filter(|&i| f[i] != g[i]).collect();
        assert!(diff.iter().all(|&i| (l4 + 4..l4 + 18).contains(&i) || (l4 + 35..l4 + 53).contains(&i)), "{diff:?}");
    }

    #[test]
    fn no_ack_flag_leaves_ack_and_sack_alone() {
        let f = segment(false, &sack(&[(1, 2)]), 1, 2, tcp_flags::SYN, b"");
        let m = parse(&f).unwrap();
        let mut g = f.clone();
        rewrite(&mut g, &m, |s| s + 1, |a| a + 100);
        assert_eq!((seq(&g, &m), ack(&g, &m), sack_edges(&g, &m)), (2, 2, vec![1, 2]));
        assert!(verify(&g));
    }

    #[test]
    fn garbage_options_stop_the_walk_without_panic() {
        // a length running past the header, a zero length, a lone kind
        for opts in [vec![opt::SACK, 30, 0, 0], vec![3, 0, 0, 0], vec![opt::NOP, opt::NOP, opt::NOP, opt::SACK]] {
            let f = segment(false, &opts, 1, 2, tcp_flags::ACK, b"x");
            let m = parse(&f).unwrap();
            let mut g = f.clone();
            rewrite(&mut g, &m, |s| s + 1, |a| a + 1);
            assert!(verify(&g), "{opts:?}");
            assert_eq!(&g[m.l4 as usize + 20..], &f[m.l4 as usize + 20..], "options untouched");
        }
    }

    /// Options: any mix of NOPs, MSS, window scale, SACK-permitted,
    /// timestamps and one SACK option of 1 to 4 blocks (at any parity),
    /// within the 40 bytes of option space.
    fn options() -> impl Strategy<Value = (Vec<u8>, Vec<u32>)> {
        (
            proptest::collection::vec(0u8..5, 0..6),
            proptest::option::of(proptest::collection::vec(any::<u32>(), 2..=8)),
            any::<usize>(),
        )
            .prop_map(|(kinds, edges, at)| {
                let mut parts: Vec<Vec<u8>> = kinds
                    .iter()
                    .map(|k| match k {
                        0 => vec![opt::NOP],
                        1 => vec![2, 4, 0x05, 0xb4],
                        2 => vec![3, 3, 7],
                        3 => vec![4, 2],
                        _ => vec![8, 10, 9, 9, 9, 9, 8, 8, 8, 8],
                    })
                    .collect();
                let mut edges = edges.unwrap_or_default();
                edges.truncate(edges.len() / 2 * 2);
                if !edges.is_empty() {
                    let blocks: Vec<(u32, u32)> = edges.chunks(2).map(|c| (c[0], c[1])).collect();
                    let i = at % (parts.len() + 1);
                    parts.insert(i, sack(&blocks));
                }
                let mut o: Vec<u8> = Vec::new();
                let mut kept = Vec::new();
                for p in parts {
                    if o.len() + p.len() <= 40 {
                        if p[0] == opt::SACK {
                            kept = edges.clone();
                        }
                        o.extend_from_slice(&p);
                    }
                }
                (o, kept)
            })
    }

    proptest! {
        /// For any offsets and any segment (with or without SACK,
        /// timestamps, odd payload lengths, IPv4 or IPv6): seq, ack and
        /// every SACK edge are shifted exactly, and the checksum equals a
        /// full recompute.
        #[test]
        fn any_offset_any_segment_shifts_exactly(
            v6 in any::<bool>(),
            (opts, edges) in options(),
            s in any::<u32>(), a in any::<u32>(),
            ds in any::<u32>(), da in any::<u32>(),
            ack_flag in any::<bool>(), other_flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..301),
        ) {
            let flags = (other_flags & !tcp_flags::ACK) | if ack_flag { tcp_flags::ACK } else { 0 };
            let f = segment(v6, &opts, s, a, flags, &payload);
            let m = parse(&f).unwrap();
            let mut g = f.clone();
            rewrite(&mut g, &m, |x| x.wrapping_add(ds), |x| x.wrapping_add(da));
            prop_assert_eq!(seq(&g, &m), s.wrapping_add(ds));
            if ack_flag {
                prop_assert_eq!(ack(&g, &m), a.wrapping_add(da));
                let want: Vec<u32> = edges.iter().map(|e| e.wrapping_add(da)).collect();
                prop_assert_eq!(sack_edges(&g, &m), want);
            } else {
                prop_assert_eq!(ack(&g, &m), a);
                prop_assert_eq!(sack_edges(&g, &m), edges);
            }
            prop_assert!(verify(&g));
            prop_assert!(csum_is_full_recompute(&g));
            prop_assert_eq!(g.len(), f.len());
            prop_assert_eq!(&g[g.len() - payload.len()..], &payload[..]);
        }
    }
}
