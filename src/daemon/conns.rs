//! Connection listings (`xvsadm -L -c`) from workers that never wait.
//!
//! # Contract
//!
//! - Each worker's [`super::report::ReportSlot`] holds a [`ConnProbe`]:
//!   two bounded lock-free queues. The control plane puts a request in
//!   (a [`ConnSample`] whose row buffer it allocated, with room for
//!   [`SAMPLE_MAX`] rows); the worker looks for one between bursts (one
//!   queue read when there is none), copies live entries into the buffer
//!   at most [`SLOTS_PER_PASS`] table slots per loop, so a big table never
//!   holds a burst up, and sends the buffer back when its table is done or
//!   the buffer is full. The worker allocates nothing and never blocks.
//! - [`list`] asks every worker and waits up to [`WAIT`] for the answers.
//!   A worker with more entries than [`SAMPLE_MAX`] answers with the first
//!   ones it finds (`truncated`); one that does not answer in time (stopped,
//!   stuck) is named in `silent`. Callers say so to the operator.
//! - Entries added or removed while a worker copies may be missed or seen
//!   twice: the listing is a sample of a moving table, as
//!   `/proc/net/ip_vs_conn` is.

use super::report::ReportSlot;
use crate::ctl::ipvsadm::ConnEntry;
use crate::ipvs::conn::Conn;
use crate::ipvs::proto::TcpState;
use crate::ipvs::timer::TICKS_PER_SEC;
use crate::ipvs::Proto;
use crate::wire::Ip;
use crate::worker::Worker;
use crossbeam::queue::ArrayQueue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries one worker copies per listing at most.
pub const SAMPLE_MAX: usize = 4096;
/// Table slots a worker visits per loop while it answers.
pub const SLOTS_PER_PASS: usize = 4096;
/// How long [`list`] waits for the workers.
pub const WAIT: Duration = Duration::from_secs(1);

/// One connection entry as a worker copies it (plain data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRow {
    /// IP protocol number.
    pub proto: u8,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub dest: SocketAddr,
    /// `TcpState as u8` for TCP, 0 otherwise.
    pub state: u8,
    /// A persistence template.
    pub template: bool,
    /// Seconds until it expires.
    pub expire: u32,
}

impl ConnRow {
    fn of<A: Ip>(c: &Conn<A>, now: u32) -> ConnRow {
        let left = (c.expires.wrapping_sub(now) as i32).max(0) as u32;
        let sock = |a: A, p: u16| SocketAddr::new(a.into(), p);
        ConnRow {
            proto: c.proto,
            client: sock(c.caddr, c.cport),
            vip: sock(c.vaddr, c.vport),
            dest: sock(c.daddr, c.dport),
            state: c.state,
            template: c.is_template(),
            expire: left.div_ceil(TICKS_PER_SEC),
        }
    }

    /// As `ipvsadm -L -c` prints it; `None` for a protocol it cannot name.
    pub fn entry(&self) -> Option<ConnEntry> {
        let proto = Proto::from_number(self.proto)?;
        let state = if self.template {
            "NONE"
        } else if proto == Proto::Tcp {
            TcpState::from_u8(self.state).name()
        } else {
            "UDP"
        };
        Some(ConnEntry {
            proto,
            client: self.client,
            vip: self.vip,
            dest: self.dest,
            state: state.to_string(),
            expire: self.expire,
        })
    }
}

/// A request on its way to a worker and back.
#[derive(Debug)]
pub struct ConnSample {
    /// Tells this request's answer from a late answer to an older one.
    pub seq: u64,
    /// Room for the answer (the worker never grows it).
    pub rows: Vec<ConnRow>,
    /// The worker's place in its table.
    cursor: usize,
    /// The worker stopped because `rows` was full.
    pub truncated: bool,
}

impl ConnSample {
    /// A request with room for `cap` rows.
    pub fn new(seq: u64, cap: usize) -> Box<ConnSample> {
        Box::new(ConnSample {
            seq,
            rows: Vec::with_capacity(cap),
            cursor: 0,
            truncated: false,
        })
    }
}

