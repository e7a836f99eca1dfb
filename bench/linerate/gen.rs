//! The traffic generator: a thread in the generator's namespace that
//! transmits pre-built 60-byte (64 on the wire with the FCS) UDP frames to
//! the VIP through an AF_XDP socket (`QueueIo::send_new`, bursts of 64).
//!
//! - Frames cycle over `flows` flows: client address `i % clients`
//!   (from 10.77.16.1 up), source port `1024 + i / clients`.
//! - Every frame carries `MAGIC` and its transmit time (CLOCK_MONOTONIC
//!   ns, the clock the sink's `bpf_ktime_get_ns` reads) in its payload,
//!   followed by a 16-bit word that cancels the time's contribution to the
//!   UDP checksum, so the template's checksum stays valid without
//!   recomputing it per frame.
//! - [`Rate::Max`] sends as fast as the TX ring drains, [`Rate::Pps`] paces
//!   (busy-waiting on the clock), [`Rate::Off`] stops. The count of frames
//!   queued is published for the harness to sample.
//! - With `queues` > 1 the generator has one AF_XDP socket per TX queue
//!   and [`Generator::set_layout`] says on how many it sends (bursts in
//!   turn) and which flow goes on which ([`Spread`]). A veth delivers a
//!   frame on the peer's RX queue of the sender's TX queue
//!   (`skb_get_queue_mapping`; an AF_XDP socket transmits on the queue it
//!   is bound to), so that is the director's RX queue too.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use xvs::io::xdp::{PollMode, XdpConfig, XdpIo};

/// First bytes of every generator payload ("XLR1"); must match sink.bpf.c.
pub const MAGIC: u32 = 0x3152_4c58;
/// Frame length without FCS.
pub const FRAME_LEN: usize = 60;
/// Offset of the payload: Ethernet 14 + IPv4 20 + UDP 8.
const PAYLOAD: usize = 42;
const TS: usize = PAYLOAD + 4;
const COMP: usize = TS + 8;

/// How fast the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Off,
    Max,
    Pps(u64),
}

impl Rate {
    fn encode(self) -> u64 {
        match self {
            Rate::Off => 0,
            Rate::Max => u64::MAX,
            Rate::Pps(n) => n.clamp(1, u64::MAX - 1),
        }
    }
    fn decode(v: u64) -> Rate {
        match v {
            0 => Rate::Off,
            u64::MAX => Rate::Max,
            n => Rate::Pps(n),
        }
    }
}

/// Which flows go on which queue when the generator sends on several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Every flow on the queue of the xvs worker that owns it (its
    /// client's hash, `worker::shard_hash`): no hand-offs, as on a NIC
    /// whose RSS the workers follow.
    Owner,
    /// Flow `i` on queue `i % queues`, whoever owns it: with two workers
    /// about half of the frames arrive at the other worker and are handed
    /// off (veth, or a NIC whose RSS is not followed).
    Mixed,
}

impl Spread {
    pub fn name(self) -> &'static str {
        match self {
            Spread::Owner => "owner",
            Spread::Mixed => "mixed",
        }
    }
}

/// The queue template `i` (of flow `i`) goes on, for `queues` queues.
pub fn queue_of(tpl: &[u8; FRAME_LEN], i: usize, queues: usize, spread: Spread) -> usize {
    if queues <= 1 {
        return 0;
    }
    match spread {
        // The source address: bytes 26..30 of the frame.
        Spread::Owner => (xvs::worker::shard_hash(&tpl[26..30]) % queues as u32) as usize,
        Spread::Mixed => i % queues,
    }
}

/// What the generator needs to know.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub ns: String,
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vip: Ipv4Addr,
    pub port: u16,
    pub clients: u32,
    pub flows: u32,
    pub cpu: Option<usize>,
    /// TX queues (AF_XDP sockets) to open, 1 or more.
    pub queues: u32,
}

struct Shared {
    rate: AtomicU64,
    /// Bumped with every rate change, so the pacing restarts its clock.
    epoch: AtomicU64,
    sent: AtomicU64,
    stop: AtomicBool,
    /// Queues sent on (low 32 bits) and spread (bit 32: mixed).
    layout: AtomicU64,
}

