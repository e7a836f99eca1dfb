//! The SYN proxy (DPVS `ip_vs_synproxy.c` for the behaviour, the
//! kernel's SYN cookies, `net/ipv4/syncookies.c`, for the cookie).
//!
//! For a service with `synproxy = true` the director answers a client's
//! SYN itself: a SYN-ACK whose sequence number is a cookie, and no state
//! kept. Only the client's ACK that returns a valid cookie opens a
//! connection: the worker schedules a real server, turns that ACK into
//! the SYN the client would have sent (its ISN, its options as the
//! cookie recorded them) and, when the server's SYN-ACK comes, answers
//! the server with the handshake's ACK and splices the two halves with
//! the sequence offset of `ipvs::seqadj` (server ISN − cookie).
//!
//! # The cookie
//!
//! As the kernel's `secure_tcp_syn_cookie`: with `h1 = H(k, tuple)` and
//! `h2 = H(k, tuple, count)`, `cookie = h1 + isn + (count << 24) +
//! ((h2 + data) mod 2^24)`, where `isn` is the client's ISN, `count` the
//! time counter ([`count`]: ~68.7 s steps) and `data` the client's SYN
//! options ([`SynOpts::encode`]: an MSS index of 2 bits, SACK-permitted,
//! window scale + 1 in 4 bits; 7 bits). `H` is SipHash-2-4 keyed by the
//! worker's 128-bit secret. A cookie is valid when its count is the
//! current or the previous one (the per-minute part of the key rotates,
//! the previous one is accepted: 68.7 to 137 s of life) and the data left
//! after `h2` is under 2^7: a forged ACK passes with a chance of 2^-17
//! per count (the kernel, with 2 data bits, has 2^-22).
//!
//! Timestamps are not offered: the SYN-ACK carries none, so the client
//! and the server never use them on a proxied connection (no PAWS
//! against the server's own clock, no TSecr the server never sent; the
//! kernel puts the options in the timestamp instead, DPVS rewrites
//! them). Window scaling and SACK are kept: the client's window scale
//! and SACK-permitted go to the server in its SYN; the director's own
//! window scale ([`WSCALE`]) is what the client was told, and the
//! server's windows are rescaled to it for the rest of the connection.

use crate::wire::{be16, put16, tcp_flags, tcpseq, Frame, Ip, Meta};

/// The window scale the director's SYN-ACK gives the client.
pub const WSCALE: u8 = 7;

/// MSS values a cookie can name (the kernel's `msstab`): IPv4, IPv6.
pub const MSS4: [u16; 4] = [536, 1300, 1440, 1460];
pub const MSS6: [u16; 4] = [1220, 1420, 1440, 8940];

const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Bits of [`SynOpts::encode`].
const DATA_BITS: u32 = 7;

/// The time counter of a cookie at `now_ns` (monotonic): 2^36 ns steps
/// (68.7 s).
#[inline]
pub fn count(now_ns: u64) -> u32 {
    (now_ns >> 36) as u32
}

/// What a client's SYN offered (the options a cookie keeps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOpts {
    /// MSS (536 when the SYN had none, RFC 9293's default).
    pub mss: u16,
    /// Window scale (at most 14), if offered.
    pub wscale: Option<u8>,
    pub sack: bool,
}

impl SynOpts {
    /// The options of the SYN of `f` (parsed as `m`).
    pub fn parse(f: &[u8], m: &Meta) -> SynOpts {
        let l4 = m.l4 as usize;
        let hl = ((f[l4 + 12] >> 4) as usize) * 4;
        let mut o = SynOpts { mss: 536, wscale: None, sack: false };
        let mut w = tcpseq::Options::new(l4 + 20, (l4 + hl).min(m.end as usize));
        while let Some((kind, i, l)) = w.next(f) {
            match (kind, l) {
                (2, 4) => o.mss = be16(f, i + 2),
                (3, 3) => o.wscale = Some(f[i + 2].min(14)),
                (4, 2) => o.sack = true,
                _ => {}
            }
        }
        o
    }

    /// The cookie's data bits: bits 0-1 the MSS index (the largest table
    /// value not above the offer), bit 2 SACK, bits 3-6 window scale + 1.
    pub fn encode(&self, v6: bool) -> u32 {
        let tab = if v6 { &MSS6 } else { &MSS4 };
        let idx = tab.iter().rposition(|&t| t <= self.mss).unwrap_or(0) as u32;
        idx | (self.sack as u32) << 2 | self.wscale.map_or(0, |w| w as u32 + 1) << 3
    }

