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
}

struct Shared {
    rate: AtomicU64,
    /// Bumped with every rate change, so the pacing restarts its clock.
    epoch: AtomicU64,
    sent: AtomicU64,
    stop: AtomicBool,
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
            queues: vec![0],
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
    let q = &mut qs[0];
    let tpl = templates(&cfg);
    let mut next = 0usize;
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
        }
        let want = match rate {
            Rate::Off => {
                // Reap completions, then rest.
                q.send_new(0, 0, |_, _| false);
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
        let n = q.send_new(0, want, |_, f| {
            let t = &tpl[next];
            next = if next + 1 == tpl.len() { 0 } else { next + 1 };
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
