//! The statistics an operator reads: per service and per real server
//! totals, rates and loads (`xvsadm -L --stats/--rate`), the workers' own
//! counters (`xvsadm --stats`), connection listings (`-L -c`) and the
//! Prometheus text, all from the workers' reports.
//!
//! # Contract
//!
//! - [`StatsHub::poll`] reads every worker's last report and adds them up
//!   per real server (by uid, so a worker still on an older snapshot counts
//!   for the same server). Figures are up to one report interval old.
//! - A real server's totals are the sum of the workers' counters since it
//!   was added. A service's totals are its real servers' plus the last
//!   known totals of real servers removed from it since it was created, as
//!   IPVS keeps a service's own counters: they never go back, which is what
//!   Prometheus counters need.
//! - `-Z` ([`StatsHub::zero`]) never touches a worker: it keeps the
//!   current totals as baselines and shows totals minus baselines, and
//!   restarts the rate estimators. The Prometheus counters are the raw
//!   totals (a counter must not go back).
//! - The hub's thread ([`StatsHub::spawn`]) ticks an IPVS [`Estimator`] per
//!   service and per real server every [`INTERVAL_SECS`]; `--rate` shows
//!   them.
//! - Control plane only: a mutex guards the sums; workers never see it.

use super::conns::{self, Listing, SAMPLE_MAX, WAIT};
use super::director::Director;
use super::report::{burst_histogram, ReportSlot, WorkerReport};
use crate::ctl::ipvsadm::{Figures, LaddrFigures, StatsView};
use crate::ctl::snapshot::{fmt_sock, Snapshot};
use crate::ipvs::dest::DestLoad;
use crate::ipvs::service::ServiceKey;
use crate::ipvs::FwdMethod;
use crate::stats::estimator::{Estimator, INTERVAL_SECS};
use crate::stats::prom::{self, MetricsView, WorkerSample};
use crate::stats::{DestStats, WorkerCounters};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `a - b`, field by field, never below zero.
fn minus(a: &DestStats, b: &DestStats) -> DestStats {
    DestStats {
        conns: a.conns.saturating_sub(b.conns),
        inpkts: a.inpkts.saturating_sub(b.inpkts),
        inbytes: a.inbytes.saturating_sub(b.inbytes),
        outpkts: a.outpkts.saturating_sub(b.outpkts),
        outbytes: a.outbytes.saturating_sub(b.outbytes),
    }
}

/// The larger of `a` and `b`, field by field (totals never go back).
fn at_least(a: &DestStats, b: &DestStats) -> DestStats {
    DestStats {
        conns: a.conns.max(b.conns),
        inpkts: a.inpkts.max(b.inpkts),
        inbytes: a.inbytes.max(b.inbytes),
        outpkts: a.outpkts.max(b.outpkts),
        outbytes: a.outbytes.max(b.outbytes),
    }
}

fn add_load(a: &mut DestLoad, b: &DestLoad) {
    a.active += b.active;
    a.inactive += b.inactive;
    a.persist += b.persist;
    a.overloaded |= b.overloaded;
}

/// One real server's running sums.
#[derive(Debug)]
struct DestAcc {
    /// uid of its service.
    svc: u32,
    total: DestStats,
    /// Totals at the last `-Z`.
    base: DestStats,
    est: Estimator,
    load: DestLoad,
}

/// One service's running sums.
#[derive(Debug)]
struct SvcAcc {
    /// Totals of real servers removed since the service was created.
    carry: DestStats,
    total: DestStats,
    base: DestStats,
    est: Estimator,
}

#[derive(Debug, Default)]
struct Acc {
    dests: HashMap<u32, DestAcc>,
    services: HashMap<u32, SvcAcc>,
}

