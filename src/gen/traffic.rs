//! Synthetic traffic for benchmarks and captures: many concurrent flows,
//! uniform or zipf popularity, TCP handshakes, data, FINs and UDP, frame
//! sizes of 64 B, IMIX or 1500 B, for each forwarding mode.
//!
//! # Contract
//!
//! - Deterministic: the same [`Topology`], [`FlowSet`], seed and calls give
//!   the same frames, byte for byte.
//! - Frames are written straight into caller buffers ([`Source::next_into`]),
//!   so a benchmark generates into its burst arena without copies or
//!   allocation; [`capture`] writes the same frames to a pcap for
//!   `xvs replay`.
//! - Every frame is valid (checksums verify, see
//!   [`crate::gen::packet::verify`]); payloads are zeros, so a checksum
//!   costs the headers only, whatever the frame size.
//! - Flow `id` ↔ client `(address, port)` is a bijection inside
//!   100.64.0.0/10 ([`FlowSet::client`], [`FlowSet::id_of`]) for ids below
//!   [`MAX_FLOWS`]: no two flows share a 5-tuple.
//! - Replies (NAT/FULLNAT) need to know what the director chose for the
//!   flow (real server, local address and port): the generator learns it
//!   from the director's forwarded frames ([`Peer::from_forwarded`],
//!   [`Source::learn`]), as a real server would.
//!
//! The director's side of the topology ([`Topology::config_toml`]):
//!
//! ```text
//! clients 100.64.0.0/10 ── gw 10.0.0.254 ── eth0 10.0.0.1/24 ┐ xvs  VIP 10.0.0.100 tcp:80 udp:53
//!                                          eth1 10.0.1.254/24 ┘ (mtu 9000: TUN's outer header fits)
//!                        real servers 10.0.1.1 ..= 10.0.1.N (NAT/FULLNAT ports 8080 / 8053)
//!                        FULLNAT local addresses 10.0.16.1 .. (as many as the flows need)
//! ```

use crate::ctl::model::DEFAULT_SHARD_PREFIX;
use crate::gen::packet::{MAC_CLIENT, MAC_DIRECTOR};
use crate::ipvs::FwdMethod;
use crate::wire::checksum::{fold, pseudo_v4, sum};
use crate::wire::{be16, parse, proto, tcp_flags};
use crate::worker::shard_hash;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Flow ids must stay below this for the id ↔ client bijection:
/// 2^22 client addresses × 1000 ports each.
pub const MAX_FLOWS: u32 = (1 << 22) * 1000;

/// Director MAC on the real-server side (eth1).
pub const MAC_DIRECTOR_RS: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x10];
/// The virtual service address.
pub const VIP: [u8; 4] = [10, 0, 0, 100];
/// TCP and UDP service ports.
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 53;
/// Real-server ports for NAT / FULLNAT (DR and TUN keep the VIP's port).
pub const RS_TCP_PORT: u16 = 8080;
pub const RS_UDP_PORT: u16 = 8053;

/// Frame length without FCS: "64 B" on the wire is 60 bytes in memory.
pub const LEN_64: usize = 60;
/// A 1500-byte IP packet in an Ethernet frame (no FCS).
pub const LEN_1500: usize = 1514;
/// The middle IMIX size (594 B on the wire).
pub const LEN_IMIX_MID: usize = 590;

// ---------------------------------------------------------------------------
// Randomness

/// A small fast PRNG (wyrand): deterministic, not cryptographic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x243f_6a88_85a3_08d3)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..n` (`n` > 0), by Lemire's multiply-shift.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf over ranks `1..=n` with exponent `s` > 0: P(k) ∝ k^-s. Sampled by
/// rejection-inversion (Hörmann and Derflinger, 1996), O(1) per draw and
/// no table, so 10 M ranks cost nothing to set up.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    cut: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0, "zipf needs n >= 1 and s > 0");
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            cut: 0.0,
        };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(n as f64 + 0.5);
        z.cut = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// ∫ h = (x^(1-s) - 1) / (1 - s), continuous in s = 1.
    fn h_integral(&self, x: f64) -> f64 {
        let lx = x.ln();
        helper2((1.0 - self.s) * lx) * lx
    }

    fn h_integral_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }

    /// A rank in `1..=n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.cut || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

/// ln(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// How often each flow is picked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Popularity {
    /// Every flow equally often, in random order.
    Uniform,
    /// Zipf with this exponent (1.0 is the classic web skew); the popular
    /// flows are scattered over the id space, not the first ones.
    Zipf(f64),
}

impl std::fmt::Display for Popularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Popularity::Uniform => f.write_str("uniform"),
            Popularity::Zipf(s) => write!(f, "zipf{s}"),
        }
    }
}

/// Largest prime below 2^32: coprime with any count we pick from, so
/// `rank * P mod n` is a permutation.
const SCATTER: u64 = 4_294_967_291;

/// Draws indexes in `0..n` by a [`Popularity`].
#[derive(Clone, Debug)]
pub struct Picker {
    n: u64,
    zipf: Option<Zipf>,
}

impl Picker {
    pub fn new(n: u64, pop: Popularity) -> Picker {
        let n = n.max(1);
        let zipf = match pop {
            Popularity::Uniform => None,
            Popularity::Zipf(s) => Some(Zipf::new(n, s)),
        };
        Picker { n, zipf }
    }

    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> u64 {
        match &self.zipf {
            None => rng.below(self.n),
            Some(z) => ((z.sample(rng) - 1) * SCATTER) % self.n,
        }
    }
}

