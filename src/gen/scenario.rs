//! Deterministic traffic scenarios for the golden tests, the demo and the
//! docs: timestamped frame sequences for each forwarding mode against the
//! example configurations in `configs/`, and pcap / pcapng files.
//!
//! # Contract
//!
//! - Same arguments, same bytes: no clock, no randomness, no hash order.
//! - Frames are serialised here from structured descriptions ([`Pkt`],
//!   [`IpPkt`], [`Body`]) with every checksum computed from scratch by this
//!   module's own RFC 1071 sum, so the generator shares no code with the
//!   rewrite code under test (`wire`).
//! - Every [`Step`] says what its frame is: a packet of which flow and from
//!   which side, an ICMP error about which flow's packet, or a frame the
//!   director must drop or pass and why. A test derives the output it
//!   expects from that, without the worker.
//!
//! # The scenario
//!
//! Against the topology of `configs/*.toml` ([`VIP`], real servers
//! [`RS`], FULLNAT local addresses [`LIPS`]), for every mode:
//!
//! - six concurrent TCP flows to VIP:80 from three clients (one on the
//!   director's link, two behind the router [`ROUTER`]), so the 1:2 weights
//!   of wrr show: handshake (with MSS / SACK / window-scale options), an
//!   HTTP request and response each, then a FIN close from either side, a
//!   reset from either side, and two flows left established;
//! - two UDP flows to VIP:53 (rr): DNS queries and answers;
//! - a 1500-byte DF upload: NAT / FULLNAT forward it and a router beyond
//!   the real servers answers "fragmentation needed" (relayed back to the
//!   client); TUN cannot add its 20 bytes and answers "fragmentation
//!   needed" itself; the client then resends in smaller segments;
//! - "fragmentation needed" from the client-side router about a large
//!   reply (relayed on to the real server), and in NAT / FULLNAT a real
//!   server's "port unreachable" about a forwarded DNS query;
//! - a packet of an established flow with TTL 1, a non-DF datagram too big
//!   to tunnel (TUN), and frames that are not service traffic (ARP, ping,
//!   another port, a stray ACK; for FULLNAT a reply to an unused local
//!   port), each with the reason the director must drop or pass it;
//! - for DR and NAT, the bad-input corpus of [`super::packet::bad_corpus`]
//!   interleaved with the traffic.
//!
//! Real servers' packets appear only where they pass through the director
//! (NAT, FULLNAT); in DR and TUN they go straight to the client, so only
//! their effect on sequence numbers shows.
//!
//! # Replies need the director's choices
//!
//! A NAT reply comes from the real server the scheduler chose; a FULLNAT
//! reply goes to the local address and port (LIP:lport) the director
//! allocated. The generator therefore works in two stages: [`probe`] gives
//! the first packet of every flow alone, in the order and at the times of
//! the full scenario; replaying it shows the choice made for each flow
//! ([`read_assignments`]); [`build`] then writes the full capture with the
//! replies. The director's choices depend only on the order of new
//! connections (the scheduler's cursor, the local-port allocator), which
//! both captures share, and nothing expires within a scenario, so the full
//! replay makes the same choices; the golden test checks that it does.

use crate::ipvs::FwdMethod;
use crate::stats::{DropReason, PassReason};
use crate::wire::Reject;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};
use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// An Ethernet address.
pub type Mac = [u8; 6];

// ---- The topology of configs/*.toml (checked against them by a test) ----

/// The director's ports: 0 = eth0 (client side), 1 = eth1 (real servers).
pub const DIR_MAC: [Mac; 2] = [[2, 0, 0, 0, 0, 0x10], [2, 0, 0, 0, 1, 0x10]];
/// The director's address on each port (eth1's is the tunnel source).
pub const DIR_IP: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 1, 254)];
/// Both ports' MTU.
pub const MTU: u16 = 1500;
/// The client on the director's own link.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT_MAC: Mac = [2, 0, 0, 0, 0, 2];
/// The client side's router (the director's default gateway).
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
pub const ROUTER_MAC: Mac = [2, 0, 0, 0, 0, 0xfe];
/// Clients beyond the router.
pub const REMOTE_CLIENTS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(198, 51, 100, 7)];
/// The real servers rs1 (weight 1) and rs2 (weight 2) and their MACs.
pub const RS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 1, 2)];
pub const RS_MAC: [Mac; 2] = [[2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2]];
/// A router on the real servers' side (not in the configs: the director
/// only ever receives from it).
pub const RS_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 253);
pub const RS_ROUTER_MAC: Mac = [2, 0, 0, 0, 1, 0xfd];
/// The virtual service address and ports.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 53;
/// The NAT / FULLNAT real servers' TCP port.
pub const NAT_TCP_PORT: u16 = 8080;
/// FULLNAT local addresses.
pub const LIPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 1, 200), Ipv4Addr::new(10, 0, 1, 201)];

/// IP protocol numbers.
pub const ICMP: u8 = 1;
pub const IPIP: u8 = 4;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// TCP flags.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The real servers' port for a service of `proto` in `mode`.
pub fn rport(mode: FwdMethod, proto: u8) -> u16 {
    match (mode, proto) {
        (FwdMethod::Nat | FwdMethod::FullNat, TCP) => NAT_TCP_PORT,
        (_, TCP) => TCP_PORT,
        _ => UDP_PORT,
    }
}

/// The MAC frames from or to `client` carry on the director's link: the
/// client's own on the link, the router's beyond it.
pub fn client_l2(client: Ipv4Addr) -> Mac {
    if client == CLIENT {
        CLIENT_MAC
    } else {
        ROUTER_MAC
    }
}

// ---- Structured packets and their serialisation ----

/// An Ethernet frame carrying an IPv4 packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkt {
    pub eth_dst: Mac,
    pub eth_src: Mac,
    /// An 802.1Q tag (VLAN id), if any.
    pub vlan: Option<u16>,
    pub ip: IpPkt,
    /// Ethernet padding: zeros appended up to this frame length.
    pub pad_to: usize,
}

/// An IPv4 packet (no options, never a fragment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPkt {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub ttl: u8,
    pub body: Body,
}

/// A TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Option bytes, a multiple of 4 long.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

/// What an IPv4 packet carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Tcp(Tcp),
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// An ICMP error (type, code, the second header word, e.g. the next-hop
    /// MTU) quoting the first `quote_len` bytes of `quote`.
    IcmpError {
        typ: u8,
        code: u8,
        rest: u32,
        quote: Box<IpPkt>,
        quote_len: usize,
    },
    /// An ICMP echo request.
    Echo {
        id: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    /// IP in IP (protocol 4).
    Ipip(Box<IpPkt>),
}

