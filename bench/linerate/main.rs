//! `make linerate`: xvs forwarding 64-byte UDP on veth, next to the kernel
//! (nftables DNAT) and a do-nothing AF_XDP forwarder, in the same
//! topology and the same run. See docs/performance.md, "Line rate".
//!
//! ```sh
//! cargo build --release --bins --example linerate
//! sudo target/release/examples/linerate [--runs 5] [--seconds 5] ...
//! ```
//!
//! For each director configuration, two phases:
//! - **saturation**: the generator sends as fast as it can; forwarded pps
//!   is what the sink counts per second, loss is what the generator queued
//!   minus what arrived (the director's veth queue overflowing included).
//! - **low rate**: the generator paces `--low-rate` frames per second; the
//!   one-way latency of every frame (generator transmit → sink, through
//!   the director and two veth hops) and the loss.
//!
//! Placement on the 2-CPU machine: the generator busy-polls CPU
//! `--gen-cpu`; the director (the xvs worker or the forwarder) runs on
//! `--dir-cpu`. The kernel's receive work for the director's
//! generator-side veth (for the kernel configuration the whole forwarding
//! path; for the AF_XDP ones the XDP program and the copy into the UMEM)
//! is measured in both places veth allows, one table each (`--napi`):
//! - `threaded`: a NAPI kthread pinned to `--dir-cpu`; everything the
//!   director does costs the director's CPU.
//! - `softirq` (veth's default): in the generator's `sendto`, on
//!   `--gen-cpu`; the kernel configuration's IP work moves to `--dir-cpu`
//!   by RPS, the AF_XDP directors get their frames copied for them.
//!
//! Scaling (`--workers 1,2`): both veth pairs get two queues, the
//! generator one AF_XDP socket per TX queue, and xvs is measured with one
//! worker (on `--dir-cpu`, the generator on queue 0 only) and with two
//! (worker 0 on `--dir-cpu`, worker 1 on `--gen-cpu`, one queue each; the
//! generator sends on both, each flow on its owner's queue or, with
//! `--spread mixed`, in turn so that half are handed off). With threaded
//! NAPI the kthread of queue `i` is pinned to worker `i`'s CPU (found by
//! sending on queue 0 alone first). The rows give pps, CPU per frame and
//! how busy the machine's CPUs were, so that a figure the two CPUs cap
//! is told apart from one the workers cap.

mod cpu;
mod director;
mod fwd;
mod gen;
mod sink;
mod topo;

use clap::Parser;
use director::{Method, Nft, Xvs};
use fwd::{Forwarder, FwdConfig};
use gen::{GenConfig, Generator, Rate, Spread};
use serde_json::json;
use sink::{Counts, Sink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use topo::Topo;
use xvs::io::xdp::PollMode;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "linerate",
    about = "xvs vs the kernel's nftables DNAT vs a do-nothing AF_XDP forwarder on veth (needs root)"
)]
struct Args {
    /// Seconds measured at saturation (after --warmup).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of traffic before a measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Frames per second of the latency phase.
    #[arg(long, default_value_t = 20_000)]
    low_rate: u64,
    /// Seconds measured in the latency phase.
    #[arg(long, default_value_t = 3.0)]
    low_seconds: f64,
    /// Repetitions of the whole sequence; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Flows (client address, source port) the generator cycles through.
    #[arg(long, default_value_t = 4096)]
    flows: u32,
    /// Client addresses among the flows.
    #[arg(long, default_value_t = 256)]
    clients: u32,
    /// Directors to measure: kernel, ceiling, xvs-nat, xvs-dr.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kernel,ceiling,xvs-nat,xvs-dr"
    )]
    only: Vec<String>,
    /// Polling modes of the AF_XDP directors: adaptive, busy.
    #[arg(long, value_delimiter = ',', default_value = "adaptive,busy")]
    poll: Vec<String>,
    /// Where the director's veth receive work runs, one table each:
    /// `threaded` (a NAPI kthread pinned to --dir-cpu: everything the
    /// director does on one CPU) and/or `softirq` (veth's default: on the
    /// sending CPU, i.e. the generator's; the kernel configuration's
    /// forwarding then moves to --dir-cpu by RPS).
    #[arg(long, value_delimiter = ',', default_value = "threaded,softirq")]
    napi: Vec<String>,
    /// CPU of the generator.
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// CPU of the director (xvs's worker, the forwarder, NAPI).
    #[arg(long, default_value_t = 1)]
    dir_cpu: usize,
    /// Nice value of everything measured (the generator, the directors,
    /// the NAPI kthreads, and the scheduler autogroup of this session),
    /// e.g. -20 to keep other load out of the figures. 0 (the default)
    /// leaves priorities alone: on a machine shared with other people's
    /// work, a negative value starves it for the length of the run.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    nice: i32,
    /// Worker counts to measure xvs with, e.g. `1,2` (more than 1: both
    /// veth pairs get that many queues; see the module docs).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    workers: Vec<u32>,
    /// How the generator spreads flows over the queues for more than one
    /// worker: `owner` (each flow on its owner's queue: no hand-offs),
    /// `mixed` (in turn: about half handed off).
    #[arg(long, value_delimiter = ',', default_value = "owner")]
    spread: Vec<String>,
    /// The xvs binary (default: target/release/xvs beside this example).
    #[arg(long)]
    xvs: Option<PathBuf>,
    /// Write every measurement and the medians as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A short smoke run: 1 run, 1 s phases.
    #[arg(long)]
    quick: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Fewest forwarded frames in a saturation phase for a CPU-per-frame
