//! The ceiling: a do-nothing AF_XDP forwarder on the director's two
//! interfaces, built on the same driver as `xvs run` (`io::xdp`, the same
//! steering program and rule for the VIP, the same burst loop and polling
//! modes) but without the worker: every frame from port 0 gets the sink's
//! MAC as destination and port 1's as source and is sent on port 1. No
//! parsing, no lookup, no rewrite of IP or UDP: what AF_XDP itself costs
//! on veth, the most any AF_XDP director can forward here.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use xvs::io::xdp::{Fate, IoStats, PollMode, Rule, XdpConfig, XdpIo};
use xvs::ipvs::Proto;

/// Where the forwarder runs and what it matches.
#[derive(Clone, Debug)]
pub struct FwdConfig {
    pub ns: String,
    /// Port 0 (from the generator) and port 1 (to the sink).
    pub ifaces: [String; 2],
    pub vip: Ipv4Addr,
    pub port: u16,
    pub out_src: [u8; 6],
    pub out_dst: [u8; 6],
    pub poll: PollMode,
    pub cpu: Option<usize>,
}

/// The running forwarder; [`Forwarder::stop`] (or drop) ends it and
/// detaches its programs.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<IoStats, String>>>,
}

impl Forwarder {
    /// Attaches and starts forwarding.
    pub fn start(cfg: FwdConfig) -> Result<Forwarder, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("xlr-fwd".into())
            .spawn(move || run(cfg, s, tx))
            .map_err(|e| format!("spawning the forwarder: {e}"))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(Forwarder {
                stop,
                handle: Some(handle),
            }),
            _ => Err(match handle.join() {
                Ok(Err(e)) => e,
                _ => "the forwarder thread died".into(),
            }),
        }
    }

    /// Stops and returns the driver's counters.
    pub fn stop(mut self) -> Result<IoStats, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err("the forwarder thread panicked".into()),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    cfg: FwdConfig,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<IoStats, String> {
    if let Some(c) = cfg.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let setup = || -> Result<_, String> {
        xvs::io::xdp::enter_netns(&cfg.ns).map_err(|e| format!("entering {}: {e}", cfg.ns))?;
        let (mut io, qs) = XdpIo::open(&XdpConfig {
            interfaces: cfg.ifaces.to_vec(),
            queues: vec![0],
            poll: cfg.poll,
            ..XdpConfig::default()
        })
        .map_err(|e| format!("forwarder: {e}"))?;
        io.set_rules(&[Rule::Vip {
            proto: Proto::Udp,
            addr: IpAddr::V4(cfg.vip),
            port: cfg.port,
        }])
        .map_err(|e| format!("forwarder: {e}"))?;
        Ok((io, qs))
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
    let (src, dst) = (cfg.out_src, cfg.out_dst);
    while !stop.load(Ordering::Relaxed) {
        // The daemon's burst size, so the two differ only by the worker.
        let n = q.burst(xvs::worker::BURST, |frames, ports, fates| {
            for (i, f) in frames.iter_mut().enumerate() {
                if ports[i] == 0 && f.len >= 14 {
                    xvs::wire::set_macs(f.data_mut(), &dst, &src);
                    fates[i] = Fate::Tx { port: 1 };
                }
            }
        });
        // As the daemon's lone worker: sleep at most 50 ms when idle.
        q.idle(n, Duration::from_millis(50));
    }
    let st = *q.stats();
    drop(qs);
    drop(io);
    Ok(st)
}