impl IpPkt {
    /// The IP protocol number of the body.
    pub fn proto(&self) -> u8 {
        match self.body {
            Body::Tcp(_) => TCP,
            Body::Udp { .. } => UDP,
            Body::IcmpError { .. } | Body::Echo { .. } => ICMP,
            Body::Ipip(_) => IPIP,
        }
    }

    /// TCP / UDP ports, if the body has them.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match &self.body {
            Body::Tcp(t) => Some((t.sport, t.dport)),
            Body::Udp { sport, dport, .. } => Some((*sport, *dport)),
            _ => None,
        }
    }

    /// Sets the TCP / UDP source port (no-op for other bodies).
    pub fn set_sport(&mut self, p: u16) {
        match &mut self.body {
            Body::Tcp(t) => t.sport = p,
            Body::Udp { sport, .. } => *sport = p,
            _ => {}
        }
    }

    /// Sets the TCP / UDP destination port (no-op for other bodies).
    pub fn set_dport(&mut self, p: u16) {
        match &mut self.body {
            Body::Tcp(t) => t.dport = p,
            Body::Udp { dport, .. } => *dport = p,
            _ => {}
        }
    }

    /// The packet's bytes: header and body, every checksum from scratch.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = match &self.body {
            Body::Tcp(t) => {
                let hl = 20 + t.options.len();
                let mut s = Vec::with_capacity(hl + t.payload.len());
                s.extend_from_slice(&t.sport.to_be_bytes());
                s.extend_from_slice(&t.dport.to_be_bytes());
                s.extend_from_slice(&t.seq.to_be_bytes());
                s.extend_from_slice(&t.ack.to_be_bytes());
                s.push(((hl / 4) as u8) << 4);
                s.push(t.flags);
                s.extend_from_slice(&t.window.to_be_bytes());
                s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                s.extend_from_slice(&t.options);
                s.extend_from_slice(&t.payload);
                let c = l4_checksum(self.src, self.dst, TCP, &s);
                s[16..18].copy_from_slice(&c.to_be_bytes());
                s
            }
            Body::Udp {
                sport,
                dport,
                payload,
            } => {
                let mut s = Vec::with_capacity(8 + payload.len());
                s.extend_from_slice(&sport.to_be_bytes());
                s.extend_from_slice(&dport.to_be_bytes());
                s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                s.extend_from_slice(&[0, 0]);
                s.extend_from_slice(payload);
                let c = match l4_checksum(self.src, self.dst, UDP, &s) {
                    0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
                    c => c,
                };
                s[6..8].copy_from_slice(&c.to_be_bytes());
                s
            }
            Body::IcmpError {
                typ,
                code,
                rest,
                quote,
                quote_len,
            } => {
                let q = quote.to_bytes();
                let mut s = vec![*typ, *code, 0, 0];
                s.extend_from_slice(&rest.to_be_bytes());
                s.extend_from_slice(&q[..(*quote_len).min(q.len())]);
                let c = inet_checksum(0, &s);
                s[2..4].copy_from_slice(&c.to_be_bytes());
                s
            }
            Body::Echo { id, seq, payload } => {
                let mut s = vec![8, 0, 0, 0];
                s.extend_from_slice(&id.to_be_bytes());
                s.extend_from_slice(&seq.to_be_bytes());
                s.extend_from_slice(payload);
                let c = inet_checksum(0, &s);
                s[2..4].copy_from_slice(&c.to_be_bytes());
                s
            }
            Body::Ipip(inner) => inner.to_bytes(),
        };
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6] = if self.df { 0x40 } else { 0 };
        h[8] = self.ttl;
        h[9] = self.proto();
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = inet_checksum(0, &h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut v = h.to_vec();
        v.extend_from_slice(&body);
        v
    }

    /// Length of the packet in bytes.
    pub fn len(&self) -> usize {
        20 + match &self.body {
            Body::Tcp(t) => 20 + t.options.len() + t.payload.len(),
            Body::Udp { payload, .. } => 8 + payload.len(),
            Body::IcmpError {
                quote, quote_len, ..
            } => 8 + (*quote_len).min(quote.len()),
            Body::Echo { payload, .. } => 8 + payload.len(),
            Body::Ipip(inner) => inner.len(),
        }
    }

    /// Never empty (a header at least); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Pkt {
    /// The frame's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.pad_to.max(64));
        v.extend_from_slice(&self.eth_dst);
        v.extend_from_slice(&self.eth_src);
        if let Some(id) = self.vlan {
            v.extend_from_slice(&[0x81, 0x00]);
            v.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        v.extend_from_slice(&[0x08, 0x00]);
        v.extend_from_slice(&self.ip.to_bytes());
        if v.len() < self.pad_to {
            v.resize(self.pad_to, 0);
        }
        v
    }
}

/// RFC 1071 Internet checksum of `data`, starting from the partial sum
/// `init` (e.g. a pseudo header's).
pub fn inet_checksum(init: u32, data: &[u8]) -> u16 {
    let mut s = init as u64;
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        s += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [b] = it.remainder() {
        s += (*b as u64) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// TCP / UDP checksum over the IPv4 pseudo header and `seg`.
fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    let (s, d) = (src.octets(), dst.octets());
    let pseudo = u16::from_be_bytes([s[0], s[1]]) as u32
        + u16::from_be_bytes([s[2], s[3]]) as u32
        + u16::from_be_bytes([d[0], d[1]]) as u32
        + u16::from_be_bytes([d[2], d[3]]) as u32
        + proto as u32
        + seg.len() as u32;
    inet_checksum(pseudo, seg)
}

// ---- Scenarios ----

/// Which end of a flow sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    /// The real server (its packets cross the director in NAT / FULLNAT).
    Server,
}

/// A client's flow to a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    pub client: Ipv4Addr,
    pub cport: u16,
    /// The virtual service's port.
    pub vport: u16,
    /// The client's initial sequence number (TCP) or the DNS id of its
    /// first query (UDP): identifies the flow's first packet in an output.
    pub tag: u32,
}

/// What the director chose for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assign {
    /// Index into [`RS`].
    pub rs: usize,
    /// FULLNAT: the local address and port.
    pub local: Option<(Ipv4Addr, u16)>,
}

/// What a frame of a scenario is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A packet of flow `flow` sent by `from`.
    Flow { flow: usize, from: Side },
    /// An ICMP error about a packet of `flow` that `about` sent: the
    /// director must relay it to that end (to the client for an error about
    /// a packet forwarded to the real server, to the real server for an
    /// error about a reply).
    IcmpError { flow: usize, about: Side },
    /// A frame the director must not forward, and why.
    Reject { name: &'static str, why: Reject },
}