impl Acc {
    /// Folds the workers' reports in (see the module docs); with `tick`,
    /// one estimator step.
    fn update(&mut self, snap: &Snapshot, reports: &[Arc<WorkerReport>], tick: bool) {
        let mut sums: HashMap<u32, (DestStats, DestLoad)> = HashMap::new();
        for r in reports {
            for d in &r.dests {
                if snap.dest_index(d.uid).is_some() {
                    let e = sums.entry(d.uid).or_default();
                    e.0.merge(&d.stats);
                    add_load(&mut e.1, &d.load);
                }
            }
        }
        // Removed real servers hand their totals to their service.
        let gone: Vec<u32> = self
            .dests
            .keys()
            .filter(|u| snap.dest_index(**u).is_none())
            .copied()
            .collect();
        for u in gone {
            if let Some(d) = self.dests.remove(&u) {
                if let Some(s) = self.services.get_mut(&d.svc) {
                    s.carry.merge(&d.total);
                }
            }
        }
        self.services.retain(|u, _| snap.svc_index(*u).is_some());
        for d in &snap.dests {
            let svc = snap.services[d.svc as usize].uid;
            let (stats, load) = sums.get(&d.uid).copied().unwrap_or_default();
            let e = self.dests.entry(d.uid).or_insert_with(|| DestAcc {
                svc,
                total: stats,
                base: DestStats::default(),
                est: Estimator::new(&stats),
                load,
            });
            e.total = at_least(&e.total, &stats);
            e.load = load;
            if tick {
                e.est.tick(&e.total);
            }
        }
        for s in &snap.services {
            let mut sum = DestStats::default();
            for d in &snap.dests[s.dests.clone()] {
                if let Some(a) = self.dests.get(&d.uid) {
                    sum.merge(&a.total);
                }
            }
            let e = self.services.entry(s.uid).or_insert_with(|| SvcAcc {
                carry: DestStats::default(),
                total: sum,
                base: DestStats::default(),
                est: Estimator::new(&sum),
            });
            sum.merge(&e.carry);
            e.total = at_least(&e.total, &sum);
            if tick {
                e.est.tick(&e.total);
            }
        }
    }

    /// `-Z`: baselines at the current totals, estimators restarted.
    fn zero(&mut self, snap: &Snapshot, svc: Option<&ServiceKey>) {
        for s in &snap.services {
            if svc.is_some_and(|k| *k != s.key) {
                continue;
            }
            if let Some(a) = self.services.get_mut(&s.uid) {
                a.base = a.total;
                a.est.zero(&a.total);
            }
            for d in &snap.dests[s.dests.clone()] {
                if let Some(a) = self.dests.get_mut(&d.uid) {
                    a.base = a.total;
                    a.est.zero(&a.total);
                }
            }
        }
    }
}

/// The figures of a poll, by the model's names.
#[derive(Debug, Default)]
struct Rows {
    /// (service, figures since `-Z`, raw totals), in snapshot order.
    services: Vec<(ServiceKey, Figures, DestStats)>,
    /// (service, address, port, figures since `-Z`, raw totals).
    dests: Vec<(ServiceKey, IpAddr, u16, Figures, DestStats)>,
}

