//! Internet checksum (RFC 1071) and incremental updates (RFC 1624).
//!
//! The forwarding path never sums a payload: every rewrite adjusts the
//! existing checksum with [`update16`] / [`update_bytes`] (RFC 1624 eqn. 3,
//! `HC' = ~(~HC + ~m + m')`, as IPVS's `ip_vs_check_diff*` do). The full
//! computations exist for packets we build ourselves (ICMP errors, outer
//! IPIP headers) and for tests to compare against.

/// Adds `data` (big-endian 16-bit words, odd tail padded with zero) to a
/// running 64-bit sum. Fold with [`fold`].
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = chunks.remainder();
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

    proptest! {
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
