//! The worker: a run-to-completion loop over bursts of frames.
//!
//! A worker owns its connection tables, scheduler states, per-dest load and
//! counters; nothing on its path is shared or locked. It does not know its
//! I/O driver: a driver hands it a burst of [`Frame`]s and gets one
//! [`Verdict`] per frame back. The control plane publishes new
//! [`Snapshot`]s; the driver gives the current one to the worker between
//! bursts ([`Worker::set_snapshot`]).
//!
//! Per frame (Katran's `process_packet` shape, early returns):
//!
//! 1. parse and validate (`wire::parse`) — bad frames are counted drops;
//! 2. ICMP errors about a tracked connection go to the cold relay path;
//! 3. connection lookup: one hash lookup finds both directions; a hit is
//!    always this worker's own flow (only a flow's owner adds its keys);
//! 4. on a miss, ownership — with several workers, a frame whose flow
//!    another worker owns is handed over (the client side of the flow, or
//!    for FULLNAT replies the local port, names the owner);
//! 5. then: service lookup, scheduling, a new connection;
//! 6. TCP state machine, timeout refresh, accounting;
//! 7. transmit by the connection's forwarding method (a single `match`).
//!
//! A burst runs step 1 and the hashing of step 3 for all its frames first,
//! prefetching what their lookups will touch, so that the cache misses of
//! a big table overlap ([`burst`]).

use crate::ipvs::dest::Hop;
use crate::ipvs::conn::{flags, Conn, ConnTable, Key, NO_CANDIDATE};
use crate::ipvs::dest::{DestLoad, SharedLoad};
use crate::ipvs::laddr::{port_owner, LocalPorts, PoolKey};
use crate::ipvs::mem::{Provider, ReserveStats};
use crate::ipvs::proto::{tcp_next, TcpDir, TcpState, Timeouts};
use crate::ipvs::sched::{SchedCtx, SchedState};
use crate::ipvs::seqadj::{self, SeqAdjTable, HOP_TO_LEARN, SEQ_ADJ};
use crate::ipvs::synproxy::{self, SynOpts};
use crate::ipvs::service::{Persistence, ServiceKey};
use crate::ipvs::snapshot::Snapshot;
use crate::ipvs::timer;
use crate::ipvs::xmit::{self, tun::TunError};
use crate::ipvs::FwdMethod;
use crate::stats::{DestStats, Dir, DropReason, PassReason, WorkerCounters};
use crate::wire::icmp::{self, ErrorKind};
use crate::wire::{checksum, dst_mac, tcpseq, frag_id, proto, src_mac, tcp_flags, vlan_id, Frame, Ip, Meta, Reject, FRAG_LATER};
#[cfg(test)]
use crate::wire::parse;
use frag::{FragKey, FragTable, Follow};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Frames per burst the drivers use.
pub const BURST: usize = 32;

/// Connections the wheel looks at per burst at most (bounds the time a
/// burst can spend expiring).
const EXPIRE_BUDGET: usize = 256;

/// Index buckets a burst moves while the index grows (about 2–6 µs; see
/// `ConnTable::maintain`).
const MIGRATE_PER_BURST: usize = 32;

/// Entries a full table's eviction looks at, at most, for one embryonic
/// connection (drop_entry).
const EVICT_BUDGET: usize = 64;

/// `Conn::dest` value when the real server no longer exists.
const NO_DEST: u32 = u32::MAX;

/// Verdicts a driver could not carry out, for [`Worker::count_refused`]:
/// `Tx` frames it could not queue (a full ring; an invalid port or range,
/// as (frames, bytes)) and `Handoff` frames it could not deliver (the
/// owner's inbox was full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    pub tx_full: (u64, u64),
    pub tx_invalid: (u64, u64),
    pub handoff_full: u64,
    /// `Handoff` frames whose range lay outside their buffer (a bug).
    pub handoff_invalid: u64,
}

impl Refused {
    /// True when nothing was refused.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.tx_full.0 == 0 && self.tx_invalid.0 == 0 && self.handoff_full == 0 && self.handoff_invalid == 0
    }
}

/// What to do with a frame after processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on port `port`.
    Tx { port: u8 },
    /// Drop it (counted under the reason).
    Drop(DropReason),
    /// Not ours: give it to the kernel (counted under the reason).
    Pass(PassReason),
    /// Another worker owns its flow: hand the frame to it.
    Handoff { worker: u16 },
}

/// The connection tables, one per address family.
struct Tables {
    v4: ConnTable<Ipv4Addr>,
    v6: ConnTable<Ipv6Addr>,
}

/// Selects a family's table: lets the pipeline be generic over [`Ip`].
trait Family: Ip {
    fn table(t: &mut Tables) -> &mut ConnTable<Self>;
}

impl Family for Ipv4Addr {
    #[inline]
    fn table(t: &mut Tables) -> &mut ConnTable<Self> {
        &mut t.v4
    }
}

impl Family for Ipv6Addr {
    #[inline]
    fn table(t: &mut Tables) -> &mut ConnTable<Self> {
        &mut t.v6
    }
}