/// Frame sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// 64 B on the wire (60 in memory): the packet-rate worst case.
    Min,
    /// Simple IMIX, 7:4:1 of 64, 594 and 1518 B on the wire.
    Imix,
    /// 1518 B on the wire: a 1500-byte IP packet.
    Max,
}

impl Sizes {
    /// A frame length in memory (no FCS).
    #[inline]
    pub fn pick(self, rng: &mut Rng) -> usize {
        match self {
            Sizes::Min => LEN_64,
            Sizes::Max => LEN_1500,
            Sizes::Imix => match rng.below(12) {
                0..=6 => LEN_64,
                7..=10 => LEN_IMIX_MID,
                _ => LEN_1500,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sizes::Min => "64",
            Sizes::Imix => "imix",
            Sizes::Max => "1500",
        }
    }

    /// From `64`, `imix` or `1500`.
    pub fn from_name(s: &str) -> Option<Sizes> {
        match s {
            "64" => Some(Sizes::Min),
            "imix" => Some(Sizes::Imix),
            "1500" => Some(Sizes::Max),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Topology and configuration

/// The director's configuration for a benchmark: one forwarding mode,
/// TCP and UDP services on [`VIP`].
#[derive(Clone, Debug)]
pub struct Topology {
    pub mode: FwdMethod,
    /// Real servers 10.0.1.1 ..= 10.0.1.N (at most 200).
    pub real_servers: u8,
    /// Scheduler name.
    pub sched: String,
    /// Connection bound per worker.
    pub max_conns: usize,
    /// FULLNAT local addresses (each gives about 64k ports per worker
    /// count); [`Topology::laddrs_for`] sizes it.
    pub laddrs: u32,
    /// `proxy_protocol` of the TCP service's real servers (`"v1"`,
    /// `"v2"`; NAT and FULLNAT).
    pub proxy: Option<&'static str>,
}

impl Topology {
    /// `flows` connections per worker at most, with room to spare.
    pub fn new(mode: FwdMethod, flows: u64) -> Topology {
        Topology {
            mode,
            real_servers: 8,
            sched: "rr".into(),
            max_conns: (flows + flows / 4 + 1024) as usize,
            laddrs: Self::laddrs_for(flows),
            proxy: None,
        }
    }

    /// Local addresses for `flows` FULLNAT connections (64512 ports each,
    /// with a margin).
    pub fn laddrs_for(flows: u64) -> u32 {
        (flows / 60_000 + 2) as u32
    }

    /// Real server `i` (0-based).
    pub fn rs(i: u8) -> [u8; 4] {
        [10, 0, 1, i + 1]
    }

    /// FULLNAT local address `i`.
    pub fn laddr(i: u32) -> [u8; 4] {
        let a = u32::from_be_bytes([10, 0, 16, 1]) + i;
        a.to_be_bytes()
    }

    /// The configuration file (TOML, see docs/config.md) for this topology.
    pub fn config_toml(&self) -> String {
        let mut t = String::new();
        let nat = matches!(self.mode, FwdMethod::Nat | FwdMethod::FullNat);
        let _ = writeln!(
            t,
            "# xvs benchmark topology ({} mode), written by the traffic generator.",
            self.mode
        );
        let _ = writeln!(t, "[global]\nmax_conns = {}\n", self.max_conns);
        t.push_str(
            "[[interface]]\nname = \"eth0\"\nmac = \"02:00:00:00:00:10\"\nmtu = 1500\n\
             addresses = [\"10.0.0.1/24\"]\ngateways = [\"10.0.0.254\"]\n\n\
             [[interface]]\nname = \"eth1\"\nmac = \"02:00:00:00:01:10\"\nmtu = 9000\n\
             addresses = [\"10.0.1.254/24\"]\n\n\
             [[neighbour]]\nip = \"10.0.0.254\"\nmac = \"02:00:00:00:00:fe\"\n\n",
        );
        for i in 0..self.real_servers {
            let a = Self::rs(i);
            let _ = writeln!(
                t,
                "[[neighbour]]\nip = \"{}\"\nmac = \"02:00:00:00:01:{:02x}\"\n",
                Ipv4Addr::from(a),
                i + 1
            );
        }
        for (proto, port, rport) in [
            ("tcp", TCP_PORT, RS_TCP_PORT),
            ("udp", UDP_PORT, RS_UDP_PORT),
        ] {
            let _ = writeln!(
                t,
                "[[service]]\nproto = \"{proto}\"\nvip = \"{}\"\nport = {port}\nscheduler = \"{}\"",
                Ipv4Addr::from(VIP),
                self.sched
            );
            if self.mode == FwdMethod::FullNat {
                let l: Vec<String> = (0..self.laddrs)
                    .map(|i| format!("\"{}\"", Ipv4Addr::from(Self::laddr(i))))
                    .collect();
                let _ = writeln!(t, "local_addresses = [{}]", l.join(", "));
            }
            for i in 0..self.real_servers {
                let _ = writeln!(
                    t,
                    "  [[service.real_server]]\n  ip = \"{}\"",
                    Ipv4Addr::from(Self::rs(i))
                );
                if nat {
                    let _ = writeln!(t, "  port = {rport}");
                }
                let _ = writeln!(t, "  weight = 1\n  mode = \"{}\"", self.mode);
                if let Some(v) = self.proxy.filter(|_| nat && proto == "tcp") {
                    let _ = writeln!(t, "  proxy_protocol = \"{v}\"");
                }
            }
            t.push('\n');
        }
        t
    }
}

// ---------------------------------------------------------------------------
// Flows

/// A set of flow ids and their clients. See the module contract.
#[derive(Clone, Copy, Debug)]
pub struct FlowSet {
    seed: u64,
    /// Share of flows that are UDP (the rest TCP), in [0, 1].
    pub udp_share: f64,
}

const CLIENT_NET: u32 = 0x6440_0000; // 100.64.0.0/10
const ADDR_BITS: u32 = 22;
const ADDR_MASK: u32 = (1 << ADDR_BITS) - 1;
/// Odd multiplier (a bijection mod 2^22) and its inverse.
const ADDR_MUL: u32 = 0x2f_a3b5;

fn inv_mod_2_22(a: u32) -> u32 {
    // Newton's iteration for the inverse of an odd number mod 2^32.
    let mut x = a;
    for _ in 0..5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
    }
    x & ADDR_MASK
}

impl FlowSet {
    pub fn new(seed: u64, udp_share: f64) -> FlowSet {
        FlowSet {
            seed,
            udp_share: udp_share.clamp(0.0, 1.0),
        }
    }

    fn salt(&self) -> u32 {
        (self.seed as u32 ^ (self.seed >> 32) as u32) & ADDR_MASK
    }

    /// The client address and port of flow `id`.
    #[inline]
    pub fn client(&self, id: u32) -> ([u8; 4], u16) {
        let lo = id & ADDR_MASK;
        let hi = id >> ADDR_BITS;
        let a = (lo.wrapping_mul(ADDR_MUL) ^ self.salt()) & ADDR_MASK;
        let port = 1024 + ((hi + lo.wrapping_mul(7919) % 64000) % 64000) as u16;
        ((CLIENT_NET | a).to_be_bytes(), port)
    }

    /// The flow whose client is `addr:port`, if any.
    pub fn id_of(&self, addr: [u8; 4], port: u16) -> Option<u32> {
        let a = u32::from_be_bytes(addr);
        if a & !ADDR_MASK != CLIENT_NET || !(1024..1024 + 64000).contains(&port) {
            return None;
        }
        let lo = (((a & ADDR_MASK) ^ self.salt()).wrapping_mul(inv_mod_2_22(ADDR_MUL))) & ADDR_MASK;
        let p = (port - 1024) as u32;
        let hi = (p + 64000 - lo.wrapping_mul(7919) % 64000) % 64000;
        let id = (hi << ADDR_BITS) | lo;
        (hi < 1000).then_some(id)
    }

    /// Flow `id` is UDP (else TCP).
    #[inline]
    pub fn is_udp(&self, id: u32) -> bool {
        if self.udp_share <= 0.0 {
            return false;
        }
        let h = (id as u64 ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) < self.udp_share
    }

    /// The worker (of `workers`) that owns flow `id`: the worker's own
    /// ownership rule for client → VIP packets (the client address masked
    /// to the shard prefix, which [`Topology::config_toml`] leaves at its
    /// default, a whole IPv4 address).
    #[inline]
    pub fn owner(&self, id: u32, workers: u16) -> u16 {
        if workers <= 1 {
            return 0;
        }
        let (a, _) = self.client(id);
        let bits = DEFAULT_SHARD_PREFIX.0.min(32) as u32;
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        let a = (u32::from_be_bytes(a) & mask).to_be_bytes();
        (shard_hash(&a) % workers as u32) as u16
    }
}

/// A list of flow ids: all of `0..n`, or an explicit list (one worker's
/// share).
#[derive(Clone, Debug)]
pub enum Ids {
    All(u32),
    List(Vec<u32>),
}

impl Ids {
    /// The ids in `0..n` that worker `w` of `workers` owns.
    pub fn owned(flows: &FlowSet, n: u32, workers: u16, w: u16) -> Ids {
        if workers <= 1 {
            return Ids::All(n);
        }
        Ids::List((0..n).filter(|&i| flows.owner(i, workers) == w).collect())
    }

    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Ids::All(n) => *n as usize,
            Ids::List(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Ids::All(_) => i as u32,
            Ids::List(v) => v[i],
        }
    }
}

/// What the director chose for a flow, as its real server sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Real server address and port (zero: not known yet).
    pub rs: [u8; 4],
    pub rport: u16,
    /// FULLNAT: the local address and port the real server sees as the
    /// client; NAT: the client itself.
    pub laddr: [u8; 4],
    pub lport: u16,
}

impl Peer {
    pub fn known(&self) -> bool {
        self.rport != 0
    }