/// One frame of a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Capture time (ns since the epoch).
    pub t_ns: u64,
    /// The director port it arrives on (pcapng interface id).
    pub port: u8,
    pub kind: Kind,
    /// The structured packet (none for rejects, which may not parse).
    pub pkt: Option<Pkt>,
    pub frame: Vec<u8>,
}

/// A scenario: its flows and frames, in capture order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub mode: FwdMethod,
    pub flows: Vec<Flow>,
    pub steps: Vec<Step>,
}

/// Time of the first frame: 2023-11-14 22:13:20 UTC.
pub const T0_NS: u64 = 1_700_000_000_000_000_000;
/// Time between frames.
pub const STEP_NS: u64 = 500_000;

/// SYN options: MSS 1460, NOP NOP SACK-permitted, NOP window scale 7.
const SYN_OPTS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7];

/// Per-flow TCP sequence state.
#[derive(Clone, Copy, Default)]
struct Seq {
    /// Next sequence number of the client and of the server.
    c: u32,
    s: u32,
}

struct Builder<'a> {
    mode: FwdMethod,
    assign: &'a [Assign],
    flows: Vec<Flow>,
    seq: Vec<Seq>,
    steps: Vec<Step>,
    /// IP identification counters per sender.
    ids: Vec<(Ipv4Addr, u16)>,
}

impl Builder<'_> {
    fn flow(&mut self, proto: u8, client: Ipv4Addr, cport: u16) -> usize {
        let i = self.flows.len();
        let tag = if proto == TCP {
            0x1000_0000u32.wrapping_add(0x0101_0101u32.wrapping_mul(i as u32 + 1))
        } else {
            0x5a00 + i as u32
        };
        self.flows.push(Flow {
            proto,
            client,
            cport,
            vport: if proto == TCP { TCP_PORT } else { UDP_PORT },
            tag,
        });
        self.seq.push(Seq {
            c: tag,
            s: 0x8000_0000u32.wrapping_add(0x0111_1111u32.wrapping_mul(i as u32 + 1)),
        });
        i
    }

    fn next_id(&mut self, who: Ipv4Addr) -> u16 {
        if let Some(e) = self.ids.iter_mut().find(|e| e.0 == who) {
            e.1 = e.1.wrapping_add(1);
            return e.1;
        }
        // Each sender starts somewhere of its own, whatever the order.
        let o = who.octets();
        let start = u16::from_be_bytes([o[2], o[3]]).wrapping_mul(0x9e37);
        self.ids.push((who, start));
        start
    }

    fn assign(&self, f: usize) -> Assign {
        self.assign
            .get(f)
            .copied()
            .unwrap_or(Assign { rs: 0, local: None })
    }

    /// The client's packet of flow `f`.
    fn client_pkt(&mut self, f: usize, df: bool, body: Body) -> Pkt {
        let fl = self.flows[f];
        let ttl = if fl.client == CLIENT { 64 } else { 57 };
        let id = self.next_id(fl.client);
        Pkt {
            eth_dst: DIR_MAC[0],
            eth_src: client_l2(fl.client),
            vlan: None,
            ip: IpPkt {
                src: fl.client,
                dst: VIP,
                tos: 0,
                id,
                df,
                ttl,
                body,
            },
            pad_to: 0,
        }
    }

    /// The real server's packet of flow `f`: from RIP:rport to the client
    /// (NAT) or to LIP:lport (FULLNAT); in DR / TUN from the VIP, which the
    /// real server holds, straight to the client.
    fn server_pkt(&mut self, f: usize, body: Body) -> Pkt {
        let fl = self.flows[f];
        let a = self.assign(f);
        let (src, dst) = match (self.mode, a.local) {
            (FwdMethod::Nat, _) => (RS[a.rs], fl.client),
            (FwdMethod::FullNat, Some((lip, _))) => (RS[a.rs], lip),
            (FwdMethod::FullNat, None) => (RS[a.rs], LIPS[0]),
            _ => (VIP, fl.client),
        };
        let id = self.next_id(RS[a.rs]);
        let (eth_dst, eth_src) = if self.mode.sees_replies() {
            (DIR_MAC[1], RS_MAC[a.rs])
        } else {
            (client_l2(fl.client), RS_MAC[a.rs])
        };
        Pkt {
            eth_dst,
            eth_src,
            vlan: None,
            ip: IpPkt {
                src,
                dst,
                tos: 0,
                id,
                df: true,
                ttl: 64,
                body,
            },
            pad_to: 0,
        }
    }

    /// The ports of a server packet of flow `f`: (sport, dport).
    fn server_ports(&self, f: usize) -> (u16, u16) {
        let fl = self.flows[f];
        match (self.mode, self.assign(f).local) {
            (FwdMethod::FullNat, Some((_, lport))) => (rport(self.mode, fl.proto), lport),
            _ => (rport(self.mode, fl.proto), fl.cport),
        }
    }

    fn push(&mut self, port: u8, kind: Kind, pkt: Option<Pkt>, frame: Vec<u8>) {
        let t_ns = T0_NS + self.steps.len() as u64 * STEP_NS;
        self.steps.push(Step {
            t_ns,
            port,
            kind,
            pkt,
            frame,
        });
    }

    fn push_pkt(&mut self, port: u8, kind: Kind, pkt: Pkt) {
        let frame = pkt.to_bytes();
        self.push(port, kind, Some(pkt), frame);
    }

    fn reject(&mut self, name: &'static str, why: Reject, frame: Vec<u8>) {
        self.push(0, Kind::Reject { name, why }, None, frame);
    }

    /// A TCP segment of flow `f` from `from`; sequence numbers follow the
    /// flow. Server segments are captured only where they cross the
    /// director. Returns the packet.
    fn tcp(&mut self, f: usize, from: Side, flags: u8, payload: &[u8]) -> Pkt {
        let s = self.seq[f];
        let opts = if flags & SYN != 0 {
            SYN_OPTS.to_vec()
        } else {
            Vec::new()
        };
        let (seq, ack) = match from {
            Side::Client => (s.c, if flags & ACK != 0 { s.s } else { 0 }),
            Side::Server => (s.s, s.c),
        };
        let grow = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        let fl = self.flows[f];
        let pkt = match from {
            Side::Client => {
                let t = Tcp {
                    sport: fl.cport,
                    dport: fl.vport,
                    seq,
                    ack,
                    flags,
                    window: 502,
                    options: opts,
                    payload: payload.to_vec(),
                };
                let mut p = self.client_pkt(f, true, Body::Tcp(t));
                if payload.is_empty() && flags & (SYN | FIN | RST) == 0 {
                    // A bare ACK is 54 bytes; on the wire it was padded.
                    p.pad_to = 60;
                }
                self.seq[f].c = s.c.wrapping_add(grow);
                p
            }
            Side::Server => {
                let (sport, dport) = self.server_ports(f);
                let t = Tcp {
                    sport,
                    dport,
                    seq,
                    ack,
                    flags,
                    window: 509,
                    options: opts,
                    payload: payload.to_vec(),
                };
                self.seq[f].s = s.s.wrapping_add(grow);
                self.server_pkt(f, Body::Tcp(t))
            }
        };
        self.emit(f, from, pkt.clone());
        pkt
    }

    /// A UDP datagram of flow `f` from `from`.
    fn udp(&mut self, f: usize, from: Side, payload: Vec<u8>) -> Pkt {
        let fl = self.flows[f];
        let pkt = match from {
            Side::Client => self.client_pkt(
                f,
                false,
                Body::Udp {
                    sport: fl.cport,
                    dport: fl.vport,
                    payload,
                },
            ),
            Side::Server => {
                let (sport, dport) = self.server_ports(f);
                self.server_pkt(
                    f,
                    Body::Udp {
                        sport,
                        dport,
                        payload,
                    },
                )
            }
        };
        self.emit(f, from, pkt.clone());
        pkt
    }

    /// Captures a flow packet where the director sees it.
    fn emit(&mut self, f: usize, from: Side, pkt: Pkt) {
        if from == Side::Client {
            self.push_pkt(0, Kind::Flow { flow: f, from }, pkt);
        } else if self.mode.sees_replies() {
            self.push_pkt(1, Kind::Flow { flow: f, from }, pkt);
        }
    }

    /// The client packet `p` of flow `f` as the director forwards it to the
    /// real server (what a router beyond it, or the real server, quotes).
    fn towards_rs(&self, f: usize, p: &IpPkt) -> IpPkt {
        let a = self.assign(f);
        let mut q = p.clone();
        q.dst = RS[a.rs];
        q.set_dport(rport(self.mode, self.flows[f].proto));
        q.ttl -= 1;
        if let Some((lip, lport)) = a.local {
            q.src = lip;
            q.set_sport(lport);
        }
        q
    }

    /// The server packet `p` of flow `f` as it reaches the client side
    /// (through the director in NAT / FULLNAT, directly in DR / TUN).
    fn towards_client(&self, f: usize, p: &IpPkt) -> IpPkt {
        let fl = self.flows[f];
        let mut q = p.clone();
        if self.mode.sees_replies() {
            q.src = VIP;
            q.set_sport(fl.vport);
            q.dst = fl.client;
            q.set_dport(fl.cport);
            q.ttl -= 1;
        }
        q
    }

    /// An ICMP error from `from` (address, MAC, director port) quoting
    /// `quote_len` bytes of `quote`, sent to `to`.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        f: usize,
        about: Side,
        from: (Ipv4Addr, Mac, u8),
        to: Ipv4Addr,
        typ: u8,
        code: u8,
        rest: u32,
        quote: IpPkt,
        quote_len: usize,
    ) {
        let id = self.next_id(from.0);
        let pkt = Pkt {
            eth_dst: DIR_MAC[from.2 as usize],
            eth_src: from.1,
            vlan: None,
            ip: IpPkt {
                src: from.0,
                dst: to,
                tos: 0xc0,
                id,
                df: false,
                ttl: 64,
                body: Body::IcmpError {
                    typ,
                    code,
                    rest,
                    quote: Box::new(quote),
                    quote_len,
                },
            },
            pad_to: 0,
        };
        self.push_pkt(from.2, Kind::IcmpError { flow: f, about }, pkt);
    }
}