/// figure.
const MIN_FRAMES_FOR_CPU: u64 = 10_000;

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps `d`, or less when interrupted.
fn nap(d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stopped() {
            return Err("interrupted".into());
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    Ok(())
}

/// Where the kernel's receive work for the director's generator-side veth
/// runs (see `--napi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Napi {
    Threaded,
    Softirq,
}

impl Napi {
    fn name(self) -> &'static str {
        match self {
            Napi::Threaded => "threaded",
            Napi::Softirq => "softirq",
        }
    }

    /// What the placement means, for table titles.
    fn describe(self, dir_cpu: usize, gen_cpu: usize) -> String {
        match self {
            Napi::Threaded => format!(
                "NAPI threaded on CPU {dir_cpu}: all of the director's work on CPU {dir_cpu}"
            ),
            Napi::Softirq => format!(
                "NAPI in softirq: the director's receive work on the generator's CPU {gen_cpu}, RPS to CPU {dir_cpu}"
            ),
        }
    }
}

fn napis(args: &Args) -> Result<Vec<Napi>, String> {
    let mut v = Vec::new();
    for n in &args.napi {
        let p = match n.as_str() {
            "threaded" => Napi::Threaded,
            "softirq" => Napi::Softirq,
            _ => return Err(format!("--napi: '{n}' is not threaded or softirq")),
        };
        if !v.contains(&p) {
            v.push(p);
        }
    }
    if v.is_empty() {
        return Err("--napi: no placement given".into());
    }
    Ok(v)
}

/// One director configuration under test.
#[derive(Clone, Debug)]
enum Target {
    Kernel,
    Ceiling(PollMode),
    /// Workers, and the generator's spread over their queues.
    Xvs(Method, PollMode, u32, Spread),
}

fn poll_name(p: PollMode) -> &'static str {
    match p {
        PollMode::Busy => "busy",
        PollMode::Adaptive { .. } => "adaptive",
    }
}

impl Target {
    fn key(&self) -> String {
        match self {
            Target::Kernel => "kernel-nft-dnat".into(),
            Target::Ceiling(p) => format!("ceiling-{}", poll_name(*p)),
            Target::Xvs(m, p, 1, _) => format!("xvs-{}-{}", m.name().to_lowercase(), poll_name(*p)),
            Target::Xvs(m, p, w, s) => format!(
                "xvs-{}-{}-{w}w-{}",
                m.name().to_lowercase(),
                poll_name(*p),
                s.name()
            ),
        }
    }
    fn label(&self) -> String {
        match self {
            Target::Kernel => "kernel nftables DNAT".into(),
            Target::Ceiling(p) => format!("AF_XDP do-nothing, {}", poll_name(*p)),
            Target::Xvs(m, p, 1, _) => format!("xvs {}, {}", m.name(), poll_name(*p)),
            Target::Xvs(m, p, w, s) => format!("xvs {}, {}, {w}w {}", m.name(), poll_name(*p), s.name()),
        }
    }
}

/// The figures of one configuration in one run.
#[derive(Clone, Debug, Default)]
struct Meas {
    key: String,
    label: String,
    /// Saturation: generator queued per second, sink received per second.
    gen_pps: f64,
    fwd_pps: f64,
    /// Saturation: frames queued and received over the whole phase.
    sent: u64,
    recv: u64,
    /// Saturation: frames the director's veth queue refused.
    queue_drops: u64,
    sat_p50: Option<u64>,
    sat_p99: Option<u64>,
    /// Low rate.
    low_sent: u64,
    low_recv: u64,
    low_p50: Option<u64>,
    low_p99: Option<u64>,
    low_p999: Option<u64>,
    low_mean: Option<u64>,
    /// Saturation: CPU nanoseconds per forwarded frame of the director's
    /// forwarding threads, of the NAPI work, of the generator (cpu.rs).
    cpu_dir: Option<f64>,
    cpu_napi: Option<f64>,
    cpu_gen: Option<f64>,
    /// Whether the NAPI figure is the NAPI kthreads' (else sampled softirq).
    napi_threaded: bool,
    /// Saturation: share of all CPUs' time the measured threads took
    /// (director, NAPI kthreads, generator), and the machine's non-idle
    /// share from /proc/stat (everyone's work).
    cpu_ours: Option<f64>,
    cpu_machine: Option<f64>,
    /// xvs's own counters at stop (rx, tx, drops).
    xvs: Vec<(String, u64)>,
}

impl Meas {
    fn loss(&self) -> f64 {
        loss(self.sent, self.recv)
    }
    fn low_loss(&self) -> f64 {
        loss(self.low_sent, self.low_recv)
    }
    fn json(&self) -> serde_json::Value {
        json!({
            "key": self.key, "label": self.label,
            "gen_pps": self.gen_pps.round(), "fwd_pps": self.fwd_pps.round(),
            "sent": self.sent, "received": self.recv, "loss": self.loss(),
            "queue_drops": self.queue_drops,
            "cpu_ns_per_frame": {"director": self.cpu_dir, "napi": self.cpu_napi, "generator": self.cpu_gen},
            "cpu_busy_share": {"measured_threads": self.cpu_ours, "machine": self.cpu_machine},
            "saturation_latency_ns": {"p50": self.sat_p50, "p99": self.sat_p99},
            "low_rate": {"sent": self.low_sent, "received": self.low_recv, "loss": self.low_loss(),
                         "latency_ns": {"p50": self.low_p50, "p99": self.low_p99,
                                        "p99.9": self.low_p999, "mean": self.low_mean}},
            "xvs_counters": self.xvs.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
    }
}

fn loss(sent: u64, recv: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(recv) as f64 / sent as f64
    }
}

/// Everything a measurement needs.
struct Bench<'a> {
    args: &'a Args,
    topo: &'a Topo,
    sink: &'a Sink,
    gen: &'a Generator,
    scratch: &'a Path,
    xvs_bin: &'a Path,
}