    /// Learns the peer from a frame the director forwarded to a real server
    /// (NAT: the destination; FULLNAT: both ends). `None` for other modes
    /// or frames that do not parse.
    pub fn from_forwarded(mode: FwdMethod, f: &[u8]) -> Option<Peer> {
        if !mode.sees_replies() {
            return None;
        }
        let m = parse(f).ok()?;
        if m.v6 || (m.proto != proto::TCP && m.proto != proto::UDP) {
            return None;
        }
        let l3 = m.l3 as usize;
        let a = |o: usize| [f[l3 + o], f[l3 + o + 1], f[l3 + o + 2], f[l3 + o + 3]];
        Some(Peer {
            rs: a(16),
            rport: m.dport,
            laddr: a(12),
            lport: m.sport,
        })
    }
}

// ---------------------------------------------------------------------------
// Frames

/// Writes an Ethernet/IPv4/TCP frame of `len` bytes (zero payload, DF,
/// TTL 64; acknowledgement number `ack` with the ACK flag) into `buf`;
/// returns `len`. `len` is at least 54 and at most
/// `buf.len()`.
#[allow(clippy::too_many_arguments)]
pub fn write_tcp4(
    buf: &mut [u8],
    smac: &[u8; 6],
    dmac: &[u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    len: usize,
) -> usize {
    let len = len.max(54);
    let f = &mut buf[..len];
    write_l3(f, smac, dmac, src, dst, proto::TCP);
    let t = &mut f[34..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    let ack = if flags & tcp_flags::ACK != 0 { ack } else { 0 };
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t[16..20].fill(0);
    t[20..].fill(0);
    let l4len = (len - 34) as u16;
    let c = !fold(sum(pseudo_v4(&src, &dst, proto::TCP, l4len), &t[..20]));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    len
}

/// Writes an Ethernet/IPv4/UDP frame of `len` bytes (at least 42).
#[allow(clippy::too_many_arguments)]
pub fn write_udp4(
    buf: &mut [u8],
    smac: &[u8; 6],
    dmac: &[u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    len: usize,
) -> usize {
    let len = len.max(42);
    let f = &mut buf[..len];
    write_l3(f, smac, dmac, src, dst, proto::UDP);
    let u = &mut f[34..];
    let l4len = (len - 34) as u16;
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&l4len.to_be_bytes());
    u[6..8].fill(0);
    u[8..].fill(0);
    let mut c = !fold(sum(pseudo_v4(&src, &dst, proto::UDP, l4len), &u[..8]));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    len
}

fn write_l3(f: &mut [u8], smac: &[u8; 6], dmac: &[u8; 6], src: [u8; 4], dst: [u8; 4], pr: u8) {
    f[0..6].copy_from_slice(dmac);
    f[6..12].copy_from_slice(smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let total = (f.len() - 14) as u16;
    let h = &mut f[14..34];
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].fill(0);
    h[6] = 0x40; // DF
    h[7] = 0;
    h[8] = 64;
    h[9] = pr;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = !fold(sum(0, h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// What a generated frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client SYN (a new connection).
    Syn,
    /// Real server SYN+ACK (NAT/FULLNAT).
    SynAck,
    /// Client ACK finishing the handshake.
    Ack,
    /// Client data (TCP ACK|PSH).
    Data,
    /// Real server data.
    Reply,
    /// Client FIN.
    Fin,
    /// Real server FIN.
    ReplyFin,
    /// Client ACK of the server's FIN.
    LastAck,
    /// Client UDP datagram.
    Udp,
    /// Real server UDP datagram.
    UdpReply,
}

impl Kind {
    /// Sent by the real server (arrives on the director's eth1).
    pub fn is_reply(self) -> bool {
        matches!(
            self,
            Kind::SynAck | Kind::Reply | Kind::ReplyFin | Kind::UdpReply
        )
    }
}

/// One generated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// Director port it arrives on (0: client side, 1: real-server side).
    pub port: u8,
    pub id: u32,
    pub kind: Kind,
}

/// Writes flow `id`'s frame of kind `kind`, `len` bytes long. Replies
/// need `peer` to be known (else the client's frame is written instead).
pub fn write_frame(
    buf: &mut [u8],
    flows: &FlowSet,
    id: u32,
    kind: Kind,
    len: usize,
    peer: &Peer,
) -> Emitted {
    let (caddr, cport) = flows.client(id);
    let udp = flows.is_udp(id);
    let (vport, rport) = (if udp { UDP_PORT } else { TCP_PORT }, peer.rport);
    let seq = id.wrapping_mul(2_654_435_761);
    if kind.is_reply() && peer.known() {
        // Real server -> (client | local address).
        let rmac = [0x02, 0, 0, 0, 0x01, peer.rs[3]];
        let n = if udp {
            write_udp4(
                buf,
                &rmac,
                &MAC_DIRECTOR_RS,
                peer.rs,
                rport,
                peer.laddr,
                peer.lport,
                len,
            )
        } else {
            let fl = match kind {
                Kind::SynAck => tcp_flags::SYN | tcp_flags::ACK,
                Kind::ReplyFin => tcp_flags::FIN | tcp_flags::ACK,
                _ => tcp_flags::ACK | tcp_flags::PSH,
            };
            write_tcp4(
                buf,
                &rmac,
                &MAC_DIRECTOR_RS,
                peer.rs,
                rport,
                peer.laddr,
                peer.lport,
                fl,
                seq ^ 1,
                // a kilobyte of the client's stream acknowledged
                seq.wrapping_add(1000),
                len,
            )
        };
        return Emitted {
            len: n,
            port: 1,
            id,
            kind,
        };
    }
    let kind = match kind {
        Kind::SynAck | Kind::Reply | Kind::ReplyFin => Kind::Data,
        Kind::UdpReply => Kind::Udp,
        k => k,
    };
    let n = if udp {
        write_udp4(
            buf,
            &MAC_CLIENT,
            &MAC_DIRECTOR,
            caddr,
            cport,
            VIP,
            vport,
            len,
        )
    } else {
        let fl = match kind {
            Kind::Syn => tcp_flags::SYN,
            Kind::Fin => tcp_flags::FIN | tcp_flags::ACK,
            Kind::Data | Kind::Udp => tcp_flags::ACK | tcp_flags::PSH,
            _ => tcp_flags::ACK,
        };
        write_tcp4(
            buf,
            &MAC_CLIENT,
            &MAC_DIRECTOR,
            caddr,
            cport,
            VIP,
            vport,
            fl,
            // The SYN's sequence number is the ISN, one below the
            // stream's first byte, where the client's data starts.
            if kind == Kind::Syn { seq.wrapping_sub(1) } else { seq },
            (seq ^ 1).wrapping_add(1000),
            len,
        )
    };
    let kind = if udp { Kind::Udp } else { kind };
    Emitted {
        len: n,
        port: 0,
        id,
        kind,
    }
}

// ---------------------------------------------------------------------------
// Sources

/// A stream of frames.
pub trait Source {
    /// Writes the next frame at the start of `buf` (at least
    /// [`LEN_1500`] bytes); `None` when the stream is over.
    fn next_into(&mut self, buf: &mut [u8]) -> Option<Emitted>;
    /// Tells the source what the director chose for flow `id`.
    fn learn(&mut self, _id: u32, _peer: Peer) {}
}

/// Peers by flow id, grown on demand.
#[derive(Clone, Debug, Default)]
pub struct Peers(Vec<Peer>);

impl Peers {
    pub fn with_capacity(n: usize) -> Peers {
        Peers(Vec::with_capacity(n))
    }
    #[inline]
    pub fn get(&self, id: u32) -> Peer {
        self.0.get(id as usize).copied().unwrap_or_default()
    }
    pub fn set(&mut self, id: u32, p: Peer) {
        let i = id as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, Peer::default());
        }
        self.0[i] = p;
    }
}

/// One step of connection setup for a list of flows, in order: the
/// opening packets (SYN / first datagram), the real servers' SYN+ACKs, or
/// the clients' handshake ACKs. Flows a step does not apply to (UDP after
/// the opening, SYN+ACK of a flow without a known peer) are skipped.
pub struct Handshake<'a> {
    flows: FlowSet,
    ids: &'a Ids,
    pos: usize,
    step: Kind,
    len: usize,
    peers: Option<&'a Peers>,
    learned: Peers,
}

impl<'a> Handshake<'a> {
    /// `step` is [`Kind::Syn`], [`Kind::SynAck`] or [`Kind::Ack`].
    pub fn new(
        flows: FlowSet,
        ids: &'a Ids,
        step: Kind,
        len: usize,
        peers: Option<&'a Peers>,
    ) -> Self {
        Handshake {
            flows,
            ids,
            pos: 0,
            step,
            len,
            peers,
            learned: Peers::default(),
        }
    }