/// The running generator; dropping it stops the thread (which closes its
/// socket and detaches its XDP program).
pub struct Generator {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

/// CLOCK_MONOTONIC in ns.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The address of client `i`: 10.77.16.1 onwards, skipping .0 and .255.
pub fn client_addr(i: u32) -> Ipv4Addr {
    let (hi, lo) = (i / 254, i % 254);
    Ipv4Addr::new(10, 77, 16 + (hi as u8), 1 + lo as u8)
}

/// The frame templates, one per flow.
pub fn templates(cfg: &GenConfig) -> Vec<[u8; FRAME_LEN]> {
    let mut payload = [0u8; FRAME_LEN - PAYLOAD];
    payload[..4].copy_from_slice(&MAGIC.to_le_bytes());
    // Time zero and its cancelling word: their sum is 0xffff, as for
    // any time and its complement (see `stamp`).
    payload[12..14].copy_from_slice(&0xffffu16.to_be_bytes());
    (0..cfg.flows.max(1))
        .map(|i| {
            let client = client_addr(i % cfg.clients.max(1));
            let sport = 1024 + (i / cfg.clients.max(1)) as u16;
            let mut v = xvs::gen::packet::udp4(
                client.octets(),
                sport,
                cfg.vip.octets(),
                cfg.port,
                &payload,
            );
            xvs::wire::set_macs(&mut v, &cfg.dst_mac, &cfg.src_mac);
            let mut f = [0u8; FRAME_LEN];
            f.copy_from_slice(&v);
            f
        })
        .collect()
}

/// Writes time `ts` into a frame and the word that cancels it in the UDP
/// checksum: the one's complement sum of the time's four 16-bit words plus
/// the complement of that sum is always 0xffff, as in the template.
#[inline]
pub fn stamp(f: &mut [u8], ts: u64) {
    let b = ts.to_le_bytes();
    f[TS..TS + 8].copy_from_slice(&b);
    let s = xvs::wire::checksum::fold(xvs::wire::checksum::sum(0, &b));
    f[COMP..COMP + 2].copy_from_slice(&(!s).to_be_bytes());
}

impl Generator {
    /// Opens the AF_XDP socket on `cfg.iface` in `cfg.ns` and starts the
    /// thread, idle ([`Rate::Off`]).
    pub fn start(cfg: GenConfig) -> Result<Generator, String> {
        let shared = Arc::new(Shared {
            rate: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            layout: AtomicU64::new(1),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("xlr-gen".into())
            .spawn(move || run(cfg, sh, tx))
            .map_err(|e| format!("spawning the generator: {e}"))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(Generator {
                shared,
                handle: Some(handle),
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err(match handle.join() {
                Ok(Err(e)) => e,
                _ => "the generator thread died".into(),
            }),
        }
    }

    /// Changes the rate.
    pub fn set_rate(&self, r: Rate) {
        self.shared.rate.store(r.encode(), Ordering::Relaxed);
        self.shared.epoch.fetch_add(1, Ordering::Release);
    }

    /// Sends on the first `queues` queues (at most those opened), flows
    /// spread by `spread`. Takes effect with the next rate change.
    pub fn set_layout(&self, queues: u32, spread: Spread) {
        let v = u64::from(queues.max(1)) | u64::from(spread == Spread::Mixed) << 32;
        self.shared.layout.store(v, Ordering::Relaxed);
        self.shared.epoch.fetch_add(1, Ordering::Release);
    }

    /// Frames queued for transmission so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    cfg: GenConfig,
    sh: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    if let Some(c) = cfg.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let setup = || -> Result<_, String> {
        xvs::io::xdp::enter_netns(&cfg.ns).map_err(|e| format!("entering {}: {e}", cfg.ns))?;
        let xc = XdpConfig {
            interfaces: vec![cfg.iface.clone()],
            queues: (0..cfg.queues.max(1)).collect(),
            poll: PollMode::Busy,
            tx_ring: 4096,
            comp_ring: 4096,
            ..XdpConfig::default()
        };
        XdpIo::open(&xc).map_err(|e| format!("generator: {e}"))
    };
    let (io, mut qs) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));
    let tpl = templates(&cfg);
    // Template indices per queue of the current layout, the next one to
    // send on each queue, and the queue whose turn it is.
    let mut per_q: Vec<(usize, Vec<usize>)> = vec![(0, (0..tpl.len()).collect())];
    let mut pos = vec![0usize; qs.len()];
    let mut turn = 0usize;
    let mut sent = 0u64;
    let mut epoch = u64::MAX;
    let (mut t0, mut base) = (0u64, 0u64);
    while !sh.stop.load(Ordering::Relaxed) {
        let e = sh.epoch.load(Ordering::Acquire);
        let rate = Rate::decode(sh.rate.load(Ordering::Relaxed));
        if e != epoch {
            epoch = e;
            t0 = mono_ns();
            base = sent;
            let l = sh.layout.load(Ordering::Relaxed);
            let nq = ((l & 0xffff_ffff) as usize).clamp(1, qs.len());
            let spread = if l >> 32 & 1 == 1 { Spread::Mixed } else { Spread::Owner };
            per_q = (0..nq).map(|q| (q, Vec::new())).collect();
            for (i, t) in tpl.iter().enumerate() {
                per_q[queue_of(t, i, nq, spread)].1.push(i);
            }
            // A queue no flow maps to (few flows) is left out.
            per_q.retain(|(_, v)| !v.is_empty());
            pos = vec![0; qs.len()];
            turn = 0;
        }
        let want = match rate {
            Rate::Off => {
                // Reap completions, then rest.
                for q in qs.iter_mut() {
                    q.send_new(0, 0, |_, _| false);
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Rate::Max => 64,
            Rate::Pps(pps) => {
                let due = ((mono_ns() - t0) as u128 * pps as u128 / 1_000_000_000) as u64;
                let n = due.saturating_sub(sent - base).min(64) as usize;
                if n == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                n
            }
        };
        let now = mono_ns();
        let k = turn % per_q.len();
        turn = turn.wrapping_add(1);
        let (qi, ids) = (per_q[k].0, &per_q[k].1);
        let (q, next) = (&mut qs[qi], &mut pos[qi]);
        let n = q.send_new(0, want, |_, f| {
            let t = &tpl[ids[*next]];
            *next = if *next + 1 == ids.len() { 0 } else { *next + 1 };
            let b = &mut f.buf[f.head..f.head + FRAME_LEN];
            b.copy_from_slice(t);
            stamp(b, now);
            f.len = FRAME_LEN;
            true
        });
        sent += n as u64;
        sh.sent.store(sent, Ordering::Relaxed);
        if n < want {
            // send_new kicks only when it queued something; a full TX ring
            // (a `sendto` stops at the first frame the veth refuses) needs
            // the kick idle() gives to frames left in it.
            q.idle(0, Duration::ZERO);
        }
    }
    drop(qs);
    drop(io);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GenConfig {
        GenConfig {
            ns: String::new(),
            iface: String::new(),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vip: Ipv4Addr::new(10, 77, 0, 100),
            port: 9,
            clients: 300,
            flows: 600,
            cpu: None,
            queues: 2,
        }
    }

    #[test]
    fn templates_are_valid_frames_over_distinct_flows() {
        let t = templates(&cfg());
        assert_eq!(t.len(), 600);
        let mut seen = std::collections::HashSet::new();
        for f in &t {
            assert!(xvs::gen::packet::verify(f));
            assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 2]);
            assert_eq!(&f[PAYLOAD..PAYLOAD + 4], &MAGIC.to_le_bytes());
            assert!(seen.insert(f[26..36].to_vec()), "flow repeated");
        }
        assert_eq!(client_addr(299), Ipv4Addr::new(10, 77, 17, 46));
    }

    #[test]
    fn flows_spread_over_queues_by_owner_or_in_turn() {
        let t = templates(&cfg());
        let mut per = [[0u32; 2]; 2];
        for (i, f) in t.iter().enumerate() {
            assert_eq!(queue_of(f, i, 1, Spread::Owner), 0);
            let q = queue_of(f, i, 2, Spread::Owner);
            // The owner xvs computes: the client address's shard hash.
            let client = client_addr(i as u32 % 300).octets();
            assert_eq!(q as u32, xvs::worker::shard_hash(&client) % 2);
            per[0][q] += 1;
            per[1][queue_of(f, i, 2, Spread::Mixed)] += 1;
        }
        assert_eq!(per[1], [300, 300]);
        assert!(per[0][0] > 200 && per[0][1] > 200, "both workers own flows: {per:?}");
    }

    #[test]
    fn stamping_keeps_the_checksum_valid() {
        let t = templates(&cfg());
        for ts in [0u64, 1, 0xffff, 0x1234_5678_9abc_def0, u64::MAX, mono_ns()] {
            let mut f = t[7];
            stamp(&mut f, ts);
            assert!(xvs::gen::packet::verify(&f), "ts {ts:#x}");
            assert_eq!(u64::from_le_bytes(f[TS..TS + 8].try_into().unwrap()), ts);
        }
    }
}
