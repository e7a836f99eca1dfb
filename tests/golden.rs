//! Golden packet tests: the scenario of every forwarding mode
//! (`xvs::gen::scenario`) goes through the real `xvs replay` binary, and
//! the capture it writes is checked
//!
//! 1. frame by frame and field by field against the output computed here,
//!    by a model of each mode written from the IPVS semantics, not from
//!    the worker (the expected frames are serialised by the generator,
//!    checksums from scratch), in order and with the input's timestamps;
//! 2. by `gen::packet::verify` (every checksum, from scratch);
//! 3. by tshark with checksum validation on: no malformed frame, no error
//!    expert info, every checksum "Good", and the expected protocol stack;
//! 4. against the counters `xvs replay --counters` prints;
//! 5. byte for byte against the committed `tests/golden/<mode>.in.pcap` /
//!    `.out.pcap` (re-written with `XVS_BLESS=1` once 1–4 pass).
//!
//! The director's choices are checked against reference schedulers (the
//! IPVS wrr and rr sequences) and, for FULLNAT's local ports, for being
//! valid and distinct; see the scenario module for the two-stage
//! generation they need. The second half of the file checks that bad
//! captures, configurations and output paths give a clear error and that
//! pcapng input with two interfaces works.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;
use xvs::gen::packet::verify;
use xvs::gen::scenario::{
    self as sc, client_l2, first_difference, rport, Assign, Body, IpPkt, Kind, Pkt, Scenario, Side,
    DIR_IP, DIR_MAC, LIPS, MTU, RS, RS_MAC, VIP,
};
use xvs::ipvs::FwdMethod;
use xvs::stats::{DropReason, PassReason};
use xvs::wire::Reject;

const XVS: &str = env!("CARGO_BIN_EXE_xvs");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory, removed on drop (also when a test fails).
fn scratch() -> TempDir {
    tempfile::Builder::new().prefix("xvs-golden-").tempdir().expect("temp dir")
}

fn config(mode: FwdMethod) -> PathBuf {
    root().join(format!("configs/{}.toml", mode.name()))
}

/// Runs `xvs replay --config .. --in .. --out .. --counters`.
fn replay(config: &Path, input: &Path, output: &Path) -> Output {
    let o = Command::new(XVS)
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(output)
        .arg("--counters")
        .output()
        .expect("running xvs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && o.status.code() != Some(101),
        "xvs panicked:\n{err}"
    );
    o
}

/// Output frames with their times (ns).
type Frames = Vec<(u64, Vec<u8>)>;

/// Replays `input` (bytes) and returns the output frames, the counters
/// printed and the output file's bytes.
fn replay_ok(
    dir: &TempDir,
    name: &str,
    mode: FwdMethod,
    input: &[u8],
) -> (Frames, BTreeMap<String, u64>, Vec<u8>) {
    let (pin, pout) = (
        dir.path().join(format!("{name}.in")),
        dir.path().join(format!("{name}.out.pcap")),
    );
    std::fs::write(&pin, input).unwrap();
    let o = replay(&config(mode), &pin, &pout);
    assert!(
        o.status.success(),
        "xvs replay failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let mut counters = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not name=value: {line:?}"));
        let v = v
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(
            counters.insert(k.to_string(), v).is_none(),
            "counter {k} printed twice"
        );
    }
    let bytes = std::fs::read(&pout).unwrap();
    let frames = sc::parse_pcap(&bytes).unwrap_or_else(|e| panic!("{}: {e}", pout.display()));
    (frames, counters, bytes)
}

// ---- Reference schedulers (IPVS semantics, written independently) ----

/// IPVS wrr as the LVS documentation gives it: step through the servers,
/// lowering the current weight by the gcd at each wrap, from the maximum.
fn ref_wrr(weights: &[i32], picks: usize) -> Vec<usize> {
    let gcd = |mut a: i32, mut b: i32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let g = weights.iter().fold(0, |a, &w| gcd(a, w));
    let max = *weights.iter().max().unwrap();
    let (mut i, mut cw) = (weights.len() - 1, 0);
    (0..picks)
        .map(|_| loop {
            i = (i + 1) % weights.len();
            if i == 0 {
                cw -= g;
                if cw <= 0 {
                    cw = max;
                }
            }
            if weights[i] >= cw {
                break i;
            }
        })
        .collect()
}

/// IPVS rr: the servers in turn, from the first.
fn ref_rr(n: usize, picks: usize) -> Vec<usize> {
    (0..picks).map(|k| k % n).collect()
}

/// Stage one: the director's choices, checked against the references.
fn choices(dir: &TempDir, mode: FwdMethod) -> Vec<Assign> {
    let probe = sc::probe(mode);
    let (out, _, _) = replay_ok(dir, "probe", mode, &probe.pcap_bytes());
    let frames: Vec<Vec<u8>> = out.into_iter().map(|(_, f)| f).collect();
    let assign = sc::read_assignments(&probe, &frames).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    // Flows are scheduled in the order of their first packet, per service.
    let tcp: Vec<usize> = probe
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| f.proto == sc::TCP)
        .map(|(i, _)| i)
        .collect();
    let udp: Vec<usize> = probe
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| f.proto == sc::UDP)
        .map(|(i, _)| i)
        .collect();
    let got = |fl: &[usize]| fl.iter().map(|&i| assign[i].rs).collect::<Vec<_>>();
    assert_eq!(
        got(&tcp),
        ref_wrr(&[1, 2], tcp.len()),
        "{mode:?}: wrr 1:2 over the TCP flows"
    );
    assert_eq!(
        got(&udp),
        ref_rr(2, udp.len()),
        "{mode:?}: rr over the UDP flows"
    );
    let n2 = got(&tcp).iter().filter(|&&r| r == 1).count();
    assert_eq!(n2, 2 * (tcp.len() - n2), "rs2 gets twice rs1's share");
    // Local ports are pooled per (local address, real server): a tuple
    // towards a real server is never given twice.
    let mut locals: Vec<(std::net::Ipv4Addr, u16, usize)> = Vec::new();
    for (i, a) in assign.iter().enumerate() {
        match (mode, a.local) {
            (FwdMethod::FullNat, Some((lip, lport))) => {
                assert!(
                    LIPS.contains(&lip),
                    "{lip} is not a configured local address"
                );
                assert!(lport >= 1024, "local port {lport} below 1024");
                let key = (lip, lport, a.rs + 2 * probe.flows[i].proto as usize);
                assert!(
                    !locals.contains(&key),
                    "{lip}:{lport} given twice towards real server {}",
                    a.rs
                );
                locals.push(key);
            }
            (FwdMethod::FullNat, None) => panic!("FULLNAT flow without a local address"),
            (_, l) => assert_eq!(l, None),
        }
    }
    assign
}

