//! What the page shows, as JSON: a [`Frame`] of the whole director once a
//! second, and the last 15 minutes of per-second points ([`History`]).
//!
//! # Contract
//!
//! - [`Sampler::sample`] reads the director's read side only: the
//!   configured and running models, the statistics hub's figures (the
//!   workers' last reports), the health checker's report and events. It
//!   never asks a worker anything; connection listings are separate
//!   (`/api/conns`, sliced by the workers as `xvsadm -L -c` is).
//! - A point holds per service and per real server the figures of the
//!   last interval computed from the totals' differences (new
//!   connections, packets and bytes per second) plus connection counts;
//!   a total that went back (`xvsadm -Z`) counts as zero, not negative.
//!   The share of new connections is computed by the page from `new`.
//! - [`History`] keeps [`HISTORY_POINTS`] points (15 minutes at one per
//!   second); ids are the service's ipvsadm selector (`-t 10.0.0.100:80`)
//!   and, for a real server, the service id, a space and `addr:port`.

use super::Ctx;
use crate::ctl::ipvsadm::{self, Figures, StatsView};
use crate::ctl::model::Model;
use crate::ctl::snapshot::fmt_sock;
use crate::daemon::health::HealthReport;
use crate::daemon::report::burst_histogram;
use crate::health::Event;
use crate::ipvs::service::{Service, ServiceKey};
use crate::stats::{DestStats, WorkerCounters};
use crate::sync::daemon::SyncView;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