/// The statistics of a running director. See the module docs.
pub struct StatsHub {
    director: Arc<Director>,
    acc: Mutex<Acc>,
    /// One connection listing at a time; the last listing's number.
    listing: Mutex<u64>,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatsHub {
    /// A hub over `director`'s workers.
    pub fn new(director: Arc<Director>) -> StatsHub {
        StatsHub {
            director,
            acc: Mutex::new(Acc::default()),
            listing: Mutex::new(0),
            started: Instant::now(),
        }
    }

    /// Folds the workers' last reports in and returns what it read.
    fn poll(&self, tick: bool) -> (Arc<Snapshot>, Vec<Arc<WorkerReport>>, Rows) {
        // The snapshot leaves out the port of DR/TUN servers (they keep the
        // packet's): the running model has it, as listings name it.
        let mut ports: HashMap<(ServiceKey, IpAddr, FwdMethod), u16> = HashMap::new();
        for s in self.director.running_model().services {
            for d in &s.dests {
                if matches!(d.fwd, FwdMethod::Dr | FwdMethod::Tun) {
                    ports.insert((s.key.clone(), d.addr, d.fwd), d.port);
                }
            }
        }
        let mut acc = lock(&self.acc);
        // Snapshot first: reports can only be as new or newer.
        let snap = self.director.snapshot();
        let reports = self.director.reports();
        acc.update(&snap, &reports, tick);
        let mut rows = Rows::default();
        for s in &snap.services {
            let mut load = DestLoad::default();
            for d in &snap.dests[s.dests.clone()] {
                let Some(a) = acc.dests.get(&d.uid) else { continue };
                add_load(&mut load, &a.load);
                let f = Figures {
                    active: a.load.active,
                    inactive: a.load.inactive,
                    persist: a.load.persist,
                    stats: minus(&a.total, &a.base),
                    rate: a.est.rate(),
                };
                let port = match d.port {
                    0 => ports.get(&(s.key.clone(), d.addr, d.fwd)).copied().unwrap_or(0),
                    p => p,
                };
                rows.dests.push((s.key.clone(), d.addr, port, f, a.total));
            }
            if let Some(a) = acc.services.get(&s.uid) {
                let f = Figures {
                    active: load.active,
                    inactive: load.inactive,
                    persist: load.persist,
                    stats: minus(&a.total, &a.base),
                    rate: a.est.rate(),
                };
                rows.services.push((s.key.clone(), f, a.total));
            }
        }
        (snap, reports, rows)
    }

    /// One estimator step (the hub's thread calls it every
    /// [`INTERVAL_SECS`]).
    pub fn tick(&self) {
        self.poll(true);
    }

    /// The figures `ipvsadm -L` shows, fresh from the reports.
    pub fn view(&self) -> StatsView {
        let (snap, reports, rows) = self.poll(false);
        let mut v = StatsView::default();
        for (k, f, _) in rows.services {
            v.services.insert(k, f);
        }
        for (k, a, p, f, _) in rows.dests {
            v.dests.insert((k, a, p), f);
        }
        let mut in_use: HashMap<IpAddr, u32> = HashMap::new();
        for r in &reports {
            for (a, n) in &r.laddrs {
                *in_use.entry(*a).or_default() += n;
            }
        }
        for s in &snap.services {
            for a in &s.laddrs {
                let conns = in_use.get(a).copied().unwrap_or(0);
                v.laddrs.insert((s.key.clone(), *a), LaddrFigures { conflicts: 0, conns });
            }
        }
        v
    }

    /// `-Z [service]` (see the module docs).
    pub fn zero(&self, svc: Option<&ServiceKey>) {
        let snap = self.director.snapshot();
        let reports = self.director.reports();
        let mut acc = lock(&self.acc);
        acc.update(&snap, &reports, false);
        acc.zero(&snap, svc);
    }

    /// The workers' connection entries (`-L -c`); may take up to
    /// [`WAIT`] and holds at most [`SAMPLE_MAX`] entries per worker.
    pub fn conns(&self) -> Listing {
        let mut seq = lock(&self.listing);
        *seq += 1;
        let slots: Vec<Arc<ReportSlot>> = (0..).map_while(|i| self.director.report_slot(i)).collect();
        conns::list(&slots, SAMPLE_MAX, WAIT, *seq)
    }

    /// `xvsadm --stats`: every worker's counters and burst times, then the
    /// totals of all workers.
    pub fn daemon_text(&self) -> String {
        let reports = self.director.reports();
        let snap = self.director.snapshot();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "xvs {}: {} worker(s), snapshot {}, up {} s",
            env!("CARGO_PKG_VERSION"),
            reports.len(),
            snap.generation,
            self.started.elapsed().as_secs()
        );
        let _ = writeln!(
            out,
            "{:<6} {:>5} {:>4} {:>8} {:>12} {:>12} {:>10} {:>10} {:>9}  Burst p50/p99/max",
            "Worker", "Queue", "CPU", "Snapshot", "RxPkts", "TxPkts", "Drops", "Handoffs", "Conns"
        );
        let mut total = WorkerCounters::default();
        let mut all = burst_histogram();
        for r in &reports {
            total.merge(&r.counters);
            let burst = match &r.burst_ns {
                Some(h) if !h.is_empty() => {
                    let _ = all.add(h);
                    let us = |v: u64| v as f64 / 1000.0;
                    format!(
                        "{:.1}/{:.1}/{:.1} us",
                        us(h.value_at_quantile(0.5)),
                        us(h.value_at_quantile(0.99)),
                        us(h.max())
                    )
                }
                _ => "-".to_string(),
            };
            let _ = writeln!(
                out,
                "{:<6} {:>5} {:>4} {:>8} {:>12} {:>12} {:>10} {:>10} {:>9}  {burst}",
                r.worker,
                r.queue,
                r.core.map_or("-".to_string(), |c| c.to_string()),
                r.generation,
                r.counters.rx_packets,
                r.counters.tx_packets,
                r.counters.total_drops(),
                r.counters.handoffs,
                r.conns,
            );
        }
        let _ = writeln!(
            out,
            "{:<6} {:>5} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10}",
            "I/O", "", "TxRingFull", "Kicks", "KickErrors", "Sleeps", "HandedOut", "TableMem"
        );
        for r in &reports {
            let _ = writeln!(
                out,
                "{:<6} {:>5} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10}",
                r.worker, "", r.io.tx_full, r.io.kicks, r.io.kick_errors, r.io.sleeps, r.io.handed_out, r.conn_memory
            );
        }
        let _ = writeln!(out, "All workers:");
        out.push_str(&total.render());
        if !all.is_empty() {
            let us = |v: u64| v as f64 / 1000.0;
            let _ = writeln!(
                out,
                "burst time   {} bursts: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                all.len(),
                us(all.value_at_quantile(0.5)),
                us(all.value_at_quantile(0.9)),
                us(all.value_at_quantile(0.99)),
                us(all.value_at_quantile(0.999)),
                us(all.max())
            );
        }
        out
    }

