//! What joins one worker to the sync thread, without a lock or an
//! allocation on the worker's side.
//!
//! - `events`: the worker pushes a [`SyncConn`] when a connection is due
//!   to be synced (IPVS's rules, see `worker::sync`); a full queue drops
//!   the event and counts it (`events_dropped`).
//! - `inbox`: the sync thread pushes received connections that this
//!   worker owns; the worker takes up to [`INBOX_PER_LOOP`] per loop,
//!   between bursts, and counts what it did with each.
//! - walks: the sync thread asks for the table (a bulk pull, or a refresh
//!   of the connections with recent traffic) by handing the worker a
//!   [`Walk`] with room for [`WALK_ROWS`] entries; the worker fills it a
//!   slice of its table per loop and hands it back, and gets it again
//!   (emptied) until its table is done. One walk per worker at a time.
//! - `params`: what the worker needs to know to produce events (whether
//!   a master daemon runs, the thresholds), published with a generation
//!   the worker checks once per loop.

use super::conn::SyncConn;
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Events a worker's queue holds.
pub const EVENTS: usize = 4096;
/// Received connections a worker's inbox holds.
pub const INBOX: usize = 4096;
/// Received connections a worker applies per loop at most.
pub const INBOX_PER_LOOP: usize = 256;
/// Entries a walk carries per hand-back.
pub const WALK_ROWS: usize = 2048;
/// Table slots a worker visits per loop while it walks.
pub const WALK_SLOTS: usize = 4096;

/// When a worker produces events (IPVS's sysctls, and xvs's additions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// A master daemon runs: produce events.
    pub master: bool,
    /// `sync_threshold`: a connection is synced at its `threshold`-th
    /// incoming packet ...
    pub threshold: u8,
    /// ... and every `period` packets after that (`sync_period`; 0: once).
    pub period: u8,
    /// Also sync TCP connections in SYN_RECV (IPVS does not).
    pub syn_recv: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params { master: false, threshold: 3, period: 50, syn_recv: false }
    }
}

/// What a walk collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkKind {
    /// Every connection and template (a bulk pull).
    All,
    /// Connections in a synced state whose last packet came within the
    /// last `ticks` (their backups' timers are that old at most): the
    /// `sync_refresh_period` pass.
    Recent { ticks: u32 },
}

/// A walk on its way to a worker and back.
#[derive(Debug)]
pub struct Walk {
    /// Tells this walk's hand-backs from a late one of an older walk.
    pub id: u64,
    pub kind: WalkKind,
    /// Room for [`WALK_ROWS`] entries (the worker never grows it).
    pub rows: Vec<SyncConn>,
    /// The worker's place in its table.
    pub cursor: usize,
    /// The worker's table is done (this is the last hand-back).
    pub done: bool,
}

impl Walk {
    pub fn new(id: u64, kind: WalkKind) -> Box<Walk> {
        Box::new(Walk { id, kind, rows: Vec::with_capacity(WALK_ROWS), cursor: 0, done: false })
    }
}

/// Why a received connection did not go into the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Refused {
    /// No service of this director matches it.
    NoService = 0,
    /// Its real server is not one of the service's here.
    NoDest,
    /// A FULLNAT connection whose local address is not the service's here.
    LocalAddr,
    /// A FULLNAT connection whose local port another worker owns (the
    /// directors run different numbers of workers).
    Owner,
    /// Its local port is held by another connection.
    PortTaken,
    /// The table is full.
    TableFull,
    /// Its keys clash with another connection's.
    Clash,
    /// A template of a service without persistence.
    NotPersistent,
}

impl Refused {
    pub const COUNT: usize = 8;
    pub const ALL: [Refused; Refused::COUNT] = [
        Refused::NoService,
        Refused::NoDest,
        Refused::LocalAddr,
        Refused::Owner,
        Refused::PortTaken,
        Refused::TableFull,
        Refused::Clash,
        Refused::NotPersistent,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Refused::NoService => "no_service",
            Refused::NoDest => "no_dest",
            Refused::LocalAddr => "local_addr",
            Refused::Owner => "owner",
            Refused::PortTaken => "port_taken",
            Refused::TableFull => "table_full",
            Refused::Clash => "clash",
            Refused::NotPersistent => "not_persistent",
        }
    }
}

/// A worker's sync figures (written by the worker only, read by anyone).
#[derive(Debug, Default)]
pub struct LinkStats {
    pub events_dropped: AtomicU64,
    /// Received connections added.
    pub added: AtomicU64,
    /// Received connections that updated one already there.
    pub updated: AtomicU64,
    pub refused: [AtomicU64; Refused::COUNT],
}

impl LinkStats {
    #[inline]
    pub fn bump(c: &AtomicU64) {
        // One writer: a load and a store, no locked instruction.
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// One worker's link. See the module docs.
#[derive(Debug)]
pub struct Link {
    pub events: ArrayQueue<SyncConn>,
    pub inbox: ArrayQueue<SyncConn>,
    walk_req: ArrayQueue<Box<Walk>>,
    walk_rep: ArrayQueue<Box<Walk>>,
    params_gen: AtomicU64,
    params: Mutex<Params>,
    pub stats: LinkStats,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            events: ArrayQueue::new(EVENTS),
            inbox: ArrayQueue::new(INBOX),
            walk_req: ArrayQueue::new(1),
            // Room for a late hand-back next to the awaited one.
            walk_rep: ArrayQueue::new(2),
            params_gen: AtomicU64::new(0),
            params: Mutex::new(Params::default()),
            stats: LinkStats::default(),
        }
    }
}

impl Link {
    /// Control side: new parameters for the worker.
    pub fn set_params(&self, p: Params) {
        *self.params.lock().unwrap_or_else(|e| e.into_inner()) = p;
        self.params_gen.fetch_add(1, Ordering::Release);
    }

    /// The parameters and their generation (the worker reads the
    /// generation once per loop and this only when it changed).
    pub fn params(&self) -> (u64, Params) {
        let g = self.params_gen.load(Ordering::Acquire);
        (g, *self.params.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The parameters' generation (one atomic load).
    #[inline]
    pub fn params_gen(&self) -> u64 {
        self.params_gen.load(Ordering::Acquire)
    }

    /// Control side: hands a walk to the worker (false: one is under way).
    pub fn post_walk(&self, w: Box<Walk>) -> bool {
        self.walk_req.push(w).is_ok()
    }

    /// Control side: a walk the worker handed back.
    pub fn take_walk(&self) -> Option<Box<Walk>> {
        self.walk_rep.pop()
    }

    /// Worker side: the walk to carry on with, if any.
    #[inline]
    pub fn next_walk(&self) -> Option<Box<Walk>> {
        self.walk_req.pop()
    }

    /// Worker side: hands a walk back (dropped if nobody collects them).
    pub fn hand_back(&self, w: Box<Walk>) {
        let _ = self.walk_rep.push(w);
    }

    /// Events dropped so far.
    pub fn events_dropped(&self) -> u64 {
        self.stats.events_dropped.load(Ordering::Relaxed)
    }
}