/// The two queues between the control plane and one worker.
#[derive(Debug)]
pub struct ConnProbe {
    requests: ArrayQueue<Box<ConnSample>>,
    replies: ArrayQueue<Box<ConnSample>>,
}

impl Default for ConnProbe {
    fn default() -> Self {
        ConnProbe {
            requests: ArrayQueue::new(1),
            // Room for a late answer next to the awaited one.
            replies: ArrayQueue::new(2),
        }
    }
}

impl ConnProbe {
    /// Worker side, between bursts: carries on with `job` (or takes a new
    /// request into it) for one pass, and answers when done. `now` is the
    /// worker's clock in wheel ticks.
    #[inline]
    pub fn serve(&self, job: &mut Option<Box<ConnSample>>, w: &Worker, now: u32) {
        if job.is_none() {
            *job = self.requests.pop();
        }
        let Some(s) = job.as_mut() else { return };
        let cap = s.rows.capacity();
        // Both visitors fill the one buffer.
        let rows = std::cell::RefCell::new(&mut s.rows);
        let full = std::cell::Cell::new(false);
        let take = |r: ConnRow| {
            let mut rows = rows.borrow_mut();
            if rows.len() >= cap {
                full.set(true);
                return false;
            }
            rows.push(r);
            true
        };
        let done = w.visit_conns(
            &mut s.cursor,
            SLOTS_PER_PASS,
            |c| take(ConnRow::of(c, now)),
            |c| take(ConnRow::of(c, now)),
        );
        if done {
            // An entry found no room.
            s.truncated = full.get();
            if let Some(s) = job.take() {
                // Both reply places taken means nobody is collecting: the
                // answer is not wanted.
                let _ = self.replies.push(s);
            }
        }
    }
}

/// What [`list`] gathered.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sorted by protocol, client, virtual and real server address.
    pub entries: Vec<ConnEntry>,
    /// Workers with more entries than they could copy.
    pub truncated: Vec<u16>,
    /// Workers that did not answer within the wait.
    pub silent: Vec<u16>,
}

impl Listing {
    /// What the operator should know about the listing's completeness
    /// (`None`: it is complete).
    pub fn warning(&self, cap: usize) -> Option<String> {
        let mut w = Vec::new();
        if !self.truncated.is_empty() {
            w.push(format!(
                "worker(s) {:?} have more connections than the {cap} per worker a listing shows",
                self.truncated
            ));
        }
        if !self.silent.is_empty() {
            w.push(format!(
                "worker(s) {:?} did not answer within {} ms; their connections are missing",
                self.silent,
                WAIT.as_millis()
            ));
        }
        (!w.is_empty()).then(|| format!("xvsadm: {}", w.join("; ")))
    }
}