impl Bench<'_> {
    /// Sets a director up, measures both phases, tears it down.
    fn run(&self, t: &Target, napi: Napi) -> Result<Meas, String> {
        let a = self.args;
        // After the director started: a veth gets its NAPI instances when
        // XDP is attached (or GRO turned on), and the flag is the device's,
        // left over from the previous measurement.
        let threaded = |b: &Bench| -> Result<(), String> {
            match napi {
                Napi::Threaded => b.topo.napi_threaded(&[a.dir_cpu], a.nice).map(drop),
                Napi::Softirq => b.topo.napi_softirq(),
            }
        };
        let mut m = Meas {
            key: t.key(),
            label: t.label(),
            ..Meas::default()
        };
        let me = std::process::id() as i32;
        let probes = |director: Vec<(i32, i32)>| cpu::Probes {
            director: cpu::Source::Threads(director),
            napi: match napi {
                Napi::Threaded => cpu::Source::Threads(cpu::napi_threads(&self.topo.dir_in)),
                Napi::Softirq => cpu::Source::Softirq(vec![a.gen_cpu, a.dir_cpu]),
            },
            gen: cpu::Source::Threads(cpu::threads(me, &|n| n == "xlr-gen")),
        };
        match t {
            Target::Kernel => {
                let nft = Nft::start(self.topo, self.scratch)?;
                threaded(self)?;
                self.measure(&mut m, &probes(Vec::new()))?;
                drop(nft);
            }
            Target::Ceiling(p) => {
                let f = Forwarder::start(FwdConfig {
                    ns: self.topo.dir.clone(),
                    ifaces: [self.topo.dir_in.clone(), self.topo.dir_out.clone()],
                    vip: topo::VIP,
                    port: topo::PORT,
                    out_src: topo::MAC_DIR_OUT,
                    out_dst: topo::MAC_SINK,
                    poll: *p,
                    cpu: Some(a.dir_cpu),
                })?;
                threaded(self)?;
                self.measure(&mut m, &probes(cpu::threads(me, &|n| n == "xlr-fwd")))?;
                f.stop()?;
            }
            Target::Xvs(method, p, nw, spread) => {
                let cfg = self.scratch.join(format!("xvs-{}.toml", method.name()));
                std::fs::write(&cfg, director::xvs_config(*method)).map_err(|e| e.to_string())?;
                // Worker 0 where the lone worker runs, worker 1 on the
                // generator's CPU: a 2-CPU machine has no other.
                let cpus: Vec<usize> = (0..*nw as usize)
                    .map(|i| if i % 2 == 0 { a.dir_cpu } else { a.gen_cpu })
                    .collect();
                let x = Xvs::start(
                    self.xvs_bin,
                    self.topo,
                    &cfg,
                    poll_name(*p),
                    &cpus,
                    &stopped,
                )?;
                threaded(self)?;
                if *nw > 1 && napi == Napi::Threaded {
                    self.pin_napi_per_queue(&cpus)?;
                }
                self.gen.set_layout(*nw, *spread);
                let workers = cpu::threads(x.pid(), &|n| n.starts_with("xvs-worker"));
                let r = self.measure(&mut m, &probes(workers));
                self.gen.set_layout(1, Spread::Owner);
                let c = x.stop()?;
                r?;
                let keep = |k: &str| {
                    matches!(k, "rx_packets" | "tx_packets" | "new_conns" | "handoffs")
                        || k.starts_with("fwd_")
                        || k.starts_with("drop_")
                };
                m.xvs = c.into_iter().filter(|(k, v)| keep(k) && *v > 0).collect();
            }
        }
        Ok(m)
    }

    /// Pins the NAPI kthread of the director's RX queue `i` to `cpus[i]`.
    /// Which kthread serves queue 0 is found by sending on queue 0 alone
    /// for a moment (a kthread is named after its NAPI id, not its queue).
    fn pin_napi_per_queue(&self, cpus: &[usize]) -> Result<(), String> {
        let ths = cpu::napi_threads(&self.topo.dir_in);
        let times = || -> Vec<u64> { ths.iter().map(|&(p, t)| cpu::thread_ns(p, t).unwrap_or(0)).collect() };
        let t0 = times();
        self.gen.set_layout(1, Spread::Owner);
        self.gen.set_rate(Rate::Pps(50_000));
        let r = nap(Duration::from_millis(300));
        self.gen.set_rate(Rate::Off);
        r?;
        let busy: Vec<u64> = times().iter().zip(&t0).map(|(a, b)| a.saturating_sub(*b)).collect();
        let q0 = (0..ths.len()).max_by_key(|&i| busy[i]).ok_or("no NAPI threads")?;
        let mut rest = cpus.iter().skip(1).cycle();
        for (i, &(pid, _)) in ths.iter().enumerate() {
            let cpu = if i == q0 { cpus[0] } else { *rest.next().unwrap_or(&cpus[0]) };
            topo::pin(pid, cpu)?;
        }
        Ok(())
    }

    fn measure(&self, m: &mut Meas, probes: &cpu::Probes) -> Result<(), String> {
        let a = self.args;
        let (gen, sink) = (self.gen, self.sink);
        let settle = Duration::from_millis(300);
        nap(settle)?;

        // Saturation.
        let (s_a, c_a, q_a) = (gen.sent(), sink.read()?, self.topo.gen_tx_dropped()?);
        gen.set_rate(Rate::Max);
        let r = (|| {
            nap(Duration::from_secs_f64(a.warmup))?;
            let (s0, c0, t0, p0, m0) = (gen.sent(), sink.read()?, Instant::now(), probes.read(), cpu::machine());
            nap(Duration::from_secs_f64(a.seconds))?;
            let (s1, c1, t1, p1, m1) = (gen.sent(), sink.read()?, Instant::now(), probes.read(), cpu::machine());
            let busy = cpu::busy_share(m0, m1);
            Ok::<_, String>((s0, c0, t0, s1, c1, t1, [0, 1, 2].map(|i| p1[i].saturating_sub(p0[i])), busy))
        })();
        gen.set_rate(Rate::Off);
        let (s0, c0, t0, s1, c1, t1, cpu, busy) = r?;
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let wall = t1.duration_since(t0).as_nanos() as f64 * ncpu;
        // In softirq placement the NAPI figure is inside the others.
        let threaded = matches!(probes.napi, cpu::Source::Threads(_));
        let ours = cpu[0] + cpu[2] + if threaded { cpu[1] } else { 0 };
        m.cpu_ours = (wall > 0.0).then(|| ours as f64 / wall);
        m.cpu_machine = busy;
        let frames = c1.frames - c0.frames;
        // A director that forwarded next to nothing (a busy worker starved
        // by the NAPI kthread on its CPU) has no meaningful figure.
        let per = |ns: u64, src: &cpu::Source| {
            let empty = matches!(src, cpu::Source::Threads(t) if t.is_empty());
            (frames >= MIN_FRAMES_FOR_CPU && !empty).then(|| ns as f64 / frames as f64)
        };
        m.cpu_dir = per(cpu[0], &probes.director);
        m.cpu_napi = per(cpu[1], &probes.napi);
        m.cpu_gen = per(cpu[2], &probes.gen);
        m.napi_threaded = matches!(probes.napi, cpu::Source::Threads(_));
        nap(settle)?;
        let (s_b, c_b, q_b) = (gen.sent(), sink.read()?, self.topo.gen_tx_dropped()?);
        let el = (t1 - t0).as_secs_f64();
        m.gen_pps = (s1 - s0) as f64 / el;
        m.fwd_pps = (c1.frames - c0.frames) as f64 / el;
        m.sent = s_b - s_a;
        m.recv = c_b.frames - c_a.frames;
        m.queue_drops = q_b - q_a;
        let sat = c1.since(&c0);
        m.sat_p50 = sat.percentile(0.5);
        m.sat_p99 = sat.percentile(0.99);

        // Low rate.
        let (s_a, c_a) = (gen.sent(), sink.read()?);
        gen.set_rate(Rate::Pps(a.low_rate));
        let r = (|| {
            nap(Duration::from_millis(500))?;
            let c0 = sink.read()?;
            nap(Duration::from_secs_f64(a.low_seconds))?;
            Ok::<_, String>((c0, sink.read()?))
        })();
        gen.set_rate(Rate::Off);
        let (c0, c1) = r?;
        nap(settle)?;
        let (s_b, c_b) = (gen.sent(), sink.read()?);
        m.low_sent = s_b - s_a;
        m.low_recv = c_b.frames - c_a.frames;
        let low: Counts = c1.since(&c0);
        m.low_p50 = low.percentile(0.5);
        m.low_p99 = low.percentile(0.99);
        m.low_p999 = low.percentile(0.999);
        m.low_mean = low.mean();
        Ok(())
    }
}