    /// Flows done so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The peers [`Source::learn`] was told (the opening step learns them).
    pub fn into_learned(self) -> Peers {
        self.learned
    }
}

impl Source for Handshake<'_> {
    fn next_into(&mut self, buf: &mut [u8]) -> Option<Emitted> {
        while self.pos < self.ids.len() {
            let id = self.ids.get(self.pos);
            self.pos += 1;
            let udp = self.flows.is_udp(id);
            let peer = self.peers.map(|p| p.get(id)).unwrap_or_default();
            match self.step {
                Kind::Syn => {
                    return Some(write_frame(
                        buf,
                        &self.flows,
                        id,
                        Kind::Syn,
                        self.len,
                        &peer,
                    ))
                }
                Kind::SynAck if !udp && peer.known() => {
                    return Some(write_frame(
                        buf,
                        &self.flows,
                        id,
                        Kind::SynAck,
                        self.len,
                        &peer,
                    ))
                }
                Kind::Ack if !udp => {
                    return Some(write_frame(
                        buf,
                        &self.flows,
                        id,
                        Kind::Ack,
                        self.len,
                        &peer,
                    ))
                }
                _ => continue,
            }
        }
        None
    }

    fn learn(&mut self, id: u32, peer: Peer) {
        self.learned.set(id, peer);
    }
}