/// Asks every worker for up to `cap` entries and waits up to `wait`.
/// Callers serialise calls (one listing at a time) and give each a fresh
/// `seq`.
pub fn list(slots: &[Arc<ReportSlot>], cap: usize, wait: Duration, seq: u64) -> Listing {
    let mut pending: Vec<bool> = vec![false; slots.len()];
    for (i, s) in slots.iter().enumerate() {
        // Late answers to an earlier listing are not ours.
        while s.probe.replies.pop().is_some() {}
        pending[i] = s.probe.requests.push(ConnSample::new(seq, cap)).is_ok();
    }
    let mut out = Listing::default();
    let mut rows: Vec<ConnRow> = Vec::new();
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_micros(200);
    loop {
        for (i, s) in slots.iter().enumerate() {
            if !pending[i] {
                continue;
            }
            while let Some(r) = s.probe.replies.pop() {
                if r.seq == seq {
                    pending[i] = false;
                    if r.truncated {
                        out.truncated.push(i as u16);
                    }
                    rows.extend_from_slice(&r.rows);
                }
            }
        }
        if !pending.contains(&true) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    for (i, s) in slots.iter().enumerate() {
        if pending[i] {
            out.silent.push(i as u16);
            // Take the unanswered request back, if the worker never took it.
            let _ = s.probe.requests.pop();
        }
    }
    rows.sort_by_key(|r| (r.proto, r.template, r.client, r.vip, r.dest));
    out.entries = rows.iter().filter_map(ConnRow::entry).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::config;
    use crate::ctl::snapshot::Snapshot;

    use crate::daemon::DR_CONF as CONF;

    /// A worker holding `n` connections from 192.0.2.1 ports 1000.. .
    fn worker(n: u16) -> Worker {
        let snap = Arc::new(Snapshot::build(&config::load_str(CONF, "t").unwrap(), None).unwrap());
        let mut w = Worker::new(0, 1, snap, 1_000_000_000);
        crate::daemon::syns(&mut w, [192, 0, 2, 1], 1000..1000 + n);
        assert_eq!(w.conns(), n as usize);
        w
    }

    /// Runs the worker side until it answers (at most `passes` loops).
    fn answer(slot: &ReportSlot, w: &Worker, passes: usize) -> usize {
        let mut job = None;
        for i in 1..=passes {
            slot.probe.serve(&mut job, w, crate::ipvs::timer::ticks(1_000_000_000));
            if job.is_none() && !slot.probe.replies.is_empty() {
                return i;
            }
        }
        passes
    }

    #[test]
    fn a_worker_copies_its_entries_and_says_when_it_had_more() {
        let w = worker(5);
        let slot = Arc::new(ReportSlot::default());
        // No request: nothing happens.
        let mut job = None;
        slot.probe.serve(&mut job, &w, 0);
        assert!(job.is_none() && slot.probe.replies.is_empty());

        let s2 = slot.clone();
        let t = std::thread::spawn(move || list(&[s2], 3, Duration::from_secs(10), 7));
        while slot.probe.requests.is_empty() {
            std::thread::yield_now();
        }
        assert_eq!(answer(&slot, &w, 10), 1, "a small table is answered in one pass");
        let l = t.join().unwrap();
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.truncated, vec![0]);
        assert!(l.warning(3).unwrap().contains("more connections than the 3 per worker"));
        let e = &l.entries[0];
        assert_eq!((e.proto, e.state.as_str()), (Proto::Tcp, "SYN_RECV"));
        assert_eq!(e.vip, "10.0.0.100:80".parse().unwrap());
        assert_eq!(e.dest, "10.0.0.2:80".parse().unwrap());
        assert!(e.expire > 0 && e.expire <= 60, "{e:?}");
        let clients: Vec<u16> = l.entries.iter().map(|e| e.client.port()).collect();
        assert_eq!(clients, vec![1000, 1001, 1002], "sorted");
    }

    #[test]
    fn a_big_table_is_copied_over_several_passes() {
        let w = worker(20);
        let slot = ReportSlot::default();
        let mut s = ConnSample::new(1, 100);
        // Visit 8 slots per pass by hand: the cursor carries on.
        let mut passes = 0;
        loop {
            passes += 1;
            let rows = &mut s.rows;
            if w.visit_conns(&mut s.cursor, 8, |c| {
                rows.push(ConnRow::of(c, 0));
                true
            }, |_| true)
            {
                break;
            }
        }
        assert_eq!((passes, s.rows.len()), (3, 20));
        drop(slot);
    }

    #[test]
    fn a_silent_worker_is_named_and_its_request_taken_back() {
        let slot = Arc::new(ReportSlot::default());
        let l = list(std::slice::from_ref(&slot), 10, Duration::from_millis(20), 1);
        assert_eq!(l.silent, vec![0]);
        assert!(l.entries.is_empty());
        assert!(slot.probe.requests.is_empty());
        assert!(l.warning(10).unwrap().contains("did not answer"));
        // A late answer to that listing is not taken for the next one.
        let _ = slot.probe.replies.push(ConnSample::new(1, 1));
        let w = worker(2);
        let s2 = slot.clone();
        let t = std::thread::spawn(move || list(&[s2], 10, Duration::from_secs(10), 2));
        while slot.probe.requests.is_empty() {
            std::thread::yield_now();
        }
        answer(&slot, &w, 10);
        let l = t.join().unwrap();
        assert_eq!((l.entries.len(), l.warning(10)), (2, None));
    }
}