/// A deterministic hash of a (masked) client address, the same in every
/// worker and every run, so ownership is computable from any packet.
#[inline]
pub fn shard_hash(addr: &[u8]) -> u32 {
    // FNV-1a over the bytes, then a murmur3 finaliser to spread low bits.
    let mut h: u32 = 0x811c_9dc5;
    for &b in addr {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// One worker. See the module docs.
pub struct Worker {
    id: u16,
    workers: u16,
    snap: Arc<Snapshot>,
    tables: Tables,
    /// Per service (snapshot index): this worker's scheduler state.
    sched: Vec<SchedState>,
    /// Per dest (snapshot index): this worker's load and traffic. The
    /// load is this worker's share (reports add the workers'); every
    /// change is also made to the director-wide count
    /// ([`DestEntry::shared`](crate::ipvs::dest::DestEntry::shared)),
    /// which is what the schedulers and the thresholds see, once per
    /// burst (`shared`).
    load: Vec<DestLoad>,
    /// This burst's changes to the director-wide counts, added at its
    /// end ([`SharedDue`], [`Worker::flush_shared`]).
    shared: SharedDue,
    dstats: Vec<DestStats>,
    lports: LocalPorts,
    counters: WorkerCounters,
    now_ns: u64,
    now: u32,
    /// The outer IPv4 ids of tunnelled packets (its own, disjoint from
    /// the other workers').
    ip_id: xmit::tun::IpIds,
    /// Fragments of tunnelled datagrams beyond the first, until the driver
    /// sends them ([`Worker::drain_staged`]).
    staged: xmit::tun::Staged,
    /// The tick of the last eviction search that found nothing: a full
    /// table of live connections costs one search per tick, not one per
    /// SYN of a flood.
    evict_miss: u32,
    /// Per port, its MAC as a number ([`mac48`]); `u64::MAX` (no frame
    /// reads as that: its low 16 bits are 0 or 1) for ports that do not
    /// exist. Inline, indexed by the port byte: the L2 check of a frame is
    /// one load, a shift and one compare.
    port_mac: [u64; 256],
    /// Per port: a NIC, whose frames carry complete checksums
    /// ([`Worker::set_nic_port`]); the burst's parse skips the partial
    /// checksum test for them ([`crate::wire::parse_nic`]).
    nic_port: [bool; 256],
    /// The snapshot's timeouts in ticks (`timer::secs` of each), so that
    /// a packet's new expiry is a load and an add.
    ticks: Timeouts,
    /// The same for a full FULLNAT port pool.
    port_evict_miss: u32,
    /// drop_entry's rate counters, by packets seen (`todrop_entry`).
    todrop: [u8; 9],
    /// What became of recent first fragments (`frag`).
    frags: FragTable,
    /// Connection sync events go here while a master daemon runs.
    sync: Option<sync::SyncTap>,
    /// The rate limit of the ICMP errors it builds (its share).
    icmp_limit: TokenBucket,
    /// Sequence adjustment entries of the IPv4 and IPv6 tables'
    /// connections, by slot (`ipvs::seqadj`).
    seqadj: [SeqAdjTable; 2],
    /// The SYN proxy's cookie secret (`ipvs::synproxy`), drawn at start.
    syn_secret: synproxy::Secret,
}

/// A MAC as a number: the six bytes, little endian, in the high 48 bits
/// (what an 8-byte load of the frame start shifted left by 16 reads).
#[inline(always)]
fn mac48(m: &[u8; 6]) -> u64 {
    u64::from_le_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// Per dest (snapshot index): changes to the director-wide count not
/// added yet (`active << 32 | inactive`, wrapping), and the dests that
/// have one. Opening a connection and moving it between active and
/// inactive add here; the burst's end adds each dest's sum to the shared
/// count with one atomic add: two workers opening connections to the same
/// servers then exchange the count's cache line once per burst, not once
/// per connection. This worker's schedulers see the count with its own
/// changes added (`SchedCtx::due`), the other workers' at most one burst
/// late (IPVS's, too, may pass a threshold by one connection per other
/// CPU). A server with an upper threshold is counted at once.
#[derive(Debug, Default)]
struct SharedDue {
    due: Vec<u64>,
    dirty: Vec<u32>,
}

impl SharedDue {
    /// Adds `delta` to dest `di`'s pending change.
    #[inline]
    fn add(&mut self, di: usize, delta: u64, snap: &Snapshot, load: &mut [DestLoad]) {
        let Some(&p) = self.due.get(di) else {
            return;
        };
        if p == 0 {
            if self.dirty.len() == self.dirty.capacity() {
                // A dest back to zero and changed again, listed twice:
                // adding now keeps the list from growing.
                self.flush(snap, load);
            }
            self.dirty.push(di as u32);
        }
        self.due[di] = self.due[di].wrapping_add(delta);
    }

    /// One atomic add per dest changed, its overloaded flag evaluated as
    /// IPVS does when it binds or unbinds a connection.
    fn flush(&mut self, snap: &Snapshot, load: &mut [DestLoad]) {
        for di in self.dirty.drain(..) {
            let di = di as usize;
            let delta = std::mem::take(&mut self.due[di]);
            if let (true, Some(d), Some(l)) = (delta != 0, snap.dests.get(di), load.get_mut(di)) {
                d.shared.add(delta, d.u_threshold, d.l_threshold);
                l.overloaded = d.shared.overloaded();
            }
        }
    }
}

impl Worker {
    /// Worker `id` of `workers`, forwarding with `snap`, its clock at
    /// `now_ns` (monotonic nanoseconds).
    pub fn new(id: u16, workers: u16, snap: Arc<Snapshot>, now_ns: u64) -> Worker {
        let now = timer::ticks(now_ns);
        let mut w = Worker {
            id,
            workers: workers.max(1),
            tables: Tables { v4: ConnTable::new(snap.max_conns, now), v6: ConnTable::new(snap.max_conns, now) },
            sched: Vec::new(),
            load: Vec::new(),
            shared: SharedDue::default(),
            dstats: Vec::new(),
            lports: LocalPorts::new(id, workers.max(1)),
            counters: WorkerCounters::default(),
            now_ns,
            now,
            ip_id: xmit::tun::IpIds::new(id, workers),
            staged: xmit::tun::Staged::new(),
            evict_miss: now.wrapping_sub(1),
            port_mac: [u64::MAX; 256],
            nic_port: [false; 256],
            ticks: Timeouts::default(),
            port_evict_miss: now.wrapping_sub(1),
            todrop: [0; 9],
            frags: FragTable::default(),
            icmp_limit: TokenBucket::share(snap.icmp_limit.0, snap.icmp_limit.1, workers.max(1), now_ns),
            seqadj: Default::default(),
            syn_secret: synproxy::Secret::random(),
            snap: Arc::new(Snapshot::default()),
            sync: None,
        };
        w.set_snapshot(snap);
        w
    }

    /// Sets the SYN proxy's cookie secret (tests and replays, which need
    /// cookies they can compute; a worker draws its own at start).
    pub fn set_synproxy_secret(&mut self, s: synproxy::Secret) {
        self.syn_secret = s;
    }

    /// This worker's index.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// Switches to a new snapshot (between bursts). Counters, loads and
    /// scheduler states follow their services and dests by uid;
    /// connections re-bind lazily on their next packet.
    pub fn set_snapshot(&mut self, new: Arc<Snapshot>) {
        // Pending changes are by the old snapshot's dest indexes.
        self.flush_shared();
        let old = std::mem::replace(&mut self.snap, new);
        let new = &self.snap;
        let mut load = vec![DestLoad::default(); new.dests.len()];
        let mut dstats = vec![DestStats::default(); new.dests.len()];
        for (i, d) in new.dests.iter().enumerate() {
            if let Some(j) = old.dest_index(d.uid) {
                load[i] = self.load[j as usize];
                dstats[i] = self.dstats[j as usize];
            }
        }
        let mut old_sched = std::mem::take(&mut self.sched);
        let mut sched = Vec::with_capacity(new.services.len());
        for s in &new.services {
            // Randomised schedulers (twos) draw from a per-worker, per-service seed.
            let seed = ((self.id as u64) << 32) | s.uid as u64;
            let kept = old.svc_index(s.uid).map(|j| {
                let o = &old.services[j as usize];
                let st = std::mem::replace(&mut old_sched[j as usize], s.table.new_state());
                let same = o.sched == s.sched
                    && o.dests.len() == s.dests.len()
                    && old.dests[o.dests.clone()]
                        .iter()
                        .zip(&new.dests[s.dests.clone()])
                        .all(|(a, b)| a.uid == b.uid && a.weight == b.weight);
                (st, same, o.sched != s.sched)
            });
            sched.push(match kept {
                Some((st, true, _)) => st,
                Some((mut st, false, switched)) => {
                    s.table.changed(&mut st);
                    if switched {
                        st.seed(seed);
                    }
                    st
                }
                None => {
                    let mut st = s.table.new_state();
                    st.seed(seed);
                    st
                }
            });
        }
        self.load = load;
        self.shared = SharedDue { due: vec![0; self.snap.dests.len()], dirty: Vec::with_capacity(self.snap.dests.len().max(1)) };
        self.dstats = dstats;
        self.sched = sched;
        // One port pool per (local address, real server address and
        // port) of every FULLNAT real server.
        self.lports.sync(new.dests.iter().map(|d| {
            let laddrs: &[IpAddr] = if d.fwd == FwdMethod::FullNat { &new.services[d.svc as usize].laddrs } else { &[] };
            laddrs
                .iter()
                .filter(|l| l.is_ipv4() == d.addr.is_ipv4())
                .map(move |&laddr| PoolKey { laddr, daddr: d.addr, dport: d.port })
        }));
        self.tables.v4.set_max(new.max_conns);
        self.tables.v6.set_max(new.max_conns);
        let (rate, burst) = new.icmp_limit;
        self.icmp_limit.reshape(TokenBucket::share(rate, burst, self.workers, self.now_ns));
        self.port_mac = [u64::MAX; 256];
        for (m, p) in self.port_mac.iter_mut().zip(&new.ports) {
            *m = mac48(&p.mac);
        }
        self.ticks = Timeouts { tcp: new.timeouts.tcp.map(timer::secs), udp: timer::secs(new.timeouts.udp) };
    }

    /// Says whether `port` is a NIC whose frames have complete checksums
    /// (a physical one: not a veth, tun or other virtual device, nor a
    /// paravirtual NIC, which may pass a same-host sender's partial sum
    /// through; `daemon::run::full_checksums` decides), so the burst
    /// skips the partial test on its common frames. A port is not one
    /// until said (the test is then made).
    pub fn set_nic_port(&mut self, port: u8, nic: bool) {
        self.nic_port[port as usize] = nic;
    }

    /// Counts a frame its driver dropped before the worker saw it.
    pub fn count_drop(&mut self, r: DropReason) {
        self.counters.rx_packets += 1;
        self.counters.drop(r);
    }

    /// Counts a frame for the kernel (`Pass(r)`) that its driver could not
    /// give it (the kernel path's queue was full, or there is none): it is
    /// dropped (`kernel_full`), not passed.
    #[cold]
    pub fn count_kernel_full(&mut self, r: PassReason) {
        self.counters.passes[r as usize] = self.counters.passes[r as usize].saturating_sub(1);
        self.counters.drop(DropReason::KernelFull);
    }

    /// Counts what the driver could not do with verdicts the worker gave
    /// (see [`Refused`]): forwarded frames it could not transmit are
    /// dropped, not transmitted; frames it could not hand to their owner
    /// are dropped, not handed off.
    #[cold]
    pub fn count_refused(&mut self, r: &Refused) {
        let c = &mut self.counters;
        for (reason, (n, bytes)) in [(DropReason::TxFull, r.tx_full), (DropReason::TxInvalid, r.tx_invalid)] {
            c.tx_packets = c.tx_packets.saturating_sub(n);
            c.tx_bytes = c.tx_bytes.saturating_sub(bytes);
            c.drops[reason as usize] += n;
        }
        c.handoffs = c.handoffs.saturating_sub(r.handoff_full + r.handoff_invalid);
        c.drops[DropReason::HandoffFull as usize] += r.handoff_full;
        c.drops[DropReason::TxInvalid as usize] += r.handoff_invalid;
    }

    /// Counts frames other workers handed to this one (they are counted as
    /// received when processed).
    #[inline]
    pub fn count_handed_in(&mut self, n: usize) {
        self.counters.handed_in += n as u64;
    }

    /// Counters so far.
    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    /// Per-dest (snapshot index) load.
    pub fn loads(&self) -> &[DestLoad] {
        &self.load
    }

    /// Per-dest (snapshot index) traffic.
    pub fn dest_stats(&self) -> &[DestStats] {
        &self.dstats
    }

    /// Connections and templates tracked (both families).
    pub fn conns(&self) -> usize {
        self.tables.v4.len() + self.tables.v6.len()
    }

    /// Approximate bytes held by the connection tables.
    pub fn conn_memory(&self) -> usize {
        self.tables.v4.memory() + self.tables.v6.memory()
    }

    /// FULLNAT local ports this worker has in use on `addr`.
    pub fn laddr_in_use(&self, addr: IpAddr) -> u32 {
        self.lports.in_use(addr)
    }

    /// Visits every IPv4 / IPv6 connection (listings).
    pub fn for_each_conn(&self, mut v4: impl FnMut(&Conn<Ipv4Addr>), mut v6: impl FnMut(&Conn<Ipv6Addr>)) {
        self.tables.v4.for_each(|_, c| v4(c));
        self.tables.v6.for_each(|_, c| v6(c));
    }

    /// Visits the connection tables a slice at a time, so a listing never
    /// holds the worker up for long: at most `slots` slots from `*cursor`
    /// on (the IPv4 table's, then the IPv6 table's), calling `v4` / `v6` on
    /// the live entries until one returns `false`. Moves `*cursor` on and
    /// returns `true` when the tables are done or a visitor said stop.
    /// Entries added or freed between calls may be missed or seen twice:
    /// the result is a sample, not a snapshot.
    pub fn visit_conns(
        &self,
        cursor: &mut usize,
        slots: usize,
        mut v4: impl FnMut(&Conn<Ipv4Addr>) -> bool,
        mut v6: impl FnMut(&Conn<Ipv6Addr>) -> bool,
    ) -> bool {
        let n4 = self.tables.v4.slots();
        let all = n4 + self.tables.v6.slots();
        let end = cursor.saturating_add(slots).min(all);
        while *cursor < end {
            let i = *cursor;
            *cursor += 1;
            let go = if i < n4 {
                self.tables.v4.slot(i).map_or(true, &mut v4)
            } else {
                self.tables.v6.slot(i - n4).map_or(true, &mut v6)
            };
            if !go {
                return true;
            }
        }
        *cursor >= all
    }

    /// Sets the clock (monotonic ns); drivers call it once per burst.
    #[inline]
    pub fn set_clock(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        self.now = timer::ticks(now_ns);
    }

    /// Processes a burst: a bounded slice of connection expiry first (so
    /// the burst does not meet what is due), then one verdict per frame
    /// (`verdicts` at least as long as `frames`).
    pub fn process_burst(&mut self, frames: &mut [Frame<'_>], verdicts: &mut [Verdict], now_ns: u64) {
        if !self.staged.is_empty() {
            self.drop_staged();
        }
        self.set_clock(now_ns);
        self.expire(EXPIRE_BUDGET);
        self.maintain(MIGRATE_PER_BURST);
        for (fr, v) in frames.chunks_mut(BURST).zip(verdicts.chunks_mut(BURST)) {
            self.run_burst(fr, v);
        }
        self.flush_shared();
    }

    /// Adds the pending changes to the director-wide counts (see
    /// `SharedDue`). Done at the end of every burst and of
    /// [`Worker::process`], and before a snapshot changes.
    pub fn flush_shared(&mut self) {
        self.shared.flush(&self.snap, &mut self.load);
    }

    /// Gives the frames the last burst made beside its own (the fragments
    /// after the first of a tunnelled datagram, [`xmit::tun::fragment`]),
    /// in order, to `send` (port, bytes), which returns whether it queued
    /// the frame for transmission. They were counted as transmitted; what
    /// `send` refuses becomes a `tx_full` drop. Drivers call it after
    /// every burst: the next burst drops what is left, counted so.
    pub fn drain_staged(&mut self, send: impl FnMut(u8, &[u8]) -> bool) {
        let refused = self.staged.drain(send);
        if refused.0 > 0 {
            self.count_refused(&Refused { tx_full: refused, ..Refused::default() });
        }
    }

    /// The frames [`Worker::drain_staged`] would give, with the address of
    /// the buffer of the frame each was cut from, for drivers that write
    /// them beside it ([`Worker::clear_staged`] afterwards).
    pub fn staged(&self) -> impl Iterator<Item = (usize, u8, &[u8])> {
        self.staged.iter()
    }

    /// Forgets the staged frames (after [`Worker::staged`]: sent).
    pub fn clear_staged(&mut self) {
        self.staged.clear();
    }

    /// Staged frames a driver did not take (see [`Worker::drain_staged`]).
    #[cold]
    fn drop_staged(&mut self) {
        self.drain_staged(|_, _| false);
    }

    /// Moves up to `budget` buckets of each family's growing index into its
    /// new array (done a little every burst; an idle worker may do more).
    /// Returns whether a table still has some to move.
    #[inline]
    pub fn maintain(&mut self, budget: usize) -> bool {
        let a = self.tables.v4.maintain(budget);
        let b = self.tables.v6.maintain(budget);
        a || b
    }

    /// Has the connection tables take their memory from `provider`, whose
    /// thread faults it in ahead of need (`ipvs::mem`): a table growing
    /// under a SYN storm then never waits for the kernel to zero pages.
    pub fn attach_memory(&mut self, provider: &Provider) {
        self.tables.v4.attach(provider);
        self.tables.v6.attach(provider);
    }

    /// Sizes both families' connection indexes for the snapshot's
    /// `max_conns` now, their memory faulted in ([`ConnTable::presize`]):
    /// called once at start, so that a SYN storm filling the tables never
    /// grows an index inside a burst. Two keys a connection when a real
    /// server is NAT or FULLNAT (the reply's key), else one. Returns the
    /// indexes' bytes.
    pub fn presize_tables(&mut self) -> usize {
        let keys = if self.snap.dests.iter().any(|d| matches!(d.fwd, FwdMethod::Nat | FwdMethod::FullNat)) { 2 } else { 1 };
        self.tables.v4.presize(keys) + self.tables.v6.presize(keys)
    }

    /// Blocks of table memory taken ready from the provider, and mapped by
    /// the worker itself (both families).
    pub fn memory_supply(&self) -> ReserveStats {
        let (a, b) = (self.tables.v4.reserve_stats(), self.tables.v6.reserve_stats());
        ReserveStats { ready: a.ready + b.ready, inline: a.inline + b.inline }
    }

    /// Expires due connections, looking at most at `budget` entries per
    /// family. Returns how many were freed.
    pub fn expire(&mut self, budget: usize) -> usize {
        self.flush_shared();
        let now = self.now;
        let snap = &self.snap;
        let load = &mut self.load;
        let lports = &mut self.lports;
        let counters = &mut self.counters;
        let a = self.tables.v4.expire(now, budget, |c| release(c, now, snap, load, lports, counters));
        let b = self.tables.v6.expire(now, budget, |c| release(c, now, snap, load, lports, counters));
        a + b
    }

    /// Processes one frame (the clock must have been set).
    #[inline]
    pub fn process(&mut self, fr: &mut Frame<'_>) -> Verdict {
        let p = burst::prepare(self, fr);
        let v = self.process_prepared(fr, &p);
        self.flush_shared();
        v
    }

    /// Processes a frame parsed and hashed by the burst's first stage.
    #[inline(always)]
    fn process_prepared(&mut self, fr: &mut Frame<'_>, p: &burst::Prepared) -> Verdict {
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += fr.len as u64;
        let v = match p.meta {
            Ok(m) if m.frag != 0 => self.fragment(fr, m, p.hash),
            Ok(m) if m.v6 => {
                let key = burst::key_of(fr.data(), &m);
                self.process_af::<Ipv6Addr>(fr, m, p.hash, key, p.cand)
            }
            // (A V4 TCP/UDP frame's key from the first stage; any other
            // frame's is not read.)
            Ok(m) => self.process_af::<Ipv4Addr>(fr, m, p.hash, p.key4, p.cand),
            Err(Reject::Drop(r)) => Verdict::Drop(r),
            Err(Reject::Pass(r)) => Verdict::Pass(r),
        };
        match v {
            Verdict::Tx { .. } => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += fr.len as u64;
            }
            Verdict::Drop(r) => self.counters.drop(r),
            Verdict::Pass(r) => self.counters.pass(r),
            Verdict::Handoff { .. } => self.counters.handoffs += 1,
        }
        v
    }

    /// What the kernel in front of IPVS does with a frame that is not for
    /// this host, decided on L2 alone: a unicast frame to another MAC
    /// (PACKET_OTHERHOST: flooded by a switch, e.g. to a VRRP backup) or
    /// with a VLAN id none of the port's sub-interfaces has is dropped; a
    /// broadcast or multicast one is left to the kernel (IPVS schedules
    /// PACKET_HOST frames only). `None`: the frame is ours.
    ///
    /// Only for frames that are not untagged and to their port's MAC: the
    /// burst's first stage answers that with one compare of the MAC as a
    /// number, so the common frame never comes here, and what is not ours
    /// becomes a reject like a malformed frame.
    #[cold]
    #[inline(never)]
    fn not_for_us(&self, fr: &Frame<'_>, m: &Meta) -> Option<Reject> {
        let f = fr.data();
        if f[0] & 1 != 0 {
            return Some(Reject::Pass(PassReason::NotHost));
        }
        if !self.snap.is_own_mac(fr.port, &dst_mac(f)) {
            return Some(Reject::Drop(DropReason::OtherHost));
        }
        let vid = vlan_id(f, m);
        // VLAN 0 is a priority tag: the port's own frame.
        if vid != 0 && !self.snap.has_vid(fr.port, vid) {
            return Some(Reject::Drop(DropReason::UnknownVlan));
        }
        None
    }

    /// The link a frame arrived on (its port, or the port's VLAN
    /// sub-interface of its tag).
    #[cold]
    fn ingress_link(&self, fr: &Frame<'_>, m: &Meta) -> u8 {
        self.snap.link_of(fr.port, vlan_id(fr.data(), m)).unwrap_or(fr.port)
    }

    /// The worker that owns the flow of the packet `key` describes: the
    /// client address, masked to the snapshot's shard prefix, names it —
    /// except replies to a FULLNAT local address, whose port names it, and,
    /// when ownership follows the NIC (`Snapshot::rss`), packets to a VIP
    /// that is not client-owned: the worker of the queue the NIC's RSS
    /// gives the (client, VIP) pair, where the packet already is.
    #[inline]
    fn owner<A: Ip>(&self, k: &Key<A>) -> u16 {
        let n = self.workers;
        let d: IpAddr = k.daddr.into();
        if self.snap.is_laddr(d) {
            return port_owner(k.dport, n);
        }
        let to_vip = self.snap.is_vip(d);
        if let Some(rss) = self.snap.rss.as_deref().filter(|_| to_vip && !self.snap.client_owned(d)) {
            // (The map was built for this many workers; the modulo only
            // keeps a mismatch from naming a worker that does not exist.)
            return rss.owner(k.saddr.bytes().as_ref(), k.daddr.bytes().as_ref()) % n;
        }
        // To a VIP: the client is the source; otherwise (a NAT reply) the
        // client is the destination.
        let client = if to_vip { k.saddr } else { k.daddr };
        let bits = if A::V6 { self.snap.shard_prefix.1 } else { self.snap.shard_prefix.0 };
        (shard_hash(client.mask(bits).bytes().as_ref()) % n as u32) as u16
    }

    /// Steps 2 to 7 for a parsed frame; `key` is its connection key and
    /// `hash` the key's hash in `A`'s table (TCP/UDP; for other frames
    /// neither is read).
    #[inline(always)]
    fn process_af<A: Family>(&mut self, fr: &mut Frame<'_>, mut m: Meta, hash: u64, key: Key<A>, cand: u32) -> Verdict {
        if m.proto != proto::TCP && m.proto != proto::UDP {
            if m.is_icmp_error() {
                return self.icmp_error::<A>(fr, m);
            }
            if m.proto == proto::ICMP || m.proto == proto::ICMPV6 {
                return Verdict::Pass(PassReason::Icmp);
            }
            return Verdict::Pass(PassReason::NotService);
        }
        // A partial checksum (a CHECKSUM_PARTIAL sender behind a veth) is
        // completed before anything reads or rewrites it; a frame from a
        // NIC pays only the parser's pseudo-header comparison.
        if m.partial {
            self.counters.csum_completed += 1;
            checksum::complete(fr.data_mut(), &m);
        }
        // Lookup before ownership: only the owner ever inserts a flow's
        // keys, so a hit is ours, and the common case skips the ownership
        // rule's VIP / local address lookups.
        if let Some((idx, dir)) = A::table(&mut self.tables).lookup_candidate(&key, hash, cand) {
            // One flag test keeps SYNs off the common path (UDP has no
            // flags). A SYN with FIN or RST is no segment a stack sends;
            // a SYN on a connection that is over starts a new one (IPVS's
            // conn_reuse_mode).
            if m.tcp_flags & tcp_flags::SYN == 0 {
                return self.forward_inline::<A>(fr, &mut m, idx, dir);
            }
            if m.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
                return Verdict::Drop(DropReason::BadSyn);
            }
            if dir != Dir::In || !self.retire_for_syn::<A>(idx) {
                return self.forward::<A, false>(fr, &mut m, idx, dir);
            }
        }
        if self.workers > 1 {
            let o = self.owner(&key);
            if o != self.id {
                return Verdict::Handoff { worker: o };
            }
        }
        self.new_conn::<A>(fr, &mut m, &key)
    }

    /// IPVS's port reuse rule (`ip_vs_in`): a client SYN that finds the
    /// connection it names ends that connection now, and is scheduled
    /// afresh, when the connection is over (TIME_WAIT or CLOSE, and with
    /// `conn_reuse_mode` bit 2 a DR/TUN one in FIN_WAIT), or when
    /// `expire_nodest_conn` is set and its real server was removed or has
    /// weight 0. Otherwise (a retransmitted SYN, a connection a
    /// persistence template controls) the SYN follows the connection.
    /// Returns `true` when the connection was ended.
    #[cold]
    #[inline(never)]
    fn retire_for_syn<A: Family>(&mut self, idx: u32) -> bool {
        let snap = &*self.snap;
        let c = A::table(&mut self.tables).get_mut(idx);
        if c.control != 0 || c.is_template() {
            return false;
        }
        Self::rebind(snap, c);
        let no_dest = snap.expire_nodest_conn && (c.dest == NO_DEST || snap.dests[c.dest as usize].weight == 0);
        let mode = snap.conn_reuse_mode;
        let over = mode != 0
            && match TcpState::from_u8(c.state) {
                TcpState::TimeWait | TcpState::Close => true,
                TcpState::FinWait => mode & 2 != 0 && c.flags & flags::NOOUTPUT != 0,
                _ => false,
            };
        if !(no_dest || over) {
            return false;
        }
        // The counts it takes back include this burst's changes.
        self.shared.flush(snap, &mut self.load);
        release(c, self.now, snap, &mut self.load, &mut self.lports, &mut self.counters);
        c.flags |= flags::RELEASED;
        A::table(&mut self.tables).retire(idx);
        self.counters.reused_conns += 1;
        true
    }

    /// A client packet of a connection whose real server was removed
    /// (IPVS `ip_vs_in`, "the destination server is not available").
    /// Without `expire_nodest_conn` it is dropped and the connection's
    /// timer is not restarted: it ends at its time. With it (kernel 5.9
    /// and later) the connection ends now — its load, local port and
    /// place in the table are given back at once — and the packet is
    /// scheduled afresh: a UDP datagram or a SYN starts a new connection,
    /// another TCP segment finds none (`no_conn`). A later fragment has no
    /// ports to schedule with: it is dropped (its first fragment decides).
    #[cold]
    #[inline(never)]
    fn dest_gone<A: Family, const LATER: bool>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32) -> Verdict {
        if !self.snap.expire_nodest_conn || LATER {
            return Verdict::Drop(DropReason::DestGone);
        }
        let snap = &*self.snap;
        let c = A::table(&mut self.tables).get_mut(idx);
        let key = c.in_key();
        self.shared.flush(snap, &mut self.load);
        release(c, self.now, snap, &mut self.load, &mut self.lports, &mut self.counters);
        c.flags |= flags::RELEASED;
        A::table(&mut self.tables).retire(idx);
        self.new_conn::<A>(fr, m, &key)
    }

    /// Re-binds a connection to the current snapshot's dest index after a
    /// snapshot change (by uid; `NO_DEST` when its real server is gone).
    #[inline(always)]
    fn rebind<A: Ip>(snap: &Snapshot, c: &mut Conn<A>) {
        if c.snap_gen != snap.generation as u32 {
            Self::rebind_slow(snap, c);
        }
    }

    /// Also refreshes the next hops: towards the real server (the dest's
    /// current hop) and, when the replies pass through us, towards the
    /// client (the current route to it) — a changed neighbour MAC or route
    /// reaches established connections on their next packet. A hop that
    /// is unknown now keeps its last value.
    #[cold]
    #[inline(never)]
    fn rebind_slow<A: Ip>(snap: &Snapshot, c: &mut Conn<A>) {
        c.snap_gen = snap.generation as u32;
        match snap.dest_index(c.dest_uid) {
            Some(i) => {
                c.dest = i;
                if let Some(h) = snap.dests[i as usize].hop {
                    c.dest_hop = h;
                }
            }
            None => c.dest = NO_DEST,
        }
        if c.fwd.sees_replies() && !c.is_template() {
            if let Some(h) = snap.next_hop(c.caddr.into()) {
                c.client_hop = h;
            }
        }
    }

    #[inline(always)]
    fn timeout(t: &Timeouts, c_proto: u8, state: u8) -> u32 {
        if c_proto == proto::TCP {
            // States are always in range: the modulo (a multiply and a
            // shift chain) only guards the impossible.
            t.tcp.get(state as usize).copied().unwrap_or_else(|| t.tcp[state as usize % TcpState::COUNT])
        } else {
            t.udp
        }
    }

    /// Steps 6 and 7 for a packet of connection `idx`. `LATER`: a fragment
    /// at a non-zero offset, which has no L4 header: no state change, and
    /// NAT/FULLNAT rewrite its IP header only (the first fragment's L4
    /// checksum covers the whole datagram and was updated with it).
    ///
    /// A connection with none of [`seqadj::UNUSUAL`]'s bits in `in_pkts`
    /// (no sequence adjustment or SYN proxy splice, its hop towards the
    /// client known) takes the path without those tests: one test instead
    /// of four per packet, from its first packet on. Others take a copy
    /// with them, out of line.
    #[inline]
    fn forward<A: Family, const LATER: bool>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32, dir: Dir) -> Verdict {
        if A::table(&mut self.tables).get(idx).in_pkts & seqadj::UNUSUAL == 0 {
            self.forward_as::<A, LATER, true, false>(fr, m, idx, dir)
        } else {
            self.forward_unsettled::<A, LATER>(fr, m, idx, dir)
        }
    }

    /// [`Worker::forward`] for a packet that is no fragment, inlined into
    /// the burst's loop for the common packet (no SYN): no call, no
    /// prologue saving registers, per packet.
    #[inline(always)]
    fn forward_inline<A: Family>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32, dir: Dir) -> Verdict {
        if A::table(&mut self.tables).get(idx).in_pkts & seqadj::UNUSUAL == 0 {
            self.forward_as::<A, false, true, false>(fr, m, idx, dir)
        } else {
            self.forward_unsettled::<A, false>(fr, m, idx, dir)
        }
    }

    /// [`Worker::forward`] for a connection with a sequence adjustment, a
    /// SYN proxy's splice pending or a hop to learn.
    #[cold]
    #[inline(never)]
    fn forward_unsettled<A: Family, const LATER: bool>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32, dir: Dir) -> Verdict {
        self.forward_as::<A, LATER, false, false>(fr, m, idx, dir)
    }

    /// The first packet of a connection [`Worker::new_conn`] has just made
    /// in the state, count and expiry that packet takes it to, with its
    /// load counted there: no sequence adjustment, no hop to learn, a
    /// current dest. It is only transmitted and counted.
    #[inline(always)]
    fn forward_first<A: Family>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32) -> Verdict {
        self.forward_as::<A, false, false, true>(fr, m, idx, Dir::In)
    }

    /// [`Worker::forward`]'s work; `SETTLED`: the connection's `in_pkts`
    /// has none of [`seqadj::UNUSUAL`]'s bits (the caller tested it); `FIRST`: see
    /// [`Worker::forward_first`].
    #[inline(always)]
    fn forward_as<A: Family, const LATER: bool, const SETTLED: bool, const FIRST: bool>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32, dir: Dir) -> Verdict {
        // A SYN proxy's connection before its splice takes its own way.
        if !FIRST && !SETTLED && !LATER && A::table(&mut self.tables).get_mut(idx).in_pkts & SEQ_ADJ != 0 {
            if let Some(v) = self.synproxy_pending::<A>(fr, m, idx, dir) {
                return v;
            }
        }
        let snap = &self.snap;
        let now = self.now;
        let c = A::table(&mut self.tables).get_mut(idx);
        debug_assert!(!FIRST || (c.snap_gen == snap.generation as u32 && c.dest != NO_DEST && c.in_pkts & SEQ_ADJ == 0), "a first packet of a connection not made by new_conn's lean path");
        if !FIRST {
            Self::rebind(snap, c);
        }
        debug_assert!(!(SETTLED || FIRST) || c.client_hop.link != Hop::LEARN.link, "a settled or new connection with a hop to learn");
        if !SETTLED && !FIRST && c.in_pkts & HOP_TO_LEARN != 0 {
            // (rebind may have found the route since.)
            if c.client_hop.link == Hop::LEARN.link && !sync::learn_hop(snap, c, fr, m, dir) {
                return Verdict::Drop(DropReason::NoNeighbour);
            }
            c.in_pkts &= !HOP_TO_LEARN;
        }
        // (A new connection was made in the state its first packet takes
        // it to, from none.)
        let was = if FIRST { TcpState::None as u8 } else { c.state };
        if !FIRST && c.dest == NO_DEST && dir == Dir::In {
            return self.dest_gone::<A, LATER>(fr, m, idx);
        }
        if !FIRST && c.proto == proto::TCP && !LATER {
            let tdir = match dir {
                Dir::Out => TcpDir::Output,
                Dir::In if c.flags & flags::NOOUTPUT != 0 => TcpDir::InputOnly,
                Dir::In => TcpDir::Input,
            };
            let new = tcp_next(TcpState::from_u8(c.state), tdir, m.tcp_flags);
            if new as u8 != c.state {
                c.state = new as u8;
                if c.flags & flags::BOUND != 0 && c.dest != NO_DEST {
                    let di = c.dest as usize;
                    let l = &mut self.load[di];
                    let inactive = c.flags & flags::INACTIVE != 0;
                    if !inactive && new != TcpState::Established {
                        l.active = l.active.saturating_sub(1);
                        l.inactive += 1;
                        c.flags |= flags::INACTIVE;
                        self.shared.add(di, SharedLoad::TO_INACTIVE, &self.snap, &mut self.load);
                    } else if inactive && new == TcpState::Established {
                        l.inactive = l.inactive.saturating_sub(1);
                        l.active += 1;
                        c.flags &= !flags::INACTIVE;
                        self.shared.add(di, SharedLoad::TO_ACTIVE, &self.snap, &mut self.load);
                    }
                }
            }
        }
        if !FIRST {
            c.expires = now.wrapping_add(Self::timeout(&self.ticks, c.proto, c.state));
        }
        // A count to IN_PKTS_MAX, under the bits of `UNUSUAL` (none on the
        // settled path).
        if !FIRST {
            let n = if SETTLED { c.in_pkts } else { c.in_pkts & seqadj::IN_PKTS };
            c.in_pkts += ((dir == Dir::In) & (n < seqadj::IN_PKTS_MAX)) as u8;
        }
        let mut sync_due = match &self.sync {
            Some(t) => sync::due(t, c, dir, was),
            None => false,
        };
        // Borrowed, not copied: a copy of an aligned connection costs a
        // realigned stack frame and four vector moves per packet.
        let c = &*c;
        let bytes = fr.len as u64;
        let res = match (c.fwd, dir) {
            (FwdMethod::Dr, Dir::In) => xmit::dr::xmit(fr, m, &c.dest_hop, &snap.links),
            (FwdMethod::Nat, Dir::In) if LATER => xmit::nat::frag_in(fr, m, c, &snap.links),
            (FwdMethod::Nat, Dir::Out) if LATER => xmit::nat::frag_out(fr, m, c, &snap.links),
            (FwdMethod::FullNat, Dir::In) if LATER => xmit::fullnat::frag_in(fr, m, c, &snap.links),
            (FwdMethod::FullNat, Dir::Out) if LATER => xmit::fullnat::frag_out(fr, m, c, &snap.links),
            (FwdMethod::Nat, _) => xmit::nat::xmit(fr, m, c, &snap.links, dir),
            (FwdMethod::FullNat, _) => {
                // TOA rides on the client's handshake ACK: the segment that
                // takes the connection out of SYN_RECV, the one the
                // server's `toa` module reads.
                // (Never in a fragment: the option would move the data
                // under the offsets of the fragments that follow.)
                // (Not for a real server that takes the PROXY protocol
                // instead: one way to say who the client is.)
                let toa = snap.toa && dir == Dir::In && (SETTLED || c.in_pkts & SEQ_ADJ == 0) && was == TcpState::SynRecv as u8 && m.tcp_flags & (tcp_flags::ACK | tcp_flags::SYN | tcp_flags::RST) == tcp_flags::ACK && m.frag == 0;
                xmit::fullnat::xmit(fr, m, c, &snap.links, dir, toa).map(|(p, added)| {
                    match added {
                        Some(Ok(())) => self.counters.toa_added += 1,
                        Some(Err(_)) => self.counters.toa_skipped += 1,
                        None => {}
                    }
                    p
                })
            }
            (FwdMethod::Tun, Dir::In) => match xmit::tun::xmit(fr, m, c, &snap.links, &mut self.ip_id) {
                Ok(p) => Ok(p),
                Err(TunError::Drop(r)) => Err(r),
                Err(TunError::NeedFrag { mtu }) => return self.send_error::<A>(fr, m, ErrorKind::TooBig { mtu }, DropReason::TooBig),
                Err(TunError::Fragment { port, mtu }) => xmit::tun::fragment(fr, m, port, mtu, &mut self.staged).map(|(n, b)| {
                    let k = &mut self.counters;
                    k.frags_made += n;
                    k.tx_packets += n;
                    k.tx_bytes += b;
                    port
                }),
            },
            // DR/TUN replies bypass the director; no out key exists for them.
            (FwdMethod::Dr | FwdMethod::Tun, Dir::Out) => Err(DropReason::NoConn),
        };
        let res = match res {
            Ok(port) if !SETTLED && !FIRST && c.in_pkts & SEQ_ADJ != 0 && !LATER => {
                Self::seq_adjust(&mut self.seqadj[A::V6 as usize], &mut self.counters, snap, fr, m, idx, c, dir).map(|news| {
                    // The server acknowledged the header: a backup hears it
                    // now rather than at the next period.
                    sync_due |= news && self.sync.is_some();
                    port
                })
            }
            r => r,
        };
        let v = match res {
            Ok(port) => {
                self.counters.fwd[c.fwd.idx()][dir as usize] += 1;
                if c.dest != NO_DEST {
                    let s = &mut self.dstats[c.dest as usize];
                    if dir == Dir::In {
                        s.inpkts += 1;
                        s.inbytes += bytes;
                    } else {
                        s.outpkts += 1;
                        s.outbytes += bytes;
                    }
                }
                Verdict::Tx { port }
            }
            Err(r) => Verdict::Drop(r),
        };
        if sync_due {
            self.sync_emit::<A>(idx);
        }
        v
    }

    /// The sequence adjustment of a connection that has one
    /// (`ipvs::seqadj`: the PROXY protocol header), after its transmit
    /// rewrote the segment.
    ///
    /// `Ok(true)`: the entry has news for connection sync (the server has
    /// just acknowledged the header).
    ///
    /// # Errors
    /// [`DropReason::ProxyNoRoom`]: the header was due and could not go in.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn seq_adjust<A: Ip>(
        tab: &mut SeqAdjTable,
        counters: &mut WorkerCounters,
        snap: &Snapshot,
        fr: &mut Frame<'_>,
        m: &mut Meta,
        idx: u32,
        c: &Conn<A>,
        dir: Dir,
    ) -> Result<bool, DropReason> {
        // (A first fragment's payload is not all here: it is forwarded
        // unadjusted rather than half rewritten. Stacks do not fragment
        // TCP.)
        let Some(e) = tab.get_mut(idx).filter(|_| m.frag == 0) else { return Ok(false) };
        let mtu = snap.links.get(c.dest_hop.link as usize).map_or(1500, |l| l.mtu);
        let acked = e.acked;
        match seqadj::apply(fr, m, c, e, dir == Dir::In, mtu) {
            Ok(seqadj::Applied::Shifted) => Ok(e.acked != acked),
            Ok(seqadj::Applied::Header { cut }) => {
                counters.proxy_headers += 1;
                counters.proxy_cut += (cut > 0) as u64;
                Ok(false)
            }
            Err(_) => Err(DropReason::ProxyNoRoom),
        }
    }

    /// A new TCP connection `idx` to a real server that wants the PROXY
    /// protocol: its entry, and the bit that says it has one.
    #[cold]
    #[inline(never)]
    fn seq_adj_open<A: Family>(&mut self, idx: u32, v: crate::wire::proxy::Version) {
        let c = A::table(&mut self.tables).get_mut(idx);
        let mut h = [0u8; crate::wire::proxy::MAX_LEN];
        let len = seqadj::header(c, v, &mut h) as u16;
        let e = self.seqadj[A::V6 as usize].make(idx);
        e.proxy = v.code();
        e.len = len;
        c.in_pkts |= SEQ_ADJ;
    }

    /// A TCP segment without a connection to a synproxy service
    /// (`ipvs::synproxy`, DPVS's `dp_vs_synproxy_syn_rcv` and
    /// `dp_vs_synproxy_ack_rcv`). A SYN is answered with a cookie SYN-ACK
    /// (`Err(Tx)`), nothing kept. An ACK whose acknowledgement is a valid
    /// cookie becomes, in place, the SYN the client would have sent the
    /// real server (its ISN, its options from the cookie; its payload
    /// left out: the client sends it again once spliced): `Ok((cookie,
    /// options))`, and the caller schedules it as any SYN. Anything else
    /// is dropped.
    #[cold]
    #[inline(never)]
    fn synproxy_in<A: Family>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, k: &Key<A>) -> Result<(u32, u8), Verdict> {
        use tcp_flags::{ACK, RST, SYN};
        let fl = m.tcp_flags;
        let t = synproxy::Tuple { saddr: k.saddr, daddr: k.daddr, sport: k.sport, dport: k.dport };
        let now = synproxy::count(self.now_ns);
        if fl & (SYN | ACK) == SYN {
            self.admissible(m, k).map_err(Verdict::Drop)?;
            let to = src_mac(fr.data());
            if !usable_mac(&self.snap, to) {
                return Err(Verdict::Drop(DropReason::NoNeighbour));
            }
            let Some(link) = self.snap.links.get(self.ingress_link(fr, m) as usize) else {
                return Err(Verdict::Drop(DropReason::NoNeighbour));
            };
            let (mac, mtu) = (link.mac, link.mtu);
            let o = SynOpts::parse(fr.data(), m);
            let isn = tcpseq::seq(fr.data(), m);
            let cookie = synproxy::make(&self.syn_secret, &t, isn, now, o.encode(A::V6));
            let mss = mtu.saturating_sub((A::HLEN + 20) as u16).max(536);
            let mut opts = [0u8; 12];
            let n = synproxy::options(mss, o.sack, o.wscale.map(|_| synproxy::WSCALE), &mut opts);
            if synproxy::reshape::<A>(fr, m, true, cookie, isn.wrapping_add(1), SYN | ACK, 65535, &opts[..n]).is_err() {
                return Err(Verdict::Drop(DropReason::SynproxyWait));
            }
            let f = fr.data_mut();
            f[0..6].copy_from_slice(&to);
            f[6..12].copy_from_slice(&mac);
            self.counters.synproxy_syn += 1;
            return Err(Verdict::Tx { port: fr.port });
        }
        if fl & (SYN | RST | ACK) != ACK {
            return Err(Verdict::Drop(DropReason::NoConn));
        }
        let f = fr.data();
        let isn = tcpseq::seq(f, m).wrapping_sub(1);
        let cookie = tcpseq::ack(f, m).wrapping_sub(1);
        let Some(data) = synproxy::check(&self.syn_secret, &t, isn, cookie, now) else {
            return Err(Verdict::Drop(DropReason::SynproxyBadAck));
        };
        if Self::synproxy_syn::<A>(fr, m, isn, data as u8).is_err() {
            return Err(Verdict::Drop(DropReason::SynproxyWait));
        }
        self.counters.synproxy_ack += 1;
        Ok((cookie, data as u8))
    }

    /// Turns the client segment of `fr` into the client's SYN with ISN
    /// `isn` and the options `opts` (`SynOpts::encode`); its window, in
    /// the client's scale, unscaled as a SYN's is.
    fn synproxy_syn<A: Ip>(fr: &mut Frame<'_>, m: &mut Meta, isn: u32, opts: u8) -> Result<(), synproxy::NoRoom> {
        let o = SynOpts::decode(opts as u32, A::V6);
        let w = crate::wire::be16(fr.data(), m.l4 as usize + 14) as u32;
        let win = (w << o.wscale.unwrap_or(0)).min(0xffff) as u16;
        let mut b = [0u8; 12];
        let n = synproxy::options(o.mss, o.sack, o.wscale, &mut b);
        synproxy::reshape::<A>(fr, m, false, isn, 0, tcp_flags::SYN, win, &b[..n])
    }

    /// A new connection `idx` opened by a valid cookie ACK: its entry
    /// says the SYN went to the real server (the cookie, the client's
    /// options kept for the splice).
    #[cold]
    #[inline(never)]
    fn synproxy_open<A: Family>(&mut self, idx: u32, cookie: u32, opts: u8) {
        let c = A::table(&mut self.tables).get_mut(idx);
        let tab = &mut self.seqadj[A::V6 as usize];
        let e = match tab.get_mut(idx) {
            Some(e) if c.in_pkts & SEQ_ADJ != 0 => e,
            _ => tab.make(idx),
        };
        e.syn = seqadj::SYN_SENT;
        e.out_delta = cookie;
        e.opts = opts;
        c.in_pkts |= SEQ_ADJ;
    }

    /// A segment of a connection with a sequence adjustment entry: `None`
    /// (go on as usual) unless it is a SYN proxy's connection waiting for
    /// its real server's SYN-ACK. Then a client segment becomes the SYN
    /// again (the real server's answer may have been lost; the payload
    /// is left out: the client sends it again) and goes on; the server's
    /// SYN-ACK sets the offset (server ISN − cookie) and the window
    /// rescaling, and becomes the handshake's ACK back to the server
    /// (`Some(Tx)`): the connection is spliced. A RST from the server
    /// goes on to the client at the place the client expects; anything
    /// else from the server is dropped.
    #[cold]
    #[inline(never)]
    fn synproxy_pending<A: Family>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, idx: u32, dir: Dir) -> Option<Verdict> {
        use tcp_flags::{ACK, RST, SYN};
        let e = self.seqadj[A::V6 as usize].get_mut(idx)?;
        if e.syn != seqadj::SYN_SENT {
            return None;
        }
        let fl = m.tcp_flags;
        if dir == Dir::In {
            if fl & (SYN | RST) != 0 {
                return None;
            }
            let (isn, opts) = (e.start.wrapping_sub(1), e.opts);
            if Self::synproxy_syn::<A>(fr, m, isn, opts).is_err() {
                return Some(Verdict::Drop(DropReason::SynproxyWait));
            }
            return None;
        }
        let f = fr.data();
        let (seq, ack) = (tcpseq::seq(f, m), tcpseq::ack(f, m));
        let cookie = e.out_delta;
        if fl & RST != 0 {
            // seq − out_delta: the cookie + 1, in the client's window
            e.out_delta = seq.wrapping_sub(cookie.wrapping_add(1));
            e.syn = seqadj::SPLICED;
            return None;
        }
        if fl & (SYN | ACK) != SYN | ACK || ack != e.start {
            return Some(Verdict::Drop(DropReason::SynproxyWait));
        }
        let o = SynOpts::decode(e.opts as u32, A::V6);
        let ws = synproxy::wscale_of(f, m);
        // The handshake's ACK in the client's scale (its real window
        // comes with its next segment).
        let win = (0xffff >> o.wscale.unwrap_or(0)) as u16;
        if synproxy::reshape::<A>(fr, m, true, ack, seq.wrapping_add(1), ACK, win, &[]).is_err() {
            return Some(Verdict::Drop(DropReason::SynproxyWait));
        }
        let e = self.seqadj[A::V6 as usize].get_mut(idx)?;
        e.out_delta = seq.wrapping_sub(cookie);
        if o.wscale.is_some() {
            e.win_shift = ws.unwrap_or(0) as i8 - synproxy::WSCALE as i8;
        }
        e.syn = seqadj::SPLICED;
        // To the real server the way its connection's packets go.
        let snap = &*self.snap;
        let c = A::table(&mut self.tables).get_mut(idx);
        Self::rebind(snap, c);
        c.expires = self.now.wrapping_add(Self::timeout(&self.ticks, c.proto, c.state));
        let hop = c.dest_hop;
        self.counters.synproxy_spliced += 1;
        Some(match xmit::to_hop(fr, m, &hop, &snap.links) {
            Ok(port) => Verdict::Tx { port },
            Err(r) => Verdict::Drop(r),
        })
    }

    /// A fragment (see `frag`): the first one is handled like any packet
    /// and what became of it is remembered; later ones follow it.
    #[cold]
    #[inline(never)]
    fn fragment(&mut self, fr: &mut Frame<'_>, m: Meta, hash: u64) -> Verdict {
        if m.v6 {
            self.fragment_af::<Ipv6Addr>(fr, m, hash)
        } else {
            self.fragment_af::<Ipv4Addr>(fr, m, hash)
        }
    }

    fn fragment_af<A: Family>(&mut self, fr: &mut Frame<'_>, mut m: Meta, hash: u64) -> Verdict {
        let f = fr.data();
        let (src, dst) = (A::src(f, &m), A::dst(f, &m));
        let mapped = |a: A| match a.into() {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let fk = FragKey { src: mapped(src), dst: mapped(dst), id: frag_id(f, &m), proto: m.proto };
        if m.frag != FRAG_LATER {
            let tcp_udp = m.proto == proto::TCP || m.proto == proto::UDP;
            // ICMP errors are short enough never to be fragmented by a
            // sane sender: one that is goes to the kernel.
            let v = if !tcp_udp && m.is_icmp_error() {
                Verdict::Pass(PassReason::Icmp)
            } else {
                let key = burst::key_of(fr.data(), &m);
                self.process_af::<A>(fr, m, hash, key, NO_CANDIDATE)
            };
            let what = match v {
                // (Only TCP/UDP heads are ever transmitted: other
                // protocols and ICMP errors in fragments are passed.)
                Verdict::Tx { .. } => Follow::Conn { sport: m.sport, dport: m.dport },
                Verdict::Handoff { worker } => Follow::Handoff(worker),
                Verdict::Pass(_) => Follow::Kernel,
                Verdict::Drop(r) => Follow::Drop(r),
            };
            self.frags.insert(fk, what, self.now);
            return v;
        }
        match self.frags.get(&fk, self.now) {
            Some(Follow::Conn { sport, dport }) => {
                let key = Key { saddr: src, daddr: dst, sport, dport, proto: m.proto };
                match A::table(&mut self.tables).lookup(&key) {
                    Some((idx, dir)) => self.forward::<A, true>(fr, &mut m, idx, dir),
                    None => Verdict::Drop(DropReason::NoConn),
                }
            }
            Some(Follow::Handoff(worker)) => Verdict::Handoff { worker },
            Some(Follow::Kernel) => Verdict::Pass(PassReason::Fragment),
            Some(Follow::Drop(r)) => Verdict::Drop(r),
            None => {
                // Its first fragment may be on its way to the owner of the
                // flow, when the addresses name it (to a VIP: the client;
                // a NAT reply: the client); a FULLNAT reply's owner is in
                // the port, which only the first fragment has.
                if self.workers > 1 && !self.snap.is_laddr(dst.into()) {
                    let key = Key { saddr: src, daddr: dst, sport: 0, dport: 0, proto: m.proto };
                    let o = self.owner(&key);
                    if o != self.id {
                        return Verdict::Handoff { worker: o };
                    }
                }
                Verdict::Drop(DropReason::FragNoHead)
            }
        }
    }

    /// Step 5: a packet with no connection.
    fn new_conn<A: Family>(&mut self, fr: &mut Frame<'_>, m: &mut Meta, k: &Key<A>) -> Verdict {
        let daddr: IpAddr = k.daddr.into();
        let Some(si) = self.snap.lookup(m.proto, daddr, m.dport) else {
            return if self.snap.is_laddr(daddr) {
                Verdict::Drop(DropReason::NoConn)
            } else {
                Verdict::Pass(PassReason::NotService)
            };
        };
        // IPVS schedules TCP only on a SYN; one that also carries FIN or
        // RST, port 0 and martian sources are refused before anything is
        // scheduled or counted (see `admissible`).
        // With sloppy_tcp (IPVS's sysctl) any segment but a RST is
        // scheduled: a flow ECMP moved here from another director in
        // mid-connection carries on (with mh, to the same real server).
        // The state machine then gives it the state IPVS would (an ACK:
        // ESTABLISHED).
        // A SYN proxy answers SYNs itself and opens a connection on a
        // valid cookie ACK only, turned into the client's SYN here.
        let mut proxied = None;
        if m.proto == proto::TCP && self.snap.services[si as usize].synproxy {
            match self.synproxy_in::<A>(fr, m, k) {
                Ok(x) => proxied = Some(x),
                Err(v) => return v,
            }
        }
        let sloppy = m.proto == proto::TCP && m.tcp_flags & tcp_flags::SYN == 0;
        if sloppy && (!self.snap.sloppy_tcp || m.tcp_flags & tcp_flags::RST != 0) {
            return Verdict::Drop(DropReason::NoConn);
        }
        if let Err(r) = self.admissible(m, k) {
            return Verdict::Drop(r);
        }
        // A full table: room is made by ending embryonic or idle
        // connections (drop_entry), one per entry this connection adds.
        if self.snap.drop_entry {
            let need = 1 + self.snap.services[si as usize].persistence.is_some() as usize;
            if !A::table(&mut self.tables).has_room(need) {
                self.make_room::<A>(need);
            }
        }
        let picked = match self.snap.services[si as usize].persistence {
            None => schedule(&self.snap, &mut self.sched, &self.shared.due, self.now_ns, si, k).map(|di| (di, None)).ok_or(DropReason::NoDest),
            Some(p) => self.persist::<A>(si, k, p, m.ttl),
        };
        // A borrow, not a clone: the refcount is shared with every worker,
        // and two workers bumping it per new connection fight over its line.
        let snap = &*self.snap;
        let (di, tmpl) = match picked {
            Ok(x) => x,
            // Servers that would take it but whose next hop is still being
            // resolved: silence, so the client's SYN retransmission finds
            // them, not a port unreachable that fails its connect().
            Err(DropReason::NoDest) if awaiting_neighbour(snap, si) => return Verdict::Drop(DropReason::NoNeighbour),
            Err(DropReason::NoDest) => return self.send_error::<A>(fr, m, ErrorKind::PortUnreachable, DropReason::NoDest),
            Err(r) => return Verdict::Drop(r),
        };
        let dest = &snap.dests[di];
        // Gives back the template's count when the connection is not made.
        let untmpl = |w: &mut Worker| {
            if let Some(ti) = tmpl {
                let t = A::table(&mut w.tables).get_mut(ti);
                t.control = t.control.saturating_sub(1);
            }
        };
        let Some(daddr_rs) = A::from_ip(dest.addr) else {
            untmpl(self);
            return Verdict::Drop(DropReason::FamilyMismatch);
        };
        let Some(dest_hop) = dest.hop else {
            untmpl(self);
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let dport = if dest.port == 0 { k.dport } else { dest.port };
        // The reply key's index bucket is a miss in a big table that
        // `insert_missed` would wait for: asked for now, it arrives while
        // the route, the state and the entry are made.
        if dest.fwd == FwdMethod::Nat {
            let t = A::table(&mut self.tables);
            t.prefetch(t.hash(&Key::reply((daddr_rs, dport), (k.saddr, k.sport), m.proto)));
        }
        // A packet its transmit would drop makes no connection.
        if let Err(r) = dest.fwd.check_ttl(m.ttl) {
            untmpl(self);
            return Verdict::Drop(r);
        }
        // Replies go the route's way to the client; without a route, back
        // to the previous hop the packet came from.
        let client_hop = if dest.fwd.sees_replies() {
            match snap.next_hop(k.saddr.into()) {
                Some(h) => h,
                // The way back is the frame's source MAC: only if a frame
                // may be sent there (found by fuzzing: a broadcast source
                // became the destination of every reply).
                None if usable_mac(snap, src_mac(fr.data())) => Hop { link: self.ingress_link(fr, m), mac: src_mac(fr.data()) },
                None => {
                    untmpl(self);
                    return Verdict::Drop(DropReason::NoNeighbour);
                }
            }
        } else {
            dest_hop
        };
        let (laddr, lport) = if dest.fwd == FwdMethod::FullNat {
            let got = match self.lports.alloc(di) {
                Some(x) => Some(x),
                // A full pool: the real server's own drop_entry.
                None if snap.drop_entry => {
                    self.shared.flush(snap, &mut self.load);
                    Self::make_port_room::<A>(
                        snap,
                        &mut self.tables,
                        &mut self.lports,
                        &mut self.load,
                        &mut self.counters,
                        &mut self.todrop,
                        &mut self.port_evict_miss,
                        self.now,
                        di,
                    )
                }
                None => None,
            };
            match got.and_then(|(a, p)| A::from_ip(a).map(|a| (a, p))) {
                Some((laddr, lport)) => {
                    let t = A::table(&mut self.tables);
                    t.prefetch(t.hash(&Key::reply((daddr_rs, dport), (laddr, lport), m.proto)));
                    (laddr, lport)
                }
                None => {
                    untmpl(self);
                    return Verdict::Drop(DropReason::NoLocalPort);
                }
            }
        } else {
            (A::UNSPECIFIED, 0)
        };
        let udp = m.proto == proto::UDP;
        let mut cflags = flags::BOUND;
        if !dest.fwd.sees_replies() {
            cflags |= flags::NOOUTPUT;
        }
        if udp {
            cflags |= flags::INACTIVE;
        }
        if dest.fwd == FwdMethod::FullNat && dest.port == 0 {
            cflags |= flags::LPORT_ANY;
        }
        // Only a connection opened by the client's SYN knows where its
        // stream starts (a sloppy_tcp one taken over mid-stream does not:
        // it goes unadjusted, docs/modes.md).
        let header = dest.proxy.filter(|_| m.tcp_flags & tcp_flags::SYN != 0 && m.proto == proto::TCP && matches!(dest.fwd, FwdMethod::Nat | FwdMethod::FullNat));
        // A connection with nothing more to set up (no PROXY protocol
        // header, not a SYN proxy's) is made in the state, count and expiry
        // its first packet takes it to, and counted in its dest's load
        // where that state puts it: its first packet is then only sent
        // (`forward_first`). The rest start from none and take the whole
        // `forward`.
        let lean = header.is_none() && proxied.is_none();
        let (state, in_pkts, expires) = if lean {
            let state = if m.proto == proto::TCP {
                let tdir = if cflags & flags::NOOUTPUT != 0 { TcpDir::InputOnly } else { TcpDir::Input };
                let s = tcp_next(TcpState::None, tdir, m.tcp_flags);
                if s != TcpState::Established {
                    cflags |= flags::INACTIVE;
                }
                s as u8
            } else {
                TcpState::None as u8
            };
            (state, 1, self.now.wrapping_add(Self::timeout(&self.ticks, m.proto, state)))
        } else {
            (TcpState::None as u8, 0, self.now.wrapping_add(timer::secs(Self::timeout(&snap.timeouts, m.proto, 0))))
        };
        let c = Conn {
            caddr: k.saddr,
            vaddr: k.daddr,
            daddr: daddr_rs,
            laddr,
            cport: k.sport,
            vport: k.dport,
            dport,
            lport,
            expires,
            dest_uid: dest.uid,
            dest: di as u32,
            snap_gen: snap.generation as u32,
            control: tmpl.map_or(0, |t| t + 1),
            dest_hop,
            client_hop,
            proto: m.proto,
            state,
            fwd: dest.fwd,
            flags: cflags,
            sync_left: sync::arm(&self.sync),
            in_pkts,
        };
        // Both callers come here after the in key missed (or its entry was
        // just retired), and nothing since adds a connection's key.
        let idx = match A::table(&mut self.tables).insert_missed(c) {
            Ok(i) => i,
            Err(r) => {
                if dest.fwd == FwdMethod::FullNat {
                    self.lports.release(PoolKey { laddr: laddr.into(), daddr: dest.addr, dport: dest.port }, lport);
                }
                untmpl(self);
                return Verdict::Drop(r);
            }
        };
        let l = &mut self.load[di];
        let inactive = cflags & flags::INACTIVE != 0;
        if inactive {
            l.inactive += 1;
        } else {
            l.active += 1;
        }
        if dest.u_threshold == 0 {
            self.shared.add(di, SharedLoad::opened(inactive), snap, &mut self.load);
        } else {
            dest.shared.open(inactive, dest.u_threshold, dest.l_threshold);
            l.overloaded = dest.shared.overloaded();
        }
        self.dstats[di].conns += 1;
        self.counters.new_conns += 1;
        self.counters.sloppy_conns += sloppy as u64;
        if lean {
            return self.forward_first::<A>(fr, m, idx);
        }
        if let Some(v) = header {
            self.seq_adj_open::<A>(idx, v);
        }
        if let Some((cookie, opts)) = proxied {
            self.synproxy_open::<A>(idx, cookie, opts);
        }
        self.forward::<A, false>(fr, m, idx, Dir::In)
    }

    /// What the kernel's input path and a stateful firewall refuse before
    /// a flow could become a connection: a SYN with FIN or RST, source or
    /// destination port 0, a martian source ([`martian`], or one of the
    /// director's own addresses: the kernel's `fib_validate_source`).
    /// Checked for new flows only; established ones passed it.
    ///
    /// # Errors
    /// [`DropReason::BadSyn`], [`DropReason::ZeroPort`] or
    /// [`DropReason::Martian`].
    #[inline]
    fn admissible<A: Ip>(&self, m: &Meta, k: &Key<A>) -> Result<(), DropReason> {
        // A SYN with FIN or RST; a sloppy FIN alone is a flow's end.
        if m.tcp_flags & tcp_flags::SYN != 0 && m.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
            return Err(DropReason::BadSyn);
        }
        if k.sport == 0 || k.dport == 0 {
            return Err(DropReason::ZeroPort);
        }
        let src: IpAddr = k.saddr.into();
        if martian(src) || self.snap.is_own_addr(src) {
            return Err(DropReason::Martian);
        }
        Ok(())
    }

    /// IPVS's `drop_entry` defense (`ip_vs_random_dropentry`): ends
    /// connections that [`droppable`] accepts, due to expire soonest,
    /// until `need` entries fit, releasing what each holds; a persistence
    /// template left without connections goes with its last one. A search
    /// that finds none is not repeated within the same tick.
    #[cold]
    #[inline(never)]
    fn make_room<A: Family>(&mut self, need: usize) {
        if self.evict_miss == self.now {
            return;
        }
        // The counts it takes back include this burst's changes.
        self.flush_shared();
        let snap = &*self.snap;
        let now = self.now;
        let (load, lports, counters, rate) = (&mut self.load, &mut self.lports, &mut self.counters, &mut self.todrop);
        let table = A::table(&mut self.tables);
        while !table.has_room(need) {
            let Some((c, live)) = table.evict(EVICT_BUDGET, |c| droppable(c, now, &snap.timeouts, rate), |c| {
                release(c, now, snap, load, lports, counters);
            }) else {
                self.evict_miss = now;
                return;
            };
            if live {
                counters.evicted_conns += 1;
                end_orphan_template(table, &c, now, snap, load, lports, counters);
            }
        }
    }

    /// drop_entry for a full FULLNAT port pool: ends a connection that
    /// holds a port of one of dest `di`'s pools and that [`droppable`]
    /// accepts, then allocates again. `None` when none is found (no new
    /// search within the same tick) or the pools are still full.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn make_port_room<A: Family>(
        snap: &Snapshot,
        tables: &mut Tables,
        lports: &mut LocalPorts,
        load: &mut [DestLoad],
        counters: &mut WorkerCounters,
        rate: &mut [u8; 9],
        miss: &mut u32,
        now: u32,
        di: usize,
    ) -> Option<(IpAddr, u16)> {
        if *miss == now {
            return None;
        }
        let d = &snap.dests[di];
        let laddrs = &snap.services[d.svc as usize].laddrs;
        let holds_port = |c: &Conn<A>| {
            c.fwd == FwdMethod::FullNat
                && c.flags & flags::TEMPLATE == 0
                && Into::<IpAddr>::into(c.daddr) == d.addr
                && pool_key(c).dport == d.port
                && laddrs.contains(&c.laddr.into())
        };
        let table = A::table(tables);
        // A few tries: an unlinked entry reclaimed on the way may hold no
        // port of these pools.
        for _ in 0..4 {
            let Some((c, live)) = table.evict(EVICT_BUDGET, |c| holds_port(c) && droppable(c, now, &snap.timeouts, rate), |c| {
                release(c, now, snap, load, lports, counters);
            }) else {
                *miss = now;
                return None;
            };
            if live {
                counters.evicted_conns += 1;
                end_orphan_template(table, &c, now, snap, load, lports, counters);
            }
            if let Some(x) = lports.alloc(di) {
                return Some(x);
            }
        }
        None
    }

    /// Persistence (IPVS `ip_vs_sched_persist`): the client's (masked)
    /// template names the dest while it is valid; otherwise the scheduler
    /// picks one and a new template remembers it. Returns the dest index
    /// and the template's slot, whose count of connections is already
    /// raised by one.
    ///
    /// # Errors
    /// [`DropReason::NoDest`] when the scheduler finds none, or why the
    /// template could not be made.
    fn persist<A: Family>(&mut self, si: u32, k: &Key<A>, p: Persistence, ttl: u8) -> Result<(usize, Option<u32>), DropReason> {
        let snap = &*self.snap;
        let svc = &snap.services[si as usize];
        let tk = template_key(&svc.key, k, p.netmask);
        let expires = self.now.wrapping_add(timer::secs(p.timeout));
        let table = A::table(&mut self.tables);
        if let Some((ti, _)) = table.lookup(&tk) {
            let t = table.get_mut(ti);
            Self::rebind(snap, t);
            // IPVS's ip_vs_check_template: the dest must still be one of
            // the service's, and (optionally) not quiesced.
            // (An expired template the wheel has not reached yet is gone.)
            let valid = !timer::reached(self.now, t.expires) && t.dest != NO_DEST && {
                let d = &snap.dests[t.dest as usize];
                d.svc == si && !(snap.expire_quiescent_template && d.weight == 0)
            };
            if valid {
                t.expires = expires;
                t.control += 1;
                return Ok((t.dest as usize, Some(ti)));
            }
            table.unlink(ti);
        }
        let di = schedule(snap, &mut self.sched, &self.shared.due, self.now_ns, si, k).ok_or(DropReason::NoDest)?;
        let d = &snap.dests[di];
        let daddr = A::from_ip(d.addr).ok_or(DropReason::FamilyMismatch)?;
        let hop = d.hop.ok_or(DropReason::NoNeighbour)?;
        // No template for a packet that will not be sent.
        d.fwd.check_ttl(ttl)?;
        let t = Conn {
            caddr: tk.saddr,
            vaddr: tk.daddr,
            daddr,
            laddr: A::UNSPECIFIED,
            cport: tk.sport,
            vport: tk.dport,
            dport: d.port,
            lport: 0,
            expires,
            dest_uid: d.uid,
            dest: di as u32,
            snap_gen: snap.generation as u32,
            control: 1,
            dest_hop: hop,
            client_hop: hop,
            proto: tk.proto,
            state: 0,
            fwd: d.fwd,
            flags: flags::TEMPLATE | flags::BOUND,
            sync_left: 0,
            in_pkts: 0,
        };
        let ti = A::table(&mut self.tables).insert(t)?;
        self.load[di].persist += 1;
        snap.dests[di].shared.persist(true);
        self.counters.templates_created += 1;
        Ok((di, Some(ti)))
    }

    /// Answers the packet's sender with an ICMP error built in place;
    /// the original packet counts as dropped for `why`, the error as made
    /// and transmitted. Errors other than fragmentation needed / packet
    /// too big are rate limited (`[global] icmp_msgs_per_sec`): without a
    /// token the packet is only dropped, counted as `icmp_limited`.
    #[cold]
    fn send_error<A: Ip>(&mut self, fr: &mut Frame<'_>, m: &Meta, kind: ErrorKind, why: DropReason) -> Verdict {
        // The error goes back to the frame's source MAC: never to a
        // broadcast, multicast, zero or our own one. When it cannot be
        // sent the frame is one drop for `why`, as any other.
        if !usable_mac(&self.snap, src_mac(fr.data())) {
            return Verdict::Drop(why);
        }
        let pmtu = matches!(kind, ErrorKind::TooBig { .. });
        if !pmtu && !self.icmp_limit.allow(self.now_ns) {
            self.counters.icmp_limited += 1;
            return Verdict::Drop(why);
        }
        // (Without the headroom to build it in, only the drop remains.)
        if icmp::build_error::<A>(fr, m, kind).is_err() {
            return Verdict::Drop(why);
        }
        self.counters.drop(why);
        self.counters.icmp_sent += 1;
        // Back to the sender on the link it came from (the frame keeps
        // its tag), from our MAC there.
        let p = fr.port;
        let mac = self.snap.links.get(self.ingress_link(fr, m) as usize).map(|l| l.mac);
        if let Some(mac) = mac {
            fr.data_mut()[6..12].copy_from_slice(&mac);
        }
        Verdict::Tx { port: p }
    }

    /// The hand-off of an ICMP error about the flow `key` (the connection's
    /// key as the table holds it) to the worker that owns that flow, or
    /// `None` when that is this worker: only the owner has its connection.
    #[cold]
    fn handoff_unless_mine<A: Ip>(&self, key: &Key<A>) -> Option<Verdict> {
        if self.workers > 1 {
            let o = self.owner(key);
            if o != self.id {
                return Some(Verdict::Handoff { worker: o });
            }
        }
        None
    }

    /// Step 2: an ICMP error; relayed when it is about a connection.
    #[cold]
    fn icmp_error<A: Family>(&mut self, fr: &mut Frame<'_>, mut m: Meta) -> Verdict {
        let f = fr.data();
        if icmp::quotes_ipip(f, &m) {
            return self.tunnel_icmp::<A>(fr, m);
        }
        let mut q = match icmp::quoted(f, &m) {
            Ok(q) => q,
            Err(r) => return Verdict::Drop(r),
        };
        // The kernel's input path drops these before IPVS sees them.
        let src: IpAddr = A::src(f, &m).into();
        if martian(src) || self.snap.is_own_addr(src) {
            return Verdict::Drop(DropReason::Martian);
        }
        let (qs, qd) = q.addrs::<A>(f);
        // The quoted packet went through us: its reverse is our key.
        let key = Key { saddr: qd, daddr: qs, sport: q.dport, dport: q.sport, proto: q.proto };
        if let Some(v) = self.handoff_unless_mine(&key) {
            return v;
        }
        let snap = &self.snap;
        let table = A::table(&mut self.tables);
        let Some((idx, dir)) = table.lookup(&key) else {
            return Verdict::Pass(PassReason::Icmp);
        };
        let c = table.get_mut(idx);
        Self::rebind(snap, c);
        let c = *c;
        if c.in_pkts & SEQ_ADJ != 0 {
            // The quoted segment carries one side's numbers: the error
            // goes to the other side, which must find its own in it (a
            // stack ignores an error about a sequence number it never
            // sent), as the kernel's and DPVS's sequence adjustment do.
            if let Some(e) = self.seqadj[A::V6 as usize].get(idx).copied() {
                match dir {
                    // about a client segment as the server saw it
                    Dir::Out => q.map_seq(fr.data_mut(), |x| e.out_ack(x), |y| e.out_seq(y)),
                    // about a server segment as the client saw it
                    Dir::In => q.map_seq(fr.data_mut(), |x| e.in_ack(x), |y| e.in_seq(y)),
                }
            }
        }
        let res = match dir {
            Dir::Out => xmit::icmp::relay_out(fr, &mut m, &mut q, &c, &snap.links),
            Dir::In => match xmit::icmp::relay_in(fr, &mut m, &mut q, &c, &snap.links, &mut self.ip_id) {
                Ok(p) => Ok(p),
                Err(TunError::Drop(r)) => Err(r),
                // An error about an error is never sent, nor fragmented.
                Err(TunError::NeedFrag { .. } | TunError::Fragment { .. }) => Err(DropReason::TooBig),
            },
        };
        match res {
            Ok(port) => {
                self.counters.icmp_relayed += 1;
                Verdict::Tx { port }
            }
            Err(r) => Verdict::Drop(r),
        }
    }
}