fn http_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 10.0.0.100\r\nUser-Agent: xvs-golden\r\n\r\n")
        .into_bytes()
}

/// An HTTP response of exactly `len` payload bytes (at least ~40).
fn http_response(len: usize, fill: u8) -> Vec<u8> {
    let mut body_len = len.saturating_sub(40);
    loop {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n");
        if head.len() + body_len == len || body_len == 0 {
            let mut v = head.into_bytes();
            v.resize(v.len() + body_len, fill);
            return v;
        }
        body_len = len.saturating_sub(head.len());
    }
}

/// An HTTP upload whose first segment has `len` payload bytes.
fn http_post(len: usize) -> Vec<u8> {
    let head = |n: usize| {
        format!("POST /upload HTTP/1.1\r\nHost: 10.0.0.100\r\nContent-Length: {n}\r\n\r\n")
    };
    let mut n = len - head(len).len();
    if head(n).len() + n != len {
        n = len - head(n).len();
    }
    let mut v = head(n).into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v.truncate(len);
    v
}

/// A DNS query for `name` (type A).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.extend_from_slice(&[0, 0, 1, 0, 1]);
    v
}

/// The answer to [`dns_query`]: one A record.
pub fn dns_answer(id: u16, name: &str, addr: Ipv4Addr) -> Vec<u8> {
    let mut v = dns_query(id, name);
    v[2] = 0x81;
    v[3] = 0x80;
    v[7] = 1; // one answer
    v.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
    v.extend_from_slice(&addr.octets());
    v
}

/// An ARP request for `target` from the router (not IP: passed).
fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0xff; 6];
    v.extend_from_slice(&ROUTER_MAC);
    v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&ROUTER_MAC);
    v.extend_from_slice(&ROUTER.octets());
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&target.octets());
    v.resize(60, 0);
    v
}