    /// The Prometheus text of everything above (raw totals, never zeroed).
    pub fn metrics_text(&self) -> String {
        let (_, reports, rows) = self.poll(false);
        let mut all = burst_histogram();
        let workers: Vec<WorkerSample> = reports
            .iter()
            .map(|r| {
                if let Some(h) = &r.burst_ns {
                    let _ = all.add(h);
                }
                WorkerSample {
                    counters: r.counters.clone(),
                    conns: r.conns as u64,
                    conn_memory: r.conn_memory as u64,
                    generation: r.generation,
                    io: vec![
                        ("rx", r.io.rx),
                        ("tx", r.io.tx),
                        ("tx_ring_full", r.io.tx_full),
                        ("tx_invalid", r.io.tx_invalid),
                        ("kicks", r.io.kicks),
                        ("kick_errors", r.io.kick_errors),
                        ("bad_descriptors", r.io.bad_descs),
                        ("handed_out", r.io.handed_out),
                        ("handoff_overflow", r.io.handoff_overflow),
                        ("handoff_quota", r.io.handoff_quota),
                        ("handoff_full", r.handoff_full),
                        ("sleeps", r.io.sleeps),
                        ("handoff_wakeups", r.io.handoff_wakeups),
                        ("umem_fill", r.io.umem_fill),
                        ("umem_rx", r.io.umem_rx),
                        ("umem_completed", r.io.umem_completed),
                    ],
                    umem: umem_gauges(&r.io),
                    burst_ns: r.burst_ns.clone(),
                }
            })
            .collect();
        // Counters: the raw totals, not the `-Z` view.
        let raw = |mut f: Figures, t: DestStats| {
            f.stats = t;
            f
        };
        let services: Vec<(String, Figures)> = rows.services.iter().map(|(k, f, t)| (k.to_string(), raw(*f, *t))).collect();
        let dests: Vec<(String, String, Figures)> = rows
            .dests
            .iter()
            .map(|(k, a, p, f, t)| (k.to_string(), fmt_sock(*a, *p), raw(*f, *t)))
            .collect();
        let burst: Option<&Histogram<u64>> = (!all.is_empty()).then_some(&all);
        prom::render(&MetricsView { workers: &workers, services: &services, dests: &dests, burst_ns: burst })
    }

    /// Starts the thread that ticks the estimators every [`INTERVAL_SECS`].
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<StatsThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let (hub, s2) = (self.clone(), stop.clone());
        let handle = std::thread::Builder::new().name("xvs-stats".into()).spawn(move || {
            let every = Duration::from_secs(INTERVAL_SECS);
            let mut next = Instant::now() + every;
            hub.poll(false);
            while !s2.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= next {
                    hub.tick();
                    // Keep the 2 s grid; after a stall, do not catch up.
                    next += every;
                    if next <= now {
                        next = now + every;
                    }
                }
                std::thread::sleep(Duration::from_millis(50).min(next.saturating_duration_since(Instant::now())));
            }
        })?;
        Ok(StatsThread { stop, handle: Some(handle) })
    }
}