fn targets(args: &Args) -> Result<Vec<Target>, String> {
    let mut polls = Vec::new();
    for p in &args.poll {
        polls.push(match p.as_str() {
            "adaptive" => PollMode::default(),
            "busy" => PollMode::Busy,
            _ => return Err(format!("--poll: '{p}' is not adaptive or busy")),
        });
    }
    for o in &args.only {
        if !["kernel", "ceiling", "xvs-nat", "xvs-dr"].contains(&o.as_str()) {
            return Err(format!(
                "--only: '{o}' is not one of kernel, ceiling, xvs-nat, xvs-dr"
            ));
        }
    }
    let mut spreads = Vec::new();
    for sp in &args.spread {
        let x = match sp.as_str() {
            "owner" => Spread::Owner,
            "mixed" => Spread::Mixed,
            _ => return Err(format!("--spread: '{sp}' is not owner or mixed")),
        };
        if !spreads.contains(&x) {
            spreads.push(x);
        }
    }
    let mut workers: Vec<u32> = Vec::new();
    for &w in &args.workers {
        if !(1..=2).contains(&w) {
            return Err(format!("--workers: {w} (the harness measures 1 and 2)"));
        }
        if !workers.contains(&w) {
            workers.push(w);
        }
    }
    if workers.is_empty() || spreads.is_empty() {
        return Err("--workers and --spread need a value".into());
    }
    // Each worker count (and, above one, each spread) of an xvs method.
    let xvs = |m: Method, p: PollMode, v: &mut Vec<Target>| {
        for &w in &workers {
            if w == 1 {
                v.push(Target::Xvs(m, p, 1, Spread::Owner));
            } else {
                v.extend(spreads.iter().map(|&s| Target::Xvs(m, p, w, s)));
            }
        }
    };
    let has = |k: &str| args.only.iter().any(|o| o == k);
    let mut v = Vec::new();
    if has("kernel") {
        v.push(Target::Kernel);
    }
    // Interleaved by poll mode, so each mode's three figures are close in
    // time on a machine whose load changes.
    for &p in &polls {
        if has("ceiling") {
            v.push(Target::Ceiling(p));
        }
        if has("xvs-nat") {
            xvs(Method::Nat, p, &mut v);
        }
        if has("xvs-dr") {
            xvs(Method::Dr, p, &mut v);
        }
    }
    if v.is_empty() {
        return Err("nothing to measure".into());
    }
    Ok(v)
}