/// The scenario of `mode` with the director's choices `assign` (one per
/// flow, as [`read_assignments`] reads them). Only the real servers'
/// packets and the errors quoting forwarded packets depend on them; a
/// missing entry stands for rs1 without a local address, so `build(mode,
/// &[])` has every client packet right (that is what [`probe`] uses).
pub fn build(mode: FwdMethod, assign: &[Assign]) -> Scenario {
    let mut b = Builder {
        mode,
        assign,
        flows: Vec::new(),
        seq: Vec::new(),
        steps: Vec::new(),
        ids: Vec::new(),
    };
    let [r1, r2] = REMOTE_CLIENTS;
    // Six concurrent TCP flows (wrr 1:2 shows twice) and two UDP flows.
    let tcp: Vec<usize> = [
        (CLIENT, 40001),
        (r1, 50000),
        (r2, 33333),
        (CLIENT, 40002),
        (r1, 50001),
        (r2, 33334),
    ]
    .iter()
    .map(|&(c, p)| b.flow(TCP, c, p))
    .collect();
    let udp: Vec<usize> = [(CLIENT, 53001), (r1, 53002)]
        .iter()
        .map(|&(c, p)| b.flow(UDP, c, p))
        .collect();
    let corpus = if matches!(mode, FwdMethod::Dr | FwdMethod::Nat) {
        super::packet::bad_corpus()
    } else {
        Vec::new()
    };
    let mut corpus = corpus.into_iter();
    // Interleaves the next bad frame (DR, NAT) after each phase of traffic.
    let bad = |b: &mut Builder<'_>,
               corpus: &mut std::vec::IntoIter<(&'static str, Vec<u8>, Reject)>,
               n: usize| {
        for (name, frame, why) in corpus.take(n) {
            b.reject(name, why, frame);
        }
    };

    for &f in &tcp {
        b.tcp(f, Side::Client, SYN, b"");
    }
    bad(&mut b, &mut corpus, 3);
    for &f in &tcp {
        b.tcp(f, Side::Server, SYN | ACK, b"");
    }
    for &f in &tcp {
        b.tcp(f, Side::Client, ACK, b"");
    }
    bad(&mut b, &mut corpus, 3);
    let names = ["www.example.com", "mail.example.org"];
    for (k, &f) in udp.iter().enumerate() {
        let id = b.flows[f].tag as u16;
        b.udp(f, Side::Client, dns_query(id, names[k]));
    }
    for (k, &f) in udp.iter().enumerate() {
        let id = b.flows[f].tag as u16;
        b.udp(
            f,
            Side::Server,
            dns_answer(id, names[k], Ipv4Addr::new(192, 0, 2, 80 + k as u8)),
        );
    }
    // Not service traffic: each passed to the kernel or dropped, counted.
    b.reject(
        "arp request for the vip",
        Reject::Pass(PassReason::NonIp),
        arp_request(VIP),
    );
    let echo = Pkt {
        eth_dst: DIR_MAC[0],
        eth_src: ROUTER_MAC,
        vlan: None,
        ip: IpPkt {
            src: r1,
            dst: VIP,
            tos: 0,
            id: 7,
            df: true,
            ttl: 57,
            body: Body::Echo {
                id: 0x4242,
                seq: 1,
                payload: b"xvs ping".to_vec(),
            },
        },
        pad_to: 0,
    };
    b.reject(
        "ping to the vip",
        Reject::Pass(PassReason::Icmp),
        echo.to_bytes(),
    );
    let other = b.tcp_probe_frame(r2, 40100, 22, SYN);
    b.reject(
        "tcp to a port of the vip with no service",
        Reject::Pass(PassReason::NotService),
        other,
    );
    let stray = b.tcp_probe_frame(r2, 40101, TCP_PORT, ACK);
    b.reject(
        "ack with no connection",
        Reject::Drop(DropReason::NoConn),
        stray,
    );
    if mode == FwdMethod::FullNat {
        let mut p = b.server_pkt(
            tcp[0],
            Body::Tcp(Tcp {
                sport: NAT_TCP_PORT,
                dport: 999,
                seq: 1,
                ack: 1,
                flags: ACK,
                window: 509,
                options: vec![],
                payload: vec![],
            }),
        );
        p.ip.dst = LIPS[1];
        let frame = p.to_bytes();
        b.push(
            1,
            Kind::Reject {
                name: "reply to an unused local port",
                why: Reject::Drop(DropReason::NoConn),
            },
            None,
            frame,
        );
    }
    bad(&mut b, &mut corpus, 4);

    // Requests and responses; the response on the fifth flow fills a
    // 1500-byte packet.
    for (k, &f) in tcp.iter().enumerate() {
        b.tcp(f, Side::Client, PSH | ACK, &http_get(&format!("/flow{k}")));
    }
    let mut big_reply = None;
    for (k, &f) in tcp.iter().enumerate() {
        let len = if k == 4 { 1460 } else { 120 + 10 * k };
        let p = b.tcp(
            f,
            Side::Server,
            PSH | ACK,
            &http_response(len, b'0' + k as u8),
        );
        if k == 4 {
            big_reply = Some(p);
        }
    }
    for &f in &tcp {
        b.tcp(f, Side::Client, ACK, b"");
    }
    bad(&mut b, &mut corpus, 4);

    // The client-side router cannot pass the large reply on at 1500 bytes:
    // its error goes to the VIP, i.e. to the director, which relays it to
    // the real server (relay_in). It quotes the minimum (header + 8).
    if let Some(p) = big_reply {
        let f = tcp[4];
        let q = b.towards_client(f, &p.ip);
        b.icmp_error(
            f,
            Side::Server,
            (ROUTER, ROUTER_MAC, 0),
            VIP,
            3,
            4,
            1280,
            q,
            28,
        );
    }

    // A 1500-byte DF upload on the sixth flow.
    let f = tcp[5];
    let post = http_post(1460);
    let up = b.tcp(f, Side::Client, PSH | ACK, &post);
    let learned = match mode {
        FwdMethod::Tun => Some(MTU - 20),
        FwdMethod::Nat | FwdMethod::FullNat => {
            // Forwarded; a router beyond the real servers has a 1400 MTU
            // and answers the packet's source (the client, or in FULLNAT
            // the local address). Linux quotes up to 576 bytes in all.
            let q = b.towards_rs(f, &up.ip);
            let to = q.src;
            b.icmp_error(
                f,
                Side::Client,
                (RS_ROUTER, RS_ROUTER_MAC, 1),
                to,
                3,
                4,
                1400,
                q,
                576 - 28,
            );
            Some(1400)
        }
        FwdMethod::Dr => None,
    };
    if let Some(mtu) = learned {
        // The client learnt the MTU and sends the upload again, smaller.
        b.seq[f].c = b.seq[f].c.wrapping_sub(post.len() as u32);
        let cut = mtu as usize - 40;
        b.tcp(f, Side::Client, ACK, &post[..cut]);
        b.tcp(f, Side::Client, PSH | ACK, &post[cut..]);
    }
    b.tcp(f, Side::Server, ACK, b"");
    bad(&mut b, &mut corpus, 4);

    // A packet of an established flow whose TTL runs out here (NAT, FULLNAT
    // route it; DR and TUN, as IPVS, deliver it to the VIP's host).
    {
        let f = tcp[4];
        let s = b.seq[f];
        let t = Tcp {
            sport: b.flows[f].cport,
            dport: TCP_PORT,
            seq: s.c,
            ack: s.s,
            flags: ACK,
            window: 502,
            options: vec![],
            payload: vec![],
        };
        let mut p = b.client_pkt(f, true, Body::Tcp(t));
        p.ip.ttl = 1;
        p.pad_to = 60;
        b.emit(f, Side::Client, p);
    }

    // Second DNS queries: the first real server answers the first; the
    // second has stopped its DNS server and answers "port unreachable",
    // quoting the whole query (NAT, FULLNAT: relayed to the client).
    for (k, &f) in udp.iter().enumerate() {
        let id = b.flows[f].tag as u16 + 0x100;
        let mut q = dns_query(id, names[k]);
        if k == 0 && mode == FwdMethod::Tun {
            // Too big to tunnel, and may be fragmented: dropped (xvs does
            // not fragment).
            q.resize(MTU as usize - 28, 0);
        }
        let p = b.udp(f, Side::Client, q);
        if k == 1 && mode.sees_replies() {
            let q = b.towards_rs(f, &p.ip);
            let a = b.assign(f);
            let len = q.len();
            let to = q.src;
            b.icmp_error(
                f,
                Side::Client,
                (RS[a.rs], RS_MAC[a.rs], 1),
                to,
                3,
                3,
                0,
                q,
                len,
            );
        } else if k == 0 && mode != FwdMethod::Tun {
            let id = b.flows[f].tag as u16 + 0x100;
            b.udp(
                f,
                Side::Server,
                dns_answer(id, names[k], Ipv4Addr::new(192, 0, 2, 80)),
            );
        }
    }
    bad(&mut b, &mut corpus, 4);

    // Closes: a client FIN, a server FIN, a client reset, a server reset;
    // the last two flows stay established.
    b.tcp(tcp[0], Side::Client, FIN | ACK, b"");
    b.tcp(tcp[0], Side::Server, FIN | ACK, b"");
    b.tcp(tcp[0], Side::Client, ACK, b"");
    b.tcp(tcp[1], Side::Server, FIN | ACK, b"");
    b.tcp(tcp[1], Side::Client, FIN | ACK, b"");
    b.tcp(tcp[1], Side::Server, ACK, b"");
    b.tcp(tcp[2], Side::Client, RST | ACK, b"");
    b.tcp(tcp[3], Side::Server, RST | ACK, b"");
    let rest: Vec<_> = corpus.collect();
    for (name, frame, why) in rest {
        b.reject(name, why, frame);
    }
    Scenario {
        mode,
        flows: b.flows,
        steps: b.steps,
    }
}

impl Builder<'_> {
    /// A client TCP segment outside every flow (for reject frames).
    fn tcp_probe_frame(&mut self, client: Ipv4Addr, cport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let id = self.next_id(client);
        let t = Tcp {
            sport: cport,
            dport,
            seq: 77,
            ack: if flags & ACK != 0 { 1 } else { 0 },
            flags,
            window: 502,
            options: vec![],
            payload: vec![],
        };
        Pkt {
            eth_dst: DIR_MAC[0],
            eth_src: client_l2(client),
            vlan: None,
            ip: IpPkt {
                src: client,
                dst: VIP,
                tos: 0,
                id,
                df: true,
                ttl: 57,
                body: Body::Tcp(t),
            },
            pad_to: 60,
        }
        .to_bytes()
    }
}