    /// The options `data` (from [`SynOpts::encode`]) names.
    pub fn decode(data: u32, v6: bool) -> SynOpts {
        let tab = if v6 { &MSS6 } else { &MSS4 };
        let ws = (data >> 3) & 0xf;
        SynOpts { mss: tab[(data & 3) as usize], sack: data & 4 != 0, wscale: (ws != 0).then(|| (ws - 1) as u8) }
    }
}

/// A worker's cookie secret (SipHash key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secret(pub [u64; 2]);

impl Secret {
    /// The fixed secret of `xvs replay` (deterministic output; never a
    /// running director's).
    pub const REPLAY: Secret = Secret([0x7876_735f_7265_706c, 0x6179_5f73_6563_7265]);

    /// 128 random bits from the kernel (`getrandom`), at worker start.
    pub fn random() -> Secret {
        let mut b = [0u8; 16];
        let mut got = 0;
        while got < b.len() {
            // SAFETY: writes at most the rest of `b`.
            let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
            if n <= 0 {
                // Interrupted or not there: the time is better than a
                // fixed key (a cookie forger must then guess the start).
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
                return Secret([t ^ 0x9e37_79b9_7f4a_7c15, t.rotate_left(29) ^ std::process::id() as u64]);
            }
            got += n as usize;
        }
        Secret([u64::from_le_bytes(b[..8].try_into().unwrap_or_default()), u64::from_le_bytes(b[8..].try_into().unwrap_or_default())])
    }
}

/// SipHash-2-4 of `msg` under `k` (Aumasson and Bernstein's reference).
pub fn siphash(k: &Secret, msg: &[u8]) -> u64 {
    let (k0, k1) = (k.0[0], k.0[1]);
    let mut v = [k0 ^ 0x736f_6d65_7073_6575, k1 ^ 0x646f_7261_6e64_6f6d, k0 ^ 0x6c79_6765_6e65_7261, k1 ^ 0x7465_6462_7974_6573];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A flow's addresses and ports as the client's SYN has them.
#[derive(Clone, Copy, Debug)]
pub struct Tuple<A: Ip> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
}

impl<A: Ip> Tuple<A> {
    /// `H(k, tuple, count, n)`: 32 bits of SipHash.
    fn hash(&self, k: &Secret, count: u32, n: u8) -> u32 {
        let mut b = [0u8; 2 * 16 + 4 + 4 + 1];
        let (s, d) = (self.saddr.bytes(), self.daddr.bytes());
        let (s, d) = (s.as_ref(), d.as_ref());
        let l = s.len();
        b[..l].copy_from_slice(s);
        b[l..2 * l].copy_from_slice(d);
        b[2 * l..2 * l + 2].copy_from_slice(&self.sport.to_be_bytes());
        b[2 * l + 2..2 * l + 4].copy_from_slice(&self.dport.to_be_bytes());
        b[2 * l + 4..2 * l + 8].copy_from_slice(&count.to_be_bytes());
        b[2 * l + 8] = n;
        siphash(k, &b[..2 * l + 9]) as u32
    }
}

/// The cookie for a SYN of `t` with ISN `isn` and options `data`
/// ([`SynOpts::encode`]) at time counter `count`.
pub fn make<A: Ip>(k: &Secret, t: &Tuple<A>, isn: u32, count: u32, data: u32) -> u32 {
    debug_assert!(data < 1 << DATA_BITS);
    t.hash(k, 0, 0)
        .wrapping_add(isn)
        .wrapping_add(count << COOKIE_BITS)
        .wrapping_add(t.hash(k, count, 1).wrapping_add(data) & COOKIE_MASK)
}

/// The data of `cookie` if it is one [`make`] gave for `t` and the client
/// ISN `isn`, at the time counter `now` or the one before it.
pub fn check<A: Ip>(k: &Secret, t: &Tuple<A>, isn: u32, cookie: u32, now: u32) -> Option<u32> {
    let x = cookie.wrapping_sub(t.hash(k, 0, 0)).wrapping_sub(isn);
    let c = x >> COOKIE_BITS;
    // (Counts are 8 bits in the cookie.)
    let age = (now.wrapping_sub(c)) & 0xff;
    if age > 1 {
        return None;
    }
    let c = now.wrapping_sub(age);
    let data = x.wrapping_sub(t.hash(k, c, 1)) & COOKIE_MASK;
    (data < 1 << DATA_BITS).then_some(data)
}

/// TCP options of the director's SYN-ACK, or of the SYN it sends a real
/// server: MSS, then SACK-permitted and window scale when given; a
/// multiple of 4 bytes (NOP padding). Returns the length in `out`.
pub fn options(mss: u16, sack: bool, wscale: Option<u8>, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    let mut n = 4;
    if sack {
        out[n..n + 4].copy_from_slice(&[1, 1, 4, 2]);
        n += 4;
    }
    if let Some(w) = wscale {
        out[n..n + 4].copy_from_slice(&[1, 3, 3, w]);
        n += 4;
    }
    n
}

