//! Receive-side scaling as a NIC computes it: the Toeplitz hash, and the
//! owner of a flow read from the NIC's indirection table.
//!
//! A NIC with several RX queues picks a packet's queue as
//! `indir[hash % indir.len()]`, `hash` being the Toeplitz hash of the
//! packet's header fields under the NIC's secret key. When xvs has the NIC
//! hash on the addresses only (`ethtool -N IF rx-flow-hash tcp4 sd`) and
//! knows its key and table ([`RssMap`]), a worker can compute which queue —
//! which worker — the NIC delivers a flow to, and make that worker the
//! flow's owner: the flow then never changes core (see `worker::owner`).
//!
//! [`toeplitz`] is the definition, bit by bit (Microsoft's RSS
//! specification); [`Toeplitz`] the same function table-driven (one table
//! load per input byte), which is what a worker runs.

/// The key Microsoft's verification suite uses, which is also the default
/// of many drivers (ixgbe, i40e, mlx4, DPDK's `rss_intel_key`).
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
    0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Longest input the table-driven hash takes: an IPv6 address pair with
/// both ports (16 + 16 + 2 + 2 bytes).
pub const MAX_INPUT: usize = 36;

/// Shortest key a [`RssMap`] accepts: an IPv6 address pair (32 bytes of
/// input) needs 32 + 4 bytes of key.
pub const MIN_KEY: usize = 36;

/// The Toeplitz hash of `input` under `key`, bit by bit: for every set bit
/// `i` of the input (most significant bit of byte 0 first), XOR in the
/// 32 key bits starting at key bit `i`. Key bits past the key's end are 0.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| -> u32 { key.get(i / 8).map_or(0, |b| ((b >> (7 - i % 8)) & 1) as u32) };
    let mut h = 0u32;
    for (n, &byte) in input.iter().enumerate() {
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                let start = n * 8 + b;
                let window = (0..32).fold(0u32, |w, j| (w << 1) | key_bit(start + j));
                h ^= window;
            }
        }
    }
    h
}

/// The Toeplitz hash, table-driven: `tables[n][v]` is the hash of byte
/// value `v` at input position `n` (the hash is linear in its input, so
/// the bytes' contributions XOR together). 36 × 256 words (36 KiB), built
/// once at start.
#[derive(Clone)]
pub struct Toeplitz {
    tables: Box<[[u32; 256]; MAX_INPUT]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Toeplitz { .. }")
    }
}

impl Toeplitz {
    /// The tables for `key` (any length; bits past its end count as 0).
    pub fn new(key: &[u8]) -> Toeplitz {
        let mut tables = Box::new([[0u32; 256]; MAX_INPUT]);
        for (n, t) in tables.iter_mut().enumerate() {
            // The window of each of the byte's 8 bits, then every value
            // as the XOR of its set bits' windows.
            let mut windows = [0u32; 8];
            for (b, w) in windows.iter_mut().enumerate() {
                let mut one = [0u8; MAX_INPUT];
                one[n] = 0x80 >> b;
                *w = toeplitz(key, &one[..=n]);
            }
            for (v, slot) in t.iter_mut().enumerate() {
                *slot = (0..8).filter(|b| v & (0x80 >> b) != 0).fold(0, |h, b| h ^ windows[b]);
            }
        }
        Toeplitz { tables }
    }

    /// The hash of `input` (at most [`MAX_INPUT`] bytes; more are ignored).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        let mut h = 0;
        for (t, &b) in self.tables.iter().zip(input) {
            h ^= t[b as usize];
        }
        h
    }

    /// The hash of the address pair (`src`, `dst`) of one family (4 or
    /// 16 bytes each): what a NIC hashing on addresses only (`sd`)
    /// computes. No copy: the two halves are hashed in place.
    #[inline]
    pub fn hash_addrs(&self, src: &[u8], dst: &[u8]) -> u32 {
        let mut h = 0;
        let n = src.len();
        for (i, &b) in src.iter().enumerate() {
            h ^= self.tables[i][b as usize];
        }
        for (i, &b) in dst.iter().enumerate().take(MAX_INPUT - n) {
            h ^= self.tables[n + i][b as usize];
        }
        h
    }
}

/// What a NIC's RSS is set to, as read back from it: its hash function's
/// key and its indirection table (RX queue per hash bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssConfig {
    pub key: Vec<u8>,
    pub indir: Vec<u32>,
}

