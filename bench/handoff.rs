//! Hand-off latency (docs/performance.md, "Hand-off wake-up"): how long a
//! frame handed to a worker that sleeps waits before that worker takes it
//! from its inbox. Two ways of waiting, with the real [`Inbox`]:
//!
//! - **doorbell** (what `xvs run` does): the owner arms the inbox and
//!   sleeps in `poll()` on its eventfd (bound 50 ms, the timers' bound);
//!   the sender pushes and calls `wake()`, which rings only an armed inbox.
//! - **1 ms bound** (before): the owner sleeps in `poll()` with a 1 ms
//!   timeout on descriptors that the hand-off does not make readable (its
//!   sockets, here the never-rung eventfd), and finds the frame when the
//!   sleep times out; the sender only pushes.
//!
//! Both owners spin 64 empty polls before sleeping, as `PollMode::Adaptive`
//! does. The sender hands one item every `--gap-us` (default 300 µs, so
//! the owner is asleep when it comes) carrying its CLOCK_MONOTONIC time;
//! the owner records now − then. Sender on CPU 0, owner on CPU 1 (when
//! there are two). Scheduling latency of a loaded machine is in both.
//!
//! Run: `cargo bench --bench handoff` (`-- --quick`: 500 items; `--items N`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs::io::xdp::Inbox;

fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `fd` is readable or `ms` pass; whether it was readable.
fn sleep_on(fd: RawFd, ms: i32) -> bool {
    let mut p = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
    // SAFETY: one valid pollfd for the call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), 1, ms) };
    r == 1 && p[0].revents & libc::POLLIN != 0
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Doorbell,
    Bound1ms,
}

fn pin(cpu: usize) {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
}

/// Latencies (ns) of `items` hand-offs, one every `gap`.
fn run(mode: Mode, items: usize, gap: Duration) -> Vec<u64> {
    let ib: Arc<Inbox<u64>> = Arc::new(Inbox::new(4096).expect("eventfd"));
    let done = Arc::new(AtomicBool::new(false));
    let owner = {
        let (ib, done) = (ib.clone(), done.clone());
        std::thread::spawn(move || {
            pin(1);
            let mut lat = Vec::with_capacity(items);
            let mut empty = 0u32;
            while lat.len() < items && !done.load(Ordering::Relaxed) {
                if let Some(t) = ib.pop() {
                    lat.push(mono_ns().saturating_sub(t));
                    empty = 0;
                    continue;
                }
                empty += 1;
                if empty <= 64 {
                    continue;
                }
                match mode {
                    Mode::Doorbell => {
                        if ib.arm() {
                            let rung = sleep_on(ib.fd(), 50);
                            ib.disarm(rung);
                        }
                    }
                    // Nobody rings it: the timeout ends every sleep.
                    Mode::Bound1ms => {
                        sleep_on(ib.fd(), 1);
                    }
                }
            }
            lat
        })
    };
    pin(0);
    for _ in 0..items {
        let until = Instant::now() + gap;
        while Instant::now() < until {
            std::thread::sleep(until - Instant::now());
        }
        let _ = ib.push(mono_ns());
        if mode == Mode::Doorbell {
            ib.wake();
        }
    }
    // The owner has every item or finds them within its bound.
    std::thread::sleep(Duration::from_millis(100));
    done.store(true, Ordering::Relaxed);
    ib.wake();
    owner.join().expect("owner thread")
}

fn pct(v: &[u64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut items = if quick { 500 } else { 3000 };
    let mut gap_us = 300u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--items" => items = it.next().and_then(|v| v.parse().ok()).unwrap_or(items),
            "--gap-us" => gap_us = it.next().and_then(|v| v.parse().ok()).unwrap_or(gap_us),
            _ => {}
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "hand-off latency to a sleeping owner: {items} items, one every {gap_us} us; load {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("  {:<12} {:>10} {:>10} {:>10} {:>10} {:>10}", "owner waits", "p50 us", "p90 us", "p99 us", "mean us", "items");
    for (name, mode) in [("doorbell", Mode::Doorbell), ("1 ms bound", Mode::Bound1ms)] {
        let mut v = run(mode, items, Duration::from_micros(gap_us));
        v.sort_unstable();
        if v.is_empty() {
            println!("  {name:<12} (nothing arrived)");
            continue;
        }
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0;
        println!(
            "  {name:<12} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 0.99),
            mean,
            v.len()
        );
    }
}