/// The hub's estimator thread; stops when dropped.
pub struct StatsThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for StatsThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Where a worker's share of the UMEM is (`xvs_umem_chunks`): free in
/// its pool, waiting in its return queue, given to the kernel (fill, RX,
/// TX and completion rings), and the share itself. Frames being handed
/// between workers are the difference, zero when traffic stops.
fn umem_gauges(io: &crate::io::xdp::IoStats) -> [u64; 4] {
    let kernel = (io.umem_fill + io.tx).saturating_sub(io.umem_rx + io.umem_completed);
    // In the order of prom::UMEM_AT.
    [io.umem_free, io.umem_returning, kernel, io.umem_total]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config;
    use crate::ctl::model::Model;
    use crate::daemon::report::Reporter;
    use crate::io::xdp::IoStats;
    use crate::worker::Worker;

    const CONF: &str = r#"
[[interface]]
name = "eth0"
mac = "02:00:00:00:00:10"
addresses = ["10.0.0.1/24"]
[[neighbour]]
ip = "10.0.0.2"
mac = "02:00:00:00:00:02"
[[neighbour]]
ip = "10.0.0.3"
mac = "02:00:00:00:00:03"
[[service]]
proto = "tcp"
vip = "10.0.0.100"
port = 80
scheduler = "rr"
  [[service.real_server]]
  ip = "10.0.0.2"
  mode = "dr"
  [[service.real_server]]
  ip = "10.0.0.3"
  mode = "dr"
"#;

    fn model() -> Model {
        config::load_str(CONF, "t").unwrap()
    }

    fn key() -> ServiceKey {
        model().services[0].key.clone()
    }

    /// One worker that really forwards; publishes through its slot.
    struct W {
        w: Worker,
        rep: Reporter,
        port: u16,
    }

    impl W {
        fn new(d: &Director) -> W {
            W { w: Worker::new(0, 1, d.snapshot(), 1_000_000_000), rep: Reporter::new(d.report_slot(0).unwrap()), port: 1000 }
        }
        /// `n` new connections (a SYN each), then publishes.
        fn syns(&mut self, d: &Director, n: u16) {
            self.w.set_snapshot(d.snapshot());
            crate::daemon::syns(&mut self.w, [192, 0, 2, 1], self.port + 1..self.port + 1 + n);
            self.port += n;
            self.rep.record_burst(1500);
            self.rep.publish(&self.w, &IoStats::default(), (0, Some(1)), false);
        }
    }

    fn dest_conns(v: &StatsView, ip: &str) -> u64 {
        v.dests[&(key(), ip.parse().unwrap(), 80)].stats.conns
    }

    #[test]
    fn figures_add_up_zero_keeps_baselines_and_services_keep_removed_traffic() {
        let d = Arc::new(Director::new(model(), 1).unwrap());
        let hub = StatsHub::new(d.clone());
        let mut w = W::new(&d);
        w.syns(&d, 4);
        let v = hub.view();
        assert_eq!((dest_conns(&v, "10.0.0.2"), dest_conns(&v, "10.0.0.3")), (2, 2), "rr");
        let s = v.services[&key()];
        assert_eq!((s.stats.conns, s.stats.inpkts, s.inactive), (4, 4, 4), "SYN_RECV is inactive");
        assert_eq!(v.dests[&(key(), "10.0.0.2".parse().unwrap(), 80)].inactive, 2);

        // -Z: zero figures, the worker's counters untouched.
        hub.zero(None);
        let v = hub.view();
        assert_eq!(v.services[&key()].stats, DestStats::default());
        assert_eq!(v.services[&key()].inactive, 4, "connection counts are state, not zeroed");
        assert_eq!(w.w.dest_stats()[0].conns, 2);
        w.syns(&d, 2);
        let v = hub.view();
        assert_eq!(v.services[&key()].stats.conns, 2, "counts from the baseline");

        // Remove 10.0.0.3: the service keeps its traffic, the dest is gone.
        let mut m = model();
        m.services[0].dests.remove(1);
        d.apply(m).unwrap();
        w.syns(&d, 1);
        let v = hub.view();
        assert_eq!(v.services[&key()].stats.conns, 3, "2 since -Z + 1 new; removed traffic kept");
        assert!(!v.dests.contains_key(&(key(), "10.0.0.3".parse().unwrap(), 80)));
        let text = hub.metrics_text();
        let samples = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let get = |n: &str| samples.iter().find(|(name, _, _)| name == n).map(|s| s.2);
        assert_eq!(get("xvs_service_connections_total"), Some(7.0), "metrics count raw totals, -Z or not");
        assert_eq!(get("xvs_burst_duration_seconds_count"), Some(3.0), "one burst per syns()");
    }

    #[test]
    fn rates_come_from_the_estimators_and_zero_restarts_them() {
        let d = Arc::new(Director::new(model(), 1).unwrap());
        let hub = StatsHub::new(d.clone());
        let mut w = W::new(&d);
        hub.tick();
        // 400 connections in a "2 s" tick: 200/s, of which IPVS's smoothing
        // shows a quarter after one tick.
        w.syns(&d, 400);
        hub.tick();
        let r = hub.view().services[&key()].rate;
        assert_eq!(r.cps, 50);
        assert_eq!(r.inpps, 50);
        assert_eq!(hub.view().dests[&(key(), "10.0.0.2".parse().unwrap(), 80)].rate.cps, 25);
        hub.zero(Some(&key()));
        assert_eq!(hub.view().services[&key()].rate, crate::stats::Rate::default());
        hub.tick();
        assert_eq!(hub.view().services[&key()].rate.cps, 0, "no growth since -Z");
    }

    #[test]
    fn daemon_text_lists_every_worker_and_the_totals() {
        let d = Arc::new(Director::new(model(), 1).unwrap());
        let hub = StatsHub::new(d.clone());
        let mut w = W::new(&d);
        w.syns(&d, 3);
        let t = hub.daemon_text();
        assert!(t.contains("1 worker(s), snapshot 1"), "{t}");
        let row = t.lines().find(|l| l.starts_with("0 ")).unwrap_or_else(|| panic!("{t}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[..9], &["0", "0", "1", "1", "3", "3", "0", "0", "3"], "{t}");
        assert!(row.ends_with("1.5/1.5/1.5 us"), "{row}");
        assert!(t.contains("connections  new           3"), "{t}");
        assert!(t.contains("burst time   1 bursts"), "{t}");
    }

    /// configs/grafana/xvs.json asks only for metrics (and label values)
    /// this hub serves.
    #[test]
    fn the_grafana_dashboard_uses_metrics_that_exist() {
        let d = Arc::new(Director::new(model(), 1).unwrap());
        let hub = StatsHub::new(d.clone());
        let mut w = W::new(&d);
        w.syns(&d, 2);
        let text = hub.metrics_text();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/grafana/xvs.json");
        let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                exprs.push(t["expr"].as_str().unwrap().to_string());
            }
        }
        exprs.push(dash["templating"]["list"][0]["definition"].as_str().unwrap().to_string());
        assert!(exprs.len() > 15);
        let mut names = 0;
        for e in &exprs {
            let b = e.as_bytes();
            let mut i = 0;
            while let Some(at) = e[i..].find("xvs_") {
                let start = i + at;
                let end = start + e[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(e.len() - start);
                let name = &e[start..end];
                assert!(text.contains(&format!("# TYPE {name} ")), "{name} (in {e}) is not a metric xvs serves");
                names += 1;
                i = end.min(b.len());
            }
            for (label, values) in [("event", "tx_ring_full|kick_errors|bad_descriptors|handoff_full|handoff_overflow"), ("quantile", "0.5|0.99|0.999")] {
                if e.contains(&format!("{label}=")) {
                    for v in values.split('|') {
                        assert!(text.contains(&format!("{label}=\"{v}\"")), "{label}={v}");
                    }
                }
            }
        }
        assert!(names >= exprs.len());
    }
}
