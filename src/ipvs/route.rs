//! Next hops by longest-prefix match over the director's routes: the
//! table the data path reads (built by the control plane, `ctl::route`).
//!
//! # Contract
//!
//! - `Routes::build` (`ctl::route`) compiles a `NetConf` into one table per family:
//!   the connected prefixes of every link (its addresses), each port's
//!   `gateways` as a default route, then `routes` (the kernel's main
//!   table, or the config's `[[route]]`s). Per prefix the lowest metric
//!   wins; on a tie, the first one listed (as the kernel keeps the first
//!   of equal IPv4 routes).
//! - [`Routes::next_hop`] answers where a packet to an address goes: the
//!   link and the neighbour to send to (the gateway, or the address itself
//!   on a connected prefix) — `None` when no route covers it, the route is
//!   a blackhole/unreachable one, or it leaves through a device that is
//!   not one of the director's links (xvs cannot send there; a more
//!   specific route of that kind still hides a less specific one).
//! - ECMP: a route with several next hops picks one by a hash of the
//!   destination address, so one destination always takes the same path
//!   (the kernel's default L3 multipath policy hashes the addresses too).
//! - Built on the control plane; a lookup allocates nothing: one hash
//!   probe per distinct prefix length of the family, longest first. The
//!   workers look up only when a connection is made or re-bound after a
//!   snapshot change.


use hashbrown::HashMap;
use std::net::IpAddr;

/// The next hop towards an address: the link (index in
/// `NetConf::links`) and the neighbour whose MAC the frame goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    pub link: u8,
    pub addr: IpAddr,
}

/// One way out of a compiled route: `link` is `None` for a device that
/// is not one of the director's links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Way {
    pub(crate) link: Option<u8>,
    pub(crate) via: Option<IpAddr>,
}

#[derive(Clone, Debug)]
struct Entry {
    metric: u32,
    ways: Vec<Way>,
}

/// One family's prefixes: per length (longest first), masked prefix →
/// entry index.
#[derive(Clone, Debug, Default)]
struct Lpm {
    lens: Vec<(u8, HashMap<u128, u32>)>,
}

/// The address as a number (IPv4 in the low 32 bits) and its width.
#[inline]
fn key(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

#[inline]
pub(crate) fn masked(k: u128, width: u8, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let keep = (u128::MAX << (width - len.min(width))) & (u128::MAX >> (128 - width));
        k & keep
    }
}

impl Lpm {
    fn get(&self, k: u128, width: u8) -> Option<u32> {
        self.lens.iter().find_map(|(len, m)| m.get(&masked(k, width, *len)).copied())
    }

    fn slot(&mut self, k: u128, width: u8, len: u8) -> (u128, &mut HashMap<u128, u32>) {
        let pos = match self.lens.iter().position(|(l, _)| *l <= len) {
            Some(p) if self.lens[p].0 == len => p,
            Some(p) => {
                self.lens.insert(p, (len, HashMap::new()));
                p
            }
            None => {
                self.lens.push((len, HashMap::new()));
                self.lens.len() - 1
            }
        };
        (masked(k, width, len), &mut self.lens[pos].1)
    }
}

/// The compiled routes. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    v4: Lpm,
    v6: Lpm,
    entries: Vec<Entry>,
    /// A bit per IPv4 /16 that a prefix other than the default one
    /// reaches into (empty: none does). An address in a /16 whose bit is
    /// clear takes the default route (`v4_default`) without a
    /// probe: a client's route, looked up for every new NAT or FULLNAT
    /// connection, is the default one on most directors.
    v4_cover: Vec<u64>,
    /// The entry of the IPv4 default route (`0.0.0.0/0`), if any.
    v4_default: Option<u32>,
}

/// The words of [`Routes`]'s `v4_cover`: a bit per /16.
const V4_COVER_WORDS: usize = (1 << 16) / 64;

impl Routes {
    /// Adds a prefix with its ways out; per prefix the lowest metric wins,
    /// on a tie the first added. A length beyond the family's width is
    /// skipped.
    pub(crate) fn add(&mut self, dst: IpAddr, len: u8, metric: u32, ways: Vec<Way>) {
        let (k, width) = key(dst);
        if len > width {
            return;
        }
        if dst.is_ipv4() && len > 0 {
            if self.v4_cover.is_empty() {
                self.v4_cover = vec![0; V4_COVER_WORDS];
            }
            // The /16s of the prefix: one, or all of a shorter prefix's.
            let first = (masked(k, width, len) >> 16) as usize;
            for b in first..first + (1usize << 16u8.saturating_sub(len)) {
                self.v4_cover[b / 64] |= 1 << (b % 64);
            }
        }
        let lpm = if dst.is_ipv4() { &mut self.v4 } else { &mut self.v6 };
        let (pk, map) = lpm.slot(k, width, len);
        match map.get(&pk) {
            Some(&e) if self.entries[e as usize].metric <= metric => {}
            Some(&e) => self.entries[e as usize] = Entry { metric, ways },
            None => {
                map.insert(pk, self.entries.len() as u32);
                self.entries.push(Entry { metric, ways });
            }
        }
        if dst.is_ipv4() && len == 0 {
            self.v4_default = map.get(&pk).copied();
        }
    }

    /// Whether a prefix other than the default one covers some of the
    /// IPv4 /16 of `a`.
    #[inline]
    fn v4_covered(&self, a: u32) -> bool {
        let b = (a >> 16) as usize;
        self.v4_cover.get(b / 64).is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    /// The next hop towards `ip`; see the module docs.
    pub fn next_hop(&self, ip: IpAddr) -> Option<NextHop> {
        let (k, width) = key(ip);
        let e = match ip {
            IpAddr::V4(_) if !self.v4_covered(k as u32) => &self.entries[self.v4_default? as usize],
            IpAddr::V4(_) => &self.entries[self.v4.get(k, width)? as usize],
            IpAddr::V6(_) => &self.entries[self.v6.get(k, width)? as usize],
        };
        let w = match e.ways.len() {
            0 => return None,
            1 => e.ways[0],
            n => e.ways[(spread(k) % n as u64) as usize],
        };
        Some(NextHop { link: w.link?, addr: w.via.unwrap_or(ip) })
    }

    /// Distinct prefix lengths of IPv4 and IPv6 (the probes a lookup may
    /// take).
    pub fn lengths(&self) -> (usize, usize) {
        (self.v4.lens.len(), self.v6.lens.len())
    }
}

/// A fixed mix of the address bits (ECMP choice): the same in every run.
#[inline]
fn spread(k: u128) -> u64 {
    let x = (k as u64) ^ ((k >> 64) as u64);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