/// Why an RSS configuration cannot give the owner of a flow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RssMapError {
    #[error("the RSS key is {0} bytes; an IPv6 address pair needs {MIN_KEY}")]
    ShortKey(usize),
    #[error("the indirection table has {0} entries, not a power of two from 1 to 65536")]
    Table(usize),
    #[error("the indirection table sends hash bucket {bucket} to queue {queue}, and only queues 0 to {last} have a worker")]
    Queue { bucket: usize, queue: u32, last: u32 },
}

/// The owner of a flow as the NIC sees it: the worker of the queue the
/// NIC delivers the flow's packets to. Worker `i` serves queue `i`.
#[derive(Clone, Debug)]
pub struct RssMap {
    hash: Toeplitz,
    /// Worker per hash bucket (the indirection table, resolved).
    owner: Box<[u16]>,
    mask: u32,
    config: RssConfig,
}

impl RssMap {
    /// The map for `config` with `workers` workers (worker `i` on queue
    /// `i`): refused if the key is too short for IPv6, the table is not a
    /// power of two long (the bucket is then the hash's low bits, which is
    /// what NICs do), or a bucket sends packets to a queue no worker
    /// serves.
    pub fn new(config: RssConfig, workers: u16) -> Result<RssMap, RssMapError> {
        if config.key.len() < MIN_KEY {
            return Err(RssMapError::ShortKey(config.key.len()));
        }
        let n = config.indir.len();
        if n == 0 || !n.is_power_of_two() || n > 65536 {
            return Err(RssMapError::Table(n));
        }
        let owner = config
            .indir
            .iter()
            .enumerate()
            .map(|(bucket, &queue)| {
                if queue < workers as u32 {
                    Ok(queue as u16)
                } else {
                    Err(RssMapError::Queue { bucket, queue, last: workers.saturating_sub(1) as u32 })
                }
            })
            .collect::<Result<Box<[u16]>, _>>()?;
        Ok(RssMap { hash: Toeplitz::new(&config.key), owner, mask: n as u32 - 1, config })
    }

    /// The worker the NIC delivers packets from `src` to `dst` to (both
    /// 4 or both 16 bytes).
    #[inline]
    pub fn owner(&self, src: &[u8], dst: &[u8]) -> u16 {
        self.owner[(self.hash.hash_addrs(src, dst) & self.mask) as usize]
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &RssConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // Microsoft, "Verifying the RSS Hash Calculation" (Windows driver
    // documentation, network/verifying-the-rss-hash-calculation; the same
    // vectors are in DPDK's test_thash.c): with DEFAULT_KEY, the input is
    // source address, destination address, then source and destination
    // port. (destination, source, addresses only, with ports).
    /// (destination, source, hash of the addresses, hash with ports).
    type Vector = ((&'static str, u16), (&'static str, u16), u32, u32);
    /// (source, destination, source port, destination port, hashes).
    type Case = (Vec<u8>, Vec<u8>, u16, u16, u32, u32);

    const V4: [Vector; 5] = [
        (("161.142.100.80", 1766), ("66.9.149.187", 2794), 0x323e_8fc2, 0x51cc_c178),
        (("65.69.140.83", 4739), ("199.92.111.2", 14230), 0xd718_262a, 0xc626_b0ea),
        (("12.22.207.184", 38024), ("24.19.198.95", 12898), 0xd2d0_a5de, 0x5c2b_394a),
        (("209.142.163.6", 2217), ("38.27.205.30", 48228), 0x8298_9176, 0xafc7_327f),
        (("202.188.127.2", 1303), ("153.39.163.191", 44251), 0x5d18_09c5, 0x10e8_28a2),
    ];
    const V6: [Vector; 3] = [
        (("3ffe:2501:200:3::1", 1766), ("3ffe:2501:200:1fff::7", 2794), 0x2cc1_8cd5, 0x4020_7d3d),
        (("ff02::1", 4739), ("3ffe:501:8::260:97ff:fe40:efab", 14230), 0x0f0c_461c, 0xdde5_1bbf),
        (("fe80::200:f8ff:fe21:67cf", 38024), ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251), 0x4b61_e985, 0x02d1_feef),
    ];