// ---- The model of the director ----

/// What the model says the director does with each input frame.
struct Expected {
    /// (input step index, frame) per transmitted frame, in order.
    frames: Vec<(usize, Pkt)>,
    counters: BTreeMap<String, u64>,
    /// Output frames that are ICMP errors quoting a truncated packet.
    truncated_quote: Vec<bool>,
    /// Per model frame: sent as the fragments of its outer datagram (TUN,
    /// too big without DF), each a frame of the output.
    fragmented: Vec<bool>,
}

/// The frames a fragmented model frame leaves as (the kernel's
/// `ip_fragment` of the outer datagram for the link's MTU).
fn fragments_of(p: &Pkt) -> Vec<Vec<u8>> {
    xvs::gen::packet::fragment4(&p.to_bytes(), MTU as usize - 20, p.ip.id)
}

struct Model<'a> {
    s: &'a Scenario,
    assign: &'a [Assign],
    /// The tunnel's IPv4 identification counter (non-DF packets only).
    tun_id: u16,
    /// Per flow: between the client's SYN and the segment that ends the
    /// handshake (IPVS's SYN_RECV), where FULLNAT adds the TOA option.
    syn_recv: Vec<bool>,
    c: BTreeMap<String, u64>,
    /// The last step's output is to be fragmented.
    fragment: bool,
}

