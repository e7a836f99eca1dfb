//! Per-worker reports: how the control plane reads a worker's counters,
//! per-real-server traffic and load without touching the hot path.
//!
//! # Contract
//!
//! - Each worker owns one [`ReportSlot`] writer side ([`Reporter`]). Every
//!   [`REPORT_INTERVAL`] (checked against the clock the loop reads anyway)
//!   and once at exit, it copies its counters into a [`WorkerReport`] and
//!   publishes it with one pointer swap (`arc-swap`: an RCU-like
//!   single-writer slot). Readers ([`ReportSlot::load`]) get an immutable
//!   `Arc` of the last published report; they never block the worker and
//!   the worker never waits for them.
//! - Steady state allocates nothing: the worker fills the report it
//!   published two periods ago when no reader still holds it
//!   (`Arc::get_mut`), and allocates a fresh one only when a reader does.
//! - Between publications the figures are up to one interval old; the
//!   last report (at exit) is exact.
//! - The worker loop records the time of every burst it handled into the
//!   reporter's histogram ([`Reporter::record_burst`], no allocation: the
//!   histogram has fixed bounds and saturates), published with the report,
//!   and answers connection listings through the slot's
//!   [`ConnProbe`] ([`Reporter::serve_probe`]).

use super::conns::{ConnProbe, ConnSample};
use crate::io::xdp::IoStats;
use crate::ipvs::dest::DestLoad;
use crate::stats::{DestStats, WorkerCounters};
use crate::worker::Worker;
use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often a worker publishes its report.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// Longest burst time the histogram tells apart (1 s); longer ones count
/// as 1 s.
pub const BURST_NS_MAX: u64 = 1_000_000_000;

/// The per-burst time histogram: 1 ns to [`BURST_NS_MAX`], two significant
/// digits (about 20 KiB, copied into every report).
pub fn burst_histogram() -> Histogram<u64> {
    // Valid bounds: low 1, high >= 2 * low, sigfig 2.
    Histogram::new_with_bounds(1, BURST_NS_MAX, 2).expect("valid histogram bounds")
}

/// One real server's figures in one worker, by its uid (stable across
/// snapshots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestReport {
    pub uid: u32,
    pub stats: DestStats,
    pub load: DestLoad,
}

/// What a worker publishes.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    /// Worker index.
    pub worker: u16,
    /// The queue its sockets are bound to.
    pub queue: u32,
    /// The CPU it is pinned to (`None`: not pinned).
    pub core: Option<usize>,
    /// Generation of the snapshot it forwards with.
    pub generation: u64,
    pub counters: WorkerCounters,
    /// The AF_XDP driver's counters.
    pub io: IoStats,
    /// Frames this worker could not hand to their owner (its inbox was
    /// full): `counters`' `handoff_full` drops.
    pub handoff_full: u64,
    /// Connections tracked.
    pub conns: usize,
    /// Bytes its connection tables hold.
    pub conn_memory: usize,
    /// Per real server, in the snapshot's dest order.
    pub dests: Vec<DestReport>,
    /// FULLNAT local ports in use, per local address of the snapshot.
    pub laddrs: Vec<(IpAddr, u32)>,
    /// Time of each burst that handled frames, in nanoseconds, since the
    /// worker started (`None` until the first report).
    pub burst_ns: Option<Histogram<u64>>,
    /// Published after the worker stopped: the figures are final.
    pub last: bool,
    /// Publications so far (1 for the first): the watchdog's sign that the
    /// worker's loop runs (`daemon::notify`).
    pub seq: u64,
}

/// The slot readers load reports from.
#[derive(Debug, Default)]
pub struct ReportSlot {
    cur: ArcSwap<WorkerReport>,
    /// Connection listings asked of this worker.
    pub probe: ConnProbe,
    /// Connection sync's queues to and from this worker (`src/sync/link.rs`).
    pub sync: Arc<crate::sync::link::Link>,
}

impl ReportSlot {
    /// The last published report.
    pub fn load(&self) -> Arc<WorkerReport> {
        self.cur.load_full()
    }
}

/// The worker's side of a slot.
#[derive(Debug)]
pub struct Reporter {
    slot: Arc<ReportSlot>,
    /// The report published the time before last, refilled when no reader
    /// holds it any more.
    spare: Option<Arc<WorkerReport>>,
    burst: Histogram<u64>,
    /// The connection listing being copied, if any.
    job: Option<Box<ConnSample>>,
    /// Reports published.
    seq: u64,
}

impl Reporter {
    /// A reporter publishing into `slot`.
    pub fn new(slot: Arc<ReportSlot>) -> Reporter {
        Reporter {
            slot,
            spare: None,
            burst: burst_histogram(),
            job: None,
            seq: 0,
        }
    }

    /// Records the time one burst took (saturating at [`BURST_NS_MAX`];
    /// never allocates).
    #[inline]
    pub fn record_burst(&mut self, ns: u64) {
        self.burst.saturating_record(ns.max(1));
    }

