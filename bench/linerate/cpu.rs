//! CPU time per forwarded packet: the threads' own CPU time over the
//! saturation phase (not /proc/stat's per-CPU totals, which on a shared
//! machine carry everyone else's work too), divided by the frames the
//! sink counted in the same interval.
//!
//! - **director**: the threads that forward (xvs's `xvs-worker-N`
//!   threads, the do-nothing forwarder's `xlr-fwd` thread; the kernel
//!   director has none: its forwarding is all NAPI work).
//! - **NAPI**: with threaded NAPI, the `napi/<if>-<id>` kthreads of the
//!   director's generator-side veth; in softirq placement that work runs
//!   inside the generator's `sendto` (and RPS moves the kernel director's
//!   IP work into softirq on the director's CPU): then the softirq time of
//!   both CPUs from /proc/stat, which without CONFIG_IRQ_TIME_ACCOUNTING
//!   is sampled by the tick and is also inside the figure of the thread it
//!   interrupted (so it is not added to the director's), and includes
//!   whatever else the machine ran in softirq.
//! - **generator**: the `xlr-gen` thread, for reference; in softirq
//!   placement it includes the director's receive work.
//!
//! A thread's time includes the softirq work that ran in its context:
//! the sink's receive (a veth transmit runs the peer's receive on the
//! sending CPU) is in the director's or the NAPI thread's figure.

use std::fs;

/// Nanoseconds thread `tid` of process `pid` has run: the first field of
/// its schedstat, else utime + stime of its stat (clock ticks).
pub fn thread_ns(pid: i32, tid: i32) -> Option<u64> {
    let base = format!("/proc/{pid}/task/{tid}");
    if let Ok(s) = fs::read_to_string(format!("{base}/schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let s = fs::read_to_string(format!("{base}/stat")).ok()?;
    ticks_of_stat(&s).map(|t| t * tick_ns())
}

/// utime + stime of a /proc/<pid>/stat line (fields 14 and 15; the
/// command in parentheses may contain spaces).
fn ticks_of_stat(s: &str) -> Option<u64> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn tick_ns() -> u64 {
    // SAFETY: plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / if hz > 0 { hz as u64 } else { 100 }
}

/// The threads of process `pid` whose name `want` accepts.
pub fn threads(pid: i32, want: &dyn Fn(&str) -> bool) -> Vec<(i32, i32)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|tid| {
            let c = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
            want(c.trim_end())
        })
        .map(|tid| (pid, tid))
        .collect()
}

/// The NAPI kthreads of interface `dev` ("napi/<dev>-<id>", cut at 15
/// characters).
pub fn napi_threads(dev: &str) -> Vec<(i32, i32)> {
    let want = format!("napi/{dev}");
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let c = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            c.trim_end()
                .strip_prefix(&want)
                .is_some_and(|r| r.is_empty() || r.starts_with('-'))
        })
        .map(|pid| (pid, pid))
        .collect()
}

/// Softirq time of `cpus` from /proc/stat, in nanoseconds.
pub fn softirq_ns(cpus: &[usize]) -> u64 {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    softirq_ticks(&s, cpus) * tick_ns()
}

fn softirq_ticks(stat: &str, cpus: &[usize]) -> u64 {
    stat.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let cpu: usize = w.next()?.strip_prefix("cpu")?.parse().ok()?;
            // user nice system idle iowait irq softirq
            cpus.contains(&cpu).then(|| w.nth(6)?.parse::<u64>().ok())?
        })
        .sum()
}

/// The machine's CPU time from /proc/stat's `cpu` line, in ticks: (not
/// idle, all). Everyone's work, the harness's and other users'.
pub fn machine() -> Option<(u64, u64)> {
    machine_ticks(&fs::read_to_string("/proc/stat").ok()?)
}

fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let l = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let all: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((all - idle, all))
}

/// The share of the machine's CPU time that was not idle between two
/// [`machine`] readings.
pub fn busy_share(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    (t1 > t0).then(|| b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
}

/// What a probe sums.
#[derive(Clone, Debug)]
pub enum Source {
    Threads(Vec<(i32, i32)>),
    Softirq(Vec<usize>),
}

impl Source {
    /// CPU nanoseconds so far (threads that have exited count 0).
    pub fn read(&self) -> u64 {
        match self {
            Source::Threads(t) => t.iter().filter_map(|&(p, t)| thread_ns(p, t)).sum(),
            Source::Softirq(c) => softirq_ns(c),
        }
    }
}

/// The three probes of one measurement.
#[derive(Clone, Debug)]
pub struct Probes {
    pub director: Source,
    pub napi: Source,
    pub gen: Source,
}

impl Probes {
    pub fn read(&self) -> [u64; 3] {
        [self.director.read(), self.napi.read(), self.gen.read()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_utime_plus_stime() {
        let s = "1234 (xvs worker (x)) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(ticks_of_stat(s), Some(300));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[test]
    fn softirq_column_of_the_named_cpus() {
        let stat = "cpu  1 2 3 4 5 6 70 0\ncpu0 1 2 3 4 5 6 30 0\ncpu1 1 2 3 4 5 6 40 0\nintr 5\n";
        assert_eq!(softirq_ticks(stat, &[1]), 40);
        assert_eq!(softirq_ticks(stat, &[0, 1]), 70);
        assert_eq!(softirq_ticks(stat, &[2]), 0);
    }

    #[test]
    fn machine_busy_is_all_but_idle_and_iowait() {
        let stat = "cpu  10 0 10 70 10 0 0 0 5 0\ncpu0 1 2 3 4 5 6 30 0\n";
        assert_eq!(machine_ticks(stat), Some((20, 100)));
        assert_eq!(busy_share(Some((20, 100)), Some((70, 200))), Some(0.5));
        assert_eq!(busy_share(Some((20, 100)), Some((20, 100))), None);
        assert_eq!(machine_ticks("intr 5\n"), None);
    }

    #[test]
    fn this_thread_has_run() {
        let pid = std::process::id() as i32;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert!(thread_ns(pid, tid).is_some());
        assert!(threads(pid, &|_| true).contains(&(pid, tid)));
    }
}