impl Model<'_> {
    fn count(&mut self, k: &str) {
        *self
            .c
            .get_mut(k)
            .unwrap_or_else(|| panic!("unknown counter {k}")) += 1;
    }

    /// The IPIP packet the director sends to real server `rs`: outer
    /// header from eth1's address, TOS and DF copied, identification 0
    /// with DF and from the worker's counter without, TTL copied from the
    /// inner packet (as IPVS's `ip_vs_prepare_tunneled_skb`).
    fn encap(&mut self, inner: IpPkt, rs: usize) -> Pkt {
        let id = if inner.df {
            0
        } else {
            self.tun_id = self.tun_id.wrapping_add(1);
            self.tun_id
        };
        let ttl = inner.ttl;
        let ip = IpPkt {
            src: DIR_IP[1],
            dst: RS[rs],
            tos: inner.tos,
            id,
            df: inner.df,
            ttl,
            body: Body::Ipip(Box::new(inner)),
        };
        Pkt {
            eth_dst: RS_MAC[rs],
            eth_src: DIR_MAC[1],
            vlan: None,
            ip,
            pad_to: 0,
        }
    }

    /// Towards the real server / the client: new MACs, padding dropped.
    fn to_rs(p: &Pkt, rs: usize, ip: IpPkt) -> Pkt {
        Pkt {
            eth_dst: RS_MAC[rs],
            eth_src: DIR_MAC[1],
            vlan: p.vlan,
            ip,
            pad_to: 0,
        }
    }
    fn to_client(p: &Pkt, client: std::net::Ipv4Addr, ip: IpPkt) -> Pkt {
        Pkt {
            eth_dst: client_l2(client),
            eth_src: DIR_MAC[0],
            vlan: p.vlan,
            ip,
            pad_to: 0,
        }
    }

    /// The output for step `i` (None: nothing sent), counting as it goes.
    fn step(&mut self, i: usize, seen: &mut [bool]) -> Option<Pkt> {
        let st = &self.s.steps[i];
        let mode = self.s.mode;
        let m = mode.name();
        match &st.kind {
            Kind::Reject { why, .. } => {
                match why {
                    Reject::Drop(r) => self.count(&format!("drop_{}", r.name())),
                    Reject::Pass(r) => self.count(&format!("pass_{}", r.name())),
                }
                None
            }
            Kind::Flow { flow, from } => {
                let p = st.pkt.clone().expect("flow packets are structured");
                let fl = self.s.flows[*flow];
                let a = self.assign[*flow];
                if !seen[*flow] {
                    // Every flow opens with a client SYN or datagram.
                    assert_eq!(*from, Side::Client);
                    seen[*flow] = true;
                    self.count("new_conns");
                }
                // FULLNAT's TOA: the client segment that ends SYN_RECV, an
                // ACK without SYN or RST, carries the client's address.
                // (The state moves even when the segment is then dropped.)
                let mut toa = false;
                if let Body::Tcp(t) = &p.ip.body {
                    let f = t.flags;
                    if *from == Side::Client && f & (sc::SYN | sc::ACK | sc::RST) == sc::SYN {
                        self.syn_recv[*flow] = true;
                    } else if *from == Side::Client && self.syn_recv[*flow] && f & (sc::SYN | sc::ACK | sc::RST) == sc::ACK {
                        self.syn_recv[*flow] = false;
                        toa = mode == FwdMethod::FullNat;
                    } else if f & sc::RST != 0 || (*from == Side::Server && f & sc::FIN != 0) {
                        self.syn_recv[*flow] = false;
                    }
                }
                let routed = matches!(mode, FwdMethod::Nat | FwdMethod::FullNat);
                if routed && p.ip.ttl <= 1 {
                    self.count("drop_ttl_exceeded");
                    return None;
                }
                let mut ip = p.ip.clone();
                let out = match (mode, from) {
                    (FwdMethod::Dr, Side::Client) => {
                        // Only the MACs change (and padding goes); the frame
                        // is otherwise as received.
                        Pkt {
                            eth_dst: RS_MAC[a.rs],
                            eth_src: DIR_MAC[1],
                            pad_to: 0,
                            ..p.clone()
                        }
                    }
                    (FwdMethod::Tun, Side::Client) => {
                        // Without DF: encapsulated, then sent in
                        // fragments of the outer datagram.
                        self.fragment = ip.len() + 20 > MTU as usize && !ip.df;
                        if ip.len() + 20 > MTU as usize && ip.df {
                            self.count("drop_too_big");
                            // Fragmentation needed, back to the sender from the VIP.
                            self.count("icmp_sent");
                            let quote_len = ip.len().min(576 - 28);
                            let err = IpPkt {
                                src: ip.dst,
                                dst: ip.src,
                                tos: 0xc0,
                                id: 0,
                                df: false,
                                ttl: 64,
                                body: Body::IcmpError {
                                    typ: 3,
                                    code: 4,
                                    rest: (MTU - 20) as u32,
                                    quote: Box::new(ip),
                                    quote_len,
                                },
                            };
                            return Some(Pkt {
                                eth_dst: p.eth_src,
                                eth_src: DIR_MAC[st.port as usize],
                                vlan: p.vlan,
                                ip: err,
                                pad_to: 0,
                            });
                        }
                        self.encap(ip, a.rs)
                    }
                    (FwdMethod::Nat | FwdMethod::FullNat, Side::Client) => {
                        ip.ttl -= 1;
                        ip.dst = RS[a.rs];
                        ip.set_dport(rport(mode, fl.proto));
                        if let Some((lip, lport)) = a.local {
                            ip.src = lip;
                            ip.set_sport(lport);
                        }
                        if toa {
                            let len = ip.len();
                            if let Body::Tcp(t) = &mut ip.body {
                                if 20 + t.options.len() + 8 <= 60 && len + 8 <= MTU as usize {
                                    t.options.extend_from_slice(&[254, 8]);
                                    t.options.extend_from_slice(&fl.cport.to_be_bytes());
                                    t.options.extend_from_slice(&fl.client.octets());
                                    self.count("toa_added");
                                } else {
                                    self.count("toa_skipped");
                                }
                            }
                        }
                        Self::to_rs(&p, a.rs, ip)
                    }
                    (FwdMethod::Nat | FwdMethod::FullNat, Side::Server) => {
                        ip.ttl -= 1;
                        ip.src = VIP;
                        ip.set_sport(fl.vport);
                        ip.dst = fl.client;
                        ip.set_dport(fl.cport);
                        Self::to_client(&p, fl.client, ip)
                    }
                    (FwdMethod::Dr | FwdMethod::Tun, Side::Server) => {
                        panic!("DR/TUN replies do not cross the director")
                    }
                };
                let dir = if *from == Side::Client { "in" } else { "out" };
                self.count(&format!("fwd_{m}_{dir}"));
                Some(out)
            }
            Kind::IcmpError { flow, about } => {
                let p = st.pkt.clone().expect("ICMP errors are structured");
                let fl = self.s.flows[*flow];
                let a = self.assign[*flow];
                self.count("icmp_relayed");
                let mut ip = p.ip.clone();
                let Body::IcmpError { quote, .. } = &mut ip.body else {
                    panic!("not an ICMP error")
                };
                let out = match (mode, about) {
                    // About a packet we forwarded to the real server: back to
                    // the client, as if about the packet the client sent.
                    (FwdMethod::Nat | FwdMethod::FullNat, Side::Client) => {
                        quote.dst = VIP;
                        quote.set_dport(fl.vport);
                        if mode == FwdMethod::FullNat {
                            quote.src = fl.client;
                            quote.set_sport(fl.cport);
                        }
                        ip.src = VIP;
                        ip.dst = fl.client;
                        ip.ttl -= 1;
                        Self::to_client(&p, fl.client, ip)
                    }
                    // About a reply: on to the real server, as if about the
                    // reply it sent.
                    (FwdMethod::Dr, Side::Server) => Pkt {
                        eth_dst: RS_MAC[a.rs],
                        eth_src: DIR_MAC[1],
                        pad_to: 0,
                        ..p.clone()
                    },
                    (FwdMethod::Tun, Side::Server) => self.encap(ip, a.rs),
                    (FwdMethod::Nat | FwdMethod::FullNat, Side::Server) => {
                        quote.src = RS[a.rs];
                        quote.set_sport(rport(mode, fl.proto));
                        if let Some((lip, lport)) = a.local {
                            quote.dst = lip;
                            quote.set_dport(lport);
                            ip.src = lip;
                        }
                        ip.dst = RS[a.rs];
                        ip.ttl -= 1;
                        Self::to_rs(&p, a.rs, ip)
                    }
                    (FwdMethod::Dr | FwdMethod::Tun, Side::Client) => {
                        panic!("no such error in DR/TUN scenarios")
                    }
                };
                Some(out)
            }
        }
    }
}