/// Established traffic: data packets of flows picked by popularity; with
/// `reply_share` > 0 and known peers, that share are the real servers'
/// replies (NAT/FULLNAT). Endless.
pub struct Established<'a> {
    flows: FlowSet,
    ids: &'a Ids,
    picker: Picker,
    sizes: Sizes,
    reply_share: f64,
    peers: Option<&'a Peers>,
    rng: Rng,
}

impl<'a> Established<'a> {
    pub fn new(
        flows: FlowSet,
        ids: &'a Ids,
        pop: Popularity,
        sizes: Sizes,
        reply_share: f64,
        peers: Option<&'a Peers>,
        seed: u64,
    ) -> Self {
        Established {
            flows,
            ids,
            picker: Picker::new(ids.len() as u64, pop),
            sizes,
            reply_share,
            peers,
            rng: Rng::new(seed),
        }
    }
}

impl Source for Established<'_> {
    #[inline]
    fn next_into(&mut self, buf: &mut [u8]) -> Option<Emitted> {
        if self.ids.is_empty() {
            return None;
        }
        let id = self.ids.get(self.picker.pick(&mut self.rng) as usize);
        let len = self.sizes.pick(&mut self.rng);
        let reply = self.reply_share > 0.0 && self.rng.unit() < self.reply_share;
        let peer = if reply {
            self.peers.map(|p| p.get(id)).unwrap_or_default()
        } else {
            Peer::default()
        };
        Some(write_frame(
            buf,
            &self.flows,
            id,
            if reply { Kind::Reply } else { Kind::Data },
            len,
            &peer,
        ))
    }
}

/// A connection storm: every frame a SYN of a flow never seen before
/// (ids from `start` on, only those `worker` of `workers` owns). Ends
/// after `count` frames.
pub struct Storm {
    flows: FlowSet,
    next: u32,
    left: u64,
    worker: u16,
    workers: u16,
    sizes: Sizes,
    rng: Rng,
}

impl Storm {
    pub fn new(
        flows: FlowSet,
        start: u32,
        count: u64,
        worker: u16,
        workers: u16,
        sizes: Sizes,
        seed: u64,
    ) -> Storm {
        Storm {
            flows: FlowSet {
                udp_share: 0.0,
                ..flows
            },
            next: start,
            left: count,
            worker,
            workers,
            sizes,
            rng: Rng::new(seed),
        }
    }
}