fn us(ns: Option<u64>) -> String {
    ns.map_or("-".into(), |n| format!("{:.1}", n as f64 / 1000.0))
}

fn mpps(p: f64) -> String {
    format!("{:.3}", p / 1e6)
}

fn print_table(title: &str, rows: &[Meas], low_rate: u64) {
    println!("\n{title}");
    println!(
        "  {:<26} {:>9} {:>9} {:>7} {:>9} | {:>17} | {:>24} {:>6}",
        "director",
        "fwd Mpps",
        "gen Mpps",
        "loss",
        "q-drops",
        "sat. lat p50/p99",
        format!("{} kpps lat p50/p99/p99.9", low_rate / 1000),
        "loss"
    );
    for m in rows {
        println!(
            "  {:<26} {:>9} {:>9} {:>6.1}% {:>9} | {:>17} | {:>24} {:>5.2}%",
            m.label,
            mpps(m.fwd_pps),
            mpps(m.gen_pps),
            m.loss() * 100.0,
            m.queue_drops,
            format!("{}/{} us", us(m.sat_p50), us(m.sat_p99)),
            format!("{}/{}/{} us", us(m.low_p50), us(m.low_p99), us(m.low_p999)),
            m.low_loss() * 100.0
        );
    }
    println!(
        "  CPU ns per forwarded frame at saturation (threads' own time; cpu.rs), and how busy the CPUs were:\n  {:<26} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9}",
        "director", "director", "NAPI", "dir+NAPI", "generator", "ours %", "machine %"
    );
    let pct = |v: Option<f64>| v.map_or("-".into(), |x| format!("{:.0}", x * 100.0));
    let ns = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.0}"));
    for m in rows {
        // In softirq placement the NAPI figure is sampled softirq time
        // that the threads' own figures already contain: no sum.
        let both = match (m.cpu_dir, m.cpu_napi, m.napi_threaded) {
            (_, _, false) => None,
            (Some(a), Some(b), _) => Some(a + b),
            (None, b, _) => b,
            (a, None, _) => a,
        };
        println!(
            "  {:<26} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9}",
            m.label,
            ns(m.cpu_dir),
            ns(m.cpu_napi),
            ns(both),
            ns(m.cpu_gen),
            pct(m.cpu_ours),
            pct(m.cpu_machine)
        );
    }
}

fn median_f(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_o(v: Vec<Option<u64>>) -> Option<u64> {
    let v: Vec<f64> = v.into_iter().flatten().map(|x| x as f64).collect();
    (!v.is_empty()).then(|| median_f(v) as u64)
}

/// The median of every figure over the runs, per configuration (counts
/// are summed, so the losses are over all runs).
fn medians(runs: &[Vec<Meas>]) -> Vec<Meas> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|f| {
            let all: Vec<&Meas> = runs.iter().flatten().filter(|m| m.key == f.key).collect();
            let med = |g: &dyn Fn(&Meas) -> f64| median_f(all.iter().map(|m| g(m)).collect());
            let medo =
                |g: &dyn Fn(&Meas) -> Option<u64>| median_o(all.iter().map(|m| g(m)).collect());
            let medf = |g: &dyn Fn(&Meas) -> Option<f64>| {
                let v: Vec<f64> = all.iter().filter_map(|m| g(m)).collect();
                (!v.is_empty()).then(|| median_f(v))
            };
            Meas {
                key: f.key.clone(),
                label: f.label.clone(),
                gen_pps: med(&|m| m.gen_pps),
                fwd_pps: med(&|m| m.fwd_pps),
                sent: all.iter().map(|m| m.sent).sum(),
                recv: all.iter().map(|m| m.recv).sum(),
                queue_drops: all.iter().map(|m| m.queue_drops).sum(),
                sat_p50: medo(&|m| m.sat_p50),
                sat_p99: medo(&|m| m.sat_p99),
                low_sent: all.iter().map(|m| m.low_sent).sum(),
                low_recv: all.iter().map(|m| m.low_recv).sum(),
                low_p50: medo(&|m| m.low_p50),
                low_p99: medo(&|m| m.low_p99),
                low_p999: medo(&|m| m.low_p999),
                low_mean: medo(&|m| m.low_mean),
                cpu_dir: medf(&|m| m.cpu_dir),
                cpu_napi: medf(&|m| m.cpu_napi),
                cpu_gen: medf(&|m| m.cpu_gen),
                cpu_ours: medf(&|m| m.cpu_ours),
                cpu_machine: medf(&|m| m.cpu_machine),
                napi_threaded: f.napi_threaded,
                xvs: Vec::new(),
            }
        })
        .collect()
}

