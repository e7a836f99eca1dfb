//! Writes the golden scenario of a forwarding mode as a capture, ready for
//! `xvs replay` (see `src/gen/scenario.rs` for what it contains):
//!
//! ```text
//! cargo run --release --example gen_scenario -- --mode nat --out nat.pcap
//! xvs replay --config configs/nat.toml --in nat.pcap --out forwarded.pcap
//! ```
//!
//! NAT and FULLNAT replies depend on the director's choices (real server,
//! local address and port), so the first packet of every flow is first
//! replayed here, in process, with the same configuration; see "Replies
//! need the director's choices" in the scenario module.

use clap::{Parser, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use xvs::ctl::{config, snapshot::Snapshot};
use xvs::gen::scenario::{self, Scenario};
use xvs::io::pcap;
use xvs::ipvs::FwdMethod;
use xvs::worker::Worker;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Dr,
    Tun,
    Nat,
    Fullnat,
}

#[derive(Parser)]
#[command(about = "Write the golden scenario of a forwarding mode as a capture")]
struct Args {
    /// Forwarding mode.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Capture to write.
    #[arg(long, value_name = "PCAP")]
    out: PathBuf,
    /// Configuration the director's choices are read with (default:
    /// configs/<mode>.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write pcapng, one interface per director port, instead of pcap.
    #[arg(long)]
    pcapng: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mode = match a.mode {
        Mode::Dr => FwdMethod::Dr,
        Mode::Tun => FwdMethod::Tun,
        Mode::Nat => FwdMethod::Nat,
        Mode::Fullnat => FwdMethod::FullNat,
    };
    let config = a
        .config
        .unwrap_or_else(|| PathBuf::from(format!("configs/{}.toml", mode.name())));
    let s = match generate(mode, &config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gen_scenario: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bytes = if a.pcapng {
        s.pcapng_bytes()
    } else {
        s.pcap_bytes()
    };
    if let Err(e) = std::fs::write(&a.out, bytes) {
        eprintln!("gen_scenario: {}: {e}", a.out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "{}: {} mode, {} flows, {} frames",
        a.out.display(),
        mode.name(),
        s.flows.len(),
        s.steps.len()
    );
    ExitCode::SUCCESS
}

/// Probes the director's choices with `config`, then builds the scenario.
fn generate(mode: FwdMethod, config: &Path) -> Result<Scenario, String> {
    let model = config::load_file(config).map_err(|e| e.to_string())?;
    let snap = Snapshot::build(&model, None).map_err(|e| format!("{}: {e}", config.display()))?;
    let probe = scenario::probe(mode);
    let dir = std::env::temp_dir();
    let tag = format!("xvs-gen-scenario-{}", std::process::id());
    let (pin, pout) = (
        dir.join(format!("{tag}.in.pcap")),
        dir.join(format!("{tag}.out.pcap")),
    );
    let res = (|| {
        probe
            .write_pcap(&pin)
            .map_err(|e| format!("{}: {e}", pin.display()))?;
        let mut w = Worker::new(0, 1, Arc::new(snap), pcap::CLOCK_START_NS);
        pcap::replay(&mut w, &pin, &pout, |_| {}).map_err(|e| e.to_string())?;
        let out: Vec<Vec<u8>> = scenario::read_pcap(&pout)?
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        scenario::read_assignments(&probe, &out)
    })();
    let _ = std::fs::remove_file(&pin);
    let _ = std::fs::remove_file(&pout);
    Ok(scenario::build(mode, &res?))
}