impl Source for Storm {
    #[inline]
    fn next_into(&mut self, buf: &mut [u8]) -> Option<Emitted> {
        if self.left == 0 || self.next >= MAX_FLOWS {
            return None;
        }
        while self.flows.owner(self.next, self.workers) != self.worker {
            self.next += 1;
        }
        let id = self.next;
        self.next += 1;
        self.left -= 1;
        let len = self.sizes.pick(&mut self.rng);
        Some(write_frame(
            buf,
            &self.flows,
            id,
            Kind::Syn,
            len,
            &Peer::default(),
        ))
    }
}

/// Where a flow of a [`Mix`] is in its life.
#[derive(Clone, Copy, Debug)]
struct Slot {
    id: u32,
    step: Kind,
    left: u32,
}

/// Realistic traffic: `slots` concurrent flows (picked by popularity),
/// each living through its handshake, `data` data packets on average
/// (client and, for NAT/FULLNAT, real-server side) and its close; a flow
/// that ends is replaced by a new one. UDP flows are a few datagrams each
/// way. Endless.
pub struct Mix {
    flows: FlowSet,
    slots: Vec<Slot>,
    picker: Picker,
    sizes: Sizes,
    replies: bool,
    reply_share: f64,
    data: u32,
    next_id: u32,
    worker: u16,
    workers: u16,
    peers: Peers,
    rng: Rng,
}

impl Mix {
    /// `data`: mean data packets per flow. Flow ids start at 0.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: FwdMethod,
        flows: FlowSet,
        slots: u32,
        pop: Popularity,
        sizes: Sizes,
        data: u32,
        worker: u16,
        workers: u16,
        seed: u64,
    ) -> Mix {
        let mut m = Mix {
            flows,
            slots: Vec::with_capacity(slots as usize),
            picker: Picker::new(slots as u64, pop),
            sizes,
            replies: mode.sees_replies(),
            reply_share: 0.5,
            data: data.max(1),
            next_id: 0,
            worker,
            workers,
            peers: Peers::default(),
            rng: Rng::new(seed),
        };
        for _ in 0..slots.max(1) {
            let id = m.fresh();
            m.slots.push(Slot {
                id,
                step: Kind::Syn,
                left: 0,
            });
        }
        m
    }

    fn fresh(&mut self) -> u32 {
        while self.flows.owner(self.next_id, self.workers) != self.worker {
            self.next_id += 1;
        }
        self.next_id += 1;
        self.next_id - 1
    }

    /// Distinct flows started so far.
    pub fn flows_started(&self) -> u32 {
        self.next_id
    }
}

impl Source for Mix {
    fn next_into(&mut self, buf: &mut [u8]) -> Option<Emitted> {
        let si = self.picker.pick(&mut self.rng) as usize;
        let len = self.sizes.pick(&mut self.rng);
        let mut s = self.slots[si];
        let udp = self.flows.is_udp(s.id);
        let peer = self.peers.get(s.id);
        let replies = self.replies && peer.known();
        let data = |rng: &mut Rng, d: u32| 1 + rng.below(2 * d as u64 - 1) as u32;
        // The frame to send and the step after it.
        let (kind, next) = match s.step {
            Kind::Syn if udp => {
                s.left = data(&mut self.rng, self.data);
                (Kind::Udp, Kind::Data)
            }
            Kind::Syn => (Kind::Syn, Kind::SynAck),
            Kind::SynAck if replies => (Kind::SynAck, Kind::Ack),
            Kind::SynAck | Kind::Ack => {
                s.left = data(&mut self.rng, self.data);
                (Kind::Ack, Kind::Data)
            }
            Kind::Data => {
                s.left = s.left.saturating_sub(1);
                let after = if s.left == 0 {
                    if udp {
                        Kind::LastAck
                    } else {
                        Kind::Fin
                    }
                } else {
                    Kind::Data
                };
                let reply = replies && self.rng.unit() < self.reply_share;
                (if reply { Kind::Reply } else { Kind::Data }, after)
            }
            Kind::Fin => (
                Kind::Fin,
                if replies {
                    Kind::ReplyFin
                } else {
                    Kind::LastAck
                },
            ),
            Kind::ReplyFin => (Kind::ReplyFin, Kind::LastAck),
            // LastAck, and anything else: the flow ends with this frame.
            _ => (if udp { Kind::Udp } else { Kind::LastAck }, Kind::Syn),
        };
        let e = write_frame(buf, &self.flows, s.id, kind, len, &peer);
        if next == Kind::Syn {
            s.id = self.fresh();
            s.left = 0;
        }
        s.step = next;
        self.slots[si] = s;
        Some(e)
    }

    fn learn(&mut self, id: u32, peer: Peer) {
        self.peers.set(id, peer);
    }
}