/// 15 minutes of one point per second.
pub const HISTORY_POINTS: usize = 900;
/// Health events a frame carries at most (the newest).
pub const FRAME_EVENTS: usize = 100;

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Totals {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl From<DestStats> for Totals {
    fn from(s: DestStats) -> Totals {
        Totals { conns: s.conns, inpkts: s.inpkts, outpkts: s.outpkts, inbytes: s.inbytes, outbytes: s.outbytes }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheckView {
    pub name: String,
    pub up: bool,
    pub runs: u64,
    pub failures: u64,
    /// The last run passed; `null` before the first.
    pub last_ok: Option<bool>,
    pub last_failure: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HealthView {
    pub up: bool,
    /// Why it last changed state (empty before any transition).
    pub reason: String,
    pub on_failure: String,
    pub downs: u64,
    pub ups: u64,
    pub checks: Vec<CheckView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DestView {
    /// `addr:port` as ipvsadm writes it.
    pub id: String,
    /// `dr`, `tun`, `nat`, `fullnat`.
    pub fwd: &'static str,
    /// `v1` / `v2`: the PROXY protocol header its TCP connections get
    /// (`null`: none).
    pub proxy_protocol: Option<&'static str>,
    /// In the configuration (what xvsadm changes).
    pub weight: u32,
    /// What the workers schedule with (0 when quiesced by a health check;
    /// `null` when a failed check removed it).
    pub eff_weight: Option<u32>,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub active: u32,
    pub inactive: u32,
    pub persist: u32,
    pub totals: Totals,
    pub rate: Rates,
    /// `null`: not checked.
    pub health: Option<HealthView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Persist {
    pub timeout: u32,
    pub netmask: u8,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ServiceView {
    /// The ipvsadm selector, e.g. `-t 10.0.0.100:80`.
    pub id: String,
    /// `TCP 10.0.0.100:80`, `FWM 1`.
    pub name: String,
    pub sched: String,
    pub flags: Vec<&'static str>,
    pub persistence: Option<Persist>,
    pub active: u32,
    pub inactive: u32,
    pub persist: u32,
    pub totals: Totals,
    pub rate: Rates,
    pub dests: Vec<DestView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WorkerView {
    pub worker: u16,
    pub queue: u32,
    pub core: Option<usize>,
    pub generation: u64,
    pub rx: u64,
    pub tx: u64,
    pub drops: u64,
    pub handoffs: u64,
    pub conns: usize,
    pub new_conns: u64,
    pub tx_full: u64,
    pub sleeps: u64,
    /// Burst time percentiles in nanoseconds (`null` before any burst).
    pub burst_p50: Option<u64>,
    pub burst_p99: Option<u64>,
    pub burst_max: Option<u64>,
}

/// The burst-time histogram of all workers, in power-of-two buckets.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct BurstView {
    pub count: u64,
    /// `[upper bound ns, bursts]`, from 256 ns up to the largest seen.
    pub buckets: Vec<(u64, u64)>,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EventView {
    pub seq: u64,
    /// Unix milliseconds.
    pub t: u64,
    /// `down`, `up`, `weight`.
    pub kind: &'static str,
    pub service: String,
    pub dest: String,
    pub text: String,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct HealthSummary {
    pub checked: u64,
    pub down: u64,
    pub checks: u64,
    pub runs: u64,
    pub failures: u64,
}

/// Per-second figures of a service or a real server.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct PointFigures {
    /// New connections in the interval.
    pub new: u64,
    pub cps: f64,
    pub inpps: f64,
    pub outpps: f64,
    pub inbps: f64,
    pub outbps: f64,
    pub active: u32,
    pub inactive: u32,
}

/// One point of the history.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Point {
    /// Unix milliseconds.
    pub t: u64,
    pub svc: BTreeMap<String, PointFigures>,
    pub dest: BTreeMap<String, PointFigures>,
}

/// Everything the page shows, once a second.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Frame {
    /// Unix milliseconds.
    pub t: u64,
    pub version: &'static str,
    pub uptime: u64,
    pub generation: u64,
    pub services: Vec<ServiceView>,
    pub workers: Vec<WorkerView>,
    /// Counters of all workers (name, value), drops and passes apart.
    pub counters: Vec<(String, u64)>,
    /// Non-zero drop reasons of all workers.
    pub drops: Vec<(String, u64)>,
    pub passes: Vec<(String, u64)>,
    pub burst: BurstView,
    pub health: HealthSummary,
    /// The newest health events, oldest first.
    pub events: Vec<EventView>,
    /// Connection sync between directors: the roles this node runs, in
    /// sync or not, the peers heard; `null` without a sync service.
    pub sync: Option<SyncView>,
    /// This second's point (the page appends it to its history).
    pub point: Point,
}

/// The last [`HISTORY_POINTS`] points.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<Point>,
}

impl History {
    pub fn push(&mut self, p: Point) {
        if self.points.len() == HISTORY_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    pub fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The service id of `key` in `model` (its ipvsadm selector).
pub fn service_id(model: &Model, key: &ServiceKey) -> String {
    ipvsadm::rule_name(model, key)
}

fn rates(f: &Figures) -> Rates {
    let r = f.rate;
    Rates { cps: r.cps, inpps: r.inpps, outpps: r.outpps, inbps: r.inbps, outbps: r.outbps }
}

fn event_view(seq: u64, at: std::time::SystemTime, e: &Event) -> EventView {
    let t = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let kind = match e {
        Event::DestDown { .. } => "down",
        Event::DestUp { .. } => "up",
        Event::WeightChange { .. } => "weight",
    };
    EventView { seq, t, kind, service: e.service().to_string(), dest: e.dest().to_string(), text: e.to_string() }
}

/// Builds frames and points. See the module docs.
pub struct Sampler {
    started: Instant,
    /// Totals of the last sample, by point id.
    prev: HashMap<String, DestStats>,
    prev_at: Option<Instant>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    pub fn new() -> Sampler {
        Sampler { started: Instant::now(), prev: HashMap::new(), prev_at: None }
    }

    /// The per-second figures of `id` now that its totals are `cur`.
    fn point(&self, next: &mut HashMap<String, DestStats>, id: &str, cur: DestStats, f: &Figures, secs: f64) -> PointFigures {
        next.insert(id.to_string(), cur);
        let d = match self.prev.get(id) {
            Some(p) => DestStats {
                conns: cur.conns.saturating_sub(p.conns),
                inpkts: cur.inpkts.saturating_sub(p.inpkts),
                inbytes: cur.inbytes.saturating_sub(p.inbytes),
                outpkts: cur.outpkts.saturating_sub(p.outpkts),
                outbytes: cur.outbytes.saturating_sub(p.outbytes),
            },
            // First sight: nothing to compare with.
            None => DestStats::default(),
        };
        let per = |v: u64| if secs > 0.0 { (v as f64 / secs * 10.0).round() / 10.0 } else { 0.0 };
        PointFigures {
            new: d.conns,
            cps: per(d.conns),
            inpps: per(d.inpkts),
            outpps: per(d.outpkts),
            inbps: per(d.inbytes),
            outbps: per(d.outbytes),
            active: f.active,
            inactive: f.inactive,
        }
    }

    /// One frame of the whole director, and its point.
    pub fn sample(&mut self, ctx: &Ctx, now_ms: u64) -> Frame {
        let now = Instant::now();
        let secs = self.prev_at.map_or(0.0, |p| now.duration_since(p).as_secs_f64());
        let configured = ctx.director.model();
        let running = ctx.director.running_model();
        let stats: StatsView = ctx.hub.view();
        let health: HealthReport = ctx.health.as_ref().map(|h| h.report()).unwrap_or_default();
        let mut next = HashMap::new();
        let mut point = Point { t: now_ms, ..Point::default() };
        let services = configured
            .services
            .iter()
            .map(|s| self.service(&configured, &running, s, &stats, &health, &mut next, &mut point, secs))
            .collect();
        self.prev = next;
        self.prev_at = Some(now);

        let reports = ctx.director.reports();
        let mut total = WorkerCounters::default();
        let mut all = burst_histogram();
        let workers = reports
            .iter()
            .map(|r| {
                total.merge(&r.counters);
                let h = r.burst_ns.as_ref().filter(|h| !h.is_empty());
                if let Some(h) = h {
                    let _ = all.add(h);
                }
                WorkerView {
                    worker: r.worker,
                    queue: r.queue,
                    core: r.core,
                    generation: r.generation,
                    rx: r.counters.rx_packets,
                    tx: r.counters.tx_packets,
                    drops: r.counters.total_drops(),
                    handoffs: r.counters.handoffs,
                    conns: r.conns,
                    new_conns: r.counters.new_conns,
                    tx_full: r.io.tx_full,
                    sleeps: r.io.sleeps,
                    burst_p50: h.map(|h| h.value_at_quantile(0.5)),
                    burst_p99: h.map(|h| h.value_at_quantile(0.99)),
                    burst_max: h.map(|h| h.max()),
                }
            })
            .collect();
        let mut counters = Vec::new();
        let mut drops = Vec::new();
        let mut passes = Vec::new();
        for (k, v) in total.pairs() {
            if let Some(r) = k.strip_prefix("drop_") {
                if v > 0 {
                    drops.push((r.to_string(), v));
                }
            } else if let Some(r) = k.strip_prefix("pass_") {
                if v > 0 {
                    passes.push((r.to_string(), v));
                }
            } else {
                counters.push((k, v));
            }
        }
        drops.sort_by_key(|d| std::cmp::Reverse(d.1));
        let burst = burst_view(&all);
        let t = &health.totals;
        let summary = HealthSummary { checked: t.checked, down: t.down, checks: t.checks, runs: t.runs, failures: t.failures };
        let mut events: Vec<EventView> = ctx
            .health
            .as_ref()
            .map(|h| h.events(0).iter().map(|e| event_view(e.seq, e.at, &e.event)).collect())
            .unwrap_or_default();
        if events.len() > FRAME_EVENTS {
            events.drain(..events.len() - FRAME_EVENTS);
        }
        Frame {
            t: now_ms,
            version: env!("CARGO_PKG_VERSION"),
            uptime: self.started.elapsed().as_secs(),
            generation: ctx.director.published().generation(),
            services,
            workers,
            counters,
            drops,
            passes,
            burst,
            health: summary,
            events,
            sync: ctx.handler.sync().map(|s| s.view()),
            point,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn service(
        &self,
        configured: &Model,
        running: &Model,
        s: &Service,
        stats: &StatsView,
        health: &HealthReport,
        next: &mut HashMap<String, DestStats>,
        point: &mut Point,
        secs: f64,
    ) -> ServiceView {
        let id = service_id(configured, &s.key);
        let run_svc = running.services.iter().find(|r| r.key == s.key);
        let mut sum = Figures::default();
        let mut dests = Vec::with_capacity(s.dests.len());
        for d in &s.dests {
            let did = fmt_sock(d.addr, d.port);
            let run = run_svc.and_then(|r| r.dests.iter().find(|x| x.addr == d.addr && x.port == d.port));
            let f = stats.dests.get(&(s.key.clone(), d.addr, d.port)).copied().unwrap_or_default();
            sum.active += f.active;
            sum.inactive += f.inactive;
            sum.persist += f.persist;
            sum.stats.merge(&f.stats);
            sum.rate.add(&f.rate);
            let pid = format!("{id} {did}");
            let pf = self.point(next, &pid, f.stats, &f, secs);
            point.dest.insert(pid, pf);
            let hv = health_of(health, &s.key, d.addr, d.port);
            dests.push(DestView {
                id: did,
                fwd: d.fwd.name(),
                proxy_protocol: d.proxy.map(|v| v.name()),
                weight: d.weight,
                eff_weight: run.map(|r| r.weight),
                u_threshold: d.u_threshold,
                l_threshold: d.l_threshold,
                active: f.active,
                inactive: f.inactive,
                persist: f.persist,
                totals: f.stats.into(),
                rate: rates(&f),
                health: hv,
            });
        }
        // The service's own totals keep removed servers' traffic.
        let f = stats.services.get(&s.key).copied().unwrap_or(sum);
        let f = Figures { active: sum.active, inactive: sum.inactive, persist: sum.persist, ..f };
        let pf = self.point(next, &id, f.stats, &f, secs);
        point.svc.insert(id.clone(), pf);
        ServiceView {
            name: s.key.to_string(),
            sched: s.sched.clone(),
            flags: s.sched_flags.names(&s.sched),
            persistence: s.persistence.map(|p| Persist { timeout: p.timeout, netmask: p.netmask }),
            active: f.active,
            inactive: f.inactive,
            persist: f.persist,
            totals: f.stats.into(),
            rate: rates(&f),
            dests,
            id,
        }
    }
}

fn health_of(h: &HealthReport, svc: &ServiceKey, addr: IpAddr, port: u16) -> Option<HealthView> {
    let d = h.dests.iter().find(|d| &d.service == svc && d.dest.addr == addr && d.dest.port == port)?;
    let checks = d
        .checks
        .iter()
        .map(|name| match h.checks.iter().find(|c| &c.name == name) {
            Some(c) => CheckView {
                name: name.clone(),
                up: c.up,
                runs: c.runs,
                failures: c.failures,
                last_ok: c.last_ok,
                last_failure: c.last_failure.clone(),
            },
            None => CheckView { name: name.clone(), up: d.up, runs: 0, failures: 0, last_ok: None, last_failure: String::new() },
        })
        .collect();
    Some(HealthView {
        up: d.up,
        reason: d.reason.clone(),
        on_failure: format!("{:?}", d.on_failure).to_lowercase(),
        downs: d.downs,
        ups: d.ups,
        checks,
    })
}

/// Power-of-two buckets of the burst histogram and its percentiles.
fn burst_view(h: &hdrhistogram::Histogram<u64>) -> BurstView {
    if h.is_empty() {
        return BurstView::default();
    }
    let mut buckets = Vec::new();
    let mut lo = 0u64;
    let mut hi = 256u64;
    let max = h.max();
    loop {
        let n = h.count_between(lo, hi.saturating_sub(1).max(lo));
        buckets.push((hi, n));
        if hi > max || hi >= crate::daemon::report::BURST_NS_MAX {
            break;
        }
        lo = hi;
        hi *= 2;
    }
    BurstView {
        count: h.len(),
        buckets,
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_buckets_cover_every_burst() {
        let mut h = burst_histogram();
        for v in [100u64, 300, 300, 5000, 70_000] {
            h.record(v).unwrap();
        }
        let b = burst_view(&h);
        assert_eq!(b.count, 5);
        assert_eq!(b.buckets.iter().map(|x| x.1).sum::<u64>(), 5, "{:?}", b.buckets);
        assert_eq!(b.buckets[0], (256, 1));
        assert_eq!(b.buckets[1], (512, 2));
        assert!(b.buckets.last().unwrap().0 > 70_000);
        assert_eq!(burst_view(&burst_histogram()), BurstView::default());
    }

    #[test]
    fn history_keeps_fifteen_minutes() {
        let mut h = History::default();
        for t in 0..(HISTORY_POINTS as u64 + 10) {
            h.push(Point { t, ..Point::default() });
        }
        assert_eq!(h.len(), HISTORY_POINTS);
        assert_eq!(h.points()[0].t, 10);
    }
}