/// The model's output and counters for scenario `s`.
fn expect(s: &Scenario, assign: &[Assign]) -> Expected {
    let mut c = BTreeMap::new();
    for k in [
        "rx_packets",
        "rx_bytes",
        "tx_packets",
        "tx_bytes",
        "new_conns",
        "expired_conns",
        "templates_created",
        "templates_expired",
        "icmp_relayed",
        "icmp_sent",
        "frags_made",
        "handoffs",
        "toa_added",
        "toa_skipped",
        "frames_in",
        "frames_out",
        "conns",
    ] {
        c.insert(k.to_string(), 0);
    }
    for m in FwdMethod::ALL {
        c.insert(format!("fwd_{}_in", m.name()), 0);
        c.insert(format!("fwd_{}_out", m.name()), 0);
    }
    for r in DropReason::ALL {
        c.insert(format!("drop_{}", r.name()), 0);
    }
    for r in PassReason::ALL {
        c.insert(format!("pass_{}", r.name()), 0);
    }
    let mut model = Model {
        s,
        assign,
        tun_id: 0,
        syn_recv: vec![false; s.flows.len()],
        c,
        fragment: false,
    };
    let mut seen = vec![false; s.flows.len()];
    let mut frames = Vec::new();
    let mut fragmented = Vec::new();
    for i in 0..s.steps.len() {
        if let Some(p) = model.step(i, &mut seen) {
            frames.push((i, p));
            fragmented.push(std::mem::take(&mut model.fragment));
        }
    }
    // Every output frame's bytes, the fragments counted one by one.
    let sent: Vec<Vec<u8>> = frames
        .iter()
        .zip(&fragmented)
        .flat_map(|((_, p), &f)| if f { fragments_of(p) } else { vec![p.to_bytes()] })
        .collect();
    let made = (sent.len() - frames.len()) as u64;
    let mut c = model.c;
    c.insert("rx_packets".into(), s.steps.len() as u64);
    c.insert("frames_in".into(), s.steps.len() as u64);
    c.insert(
        "rx_bytes".into(),
        s.steps.iter().map(|st| st.frame.len() as u64).sum(),
    );
    c.insert("tx_packets".into(), sent.len() as u64);
    c.insert("frames_out".into(), sent.len() as u64);
    c.insert("frags_made".into(), made);
    c.insert(
        "tx_bytes".into(),
        sent.iter().map(|f| f.len() as u64).sum(),
    );
    // Nothing expires within a scenario.
    c.insert("conns".into(), s.flows.len() as u64);
    let truncated_quote = frames.iter().map(|(_, p)| truncated(&p.ip)).collect();
    Expected {
        frames,
        counters: c,
        truncated_quote,
        fragmented,
    }
}

/// Whether `ip` is (or tunnels) an ICMP error quoting less than the
/// whole packet.
fn truncated(ip: &IpPkt) -> bool {
    match &ip.body {
        Body::IcmpError {
            quote, quote_len, ..
        } => *quote_len < quote.len(),
        Body::Ipip(inner) => truncated(inner),
        _ => false,
    }
}

/// The protocol stack tshark must see (`frame.protocols` prefix) and the
/// IP protocol numbers of every IP header in order.
fn stack(ip: &IpPkt, layers: &mut Vec<&'static str>, protos: &mut Vec<u8>) {
    layers.push("ip");
    protos.push(ip.proto());
    match &ip.body {
        Body::Tcp(_) => layers.push("tcp"),
        Body::Udp { .. } => layers.push("udp"),
        Body::Echo { .. } => layers.push("icmp"),
        Body::IcmpError { quote, .. } => {
            layers.push("icmp");
            stack(quote, layers, protos);
        }
        Body::Ipip(inner) => stack(inner, layers, protos),
    }
}

fn describe_step(s: &Scenario, i: usize) -> String {
    let st = &s.steps[i];
    match &st.kind {
        Kind::Flow { flow, from } => {
            let f = s.flows[*flow];
            format!(
                "input frame {} ({:?} packet of flow {flow}, {}:{})",
                i + 1,
                from,
                f.client,
                f.cport
            )
        }
        Kind::IcmpError { flow, about } => format!(
            "input frame {} (ICMP error about a {about:?} packet of flow {flow})",
            i + 1
        ),
        Kind::Reject { name, .. } => format!("input frame {} ({name})", i + 1),
    }
}

/// Checks the replayed output against the model, field by field.
fn check_frames(s: &Scenario, exp: &Expected, out: &[(u64, Vec<u8>)]) {
    let mode = s.mode;
    // Model frames as the output frames they become (a fragmented one
    // becomes its fragments, in order, at its input frame's time).
    let wants: Vec<(usize, Vec<u8>)> = exp
        .frames
        .iter()
        .zip(&exp.fragmented)
        .flat_map(|((i, p), &f)| {
            let b = if f { fragments_of(p) } else { vec![p.to_bytes()] };
            b.into_iter().map(move |b| (*i, b))
        })
        .collect();
    for (k, ((i, want_b), (t, got))) in wants.iter().zip(out).enumerate() {
        if let Some((field, g, w)) = first_difference(got, want_b) {
            panic!(
                "{mode:?}: output frame {} (from {}) differs from the model at {field}: got {g}, expected {w}\n got:      {:02x?}\n expected: {:02x?}",
                k + 1,
                describe_step(s, *i),
                got,
                want_b
            );
        }
        // (A fragment's L4 checksum covers the whole datagram.)
        let frag = u16::from_be_bytes([got[12], got[13]]) == 0x0800 && u16::from_be_bytes([got[20], got[21]]) & 0x3fff != 0;
        assert!(
            frag || verify(got),
            "{mode:?}: output frame {} fails the from-scratch checksum check",
            k + 1
        );
        assert_eq!(
            *t,
            s.steps[*i].t_ns,
            "{mode:?}: output frame {} carries its input frame's time",
            k + 1
        );
    }
    if out.len() != wants.len() {
        let extra = if out.len() > wants.len() {
            format!(
                "first unexpected frame: {:?}",
                sc::describe(&out[wants.len()].1)
            )
        } else {
            format!(
                "first missing: {}",
                describe_step(s, wants[out.len()].0)
            )
        };
        panic!(
            "{mode:?}: {} output frames, the model expects {}; {extra}",
            out.len(),
            wants.len()
        );
    }
}

fn check_counters(mode: FwdMethod, exp: &BTreeMap<String, u64>, got: &BTreeMap<String, u64>) {
    for (k, v) in exp {
        assert_eq!(got.get(k), Some(v), "{mode:?}: counter {k}");
    }
    for (k, v) in got {
        // Counters this test does not know of yet must stay at zero here.
        assert!(
            exp.contains_key(k) || *v == 0,
            "{mode:?}: unexpected counter {k}={v}"
        );
    }
}