/// The first packet of every flow alone, at its time in the full
/// scenario: replaying it shows the director's choices. See the module
/// docs.
pub fn probe(mode: FwdMethod) -> Scenario {
    let mut s = build(mode, &[]);
    let mut seen = vec![false; s.flows.len()];
    s.steps.retain(|st| match st.kind {
        Kind::Flow {
            flow,
            from: Side::Client,
        } if !seen[flow] => {
            seen[flow] = true;
            true
        }
        _ => false,
    });
    s
}

/// Reads the director's choice for every flow from the replayed output
/// of [`probe`]`(mode)`: the real server (destination MAC for DR, outer
/// destination for TUN, destination address otherwise) and for FULLNAT
/// the local address and port (the new source).
///
/// # Errors
/// An output that does not have one forwarded packet per flow, in order,
/// carrying the flow's first sequence number or DNS id.
pub fn read_assignments(probe: &Scenario, out: &[Vec<u8>]) -> Result<Vec<Assign>, String> {
    if out.len() != probe.flows.len() {
        return Err(format!(
            "{} flows but {} forwarded frames",
            probe.flows.len(),
            out.len()
        ));
    }
    let mut v = Vec::new();
    for (i, (fl, f)) in probe.flows.iter().zip(out).enumerate() {
        let bad = |what: &str| {
            format!(
                "flow {i} ({}:{}): output frame {i}: {what}",
                fl.client, fl.cport
            )
        };
        let g = |o: usize, n: usize| f.get(o..o + n).ok_or_else(|| bad("truncated"));
        if g(12, 2)? != [8, 0] {
            return Err(bad("not IPv4"));
        }
        let mut l3 = 14;
        let mut outer_dst = None;
        if g(l3 + 9, 1)?[0] == IPIP {
            outer_dst = Some(ipv4(g(l3 + 16, 4)?));
            l3 += 20;
        }
        let src = ipv4(g(l3 + 12, 4)?);
        let dst = ipv4(g(l3 + 16, 4)?);
        let l4 = l3 + 20;
        let sport = u16::from_be_bytes([g(l4, 2)?[0], g(l4, 2)?[1]]);
        let tag = if fl.proto == TCP {
            u32::from_be_bytes(g(l4 + 4, 4)?.try_into().unwrap_or_default())
        } else {
            u16::from_be_bytes([g(l4 + 8, 2)?[0], g(l4 + 8, 2)?[1]]) as u32
        };
        if tag != fl.tag {
            return Err(bad(&format!(
                "carries tag {tag:#x}, not the flow's {:#x}",
                fl.tag
            )));
        }
        let rs = match probe.mode {
            FwdMethod::Dr => RS_MAC.iter().position(|m| m[..] == f[0..6]),
            FwdMethod::Tun => outer_dst.and_then(|d| RS.iter().position(|r| *r == d)),
            _ => RS.iter().position(|r| *r == dst),
        }
        .ok_or_else(|| bad("not sent to a configured real server"))?;
        let local = (probe.mode == FwdMethod::FullNat).then_some((src, sport));
        v.push(Assign { rs, local });
    }
    Ok(v)
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

// ---- Capture files ----

impl Scenario {
    /// The scenario as a classic pcap (nanosecond timestamps, little endian).
    pub fn pcap_bytes(&self) -> Vec<u8> {
        pcap_bytes(self.steps.iter().map(|s| (s.t_ns, &s.frame[..])))
    }

    /// The scenario as pcapng with one interface per director port (the
    /// interface id of each packet is its port).
    pub fn pcapng_bytes(&self) -> Vec<u8> {
        let ports = self
            .steps
            .iter()
            .map(|s| s.port as u32 + 1)
            .max()
            .unwrap_or(1);
        let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little)
            .expect("writing to memory");
        for _ in 0..ports {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 65535,
                options: vec![InterfaceDescriptionOption::IfTsResol(9)],
            };
            w.write_pcapng_block(idb).expect("writing to memory");
        }
        for s in &self.steps {
            let epb = EnhancedPacketBlock {
                interface_id: s.port as u32,
                timestamp: Duration::from_nanos(s.t_ns),
                original_len: s.frame.len() as u32,
                data: Cow::Borrowed(&s.frame),
                options: vec![],
            };
            w.write_pcapng_block(epb).expect("writing to memory");
        }
        w.into_inner()
    }

    /// Writes the classic pcap to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_pcap(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.pcap_bytes())
    }
}

