//! `xvs`: the director. `xvs replay` runs the real worker over a capture;
//! `xvs check-config` validates a configuration.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use xvs::ctl::config;
use xvs::ctl::snapshot::Snapshot;
use xvs::io::pcap;
use xvs::worker::Worker;

const LONG_ABOUT: &str = "\
xvs is Linux Virtual Server (LVS/IPVS) as a userspace, kernel-bypass L4 load
balancer: it schedules new connections to real servers with the IPVS
algorithms (rr, wrr, lc, wlc, sed, nq, lblc, lblcr, dh, sh, mh, fo, ovf, twos)
and forwards them by direct routing (DR), IP-in-IP tunnelling (TUN), NAT or
FULLNAT.

The configuration is a TOML file: services (VIP, port, scheduler), their real
servers (address, port, weight, forwarding mode), FULLNAT local addresses and
the director's interfaces. See docs/config.md and the examples in configs/.";

const REPLAY_ABOUT: &str = "\
Runs every frame of a capture through the real worker code, exactly as the
live data path would process it, and writes every frame it would transmit to
another capture. Then prints what happened: frames forwarded per mode and
direction, new connections, and drops and passes by reason.

The worker's clock follows the capture's timestamps, so connection timeouts
and persistence behave as at the capture's pace. In pcapng input, a packet's
interface id is the director port it arrived on. Neighbour and director MACs
come from the configuration ([[interface]] and [[neighbour]]).

Example:
  xvs replay --config configs/nat.toml --in client.pcap --out forwarded.pcap";

#[derive(Parser)]
#[command(name = "xvs", version, about = "Linux Virtual Server as a kernel-bypass L4 load balancer", long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a capture through the worker and write what it transmits.
    #[command(long_about = REPLAY_ABOUT)]
    Replay {
        /// Configuration file (TOML).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// Input capture (pcap or pcapng, Ethernet).
        #[arg(long = "in", value_name = "PCAP")]
        input: PathBuf,
        /// Output capture (pcap), one frame per transmitted frame.
        #[arg(long = "out", value_name = "PCAP")]
        output: PathBuf,
        /// Print every counter as `name=value` lines (machine readable)
        /// instead of the summary.
        #[arg(long)]
        counters: bool,
    },
    /// Validate a configuration file and summarise it.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Replay { config, input, output, counters } => replay(config, input, output, counters),
        Cmd::CheckConfig { config } => check_config(config),
    }
}

fn load(path: &PathBuf) -> Result<Arc<Snapshot>, String> {
    let model = config::load_file(path).map_err(|e| e.to_string())?;
    Snapshot::build(&model, None).map(Arc::new).map_err(|e| format!("{}: {e}", path.display()))
}

fn replay(config: PathBuf, input: PathBuf, output: PathBuf, counters: bool) -> ExitCode {
    let snap = match load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xvs: {e}");
            return ExitCode::from(2);
        }
    };
    let mut w = Worker::new(0, 1, snap, pcap::CLOCK_START_NS);
    let t0 = Instant::now();
    let progress = |n: u64| {
        if n >= 1 << 20 {
            eprintln!("xvs replay: {n} frames ({:.1} s)", t0.elapsed().as_secs_f64());
        }
    };
    let sum = match pcap::replay(&mut w, &input, &output, progress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xvs replay: {e}");
            return ExitCode::from(1);
        }
    };
    let c = w.counters();
    if counters {
        println!("frames_in={}", sum.frames_in);
        println!("frames_out={}", sum.frames_out);
        println!("conns={}", w.conns());
        for (k, v) in c.pairs() {
            println!("{k}={v}");
        }
    } else {
        println!(
            "xvs replay: {} frames in, {} out, {} connections tracked at the end ({:.2} s)",
            sum.frames_in,
            sum.frames_out,
            w.conns(),
            t0.elapsed().as_secs_f64()
        );
        print!("{}", c.render());
    }
    ExitCode::SUCCESS
}

fn check_config(path: PathBuf) -> ExitCode {
    match load(&path) {
        Ok(s) => {
            println!("{}: ok", path.display());
            for svc in &s.services {
                println!("  {} scheduler {} ({} real servers)", svc.key, svc.sched.name(), svc.dests.len());
                for d in &s.dests[svc.dests.clone()] {
                    let hop = match d.hop {
                        Some(h) => xvs::ctl::model::fmt_mac(&h.mac),
                        None => "no neighbour MAC".into(),
                    };
                    println!(
                        "    -> {} {} weight {} ({hop})",
                        xvs::ctl::snapshot::fmt_sock(d.addr, d.port),
                        d.fwd,
                        d.weight
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xvs: {e}");
            ExitCode::from(2)
        }
    }
}