// ---- Golden files ----

fn bless() -> bool {
    std::env::var("XVS_BLESS").is_ok_and(|v| v == "1")
}

/// Compares `bytes` with the golden file (or writes it under XVS_BLESS=1).
fn golden(file: &str, bytes: &[u8]) {
    let path = root().join("tests/golden").join(file);
    if bless() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        eprintln!("blessed {}", path.display());
        return;
    }
    let how = "if the change is intended and the checks above it pass, re-bless with:\n    XVS_BLESS=1 cargo test --test golden\nand review `git diff --stat tests/golden` before committing";
    let Ok(want) = std::fs::read(&path) else {
        panic!("{} is missing; {how}", path.display());
    };
    if want == bytes {
        return;
    }
    let (w, g) = match (sc::parse_pcap(&want), sc::parse_pcap(bytes)) {
        (Ok(w), Ok(g)) => (w, g),
        (Err(e), _) => panic!("{}: {e}; {how}", path.display()),
        (_, Err(e)) => panic!("new {file}: {e}"),
    };
    let diff = w
        .iter()
        .zip(&g)
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| match first_difference(&b.1, &a.1) {
            Some((f, nv, gv)) => format!("frame {}: {f}: now {nv}, golden {gv}", i + 1),
            None => format!(
                "frame {}: timestamp now {} ns, golden {} ns",
                i + 1,
                b.0,
                a.0
            ),
        })
        .unwrap_or_else(|| {
            if w.len() != g.len() {
                format!("{} frames now, {} in the golden file", g.len(), w.len())
            } else {
                "the pcap headers differ".into()
            }
        });
    panic!("{file} differs from {}: {diff}\n{how}", path.display());
}

// ---- tshark ----

/// The tshark binary, or None after a visible SKIP (an error under CI).
fn tshark() -> Option<&'static str> {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("tshark");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tshark is not installed, and CI=true requires it: run `make deps` (Debian package tshark)");
    }
    // Written to the process's stderr, not through the test harness's
    // capture, so the SKIP shows in a normal `cargo test` run (once).
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIP: tshark is not installed: golden output frames are not dissected (run `make deps`)");
    });
    None
}

/// One output frame as tshark dissects it.
struct Dissected {
    protocols: String,
    ip_proto: Vec<u8>,
    /// Every checksum status (1 = Good) per protocol field.
    status: Vec<(&'static str, String)>,
    /// (severity, group, message) of every expert info.
    experts: Vec<(u32, u32, String)>,
    malformed: bool,
}

/// Dissects `pcap` with tshark, every checksum validation on. Wireshark
/// always validates ICMP checksums and validates the inner header of
/// IPIP and of ICMP quotes with the `ip` preference.
fn dissect(tshark: &str, pcap: &Path) -> Vec<Dissected> {
    let fields = [
        "frame.number",
        "frame.protocols",
        "ip.proto",
        "ip.checksum.status",
        "tcp.checksum.status",
        "udp.checksum.status",
        "icmp.checksum.status",
        "_ws.expert.severity",
        "_ws.expert.group",
        "_ws.expert.message",
        "_ws.malformed",
    ];
    let mut cmd = Command::new(tshark);
    cmd.arg("-n").arg("-r").arg(pcap);
    for p in [
        "ip.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
        // Each direction of a NAT flow is a different conversation to
        // wireshark: sequence analysis would only report that.
        "tcp.analyze_sequence_numbers:FALSE",
    ] {
        cmd.arg("-o").arg(p);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "header=n",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=\u{1}",
    ]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let o = cmd.output().expect("running tshark");
    assert!(
        o.status.success(),
        "tshark failed on {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let split = |s: &str| -> Vec<String> {
        if s.is_empty() {
            vec![]
        } else {
            s.split('\u{1}').map(str::to_string).collect()
        }
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            let col = |i: usize| c.get(i).copied().unwrap_or("");
            let num = |s: &String| {
                s.parse::<u32>()
                    .unwrap_or_else(|_| panic!("tshark: not a number {s:?} in {l:?}"))
            };
            let mut status = Vec::new();
            for (i, name) in [(3, "ip"), (4, "tcp"), (5, "udp"), (6, "icmp")] {
                for v in split(col(i)) {
                    status.push((name, v));
                }
            }
            let (sev, grp, msg) = (split(col(7)), split(col(8)), split(col(9)));
            Dissected {
                protocols: col(1).to_string(),
                ip_proto: split(col(2)).iter().map(|s| num(s) as u8).collect(),
                status,
                experts: sev
                    .iter()
                    .zip(&grp)
                    .zip(msg.iter().chain(std::iter::repeat(&String::new())))
                    .map(|((s, g), m)| (num(s), num(g), m.clone()))
                    .collect(),
                malformed: !col(10).is_empty(),
            }
        })
        .collect()
}

/// Wireshark's expert severities and groups.
const PI_ERROR: u32 = 0x0080_0000;
const PI_CHECKSUM: u32 = 0x0100_0000;