fn ratios(rows: &[Meas]) -> Vec<String> {
    let get = |k: &str| rows.iter().find(|m| m.key == k).map(|m| m.fwd_pps);
    let mut out = Vec::new();
    for poll in ["adaptive", "busy"] {
        for method in ["nat", "dr"] {
            let Some(x) = get(&format!("xvs-{method}-{poll}")) else {
                continue;
            };
            let mut s = format!("xvs {} {poll}:", method.to_uppercase());
            if let Some(k) = get("kernel-nft-dnat").filter(|k| *k > 0.0) {
                s += &format!(" {:.2}x the kernel", x / k);
            }
            if let Some(c) = get(&format!("ceiling-{poll}")).filter(|c| *c > 0.0) {
                s += &format!(", {:.2}x the do-nothing forwarder ({poll})", x / c);
            }
            out.push(s);
        }
    }
    out
}

/// Two workers against one, per method and polling mode: forwarded pps,
/// CPU per frame, and whether the machine's CPUs were the limit.
fn scaling(rows: &[Meas]) -> Vec<String> {
    let mut out = Vec::new();
    for one in rows.iter().filter(|m| m.key.starts_with("xvs-") && !m.key.contains("-2w-")) {
        for two in rows.iter().filter(|m| m.key.starts_with(&format!("{}-2w-", one.key))) {
            if one.fwd_pps < 1.0 {
                out.push(format!(
                    "{}: {} Mpps; 1 worker forwarded nothing in its saturation phase (starved), no ratio",
                    two.label,
                    mpps(two.fwd_pps)
                ));
                continue;
            }
            let mut s = format!(
                "{}: {} Mpps vs {} Mpps with 1 worker = {:.2}x",
                two.label,
                mpps(two.fwd_pps),
                mpps(one.fwd_pps),
                two.fwd_pps / one.fwd_pps
            );
            let per = |m: &Meas| match (m.cpu_dir, m.cpu_napi, m.napi_threaded) {
                (Some(d), Some(n), true) => Some(d + n),
                (d, _, _) => d,
            };
            if let (Some(a), Some(b)) = (per(one), per(two)) {
                s += &format!("; CPU per frame {b:.0} ns vs {a:.0} ns");
            }
            if let Some(busy) = two.cpu_machine {
                s += &format!("; CPUs {:.0}% busy", busy * 100.0);
                if let Some(ours) = two.cpu_ours {
                    s += &format!(", {:.0}% by the harness", ours * 100.0);
                }
                if busy > 0.9 {
                    s += " (machine-bound: the generator, NAPI and both workers share the CPUs";
                    if two.cpu_ours.is_some_and(|o| o < busy * 0.8) {
                        s += " with other load";
                    }
                    s += ")";
                }
            }
            out.push(s);
        }
    }
    out
}

/// Notes on figures that measure something else than the director.
fn caveats(rows: &[Meas], low_rate: u64) -> Vec<String> {
    let mut out = Vec::new();
    for m in rows {
        if m.sent > 0 && m.loss() < 0.01 {
            out.push(format!(
                "{}: forwarded everything the generator sent ({} Mpps): generator-bound, a lower bound of the director's rate",
                m.label,
                mpps(m.gen_pps)
            ));
        }
        if m.low_sent > 0 && m.low_loss() > 0.001 {
            out.push(format!(
                "{}: lost {:.2}% at {} pps",
                m.label,
                m.low_loss() * 100.0,
                low_rate
            ));
        }
    }
    out
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = topo::sh(&["uname", "-r"])
        .unwrap_or_default()
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({"cpu": cpu, "cpus": cpus, "kernel": kernel, "loadavg": load.trim()})
}

fn default_xvs() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("xvs")))
        .unwrap_or_else(|| PathBuf::from("target/release/xvs"))
}

/// Why the harness cannot run here, if it cannot.
fn unavailable(xvs_bin: &Path) -> Option<String> {
    if !xvs::io::xdp::is_root() {
        return Some(
            "needs root (network namespaces, XDP, AF_XDP, nftables): run `sudo make linerate`"
                .into(),
        );
    }
    if let Err(e) = xvs::io::xdp::af_xdp_available() {
        return Some(e.to_string());
    }
    for tool in ["ip", "ethtool", "clang"] {
        if std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_err()
        {
            return Some(format!(
                "`{tool}` is not installed (`make deps` installs it)"
            ));
        }
    }
    if !xvs_bin.exists() {
        return Some(format!(
            "no xvs binary at {} (build it with `cargo build --release`, or pass --xvs)",
            xvs_bin.display()
        ));
    }
    None
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.runs = 1;
        args.seconds = 1.0;
        args.warmup = 0.5;
        args.low_seconds = 1.0;
    }
    match real_main(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linerate: {e}");
            std::process::ExitCode::from(if e == "interrupted" { 130 } else { 1 })
        }
    }
}