impl Worker {
    /// An ICMP error about one of our tunnelled packets (a router in the
    /// tunnel's path could not forward it), as IPVS's `ip_vs_in_icmp`: the
    /// client gets an error of the same type and code about its own packet
    /// (the one inside ours), from the VIP. Fragmentation needed becomes
    /// fragmentation needed with the path's MTU (the error's, or the
    /// egress link's when smaller) less the tunnel header, so that the
    /// client's packets fit once encapsulated; an error about a packet
    /// without DF is the kernel's (no PMTU discovery to serve). The frame
    /// becomes the new error, in place, counted as relayed.
    ///
    /// IPv6 in IPv6 likewise for Packet Too Big (IPVS's
    /// `ip_vs_in_icmp_v6` has no tunnel case and leaves it to the stack):
    /// the client gets a Packet Too Big with the path's MTU less 40, not
    /// below 1280 (IPv6's minimum, as the kernel's ip6_tunnel clamps it).
    /// Other ICMPv6 errors about our tunnel are the kernel's.
    #[cold]
    #[inline(never)]
    fn tunnel_icmp<A: Family>(&mut self, fr: &mut Frame<'_>, m: Meta) -> Verdict {
        let f = fr.data();
        let (oq, q) = match icmp::quoted_ipip(f, &m) {
            Ok(x) => x,
            Err(r) => return Verdict::Drop(r),
        };
        let src: IpAddr = A::src(f, &m).into();
        if martian(src) || self.snap.is_own_addr(src) {
            return Verdict::Drop(DropReason::Martian);
        }
        // Ours: sent to the outer source it quotes, one of our addresses.
        let to = A::dst(f, &m);
        let o = oq + A::SRC_OFF;
        let (osrc, odst) = (A::from_slice(&f[o..o + A::LEN]), A::from_slice(&f[o + A::LEN..o + 2 * A::LEN]));
        if osrc != to || !self.snap.is_own_addr(to.into()) {
            return Verdict::Pass(PassReason::Icmp);
        }
        // The inner packet is the client's, as it came: its key is the in key.
        let (qs, qd) = q.addrs::<A>(f);
        let key = Key { saddr: qs, daddr: qd, sport: q.sport, dport: q.dport, proto: q.proto };
        if let Some(v) = self.handoff_unless_mine(&key) {
            return v;
        }
        let snap = &self.snap;
        let table = A::table(&mut self.tables);
        let c = match table.lookup(&key) {
            Some((idx, Dir::In)) => {
                let c = table.get_mut(idx);
                Self::rebind(snap, c);
                *c
            }
            _ => return Verdict::Pass(PassReason::Icmp),
        };
        if c.fwd != FwdMethod::Tun || c.daddr != odst {
            return Verdict::Pass(PassReason::Icmp);
        }
        let (t, code) = (m.icmp_type, m.icmp_code);
        let l4 = m.l4 as usize;
        let link = snap.links.get(c.dest_hop.link as usize).map_or(0, |l| l.mtu);
        let kind = if A::V6 {
            if t != 2 {
                return Verdict::Pass(PassReason::Icmp);
            }
            // A 32-bit MTU; the links' are 16-bit.
            let said = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]).min(u16::MAX as u32) as u16;
            let path = if said == 0 || (link != 0 && link < said) { link } else { said };
            ErrorKind::TooBig { mtu: path.saturating_sub(40).max(1280) }
        } else if t == 3 && code == 4 {
            // Client uses PMTU discovery?
            if f[q.l3 as usize + 6] & 0x40 == 0 {
                return Verdict::Pass(PassReason::Icmp);
            }
            let said = u16::from_be_bytes([f[l4 + 6], f[l4 + 7]]);
            let mut mtu = if said == 0 || (link != 0 && link < said) { link } else { said };
            if mtu > 68 + 20 {
                mtu -= 20;
            }
            ErrorKind::TooBig { mtu }
        } else {
            ErrorKind::V4 { t, code, rest: u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]) }
        };
        if !matches!(kind, ErrorKind::TooBig { .. }) && !self.icmp_limit.allow(self.now_ns) {
            self.counters.icmp_limited += 1;
            return Verdict::Drop(DropReason::BadIcmp);
        }
        // Strip the outer IP header, the ICMP header and our tunnel's
        // header: the Ethernet header moves up to the client's packet.
        let l2 = m.l3 as usize;
        let inner = q.l3 as usize;
        let end = (q.end as usize).min(f.len());
        let cut = inner - l2;
        fr.data_mut().copy_within(0..l2, cut);
        if !fr.pop_front(cut) {
            return Verdict::Drop(DropReason::BadIcmp);
        }
        let mi = Meta {
            l3: l2 as u16,
            l4: (q.l4 as usize - cut) as u16,
            end: (end - cut) as u16,
            vlan: m.vlan,
            v6: A::V6,
            proto: q.proto,
            ttl: 64,
            ..Meta::default()
        };
        if let Err(r) = icmp::build_error::<A>(fr, &mi, kind) {
            return Verdict::Drop(r);
        }
        let icmp_proto = if A::V6 { proto::ICMPV6 } else { proto::ICMP };
        let mut me =
            Meta { l3: l2 as u16, l4: (l2 + A::HLEN) as u16, end: fr.len as u16, vlan: m.vlan, v6: A::V6, proto: icmp_proto, ..Meta::default() };
        // A TUN connection never sends to the client: its way there is
        // the route's (the error came from the real servers' side).
        let Some(hop) = self.snap.next_hop(c.caddr.into()) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        match xmit::to_hop(fr, &mut me, &hop, &self.snap.links) {
            Ok(port) => {
                self.counters.icmp_relayed += 1;
                Verdict::Tx { port }
            }
            Err(r) => Verdict::Drop(r),
        }
    }
}