/// Checks tshark's view of every output frame: no malformed frame, no
/// expert info of severity Error, every checksum status Good, and the
/// expected protocol stack. Warnings and notes are not failures: they are
/// protocol remarks such as "Connection reset (RST)", which the scenario
/// sends on purpose.
///
/// One exception, where wireshark cannot be right: for an ICMP error
/// quoting a truncated packet (every "fragmentation needed" about a
/// 1500-byte packet) it checks the quoted TCP checksum over the part that
/// is quoted and reports it bad. That status, and that one "Bad checksum"
/// error, are ignored there and only there; the quoted checksum is still
/// checked byte for byte against the model.
fn check_tshark(mode: FwdMethod, tshark: &str, pcap: &Path, exp: &Expected) {
    let all = dissect(tshark, pcap);
    // A fragmented model frame's fragments but the last: each a good
    // IPv4 header, nothing malformed; tshark dissects the datagram they
    // make with the last, which is checked as the model frame.
    let mut d = Vec::new();
    let mut it = all.iter();
    for ((_, p), &f) in exp.frames.iter().zip(&exp.fragmented) {
        for _ in 1..if f { fragments_of(p).len() } else { 1 } {
            let x = it.next().expect("tshark read every fragment");
            assert!(!x.malformed && x.experts.iter().all(|e| e.0 < PI_ERROR), "{mode:?}: tshark: a fragment: {:?}", x.experts);
            assert!(x.status.iter().all(|(p, v)| *p == "ip" && v == "1"), "{mode:?}: tshark: a fragment: {:?}", x.status);
        }
        if let Some(x) = it.next() {
            d.push(x);
        }
    }
    assert!(it.next().is_none(), "{mode:?}: tshark read {} frames", all.len());
    assert_eq!(
        d.len(),
        exp.frames.len(),
        "{mode:?}: tshark read {} frames",
        all.len()
    );
    for (k, (x, (_, want))) in d.iter().zip(&exp.frames).enumerate() {
        let n = k + 1;
        let trunc = exp.truncated_quote[k];
        assert!(
            !x.malformed,
            "{mode:?}: tshark: frame {n} is malformed: {:?}",
            x.experts
        );
        let mut forgiven = 0;
        for (sev, grp, msg) in &x.experts {
            if *sev >= PI_ERROR {
                if trunc && *grp == PI_CHECKSUM && msg.starts_with("Bad checksum") && forgiven == 0
                {
                    forgiven += 1;
                    continue;
                }
                panic!("{mode:?}: tshark: frame {n}: {msg} (severity {sev:#x}, group {grp:#x})");
            }
        }
        for (proto, v) in &x.status {
            if trunc && matches!(*proto, "tcp" | "udp") {
                continue;
            }
            assert_eq!(v, "1", "{mode:?}: tshark: frame {n}: {proto} checksum status {v} (1 = Good, 0 = Bad, 2 = not verified)");
        }
        let (mut layers, mut protos) = (vec!["eth", "ethertype"], Vec::new());
        stack(&want.ip, &mut layers, &mut protos);
        let prefix = layers.join(":");
        let rest = x.protocols.strip_prefix(&prefix).unwrap_or_else(|| {
            panic!(
                "{mode:?}: tshark: frame {n} is {}, expected {prefix}",
                x.protocols
            )
        });
        assert!(
            rest.is_empty()
                || (rest.starts_with(':')
                    && !rest
                        .split(':')
                        .any(|l| matches!(l, "ip" | "ipv6" | "tcp" | "udp" | "icmp"))),
            "{mode:?}: tshark: frame {n} is {}, expected {prefix} and application data",
            x.protocols
        );
        assert_eq!(
            x.ip_proto, protos,
            "{mode:?}: tshark: frame {n}: ip.proto of each IP header"
        );
        let checked = x.status.iter().filter(|(p, _)| *p == "ip").count();
        assert_eq!(
            checked,
            protos.len(),
            "{mode:?}: tshark: frame {n}: every IP header checksum checked"
        );
    }
}

// ---- The tests ----

fn golden_mode(mode: FwdMethod) {
    let dir = scratch();
    let assign = choices(&dir, mode);
    let s = sc::build(mode, &assign);
    let input = s.pcap_bytes();
    let (out, counters, out_bytes) = replay_ok(&dir, "full", mode, &input);
    let exp = expect(&s, &assign);
    check_frames(&s, &exp, &out);
    check_counters(mode, &exp.counters, &counters);
    // The full replay made the same choices as the probe (the model used
    // the probe's and every frame matched); every flow got packets out.
    if let Some(t) = tshark() {
        check_tshark(mode, t, &dir.path().join("full.out.pcap"), &exp);
    }
    golden(&format!("{}.in.pcap", mode.name()), &input);
    golden(&format!("{}.out.pcap", mode.name()), &out_bytes);
}

#[test]
fn golden_dr() {
    golden_mode(FwdMethod::Dr);
}

#[test]
fn golden_tun() {
    golden_mode(FwdMethod::Tun);
}

#[test]
fn golden_nat() {
    golden_mode(FwdMethod::Nat);
}

#[test]
fn golden_fullnat() {
    golden_mode(FwdMethod::FullNat);
}

/// The scenario as senders with TX checksum offload (veths at their
/// defaults) put it on the wire: every TCP/UDP frame of a flow carries
/// the partial checksum (the pseudo-header sum) instead of the full one.
/// The director's output must be the full-checksum run's, byte for byte
/// (that run is checked field by field and by tshark in `golden_<mode>`),
/// and every completion counted.
fn golden_partial(mode: FwdMethod) {
    use xvs::wire::{checksum, parse};
    let dir = scratch();
    let assign = choices(&dir, mode);
    let s = sc::build(mode, &assign);
    let mut partial = s.clone();
    let mut made = 0;
    for st in &mut partial.steps {
        if !matches!(st.kind, Kind::Flow { .. }) {
            continue;
        }
        let Ok(m) = parse(&st.frame) else { continue };
        // (A fragment's checksum is never partial: a sender completes it
        // before fragmenting.)
        if m.proto != 6 && m.proto != 17 || m.frag != 0 {
            continue;
        }
        checksum::make_partial::<std::net::Ipv4Addr>(&mut st.frame, &m);
        assert!(!verify(&st.frame), "a partial checksum does not verify");
        made += 1;
    }
    assert!(made > 30, "{made} partial frames");
    let (full, full_counters, _) = replay_ok(&dir, "full", mode, &s.pcap_bytes());
    let (out, counters, _) = replay_ok(&dir, "partial", mode, &partial.pcap_bytes());
    assert_eq!(out.len(), full.len(), "{mode:?}: frames out");
    for (i, ((_, a), (_, b))) in out.iter().zip(&full).enumerate() {
        assert!(a == b, "{mode:?}: output frame {i} differs from the full-checksum run's: {:?}", first_difference(a, b));
    }
    for (k, v) in &counters {
        let want = if k == "csum_completed" { made as u64 } else { full_counters[k] };
        assert_eq!(*v, want, "{mode:?}: counter {k}");
    }
}