/// Rewrites the TCP segment of `fr` (parsed as `m`) into a header-only
/// segment with these numbers, flags, window and options (whatever its
/// payload and options were), turned around when `reverse` (addresses,
/// ports: back to its sender; the MACs are the caller's), with a fresh
/// TTL / hop limit in that case. Both checksums are computed from scratch
/// (the segment is at most 32 bytes). `m` follows.
///
/// # Errors
/// [`NoRoom`]: the frame has no room after it for the options.
#[allow(clippy::too_many_arguments)]
pub fn reshape<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, reverse: bool, seq: u32, ack: u32, flags: u8, win: u16, opts: &[u8]) -> Result<(), NoRoom> {
    let l3 = m.l3 as usize;
    let l4 = m.l4 as usize;
    let tl = 20 + opts.len();
    let end = l4 + tl;
    if end > fr.len && end - fr.len > fr.tailroom() {
        return Err(NoRoom);
    }
    fr.len = end;
    let f = fr.data_mut();
    if reverse {
        let (s, d) = (l3 + A::SRC_OFF, l3 + A::SRC_OFF + A::LEN);
        for i in 0..A::LEN {
            f.swap(s + i, d + i);
        }
        f.swap(l4, l4 + 2);
        f.swap(l4 + 1, l4 + 3);
        if A::V6 {
            f[l3 + 7] = 64;
        } else {
            f[l3 + 8] = 64;
        }
    }
    f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    f[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
    f[l4 + 12] = ((tl / 4) as u8) << 4;
    f[l4 + 13] = flags;
    put16(f, l4 + 14, win);
    put16(f, l4 + 16, 0);
    put16(f, l4 + 18, 0);
    f[l4 + 20..end].copy_from_slice(opts);
    let ip_len = end - l3;
    if A::V6 {
        put16(f, l3 + 4, (ip_len - 40) as u16);
    } else {
        put16(f, l3 + 2, ip_len as u16);
        let ihl = ((f[l3] & 0xf) as usize) * 4;
        put16(f, l3 + 10, 0);
        let c = crate::wire::checksum::checksum(&f[l3..l3 + ihl]);
        put16(f, l3 + 10, c);
    }
    let a = l3 + A::SRC_OFF;
    let ph = crate::wire::checksum::sum(proto_len(tl), &f[a..a + 2 * A::LEN]);
    let c = !crate::wire::checksum::fold(crate::wire::checksum::sum(ph, &f[l4..end]));
    put16(f, l4 + 16, c);
    m.end = end as u16;
    m.tcp_flags = flags;
    m.partial = false;
    if reverse {
        std::mem::swap(&mut m.sport, &mut m.dport);
    }
    Ok(())
}

/// A frame without the room [`reshape`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom;

#[inline]
fn proto_len(tl: usize) -> u64 {
    crate::wire::proto::TCP as u64 + tl as u64
}

/// The window scale a real server's SYN-ACK (`f`, parsed as `m`) gives.
pub fn wscale_of(f: &[u8], m: &Meta) -> Option<u8> {
    if m.tcp_flags & tcp_flags::SYN == 0 {
        return None;
    }
    SynOpts::parse(f, m).wscale
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const K: Secret = Secret([0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908]);

    fn t4() -> Tuple<Ipv4Addr> {
        Tuple { saddr: Ipv4Addr::new(192, 0, 2, 7), daddr: Ipv4Addr::new(10, 0, 0, 100), sport: 40000, dport: 80 }
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // The paper's test vector: key 00..0f, message 00..0e.
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash(&K, &msg), 0xa129_ca61_49be_45e5);
        // and std's SipHasher (2-4) for every length to 40
        #[allow(deprecated)]
        for n in 0..41 {
            use std::hash::Hasher;
            let msg: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut h = std::hash::SipHasher::new_with_keys(K.0[0], K.0[1]);
            h.write(&msg);
            assert_eq!(siphash(&K, &msg), h.finish(), "length {n}");
        }
    }

    #[test]
    fn options_round_trip_through_the_data_bits() {
        let o = SynOpts { mss: 1460, wscale: Some(7), sack: true };
        assert_eq!(SynOpts::decode(o.encode(false), false), o);
        // MSS rounds down to the table; no options at all
        let o = SynOpts { mss: 1400, wscale: None, sack: false };
        assert_eq!(SynOpts::decode(o.encode(false), false), SynOpts { mss: 1300, ..o });
        let o = SynOpts { mss: 100, wscale: Some(14), sack: false };
        assert_eq!(SynOpts::decode(o.encode(true), true), SynOpts { mss: 1220, ..o });
        assert!(SynOpts { mss: u16::MAX, wscale: Some(14), sack: true }.encode(false) < 1 << DATA_BITS);
    }

    #[test]
    fn a_cookie_is_valid_for_its_flow_now_and_a_count_later_only() {
        let t = t4();
        let c = make(&K, &t, 1000, 77, 0x55);
        assert_eq!(check(&K, &t, 1000, c, 77), Some(0x55));
        assert_eq!(check(&K, &t, 1000, c, 78), Some(0x55), "the previous count is accepted");
        assert_eq!(check(&K, &t, 1000, c, 79), None, "two counts later it is stale");
        assert_eq!(check(&K, &t, 1000, c, 76), None, "from the future");
        // (the ISN comes from the same ACK: one a few numbers off shifts
        // the data by as much, as in the kernel; far off, it is refused)
        assert_eq!(check(&K, &t, 1001, c, 77), Some(0x54));
        assert_eq!(check(&K, &t, 2000, c, 77), None, "another client ISN");
        assert_eq!(check(&K, &Tuple { sport: 40001, ..t }, 1000, c, 77), None, "another port");
        assert_eq!(check(&K, &Tuple { saddr: Ipv4Addr::new(192, 0, 2, 8), ..t }, 1000, c, 77), None, "another client");
        assert_eq!(check(&Secret([1, 2]), &t, 1000, c, 77), None, "another secret");
        // counts wrap at 8 bits in the cookie
        let c = make(&K, &t, 5, 255, 3);
        assert_eq!(check(&K, &t, 5, c, 256), Some(3));
    }

    proptest! {
        /// Any flow (IPv4 or IPv6), ISN, options and time: the cookie
        /// decodes to its options now and one count later, and a change
        /// of any tuple field, the ISN or the secret does not give the
        /// options back (a forgery passes as these options with a chance
        /// of 2^-24: about one run in 10^4 of this test could meet one),
        /// nor does a count two steps on.
        #[test]
        fn cookies_round_trip_and_reject_what_they_were_not_made_for(
            v6 in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>(),
            sport in any::<u16>(), dport in any::<u16>(), isn in any::<u32>(),
            mss in any::<u16>(), ws in proptest::option::of(0u8..15), sack in any::<bool>(),
            now in any::<u32>(), key in any::<[u64; 2]>(), flip in 0usize..5,
        ) {
            let k = Secret(key);
            let o = SynOpts { mss, wscale: ws, sack };
            let data = o.encode(v6);
            let ok = |c: Option<u32>| c.map(|d| SynOpts::decode(d, v6));
            let want = SynOpts { mss: SynOpts::decode(data, v6).mss, ..o };
            macro_rules! run {
                ($t:expr, $other:expr) => {{
                    let t = $t;
                    let c = make(&k, &t, isn, now, data);
                    prop_assert_eq!(ok(check(&k, &t, isn, c, now)), Some(want));
                    prop_assert_eq!(ok(check(&k, &t, isn, c, now.wrapping_add(1))), Some(want));
                    prop_assert_eq!(check(&k, &t, isn, c, now.wrapping_add(2)), None);
                    prop_assert_ne!(check(&k, &$other, isn, c, now), Some(data));
                    prop_assert_ne!(check(&k, &t, isn.wrapping_add(1), c, now), Some(data));
                    prop_assert_ne!(check(&Secret([key[0] ^ 1, key[1]]), &t, isn, c, now), Some(data));
                }};
            }
            if v6 {
                let t = Tuple { saddr: Ipv6Addr::from(s), daddr: Ipv6Addr::from(d), sport, dport };
                let mut o = t;
                match flip {
                    0 => o.saddr = Ipv6Addr::from(u128::from(t.saddr) ^ 1),
                    1 => o.daddr = Ipv6Addr::from(u128::from(t.daddr) ^ (1 << 100)),
                    2 => o.sport ^= 1,
                    _ => o.dport = dport.wrapping_add(1),
                }
                run!(t, o);
            } else {
                let t = Tuple { saddr: Ipv4Addr::new(s[0], s[1], s[2], s[3]), daddr: Ipv4Addr::new(d[0], d[1], d[2], d[3]), sport, dport };
                let mut o = t;
                match flip {
                    0 => o.saddr = Ipv4Addr::from(u32::from(t.saddr) ^ 0x100),
                    1 => o.daddr = Ipv4Addr::from(u32::from(t.daddr) ^ 1),
                    2 => o.sport ^= 0x8000,
                    _ => o.dport = dport.wrapping_add(1),
                }
                run!(t, o);
            }
        }
    }
}