/// Writes `packets` frames of `src` to a pcap (nanosecond timestamps,
/// `pps` frames per second from t = 0), ready for `xvs replay`. Each frame
/// is also given to `oracle` (a director with the same configuration),
/// whose forwarded frames teach the source the peers its replies need;
/// with the same configuration and one worker, `xvs replay` makes the same
/// choices, so the replies in the capture match its connections.
///
/// # Errors
/// Write errors.
pub fn capture<W: std::io::Write>(
    src: &mut dyn Source,
    packets: u64,
    pps: u64,
    mode: FwdMethod,
    mut oracle: Option<&mut crate::worker::Worker>,
    out: W,
) -> Result<u64, pcap_file::PcapError> {
    use crate::wire::frame::HEADROOM;
    use crate::wire::Frame;
    use crate::worker::Verdict;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let header = PcapHeader {
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(out, header)?;
    let mut buf = vec![0u8; HEADROOM + LEN_1500 + 256];
    let gap = 1_000_000_000 / pps.max(1);
    let mut n = 0;
    while n < packets {
        let Some(e) = src.next_into(&mut buf[HEADROOM..]) else {
            break;
        };
        let ts = std::time::Duration::from_nanos(n * gap);
        w.write_packet(&PcapPacket::new(
            ts,
            e.len as u32,
            &buf[HEADROOM..HEADROOM + e.len],
        ))?;
        if let Some(o) = oracle.as_deref_mut() {
            let mut fr = Frame::on_port(&mut buf, HEADROOM, e.len, e.port);
            let mut v = [Verdict::Drop(crate::stats::DropReason::Truncated)];
            o.process_burst(
                std::slice::from_mut(&mut fr),
                &mut v,
                crate::io::pcap::CLOCK_START_NS + n * gap,
            );
            if matches!(v[0], Verdict::Tx { .. }) && matches!(e.kind, Kind::Syn | Kind::Udp) {
                if let Some(p) = Peer::from_forwarded(mode, fr.data()) {
                    src.learn(e.id, p);
                }
            }
        }
        n += 1;
    }
    Ok(n)
}

/// Reads the TCP flags of a generated frame (0 for UDP); for tests.
pub fn flags_of(f: &[u8]) -> u8 {
    if f.len() > 47 && f[23] == proto::TCP {
        f[47]
    } else {
        0
    }
}

/// Reads the client port of a client-side frame; for tests.
pub fn sport_of(f: &[u8]) -> u16 {
    be16(f, 34)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config::load_str;
    use crate::ctl::snapshot::Snapshot;
    use crate::gen::packet::verify;
    use crate::worker::{Verdict, Worker};
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn client_ids_are_a_bijection() {
        let fs = FlowSet::new(42, 0.0);
        let mut seen = HashSet::new();
        for id in (0..200_000u32).chain([MAX_FLOWS - 1, (1 << 22) + 5, 999 << 22]) {
            let (a, p) = fs.client(id);
            assert!(seen.insert((a, p)), "flow {id} repeats a client");
            assert_eq!(fs.id_of(a, p), Some(id), "inverse of flow {id}");
        }
        assert_eq!(fs.id_of([10, 0, 0, 1], 2000), None);
        assert_eq!(fs.id_of([100, 64, 0, 1], 80), None);
    }

    #[test]
    fn frames_are_valid_and_sized() {
        let fs = FlowSet::new(1, 0.5);
        let mut buf = vec![0u8; 2048];
        let peer = Peer {
            rs: [10, 0, 1, 1],
            rport: 8080,
            laddr: [10, 0, 16, 1],
            lport: 5000,
        };
        for id in 0..50 {
            for kind in [
                Kind::Syn,
                Kind::SynAck,
                Kind::Ack,
                Kind::Data,
                Kind::Reply,
                Kind::Fin,
                Kind::Udp,
            ] {
                for len in [LEN_64, LEN_IMIX_MID, LEN_1500] {
                    let e = write_frame(&mut buf, &fs, id, kind, len, &peer);
                    assert_eq!(e.len, len);
                    let f = &buf[..e.len];
                    assert!(verify(f), "{kind:?} {len}");
                    let m = parse(f).unwrap();
                    assert_eq!(
                        m.end as usize, len,
                        "no ethernet padding: the ip packet fills the frame"
                    );
                    assert_eq!(
                        m.proto,
                        if fs.is_udp(id) {
                            proto::UDP
                        } else {
                            proto::TCP
                        }
                    );
                    assert_eq!(e.port, if kind.is_reply() { 1 } else { 0 });
                }
            }
        }
    }

    #[test]
    fn sources_are_deterministic() {
        let fs = FlowSet::new(7, 0.2);
        let ids = Ids::All(1000);
        let run = || {
            let mut s =
                Established::new(fs, &ids, Popularity::Zipf(1.0), Sizes::Imix, 0.0, None, 9);
            let mut buf = vec![0u8; 2048];
            (0..500)
                .map(|_| {
                    let e = s.next_into(&mut buf).unwrap();
                    buf[..e.len].to_vec()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn zipf_matches_its_distribution() {
        // P(rank 1) = 1 / H(1000) for s = 1; ranks 1..=3 by their ratio.
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(3);
        let mut c = [0u64; 4];
        let n = 400_000;
        for _ in 0..n {
            let k = z.sample(&mut rng);
            assert!((1..=1000).contains(&k));
            if k <= 3 {
                c[k as usize] += 1;
            }
        }
        let h: f64 = (1..=1000).map(|k| 1.0 / k as f64).sum();
        let p1 = c[1] as f64 / n as f64;
        assert!((p1 - 1.0 / h).abs() < 0.005, "p1 {p1} want {}", 1.0 / h);
        let r = c[1] as f64 / c[2] as f64;
        assert!((r - 2.0).abs() < 0.1, "rank1/rank2 {r}");
        // s != 1
        let z = Zipf::new(50, 2.0);
        let ones = (0..100_000).filter(|_| z.sample(&mut rng) == 1).count() as f64 / 100_000.0;
        let h2: f64 = (1..=50).map(|k| 1.0 / (k * k) as f64).sum();
        assert!((ones - 1.0 / h2).abs() < 0.01, "p1 {ones}");
    }

    #[test]
    fn uniform_picker_covers_everything() {
        let p = Picker::new(100, Popularity::Uniform);
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 100];
        for _ in 0..100_000 {
            seen[p.pick(&mut rng) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn owned_ids_follow_the_workers_rule() {
        let fs = FlowSet::new(5, 0.0);
        let a = Ids::owned(&fs, 1000, 2, 0);
        let b = Ids::owned(&fs, 1000, 2, 1);
        assert_eq!(a.len() + b.len(), 1000);
        assert!(a.len() > 400 && b.len() > 400);
        // The worker agrees: a SYN of a flow of worker 1 is handed to it by worker 0.
        let topo = Topology::new(FwdMethod::Dr, 1000);
        let snap = Arc::new(
            Snapshot::build(&load_str(&topo.config_toml(), "bench").unwrap(), None).unwrap(),
        );
        let mut w0 = Worker::new(0, 2, snap, 1_000_000_000);
        let mut buf = vec![0u8; 4096];
        for i in 0..20 {
            let id = b.get(i);
            let e = write_frame(&mut buf[64..], &fs, id, Kind::Syn, LEN_64, &Peer::default());
            let mut fr = crate::wire::Frame::new(&mut buf, 64, e.len);
            assert_eq!(w0.process(&mut fr), Verdict::Handoff { worker: 1 });
        }
    }

    /// The full loop for every mode: setup steps, established traffic with
    /// replies learnt from the forwarded SYNs; everything is forwarded.
    #[test]
    fn every_mode_forwards_everything() {
        for mode in FwdMethod::ALL {
            let topo = Topology::new(mode, 500);
            let model = load_str(&topo.config_toml(), "bench").unwrap();
            let mut w = Worker::new(
                0,
                1,
                Arc::new(Snapshot::build(&model, None).unwrap()),
                1_000_000_000,
            );
            let fs = FlowSet::new(11, 0.25);
            let ids = Ids::All(500);
            let mut peers = Peers::default();
            let mut buf = vec![0u8; 4096];
            let push = |w: &mut Worker, e: Emitted, buf: &mut Vec<u8>| -> (Verdict, Vec<u8>) {
                let mut fr = crate::wire::Frame::on_port(buf, 64, e.len, e.port);
                w.set_clock(2_000_000_000);
                let v = w.process(&mut fr);
                (v, fr.data().to_vec())
            };
            let mut syn = Handshake::new(fs, &ids, Kind::Syn, LEN_64, None);
            while let Some(e) = syn.next_into(&mut buf[64..]) {
                let (v, out) = push(&mut w, e, &mut buf);
                assert_eq!(v, Verdict::Tx { port: 1 }, "{mode} syn");
                if let Some(p) = Peer::from_forwarded(mode, &out) {
                    peers.set(e.id, p);
                }
            }
            assert_eq!(w.conns(), 500);
            for step in [Kind::SynAck, Kind::Ack] {
                let mut h = Handshake::new(fs, &ids, step, LEN_64, Some(&peers));
                while let Some(e) = h.next_into(&mut buf[64..]) {
                    let (v, _) = push(&mut w, e, &mut buf);
                    assert!(matches!(v, Verdict::Tx { .. }), "{mode} {step:?}");
                }
            }
            let mut est = Established::new(
                fs,
                &ids,
                Popularity::Uniform,
                Sizes::Imix,
                0.5,
                Some(&peers),
                1,
            );
            let mut replies = 0;
            for _ in 0..2000 {
                let e = est.next_into(&mut buf[64..]).unwrap();
                replies += e.port as u32;
                let (v, out) = push(&mut w, e, &mut buf);
                assert!(matches!(v, Verdict::Tx { .. }), "{mode} {e:?} -> {v:?}");
                assert!(verify(&out));
            }
            assert_eq!(replies > 0, mode.sees_replies());
            assert_eq!(w.counters().new_conns, 500);
        }
    }

    #[test]
    fn mix_lives_through_whole_connections_and_capture_writes_them() {
        let mode = FwdMethod::Nat;
        let topo = Topology::new(mode, 1000);
        let model = load_str(&topo.config_toml(), "bench").unwrap();
        let mut oracle = Worker::new(
            0,
            1,
            Arc::new(Snapshot::build(&model, None).unwrap()),
            crate::io::pcap::CLOCK_START_NS,
        );
        let mut mix = Mix::new(
            mode,
            FlowSet::new(3, 0.2),
            50,
            Popularity::Uniform,
            Sizes::Min,
            4,
            0,
            1,
            8,
        );
        let mut out = Vec::new();
        let n = capture(&mut mix, 3000, 1_000_000, mode, Some(&mut oracle), &mut out).unwrap();
        assert_eq!(n, 3000);
        assert!(
            mix.flows_started() > 200,
            "flows end and new ones start: {}",
            mix.flows_started()
        );
        let c = oracle.counters();
        assert_eq!(
            c.tx_packets, 3000,
            "every frame of the mix is forwarded: {c:?}"
        );
        assert!(c.fwd[FwdMethod::Nat.idx()][1] > 500, "replies go out");
        // The capture reads back with the same frames.
        let mut r = pcap_file::pcap::PcapReader::new(&out[..]).unwrap();
        let mut k = 0;
        let mut fins = 0;
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            assert!(verify(&p.data));
            fins += (flags_of(&p.data) & tcp_flags::FIN != 0) as u32;
            k += 1;
        }
        assert_eq!(k, 3000);
        assert!(fins > 100);
    }

    #[test]
    fn storm_is_all_new_syns() {
        let fs = FlowSet::new(1, 0.5);
        let mut s = Storm::new(fs, 100, 1000, 1, 2, Sizes::Min, 1);
        let mut buf = vec![0u8; 2048];
        let mut seen = HashSet::new();
        while let Some(e) = s.next_into(&mut buf) {
            assert_eq!(e.kind, Kind::Syn);
            assert_eq!(flags_of(&buf[..e.len]), tcp_flags::SYN);
            assert_eq!(fs.owner(e.id, 2), 1);
            assert!(e.id >= 100 && seen.insert(e.id));
        }
        assert_eq!(seen.len(), 1000);
    }
}