#[test]
fn golden_partial_checksums() {
    for mode in FwdMethod::ALL {
        golden_partial(mode);
    }
}

#[test]
fn scenarios_cover_what_they_claim() {
    // Guards the scenarios against silently losing a case: per mode, the
    // counters the model predicts for the cases the docs promise.
    for mode in FwdMethod::ALL {
        let assign: Vec<Assign> = (0..8)
            .map(|i| Assign {
                rs: i % 2,
                local: (mode == FwdMethod::FullNat).then_some((LIPS[i % 2], 2000 + i as u16)),
            })
            .collect();
        let s = sc::build(mode, &assign);
        let e = expect(&s, &assign);
        let c = |k: &str| e.counters[k];
        let m = mode.name();
        assert_eq!(c("new_conns"), 8, "{m}");
        assert!(c(&format!("fwd_{m}_in")) > 30, "{m}");
        assert_eq!(
            c("pass_non_ip") + c("pass_icmp") + c("pass_not_service"),
            3,
            "{m}"
        );
        match mode {
            FwdMethod::Dr => {
                assert_eq!(c("icmp_relayed"), 1);
                assert_eq!(c("drop_truncated"), 7, "the bad corpus is in");
            }
            FwdMethod::Tun => {
                assert_eq!(
                    (c("icmp_relayed"), c("icmp_sent"), c("drop_too_big"), c("frags_made")),
                    (1, 1, 1, 1),
                    "one too big with DF (answered), one without (fragmented)"
                );
            }
            FwdMethod::Nat | FwdMethod::FullNat => {
                assert!(c(&format!("fwd_{m}_out")) >= 20, "{m}");
                assert_eq!((c("icmp_relayed"), c("drop_ttl_exceeded")), (3, 1), "{m}");
                assert_eq!(
                    c("drop_truncated") > 0,
                    mode == FwdMethod::Nat,
                    "the bad corpus is in NAT only"
                );
                assert_eq!(c("toa_added") > 0, mode == FwdMethod::FullNat, "FULLNAT handshakes carry TOA");
            }
        }
        let tcp_flags: Vec<u8> = s
            .steps
            .iter()
            .filter_map(|st| match (&st.kind, &st.pkt) {
                (Kind::Flow { .. }, Some(p)) => match &p.ip.body {
                    Body::Tcp(t) => Some(t.flags),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for f in [
            sc::SYN,
            sc::FIN | sc::ACK,
            sc::RST | sc::ACK,
            sc::PSH | sc::ACK,
        ] {
            assert!(tcp_flags.contains(&f), "{m}: flags {f:#x}");
        }
    }
}

// ---- Bad input to `xvs replay` ----

/// Runs replay expecting failure; returns stderr.
fn replay_err(config: &Path, input: &Path, output: &Path) -> String {
    let o = replay(config, input, output);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "xvs replay succeeded; stderr: {err}");
    assert!(
        o.stdout.is_empty(),
        "no counters on failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

fn assert_names(err: &str, what: &[&str]) {
    for w in what {
        assert!(err.contains(w), "message {err:?} should contain {w:?}");
    }
}

#[test]
fn replay_rejects_bad_captures() {
    let dir = scratch();
    let cfg = config(FwdMethod::Nat);
    let out = dir.path().join("out.pcap");
    let s = sc::build(FwdMethod::Dr, &[]);

    let missing = dir.path().join("no-such.pcap");
    let e = replay_err(&cfg, &missing, &out);
    assert_names(&e, &[&missing.display().to_string(), "No such file"]);

    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all, just text\n").unwrap();
    let e = replay_err(&cfg, &garbage, &out);
    assert_names(
        &e,
        &[&garbage.display().to_string(), "not a pcap or pcapng"],
    );

    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let e = replay_err(&cfg, &empty, &out);
    assert_names(&e, &[&empty.display().to_string(), "not a pcap or pcapng"]);

    // LINKTYPE_RAW (101): IP packets without an Ethernet header.
    let raw = dir.path().join("raw.pcap");
    let mut b = s.pcap_bytes();
    b[20..24].copy_from_slice(&101u32.to_le_bytes());
    std::fs::write(&raw, &b).unwrap();
    let e = replay_err(&cfg, &raw, &out);
    assert_names(&e, &[&raw.display().to_string(), "not Ethernet"]);

    // pcapng whose interface is not Ethernet (LINKTYPE_RAW).
    let ng = dir.path().join("raw.pcapng");
    let mut b = s.pcapng_bytes();
    let shb_len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    assert_eq!(
        &b[shb_len..shb_len + 4],
        &1u32.to_le_bytes(),
        "an interface description block follows"
    );
    b[shb_len + 8..shb_len + 10].copy_from_slice(&101u16.to_le_bytes());
    std::fs::write(&ng, &b).unwrap();
    let e = replay_err(&cfg, &ng, &out);
    assert_names(&e, &[&ng.display().to_string(), "not Ethernet"]);

    // A capture cut inside its fourth packet.
    let cut = dir.path().join("cut.pcap");
    let b = s.pcap_bytes();
    let mut at = 24;
    for st in &s.steps[..3] {
        at += 16 + st.frame.len();
    }
    std::fs::write(&cut, &b[..at + 20]).unwrap();
    let e = replay_err(&cfg, &cut, &out);
    assert_names(&e, &[&cut.display().to_string(), "packet 3"]);
}

#[test]
fn replay_rejects_bad_configs_and_outputs() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    std::fs::write(&input, sc::build(FwdMethod::Nat, &[]).pcap_bytes()).unwrap();
    let out = dir.path().join("out.pcap");

    let missing = dir.path().join("none.toml");
    let e = replay_err(&missing, &input, &out);
    assert_names(&e, &[&missing.display().to_string(), "No such file"]);

    let garbage = dir.path().join("garbage.toml");
    std::fs::write(&garbage, "[[service]\nproto = tcp\n").unwrap();
    let e = replay_err(&garbage, &input, &out);
    assert_names(&e, &[&garbage.display().to_string(), "line 1"]);

    // Valid TOML, invalid config: a weight out of range names its field.
    let bad = dir.path().join("weight.toml");
    let text = std::fs::read_to_string(config(FwdMethod::Nat))
        .unwrap()
        .replacen("weight = 2", "weight = 70000", 1);
    std::fs::write(&bad, text).unwrap();
    let e = replay_err(&bad, &input, &out);
    assert_names(&e, &[&bad.display().to_string(), "weight", "70000"]);
    assert!(!out.exists(), "nothing written for a bad config");

    let nodir = dir.path().join("no-such-dir/out.pcap");
    let e = replay_err(&config(FwdMethod::Nat), &input, &nodir);
    assert_names(&e, &[&nodir.display().to_string(), "No such file"]);

    let isdir = dir.path().join("");
    let e = replay_err(&config(FwdMethod::Nat), &input, &isdir);
    assert_names(&e, &[&isdir.display().to_string(), "Is a directory"]);
}

/// `xvs replay --reload SECS=FILE`: a malformed pair, a negative or
/// non-numeric time, reloads out of time order and a bad file are each
/// refused with exit code 2 and a message naming the argument, and
/// nothing is written.
#[test]
fn replay_rejects_bad_reloads() {
    let dir = scratch();
    let input = dir.path().join("in.pcap");
    std::fs::write(&input, sc::build(FwdMethod::Nat, &[]).pcap_bytes()).unwrap();
    let out = dir.path().join("out.pcap");
    let good = config(FwdMethod::Nat).display().to_string();
    let garbage = dir.path().join("garbage.toml");
    std::fs::write(&garbage, "[[service]\nproto = tcp\n").unwrap();
    let run = |reloads: &[String]| {
        let mut c = Command::new(XVS);
        c.arg("replay").arg("--config").arg(config(FwdMethod::Nat)).arg("--in").arg(&input).arg("--out").arg(&out);
        for r in reloads {
            c.arg(format!("--reload={r}"));
        }
        let o = c.output().expect("running xvs");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{reloads:?}: {err}");
        assert!(!out.exists(), "{reloads:?}: nothing written");
        err
    };
    for bad in [good.clone(), format!("-1={good}"), format!("soon={good}"), format!("NaN={good}")] {
        assert_names(&run(std::slice::from_ref(&bad)), &["--reload", &bad, "expected SECS=FILE"]);
    }
    let e = run(&[format!("2={good}"), format!("1={good}")]);
    assert_names(&e, &["--reload", &format!("1={good}"), "time order"]);
    let e = run(&[format!("1={}", garbage.display())]);
    assert_names(&e, &["--reload", &garbage.display().to_string(), "line 1"]);
}

#[test]
fn pcapng_interfaces_are_director_ports() {
    let dir = scratch();
    // NAT: clients on interface 0, real servers on 1; the output is the
    // same as from the classic capture (where every frame is on port 0).
    let mode = FwdMethod::Nat;
    let assign = choices(&dir, mode);
    let s = sc::build(mode, &assign);
    assert!(s.steps.iter().any(|st| st.port == 1));
    let (classic, c1, _) = replay_ok(&dir, "classic", mode, &s.pcap_bytes());
    let (ng, c2, _) = replay_ok(&dir, "ng", mode, &s.pcapng_bytes());
    assert_eq!(c1, c2);
    assert!(classic == ng, "pcapng output differs from pcap output");

    // TUN: the oversized upload arrives on interface 1 this time; the
    // "fragmentation needed" goes back out of port 1, from its MAC.
    let mode = FwdMethod::Tun;
    let assign = choices(&dir, mode);
    let mut s = sc::build(mode, &assign);
    let big = s
        .steps
        .iter()
        .position(|st| {
            st.pkt.as_ref().is_some_and(|p| {
                p.ip.df && p.ip.len() == MTU as usize && matches!(st.kind, Kind::Flow { .. })
            })
        })
        .expect("the oversized DF upload");
    s.steps[big].port = 1;
    let exp = expect(&s, &assign);
    let k = exp.frames.iter().position(|(i, _)| *i == big).unwrap();
    assert_eq!(exp.frames[k].1.eth_src, DIR_MAC[1]);
    let (out, counters, _) = replay_ok(&dir, "tun-ng", mode, &s.pcapng_bytes());
    check_frames(&s, &exp, &out);
    check_counters(mode, &exp.counters, &counters);
}

#[test]
fn tshark_check_catches_bad_frames() {
    // The dissection check must be able to fail: the bad-input corpus
    // (an input capture, never an output) is full of what it looks for.
    let Some(t) = tshark() else { return };
    let dir = scratch();
    let p = dir.path().join("bad.pcap");
    let corpus = xvs::gen::packet::bad_corpus();
    std::fs::write(
        &p,
        sc::pcap_bytes(
            corpus
                .iter()
                .enumerate()
                .map(|(i, (_, f, _))| (sc::T0_NS + i as u64, &f[..])),
        ),
    )
    .unwrap();
    let d = dissect(t, &p);
    assert_eq!(d.len(), corpus.len());
    assert!(
        d.iter().filter(|x| x.malformed).count() >= 3,
        "truncated frames show as malformed"
    );
    assert!(
        d.iter()
            .any(|x| x.status.iter().any(|(p, v)| *p == "ip" && v == "0")),
        "the broken IPv4 checksum shows as Bad"
    );
    assert!(
        d.iter()
            .filter(|x| x.experts.iter().any(|e| e.0 >= PI_ERROR))
            .count()
            >= 5
    );
}