    /// Between bursts: carries a connection listing on (see
    /// [`ConnProbe::serve`]). `now_ns` is the worker's clock.
    #[inline]
    pub fn serve_probe(&mut self, w: &Worker, now_ns: u64) {
        self.slot
            .probe
            .serve(&mut self.job, w, crate::ipvs::timer::ticks(now_ns));
    }

    /// Copies the worker's figures and publishes them.
    pub fn publish(
        &mut self,
        w: &Worker,
        io: &IoStats,
        meta: (u32, Option<usize>),
        last: bool,
    ) {
        let mut next = self.spare.take().unwrap_or_default();
        if Arc::get_mut(&mut next).is_none() {
            // A reader still holds it.
            next = Arc::new(WorkerReport::default());
        }
        let Some(r) = Arc::get_mut(&mut next) else {
            return;
        };
        let snap = w.snapshot();
        r.worker = w.id();
        r.queue = meta.0;
        r.core = meta.1;
        r.generation = snap.generation;
        r.counters.clone_from(w.counters());
        r.io = *io;
        r.handoff_full = r.counters.drops[crate::stats::DropReason::HandoffFull as usize];
        r.conns = w.conns();
        r.conn_memory = w.conn_memory();
        match r.burst_ns.as_mut() {
            // Same bounds: adding never resizes.
            Some(h) => {
                h.reset();
                let _ = h.add(&self.burst);
            }
            None => r.burst_ns = Some(self.burst.clone()),
        }
        r.laddrs.clear();
        for a in snap.services.iter().flat_map(|s| s.laddrs.iter()) {
            if !r.laddrs.iter().any(|(x, _)| x == a) {
                r.laddrs.push((*a, w.laddr_in_use(*a)));
            }
        }
        r.dests.clear();
        r.dests.extend(
            snap.dests
                .iter()
                .zip(w.dest_stats().iter().zip(w.loads()))
                .map(|(d, (s, l))| DestReport {
                    uid: d.uid,
                    stats: *s,
                    // The flag is the director's, not this worker's.
                    load: DestLoad { overloaded: d.shared.overloaded(), ..*l },
                }),
        );
        r.last = last;
        self.seq += 1;
        r.seq = self.seq;
        self.spare = Some(self.slot.cur.swap(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::snapshot::Snapshot;

    #[test]
    fn readers_see_each_publication_and_keep_theirs() {
        let slot = Arc::new(ReportSlot::default());
        let mut rep = Reporter::new(slot.clone());
        let mut w = Worker::new(3, 4, Arc::new(Snapshot::empty()), 1_000_000_000);
        w.count_refused(&crate::worker::Refused {
            handoff_full: 2,
            ..Default::default()
        });
        rep.publish(
            &w,
            &IoStats {
                rx: 5,
                ..IoStats::default()
            },
            (7, Some(1)),
            false,
        );
        let held = slot.load();
        assert_eq!(
            (held.worker, held.queue, held.core, held.io.rx),
            (3, 7, Some(1), 5)
        );
        assert_eq!(
            (
                held.counters.drops[crate::stats::DropReason::HandoffFull as usize],
                held.handoff_full
            ),
            (2, 2)
        );
        rep.publish(
            &w,
            &IoStats {
                rx: 9,
                ..IoStats::default()
            },
            (7, Some(1)),
            true,
        );
        assert_eq!(
            held.io.rx, 5,
            "a held report never changes under its reader"
        );
        let now = slot.load();
        assert_eq!((now.io.rx, now.last, now.seq), (9, true, 2));
        drop((held, now));
        for i in 0..4 {
            rep.publish(
                &w,
                &IoStats {
                    rx: i,
                    ..IoStats::default()
                },
                (7, None),
                false,
            );
            assert_eq!(slot.load().io.rx, i);
        }
    }

    #[test]
    fn burst_times_are_published_and_saturate() {
        let slot = Arc::new(ReportSlot::default());
        let mut rep = Reporter::new(slot.clone());
        let w = Worker::new(0, 1, Arc::new(Snapshot::empty()), 1_000_000_000);
        for ns in [0, 1_000, 2_000, 5 * BURST_NS_MAX] {
            rep.record_burst(ns);
        }
        rep.publish(&w, &IoStats::default(), (0, None), false);
        let held = slot.load();
        let h = held.burst_ns.as_ref().unwrap();
        assert_eq!(h.len(), 4);
        assert!(h.max() >= BURST_NS_MAX / 2 && h.max() <= BURST_NS_MAX * 2, "{}", h.max());
        rep.record_burst(3_000);
        // The held report keeps its figures; the next one has the new burst.
        rep.publish(&w, &IoStats::default(), (0, None), false);
        rep.publish(&w, &IoStats::default(), (0, None), false);
        assert_eq!(h.len(), 4);
        assert_eq!(slot.load().burst_ns.as_ref().unwrap().len(), 5);
    }
}