/// A classic pcap (nanosecond timestamps, little endian, Ethernet) of
/// `(time in ns, frame)`.
pub fn pcap_bytes<'a>(frames: impl Iterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let header = PcapHeader {
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::Little,
        datalink: DataLink::ETHERNET,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).expect("writing to memory");
    for (t, f) in frames {
        w.write_packet(&PcapPacket::new(Duration::from_nanos(t), f.len() as u32, f))
            .expect("writing to memory");
    }
    w.into_writer()
}

/// Reads a classic pcap: `(time in ns, frame)` per packet.
///
/// # Errors
/// Unreadable or malformed file, naming it.
pub fn read_pcap(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_pcap(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a classic pcap held in memory.
///
/// # Errors
/// A malformed capture.
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let mut r = PcapReader::new(bytes).map_err(|e| e.to_string())?;
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.map_err(|e| format!("packet {}: {e}", v.len()))?;
        v.push((p.timestamp.as_nanos() as u64, p.data.into_owned()));
    }
    Ok(v)
}

// ---- Describing frames (for diffs and summaries) ----

/// Every header field of an Ethernet / IPv4 frame as `(name, value)`,
/// nested packets (IPIP, the packet an ICMP error quotes) with a name
/// prefix; tolerant of anything (a truncated or foreign frame describes
/// as far as it goes). Used to show the first differing field of two
/// frames.
pub fn describe(f: &[u8]) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if f.len() < 14 {
        v.push(("eth".into(), format!("truncated ({} bytes)", f.len())));
        return v;
    }
    v.push(("eth.dst".into(), hex(&f[0..6])));
    v.push(("eth.src".into(), hex(&f[6..12])));
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    let mut l3 = 14;
    if et == 0x8100 && f.len() >= 18 {
        v.push((
            "vlan.id".into(),
            (u16::from_be_bytes([f[14], f[15]]) & 0xfff).to_string(),
        ));
        et = u16::from_be_bytes([f[16], f[17]]);
        l3 = 18;
    }
    v.push(("eth.type".into(), format!("{et:#06x}")));
    if et != 0x0800 {
        v.push(("eth.payload".into(), hex(&f[l3..])));
        return v;
    }
    let end = describe_ip(&f[l3..], "ip", &mut v);
    if l3 + end < f.len() {
        v.push(("eth.padding".into(), hex(&f[l3 + end..])));
    }
    v
}

/// Describes the IPv4 packet at `p[0]`; returns its length (as its header
/// says, capped by what is there).
fn describe_ip(p: &[u8], pre: &str, v: &mut Vec<(String, String)>) -> usize {
    let mut put = |k: &str, val: String| v.push((format!("{pre}.{k}"), val));
    if p.len() < 20 {
        put("header", format!("truncated ({} bytes)", p.len()));
        return p.len();
    }
    let b16 = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]);
    put("version", (p[0] >> 4).to_string());
    put("ihl", (p[0] & 15).to_string());
    put("tos", format!("{:#04x}", p[1]));
    put("len", b16(2).to_string());
    put("id", format!("{:#06x}", b16(4)));
    put("flags", format!("{:#x}", p[6] >> 5));
    put("frag_offset", (b16(6) & 0x1fff).to_string());
    put("ttl", p[8].to_string());
    put("proto", p[9].to_string());
    put("checksum", format!("{:#06x}", b16(10)));
    put("src", ipv4(&p[12..16]).to_string());
    put("dst", ipv4(&p[16..20]).to_string());
    let ihl = ((p[0] & 15) as usize * 4).max(20);
    let total = (b16(2) as usize).min(p.len());
    let seg = p.get(ihl..total.max(ihl)).unwrap_or(&[]);
    let proto = p[9];
    let pre4 = match proto {
        TCP => format!("{pre}.tcp"),
        UDP => format!("{pre}.udp"),
        ICMP => format!("{pre}.icmp"),
        _ => format!("{pre}.ip"),
    };
    let mut put = |k: &str, val: String| v.push((format!("{pre4}.{k}"), val));
    let s16 = |o: usize| seg.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let s32 = |o: usize| {
        seg.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let opt = |x: Option<u16>| x.map_or("<not present>".to_string(), |x| x.to_string());
    match proto {
        TCP => {
            put("sport", opt(s16(0)));
            put("dport", opt(s16(2)));
            put(
                "seq",
                s32(4).map_or("<not present>".into(), |x| x.to_string()),
            );
            put(
                "ack",
                s32(8).map_or("<not present>".into(), |x| x.to_string()),
            );
            if seg.len() >= 20 {
                let off = (seg[12] >> 4) as usize * 4;
                put("data_offset", off.to_string());
                put("flags", format!("{:#04x}", seg[13]));
                put("window", opt(s16(14)));
                put("checksum", format!("{:#06x}", s16(16).unwrap_or(0)));
                put("urgent", opt(s16(18)));
                put(
                    "options",
                    seg.get(20..off).map_or(String::new(), |o| {
                        o.iter().map(|x| format!("{x:02x}")).collect()
                    }),
                );
                let pl = seg.get(off..).unwrap_or(&[]);
                put("payload", payload_summary(pl));
            }
        }
        UDP => {
            put("sport", opt(s16(0)));
            put("dport", opt(s16(2)));
            put("len", opt(s16(4)));
            put(
                "checksum",
                s16(6).map_or("<not present>".into(), |x| format!("{x:#06x}")),
            );
            put("payload", payload_summary(seg.get(8..).unwrap_or(&[])));
        }
        ICMP => {
            if seg.len() < 8 {
                put("header", format!("truncated ({} bytes)", seg.len()));
            } else {
                put("type", seg[0].to_string());
                put("code", seg[1].to_string());
                put("checksum", format!("{:#06x}", s16(2).unwrap_or(0)));
                put("rest", format!("{:#010x}", s32(4).unwrap_or(0)));
                if matches!(seg[0], 3 | 4 | 5 | 11 | 12) {
                    put("quote_len", (seg.len() - 8).to_string());
                    describe_ip(&seg[8..], &format!("{pre4}.quote"), v);
                } else {
                    put("payload", payload_summary(&seg[8..]));
                }
            }
        }
        IPIP => {
            describe_ip(seg, &pre4, v);
        }
        _ => put("payload", payload_summary(seg)),
    }
    total
}