    fn input(src: &[u8], dst: &[u8], ports: Option<(u16, u16)>) -> Vec<u8> {
        let mut v = [src, dst].concat();
        if let Some((s, d)) = ports {
            v.extend_from_slice(&s.to_be_bytes());
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    fn check(cases: &[Case]) {
        let t = Toeplitz::new(&DEFAULT_KEY);
        for (src, dst, sp, dp, addrs, ports) in cases {
            let a = input(src, dst, None);
            let p = input(src, dst, Some((*sp, *dp)));
            assert_eq!(toeplitz(&DEFAULT_KEY, &a), *addrs, "reference, addresses {src:?} {dst:?}");
            assert_eq!(toeplitz(&DEFAULT_KEY, &p), *ports, "reference, with ports {src:?} {dst:?}");
            assert_eq!(t.hash(&a), *addrs, "tables, addresses");
            assert_eq!(t.hash(&p), *ports, "tables, with ports");
            assert_eq!(t.hash_addrs(src, dst), *addrs, "tables, address pair");
        }
    }

    #[test]
    fn the_published_ipv4_vectors() {
        let cases: Vec<_> = V4
            .iter()
            .map(|&((d, dp), (s, sp), a, p)| {
                let (s, d) = (s.parse::<Ipv4Addr>().unwrap(), d.parse::<Ipv4Addr>().unwrap());
                (s.octets().to_vec(), d.octets().to_vec(), sp, dp, a, p)
            })
            .collect();
        check(&cases);
    }

    #[test]
    fn the_published_ipv6_vectors() {
        let cases: Vec<_> = V6
            .iter()
            .map(|&((d, dp), (s, sp), a, p)| {
                let (s, d) = (s.parse::<Ipv6Addr>().unwrap(), d.parse::<Ipv6Addr>().unwrap());
                (s.octets().to_vec(), d.octets().to_vec(), sp, dp, a, p)
            })
            .collect();
        check(&cases);
    }

    #[test]
    fn a_map_refuses_what_it_cannot_follow() {
        let cfg = |key: usize, indir: Vec<u32>| RssConfig { key: DEFAULT_KEY[..key].to_vec(), indir };
        assert_eq!(RssMap::new(cfg(20, vec![0, 1]), 2).unwrap_err(), RssMapError::ShortKey(20));
        assert_eq!(RssMap::new(cfg(40, vec![]), 2).unwrap_err(), RssMapError::Table(0));
        assert_eq!(RssMap::new(cfg(40, vec![0, 1, 0]), 2).unwrap_err(), RssMapError::Table(3));
        assert_eq!(
            RssMap::new(cfg(40, vec![0, 1, 2, 3]), 2).unwrap_err(),
            RssMapError::Queue { bucket: 2, queue: 2, last: 1 }
        );
        let long = RssConfig { key: [&DEFAULT_KEY[..], &DEFAULT_KEY[..12]].concat(), indir: vec![1, 0, 1, 0] };
        assert!(RssMap::new(long, 2).is_ok(), "a longer key (ice's 52 bytes) is fine");
    }

    #[test]
    fn the_owner_is_the_queue_of_the_hash_bucket() {
        let indir: Vec<u32> = (0..128).map(|i| i % 4).collect();
        let m = RssMap::new(RssConfig { key: DEFAULT_KEY.to_vec(), indir }, 4).unwrap();
        let (s, d) = ([66, 9, 149, 187], [161, 142, 100, 80]);
        // 0x323e8fc2: bucket 0x42 of 128, queue 0x42 % 4 = 2.
        assert_eq!(m.owner(&s, &d), 2);
    }

    proptest! {
        #[test]
        fn tables_equal_the_reference(key in proptest::collection::vec(any::<u8>(), 0..60),
                                      input in proptest::collection::vec(any::<u8>(), 0..=MAX_INPUT)) {
            let t = Toeplitz::new(&key);
            prop_assert_eq!(t.hash(&input), toeplitz(&key, &input));
        }

        #[test]
        fn address_pairs_equal_the_reference(key in proptest::collection::vec(any::<u8>(), 36..60),
                                             v6 in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>()) {
            let n = if v6 { 16 } else { 4 };
            let t = Toeplitz::new(&key);
            prop_assert_eq!(t.hash_addrs(&s[..n], &d[..n]), toeplitz(&key, &[&s[..n], &d[..n]].concat()));
        }
    }
}