/// Whether a frame may be sent to `mac`: unicast, not zero, not one of
/// the director's own (a frame with such a source is spoofed or looped).
#[inline]
fn usable_mac(snap: &Snapshot, mac: [u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != [0; 6] && !snap.ports.iter().any(|p| p.mac == mac)
}

/// Runs service `si`'s scheduler with this worker's state for it and the
/// director-wide loads of its dests (the schedulers read each dest's
/// shared counts as they need them, as IPVS's read `struct ip_vs_dest`'s
/// atomics; nothing is copied per schedule): a dest index of the
/// snapshot. (A function of the worker's parts, not a method, so that
/// callers may hold a borrow of the snapshot.)
#[inline]
fn schedule<A: Ip>(snap: &Snapshot, sched: &mut [SchedState], due: &[u64], now_ns: u64, si: u32, k: &Key<A>) -> Option<usize> {
    let svc = &snap.services[si as usize];
    let ctx = SchedCtx {
        dests: &snap.dests[svc.dests.clone()],
        saddr: k.saddr.into(),
        sport: k.sport,
        daddr: k.daddr.into(),
        dport: k.dport,
        now: now_ns,
        due: due.get(svc.dests.clone()).unwrap_or(&[]),
    };
    svc.table.schedule(&mut sched[si as usize], &ctx).map(|i| svc.dests.start + i)
}

/// Whether service `si` has a real server that would take new connections
/// but for its next hop, which the kernel is still resolving (the
/// schedulers pass over such a server).
#[cold]
fn awaiting_neighbour(snap: &Snapshot, si: u32) -> bool {
    snap.dests[snap.services[si as usize].dests.clone()]
        .iter()
        .any(|d| d.weight > 0 && d.hop.is_none() && !d.shared.overloaded())
}

/// The key of a persistence template (IPVS `ip_vs_conn_fill_param_persist`):
/// the client masked by the netmask, port 0, and the service — its VIP and
/// port (0 for a port-0 service: every port shares the template, IPVS's
/// port affinity), or for a service group the group id (every member
/// shares it). The protocol byte has its high bit set, so a template key
/// never equals a connection's (whose protocol is TCP or UDP).
#[inline]
pub fn template_key<A: Ip>(svc: &ServiceKey, k: &Key<A>, netmask: u8) -> Key<A> {
    let client = k.saddr.mask(netmask);
    match *svc {
        ServiceKey::Addr { port, .. } => Key { saddr: client, daddr: k.daddr, sport: 0, dport: port, proto: 0x80 | k.proto },
        ServiceKey::Group(id) => Key { saddr: client, daddr: A::UNSPECIFIED, sport: (id >> 16) as u16, dport: id as u16, proto: 0xc0 },
    }
}

/// A source address no packet from outside may have (RFC 1812 5.3.7,
/// RFC 4291 2.7 and what Linux's input path drops): IPv4 0.0.0.0/8,
/// 127.0.0.0/8, multicast 224.0.0.0/4, class E 240.0.0.0/4 with the
/// limited broadcast; IPv6 ::, ::1, multicast ff00::/8 and IPv4-mapped
/// ::ffff:0:0/96 (Linux's TCP refuses SYNs from those).
#[inline]
pub fn martian(src: IpAddr) -> bool {
    match src {
        IpAddr::V4(a) => {
            let b = a.octets()[0];
            b == 0 || b == 127 || b >= 224
        }
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.to_ipv4_mapped().is_some(),
    }
}

/// Releases what an expiring entry holds: its place in its dest's load,
/// its FULLNAT local port; a template still controlling connections is
/// kept another persistence timeout (IPVS re-arms it).
fn release<A: Ip>(
    c: &mut Conn<A>,
    now: u32,
    snap: &Snapshot,
    load: &mut [DestLoad],
    lports: &mut LocalPorts,
    counters: &mut WorkerCounters,
) -> bool {
    if c.flags & flags::RELEASED != 0 {
        return true;
    }
    if c.is_template() {
        let di = snap.dest_index(c.dest_uid);
        if c.control > 0 {
            let timeout = di
                .and_then(|i| snap.services[snap.dests[i as usize].svc as usize].persistence)
                .map_or(1, |p| p.timeout);
            c.expires = now.wrapping_add(timer::secs(timeout));
            return false;
        }
        if c.flags & flags::BOUND != 0 {
            if let Some(i) = di {
                load[i as usize].persist = load[i as usize].persist.saturating_sub(1);
                snap.dests[i as usize].shared.persist(false);
            }
            c.flags &= !flags::BOUND;
        }
        counters.templates_expired += 1;
        return true;
    }
    if c.flags & flags::BOUND != 0 {
        if let Some(i) = snap.dest_index(c.dest_uid) {
            let d = &snap.dests[i as usize];
            let l = &mut load[i as usize];
            let inactive = c.flags & flags::INACTIVE != 0;
            if inactive {
                l.inactive = l.inactive.saturating_sub(1);
            } else {
                l.active = l.active.saturating_sub(1);
            }
            d.shared.close(inactive, d.u_threshold, d.l_threshold);
            l.overloaded = d.shared.overloaded();
        }
        c.flags &= !flags::BOUND;
    }
    if c.fwd == FwdMethod::FullNat {
        lports.release(pool_key(c), c.lport);
    }
    counters.expired_conns += 1;
    true
}

/// The local port pool a FULLNAT connection's port came from.
#[inline]
fn pool_key<A: Ip>(c: &Conn<A>) -> PoolKey {
    PoolKey { laddr: c.laddr.into(), daddr: c.daddr.into(), dport: if c.flags & flags::LPORT_ANY != 0 { 0 } else { c.dport } }
}

/// Idle time after which drop_entry may end a connection that is not
/// embryonic (IPVS's `todrop_entry`: 60 s).
const DROP_IDLE_SECS: u32 = 60;

/// Which entries drop_entry may end, as IPVS's `ip_vs_random_dropentry`
/// chooses them: never a template; a TCP connection in SYN_RECV or SYNACK
/// (embryonic); an ESTABLISHED TCP connection, or a connection of another
/// protocol (UDP), that has been idle for 60 s and has had 1 to 8 packets
/// from its client — of those with `n` packets, one candidate in `n`
/// (`todrop_entry`'s rates, per worker here: the fewer packets, the
/// likelier a flood's entry). Closing TCP connections are never ended.
#[inline]
fn droppable<A: Ip>(c: &Conn<A>, now: u32, t: &Timeouts, rate: &mut [u8; 9]) -> bool {
    if c.is_template() {
        return false;
    }
    if c.proto == proto::TCP {
        match TcpState::from_u8(c.state) {
            TcpState::SynRecv | TcpState::SynAck => return true,
            TcpState::Established => {}
            _ => return false,
        }
    }
    // Idle since its last refresh, which set `expires` one timeout ahead.
    let timeout = timer::secs(Worker::timeout(t, c.proto, c.state));
    if !timer::reached(now.wrapping_add(timeout), c.expires.wrapping_add(timer::secs(DROP_IDLE_SECS))) {
        return false;
    }
    let n = (c.in_pkts & seqadj::IN_PKTS) as usize;
    if n == 0 || n >= rate.len() {
        return false;
    }
    if rate[n] > 1 {
        rate[n] -= 1;
        return false;
    }
    rate[n] = n as u8;
    true
}

/// After drop_entry ended `c`: a template that controlled it and controls
/// nothing now is released and unlinked too (IPVS expires `cp->control`
/// with its connection), so the client is scheduled afresh; its slot is
/// reclaimed by the next eviction or when the wheel reaches it.
fn end_orphan_template<A: Ip>(
    table: &mut ConnTable<A>,
    c: &Conn<A>,
    now: u32,
    snap: &Snapshot,
    load: &mut [DestLoad],
    lports: &mut LocalPorts,
    counters: &mut WorkerCounters,
) {
    if c.control == 0 {
        return;
    }
    let ti = c.control - 1;
    let t = table.get_mut(ti);
    if !t.is_template() || t.control != 0 || t.flags & flags::DEAD != 0 {
        return;
    }
    if release(t, now, snap, load, lports, counters) {
        t.flags |= flags::RELEASED;
        table.unlink(ti);
    }
}

mod burst;
mod frag;
mod sync;

pub use sync::{sync_owner, Applied, SyncPort, SyncTap, MAX_TIMEOUT};
mod limit;

use limit::TokenBucket;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_l2;

#[cfg(test)]
mod tests_proxy;

#[cfg(test)]
mod tests_synproxy;