fn payload_summary(p: &[u8]) -> String {
    let h = p.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let head: String = p.iter().take(16).map(|x| format!("{x:02x}")).collect();
    format!("{} bytes, fnv {h:016x}, starts {head}", p.len())
}

/// The first field where two frames differ: `(name, left, right)`.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<(String, String, String)> {
    if a == b {
        return None;
    }
    let (da, db) = (describe(a), describe(b));
    for i in 0..da.len().max(db.len()) {
        let none = || ("<absent>".to_string(), String::new());
        let (ka, va) = da.get(i).cloned().unwrap_or_else(none);
        let (kb, vb) = db.get(i).cloned().unwrap_or_else(none);
        if ka != kb || va != vb {
            let name = if ka == kb { ka } else { format!("{ka} / {kb}") };
            return Some((name, va, vb));
        }
    }
    Some((
        "bytes".into(),
        format!("{} bytes", a.len()),
        format!("{} bytes (same fields, other bytes)", b.len()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::verify;

    #[test]
    fn builds_are_deterministic_and_every_frame_verifies() {
        for mode in FwdMethod::ALL {
            let a = build(mode, &[]);
            assert_eq!(a, build(mode, &[]), "{mode:?}");
            for s in &a.steps {
                if let Some(p) = &s.pkt {
                    assert_eq!(p.to_bytes(), s.frame);
                    assert!(verify(&s.frame), "{mode:?}: {:?}", describe(&s.frame));
                    assert_eq!(p.ip.len() + 14, s.frame.len().min(p.ip.len() + 14));
                }
            }
            let times: Vec<u64> = a.steps.iter().map(|s| s.t_ns).collect();
            assert!(times.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn our_checksum_matches_etherparse() {
        // The same TCP packet built by etherparse's PacketBuilder.
        let mut want = Vec::new();
        etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC[0])
            .ipv4(CLIENT.octets(), VIP.octets(), 64)
            .tcp(40001, 80, 1234, 502)
            .ack(99)
            .psh()
            .write(&mut want, b"hello")
            .unwrap();
        let t = Tcp {
            sport: 40001,
            dport: 80,
            seq: 1234,
            ack: 99,
            flags: ACK | PSH,
            window: 502,
            options: vec![],
            payload: b"hello".to_vec(),
        };
        let p = Pkt {
            eth_dst: DIR_MAC[0],
            eth_src: CLIENT_MAC,
            vlan: None,
            ip: IpPkt {
                src: CLIENT,
                dst: VIP,
                tos: 0,
                id: 0,
                df: true,
                ttl: 64,
                body: Body::Tcp(t),
            },
            pad_to: 0,
        };
        assert_eq!(p.to_bytes(), want);
    }

    #[test]
    fn probe_has_the_first_packet_of_each_flow() {
        let p = probe(FwdMethod::Nat);
        assert_eq!(p.steps.len(), p.flows.len());
        let full = build(FwdMethod::Nat, &[]);
        for s in &p.steps {
            assert!(full.steps.contains(s), "same frame at the same time");
        }
    }

    #[test]
    fn describe_names_nested_fields_and_survives_garbage() {
        let s = build(FwdMethod::Nat, &[]);
        let icmp = s
            .steps
            .iter()
            .find(|s| matches!(s.kind, Kind::IcmpError { .. }))
            .unwrap();
        let d = describe(&icmp.frame);
        assert!(
            d.iter().any(|(k, _)| k == "ip.icmp.quote.tcp.dport"),
            "{d:?}"
        );
        for n in 0..icmp.frame.len() {
            describe(&icmp.frame[..n]);
        }
        for (_, f, _) in crate::gen::packet::bad_corpus() {
            describe(&f);
        }
        let mut other = icmp.frame.clone();
        other[30] ^= 1; // the destination address
        let (name, _, _) = first_difference(&icmp.frame, &other).unwrap();
        assert_eq!(name, "ip.dst");
    }

    #[test]
    fn the_topology_is_the_configs() {
        use crate::ctl::config::load_file;
        use crate::ctl::snapshot::Snapshot;
        use std::net::IpAddr;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for mode in FwdMethod::ALL {
            let path = root.join(format!("configs/{}.toml", mode.name()));
            let s = Snapshot::build(&load_file(&path).unwrap(), None).unwrap();
            assert_eq!(s.ports.len(), 2);
            for (i, p) in s.ports.iter().enumerate() {
                assert_eq!(p.mac, DIR_MAC[i], "{mode:?}");
                assert_eq!(p.mtu, MTU);
                assert_eq!(p.v4, Some(DIR_IP[i]));
            }
            for (ip, mac) in [
                (CLIENT, CLIENT_MAC),
                (ROUTER, ROUTER_MAC),
                (RS[0], RS_MAC[0]),
                (RS[1], RS_MAC[1]),
            ] {
                assert_eq!(s.next_hop(IpAddr::V4(ip)).map(|h| h.mac), Some(mac), "{ip}");
            }
            for c in REMOTE_CLIENTS {
                assert_eq!(s.next_hop(IpAddr::V4(c)).map(|h| h.mac), Some(ROUTER_MAC));
            }
            let tcp = s
                .lookup(TCP, IpAddr::V4(VIP), TCP_PORT)
                .expect("tcp service") as usize;
            let udp = s
                .lookup(UDP, IpAddr::V4(VIP), UDP_PORT)
                .expect("udp service") as usize;
            for (si, proto, sched, weights) in [(tcp, TCP, "wrr", [1, 2]), (udp, UDP, "rr", [1, 1])]
            {
                let svc = &s.services[si];
                assert_eq!(svc.sched.name(), sched);
                let d = &s.dests[svc.dests.clone()];
                assert_eq!(d.len(), 2);
                for (k, d) in d.iter().enumerate() {
                    assert_eq!(d.addr, IpAddr::V4(RS[k]));
                    assert_eq!(d.weight as u32, weights[k]);
                    assert_eq!(d.fwd, mode);
                    let port = if d.port == 0 {
                        if proto == TCP {
                            TCP_PORT
                        } else {
                            UDP_PORT
                        }
                    } else {
                        d.port
                    };
                    assert_eq!(port, rport(mode, proto), "{mode:?} {proto}");
                }
                let lips: Vec<IpAddr> = LIPS.iter().map(|a| IpAddr::V4(*a)).collect();
                if mode == FwdMethod::FullNat {
                    assert_eq!(svc.laddrs[..], lips[..]);
                } else {
                    assert!(svc.laddrs.is_empty());
                }
            }
        }
    }
}