fn real_main(args: &Args) -> Result<(), String> {
    let list = targets(args)?;
    let placements = napis(args)?;
    if args.seconds <= 0.0 || args.low_seconds <= 0.0 || args.warmup < 0.0 || args.runs == 0 {
        return Err("--seconds, --low-seconds and --runs must be positive".into());
    }
    let xvs_bin = args.xvs.clone().unwrap_or_else(default_xvs);
    if let Some(why) = unavailable(&xvs_bin) {
        return Err(why);
    }
    if list.iter().any(|t| matches!(t, Target::Kernel)) {
        if let Some(why) = director::nft_unavailable() {
            return Err(why);
        }
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    let _group = if args.nice != 0 {
        // Before any thread or child exists: they all inherit it.
        topo::renice(0, args.nice)?;
        topo::Autogroup::set(args.nice)?
    } else {
        None
    };
    for n in topo::remove_stale() {
        println!("removed namespace {n} of a killed earlier run");
    }
    let mach = machine();
    println!(
        "linerate: {} ({} CPUs), Linux {}; load {}",
        mach["cpu"].as_str().unwrap_or("?"),
        mach["cpus"],
        mach["kernel"].as_str().unwrap_or("?"),
        mach["loadavg"].as_str().unwrap_or("?")
    );
    println!(
        "  64-byte UDP, {} flows from {} clients; generator on CPU {}, director on CPU {} (NAPI {}; nice {}); \
         saturation {} s after {} s warm-up, latency at {} pps for {} s; {} run(s)",
        args.flows,
        args.clients,
        args.gen_cpu,
        args.dir_cpu,
        args.napi.join(", "),
        args.nice,
        args.seconds,
        args.warmup,
        args.low_rate,
        args.low_seconds,
        args.runs
    );
    let scratch = tempfile::Builder::new()
        .prefix("xvs-linerate-")
        .tempdir()
        .map_err(|e| format!("scratch directory: {e}"))?;
    let queues = list
        .iter()
        .map(|t| match t {
            Target::Xvs(_, _, w, _) => *w,
            _ => 1,
        })
        .max()
        .unwrap_or(1);
    let topo = Topo::new(queues)?;
    let sink = Sink::attach(&topo.sink, &topo.sink_if, scratch.path())?;
    let gen = Generator::start(GenConfig {
        ns: topo.gen.clone(),
        iface: topo.gen_if.clone(),
        src_mac: topo::MAC_GEN,
        dst_mac: topo::MAC_DIR_IN,
        vip: topo::VIP,
        port: topo::PORT,
        clients: args.clients,
        flows: args.flows,
        cpu: Some(args.gen_cpu),
        queues,
    })?;
    let bench = Bench {
        args,
        topo: &topo,
        sink: &sink,
        gen: &gen,
        scratch: scratch.path(),
        xvs_bin: &xvs_bin,
    };
    // runs[placement][run] = the rows of that run.
    let mut runs: Vec<Vec<Vec<Meas>>> = vec![Vec::new(); placements.len()];
    for r in 0..args.runs {
        for (pi, &napi) in placements.iter().enumerate() {
            // RPS only where the receive work runs on the generator's CPU;
            // in the threaded placement it would only add a hop.
            topo.rps((napi == Napi::Softirq).then_some(args.dir_cpu))?;
            let mut rows = Vec::new();
            for t in &list {
                eprint!(
                    "run {}/{}, NAPI {}: {} ...",
                    r + 1,
                    args.runs,
                    napi.name(),
                    t.label()
                );
                let m = bench.run(t, napi).inspect_err(|_e| {
                    eprintln!();
                })?;
                eprintln!(
                    " {} Mpps forwarded of {} Mpps sent",
                    mpps(m.fwd_pps),
                    mpps(m.gen_pps)
                );
                if !m.xvs.is_empty() {
                    let c: Vec<String> = m.xvs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    eprintln!("    xvs counters: {}", c.join(" "));
                }
                rows.push(m);
            }
            print_table(
                &format!(
                    "run {}/{}, {}",
                    r + 1,
                    args.runs,
                    napi.describe(args.dir_cpu, args.gen_cpu)
                ),
                &rows,
                args.low_rate,
            );
            runs[pi].push(rows);
        }
    }
    let mut summary = Vec::new();
    for (pi, &napi) in placements.iter().enumerate() {
        let med = medians(&runs[pi]);
        let what = napi.describe(args.dir_cpu, args.gen_cpu);
        if args.runs > 1 {
            print_table(
                &format!(
                    "median of {} runs (losses over all runs), {what}",
                    args.runs
                ),
                &med,
                args.low_rate,
            );
        }
        println!("\n  {what}:");
        for s in ratios(&med) {
            println!("  {s}");
        }
        for s in scaling(&med) {
            println!("  scaling: {s}");
        }
        for s in caveats(&med, args.low_rate) {
            println!("  note: {s}");
        }
        summary.push(json!({
            "napi": napi.name(),
            "runs": runs[pi].iter().map(|r| r.iter().map(Meas::json).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "median": med.iter().map(Meas::json).collect::<Vec<_>>(),
            "ratios": ratios(&med),
            "scaling": scaling(&med),
        }));
    }
    if let Some(path) = &args.json {
        let v = json!({
            "machine": mach,
            "settings": {
                "seconds": args.seconds, "warmup": args.warmup, "low_rate": args.low_rate,
                "low_seconds": args.low_seconds, "runs": args.runs, "flows": args.flows,
                "clients": args.clients, "napi": args.napi, "nice": args.nice, "gen_cpu": args.gen_cpu,
                "dir_cpu": args.dir_cpu, "workers": args.workers, "spread": args.spread,
            },
            "placements": summary,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("  results written to {}", path.display());
    }
    drop(gen);
    drop(sink);
    drop(topo);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meas(key: &str, fwd: f64) -> Meas {
        Meas {
            key: key.into(),
            label: key.into(),
            fwd_pps: fwd,
            ..Meas::default()
        }
    }

    #[test]
    fn medians_per_configuration() {
        let runs = vec![
            vec![meas("a", 1.0), meas("b", 10.0)],
            vec![meas("a", 3.0), meas("b", 30.0)],
            vec![meas("a", 2.0), meas("b", 20.0)],
        ];
        let m = medians(&runs);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fwd_pps, 2.0);
        assert_eq!(m[1].fwd_pps, 20.0);
        assert_eq!(median_f(vec![4.0, 1.0]), 2.5);
        assert_eq!(median_o(vec![None, Some(5), Some(7), Some(1)]), Some(5));
    }

    #[test]
    fn ratios_name_both_references() {
        let rows = vec![
            meas("kernel-nft-dnat", 1.0e6),
            meas("ceiling-busy", 2.0e6),
            meas("xvs-nat-busy", 1.5e6),
        ];
        let r = ratios(&rows);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("1.50x the kernel"), "{}", r[0]);
        assert!(
            r[0].contains("0.75x the do-nothing forwarder (busy)"),
            "{}",
            r[0]
        );
    }

    #[test]
    fn caveats_name_generator_bound_rows_and_low_rate_loss() {
        let mut all = meas("ceiling-busy", 1.0e6);
        (all.gen_pps, all.sent, all.recv) = (1.0e6, 1000, 995);
        let mut lossy = meas("xvs-dr-busy", 0.5e6);
        (lossy.sent, lossy.recv, lossy.low_sent, lossy.low_recv) = (1000, 500, 1000, 990);
        let c = caveats(&[all, lossy], 20_000);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(
            c[0].starts_with("ceiling-busy: forwarded everything"),
            "{}",
            c[0]
        );
        assert!(c[0].contains("(1.000 Mpps)"), "{}", c[0]);
        assert_eq!(c[1], "xvs-dr-busy: lost 1.00% at 20000 pps");
    }

    #[test]
    fn napi_placements_parse_and_bad_ones_are_refused() {
        let mut a = Args::parse_from(["linerate"]);
        assert_eq!(napis(&a).unwrap(), vec![Napi::Threaded, Napi::Softirq]);
        a.napi = vec!["softirq".into(), "softirq".into()];
        assert_eq!(napis(&a).unwrap(), vec![Napi::Softirq]);
        a.napi = vec!["irq".into()];
        assert!(napis(&a).unwrap_err().contains("'irq'"));
        let a = Args::parse_from(["linerate", "--napi", "threaded", "--nice", "-5"]);
        assert_eq!(napis(&a).unwrap(), vec![Napi::Threaded]);
        assert_eq!(a.nice, -5);
    }

    #[test]
    fn worker_counts_and_spreads_make_their_rows() {
        let a = Args::parse_from([
            "linerate", "--only", "xvs-dr", "--poll", "adaptive", "--workers", "1,2", "--spread", "owner,mixed",
        ]);
        let keys: Vec<String> = targets(&a).unwrap().iter().map(Target::key).collect();
        assert_eq!(keys, ["xvs-dr-adaptive", "xvs-dr-adaptive-2w-owner", "xvs-dr-adaptive-2w-mixed"]);
        let mut a = Args::parse_from(["linerate", "--workers", "3"]);
        assert!(targets(&a).unwrap_err().contains("--workers: 3"));
        a.workers = vec![2];
        a.spread = vec!["rss".into()];
        assert!(targets(&a).unwrap_err().contains("'rss'"));
    }

    #[test]
    fn scaling_compares_two_workers_with_one_and_names_a_full_machine() {
        let mut one = meas("xvs-dr-adaptive", 0.4e6);
        (one.cpu_dir, one.cpu_napi, one.napi_threaded) = (Some(600.0), Some(1200.0), true);
        let mut two = meas("xvs-dr-adaptive-2w-owner", 0.6e6);
        (two.cpu_dir, two.cpu_napi, two.napi_threaded) = (Some(700.0), Some(1300.0), true);
        (two.cpu_machine, two.cpu_ours) = (Some(0.97), Some(0.6));
        let s = scaling(&[one.clone(), two.clone(), meas("kernel-nft-dnat", 1.0e6)]);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0].contains("= 1.50x"), "{}", s[0]);
        assert!(s[0].contains("CPU per frame 2000 ns vs 1800 ns"), "{}", s[0]);
        assert!(s[0].contains("97% busy, 60% by the harness (machine-bound"), "{}", s[0]);
        assert!(s[0].ends_with("with other load)"), "{}", s[0]);
        one.fwd_pps = 0.0;
        let s = scaling(&[one, two]);
        assert!(s[0].contains("1 worker forwarded nothing"), "{}", s[0]);
    }

    #[test]
    fn bad_target_lists_are_refused() {
        let mut a = Args::parse_from(["linerate"]);
        assert_eq!(targets(&a).unwrap().len(), 7);
        a.only = vec!["nft".into()];
        assert!(targets(&a).unwrap_err().contains("'nft'"));
        a.only = vec!["kernel".into()];
        a.poll = vec!["spin".into()];
        assert!(targets(&a).unwrap_err().contains("'spin'"));
    }
}
