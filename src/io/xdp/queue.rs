//! One worker's AF_XDP sockets (one per interface, all on the worker's
//! queue) and the burst API the worker loop drives.
//!
//! # Contract
//!
//! - [`QueueIo::burst`] reaps TX completions, refills the fill rings,
//!   receives up to a burst of frames from the sockets (round robin over the
//!   interfaces) and hands them to the caller's closure as
//!   [`Frame`](crate::wire::Frame)s over their UMEM chunks, with
//!   [`HEADROOM`](crate::wire::frame::HEADROOM) or more bytes in front of
//!   `head`. The closure says each frame's [`Fate`] and may move `head` and
//!   change `len` (encapsulation, ICMP errors built in place): a `Tx` frame
//!   is sent from its new start on the TX ring of the port it names — any
//!   interface, the UMEM is shared — a `Recycle`d one goes back to the fill
//!   rings, a `Handoff` one is kept for [`QueueIo::take_handoffs`].
//! - Frames exist only inside the closure (a higher-ranked lifetime), so no
//!   reference to a chunk survives its return to the kernel.
//! - The need-wakeup flags are honoured: `sendto` only when the TX ring
//!   asks for it (copy mode always does; it then transmits inside the call,
//!   32 frames per call), `recvfrom`/`poll` only when the fill ring asks.
//! - [`QueueIo::idle`] implements the [`PollMode`]s;
//!   [`QueueIo::idle_inbox`] also sleeps on a hand-off [`Inbox`]'s
//!   doorbell, so frames handed to a sleeping worker wake it.
//! - Nothing here allocates, locks or touches a shared atomic per packet;
//!   the only atomics are the ring indices shared with the kernel and, for
//!   handed-off frames only, the return queues.

use super::inbox::Inbox;
use super::sys::{self, Chunk, CompRing, FillRing, RxRing, TxRing};
use super::umem::{Pool, Shared};
use super::XdpError;
use crate::wire::Frame;
use crate::worker::Refused;
use arrayvec::ArrayVec;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

/// Most frames one [`QueueIo::burst`] handles.
pub const MAX_BURST: usize = 64;
/// `sendto` calls per port and burst at most (copy mode sends 32 frames per
/// call, so this covers a full burst with room to spare).
const MAX_KICKS: u32 = 4;

/// What happens to a frame after the worker has seen it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fate {
    /// Back to the fill rings (dropped, or passed: AF_XDP cannot give a
    /// frame back to the kernel stack).
    #[default]
    Recycle,
    /// Transmit `buf[head..head + len]` on port `port` (an index into the
    /// interfaces the [`QueueIo`] was opened with).
    Tx { port: u8 },
    /// Keep it for [`QueueIo::take_handoffs`]: it goes to another worker.
    Handoff { worker: u16 },
}

/// A frame on its way to another worker: the chunk token and where the
/// packet lies in it. `Send`; the chunk belongs to the shared UMEM, so no
/// byte is copied.
#[derive(Debug)]
pub struct Handed {
    chunk: Chunk,
    head: u32,
    len: u32,
    port: u8,
}

impl Handed {
    /// The port (interface index) the frame was received on.
    pub fn port(&self) -> u8 {
        self.port
    }
    /// Packet length.
    pub fn len(&self) -> u32 {
        self.len
    }
    /// True for an empty packet (never produced by the driver).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a worker waits when there is no traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollMode {
    /// Never sleep: lowest latency, burns the core even when idle. Only for
    /// workers on cores where no NAPI/softirq work runs (see docs/afxdp.md).
    Busy,
    /// Spin for `spin` empty polls, then sleep in `poll()` until a socket
    /// has frames (or the caller's deadline). Safe when the kernel's receive
    /// work shares the worker's core. The default.
    Adaptive { spin: u32 },
}

impl Default for PollMode {
    fn default() -> Self {
        PollMode::Adaptive { spin: 64 }
    }
}

/// Driver counters of one worker (plain integers, owned by the worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Frames received (including handed-in frames).
    pub rx: u64,
    /// Frames queued for transmission.
    pub tx: u64,
    /// `Tx` frames recycled because the TX ring was full.
    pub tx_full: u64,
    /// `Tx` frames recycled because of a bad port or a range outside the
    /// chunk (a worker bug; counted, never sent).
    pub tx_invalid: u64,
    /// `sendto`/`recvfrom` wakeups.
    pub kicks: u64,
    /// Wakeups that failed (ENOBUFS, ENETDOWN, ...).
    pub kick_errors: u64,
    /// Descriptors from the kernel that did not fit the UMEM (never expected).
    pub bad_descs: u64,
    /// Frames handed out to other workers.
    pub handed_out: u64,
    /// `Handoff` frames recycled because more than a burst was pending.
    pub handoff_overflow: u64,
    /// `Handoff` frames recycled because this worker's chunks abroad
    /// (handed off, not back yet) were at its quota: another worker is
    /// not draining its inbox.
    pub handoff_quota: u64,
    /// Sleeps in `poll()`.
    pub sleeps: u64,
    /// Sleeps another worker's hand-off ended ([`QueueIo::idle_inbox`]).
    pub handoff_wakeups: u64,
    /// UMEM accounting (docs/reliability.md): chunks put on the fill
    /// rings, taken off the RX rings, reaped from the completion rings.
    /// With `tx`, the chunks this worker gave the kernel and did not take
    /// back are `umem_fill + tx - umem_rx - umem_completed`.
    pub umem_fill: u64,
    pub umem_rx: u64,
    pub umem_completed: u64,
    /// Gauges as of the last burst: chunks free in this worker's pool,
    /// waiting in its return queue, and its share of the UMEM. Summed
    /// over the workers, free + returning + in the kernel (+ frames being
    /// handed over) = total, always.
    pub umem_free: u64,
    pub umem_returning: u64,
    pub umem_total: u64,
}

/// Kernel statistics of one socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// One AF_XDP socket: an (interface, queue) pair.
#[derive(Debug)]
pub(super) struct Sock {
    pub(super) fd: OwnedFd,
    pub(super) rx: RxRing,
    pub(super) tx: TxRing,
    pub(super) fill: FillRing,
    pub(super) comp: CompRing,
    pub(super) zerocopy: bool,
}

#[derive(Debug)]
struct Pending {
    chunk: Chunk,
    head: u32,
    len: u32,
    port: u8,
}

/// The AF_XDP side of one worker. `Send`: build it on the control thread,
/// move it to the worker's thread.
#[derive(Debug)]
pub struct QueueIo {
    shared: Arc<Shared>,
    queue: u32,
    socks: Vec<Sock>,
    pool: Pool,
    /// Pool level below which chunks returned by other workers are
    /// collected (keeps the return-queue atomics off the common path).
    low_water: usize,
    /// Most own chunks abroad at once (see [`QueueIo::handoff_quota`]).
    quota: u32,
    pending: ArrayVec<Pending, MAX_BURST>,
    handoffs: ArrayVec<(u16, Handed), MAX_BURST>,
    pollfds: Vec<libc::pollfd>,
    mode: PollMode,
    empty_polls: u32,
    next_port: usize,
    stats: IoStats,
    /// Verdicts not carried out since the last [`QueueIo::take_refused`].
    refused: Refused,
}

impl QueueIo {
    pub(super) fn new(
        shared: Arc<Shared>,
        queue: u32,
        socks: Vec<Sock>,
        pool: Pool,
        mode: PollMode,
    ) -> QueueIo {
        // One slot more, for a hand-off inbox's doorbell (`idle_inbox`);
        // poll() skips a negative descriptor.
        let pollfds = socks
            .iter()
            .map(|s| s.fd.as_raw_fd())
            .chain([-1])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let fill = socks.iter().map(|s| s.fill.size() as usize).sum::<usize>();
        let low_water = fill + MAX_BURST;
        let quota = handoff_quota(shared.per_queue() as usize, fill);
        let umem_total = shared.per_queue() as u64;
        let mut q = QueueIo {
            shared,
            queue,
            socks,
            pool,
            low_water,
            quota,
            pending: ArrayVec::new(),
            handoffs: ArrayVec::new(),
            pollfds,
            mode,
            empty_polls: 0,
            next_port: 0,
            stats: IoStats { umem_total, ..IoStats::default() },
            refused: Refused::default(),
        };
        q.service_rings();
        q
    }

    /// The queue id every socket of this worker is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Number of ports (interfaces).
    pub fn ports(&self) -> usize {
        self.socks.len()
    }

    /// Whether port `port`'s socket runs in zero-copy mode.
    pub fn zerocopy(&self, port: usize) -> bool {
        self.socks.get(port).is_some_and(|s| s.zerocopy)
    }

    /// The polling mode.
    pub fn poll_mode(&self) -> PollMode {
        self.mode
    }

    /// Changes the polling mode.
    pub fn set_poll_mode(&mut self, mode: PollMode) {
        self.mode = mode;
        self.empty_polls = 0;
    }

    /// Driver counters.
    pub fn stats(&self) -> &IoStats {
        &self.stats
    }

    /// What the bursts since the last call could not carry out of their
    /// fates (`Tx` frames the TX ring refused, `Handoff` frames beyond a
    /// burst), for the worker's counters ([`Worker::count_refused`]); the
    /// tally starts again from zero.
    ///
    /// [`Worker::count_refused`]: crate::worker::Worker::count_refused
    #[inline]
    pub fn take_refused(&mut self) -> Refused {
        std::mem::take(&mut self.refused)
    }

    /// Free chunks in this worker's pool.
    pub fn free_chunks(&self) -> usize {
        self.pool.len()
    }

    /// Most of this worker's chunks that may be abroad at once: handed to
    /// other workers and not back yet (in their inboxes, TX or completion
    /// rings, or return queue). Half of what the worker has beyond its
    /// fill rings and a burst (at least a burst): whatever another worker
    /// does, this one keeps enough chunks to fill its own fill rings.
    pub fn handoff_quota(&self) -> u32 {
        self.quota
    }

    /// This worker's chunks abroad now.
    pub fn chunks_abroad(&self) -> u32 {
        self.pool.abroad()
    }

    /// Bytes per UMEM chunk (the `buf` length of every frame).
    pub fn chunk_size(&self) -> usize {
        self.shared.chunk_size() as usize
    }

    /// The kernel's counters of port `port`'s socket.
    ///
    /// # Errors
    /// No such port, or the getsockopt failed.
    pub fn xsk_stats(&self, port: usize) -> Result<XskStats, XdpError> {
        let s = self.socks.get(port).ok_or_else(|| XdpError::Config {
            field: "port",
            why: format!("no port {port}"),
        })?;
        let k = sys::xsk_statistics(&s.fd)
            .map_err(|e| XdpError::sys("(socket)", "XDP_STATISTICS", e))?;
        Ok(XskStats {
            rx_dropped: k.rx_dropped,
            rx_invalid_descs: k.rx_invalid_descs,
            tx_invalid_descs: k.tx_invalid_descs,
            rx_ring_full: k.rx_ring_full,
            rx_fill_ring_empty_descs: k.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: k.tx_ring_empty_descs,
        })
    }

    /// Reaps completions into the pool and tops the fill rings up.
    #[inline]
    fn service_rings(&mut self) {
        let area = &self.shared.area;
        for s in &mut self.socks {
            let pool = &mut self.pool;
            let shared = &*self.shared;
            let (n, bad) = s.comp.reap(area, u32::MAX, |c| pool.put(shared, c));
            self.stats.umem_completed += n as u64;
            self.stats.bad_descs += bad as u64;
        }
        if self.pool.len() < self.low_water {
            self.pool.collect_returns(&self.shared);
        }
        for s in &mut self.socks {
            self.stats.umem_fill += s.fill.refill(area, &mut self.pool.free, u32::MAX) as u64;
        }
        self.stats.umem_free = self.pool.len() as u64;
        self.stats.umem_returning = self.pool.returning(&self.shared) as u64;
    }

    /// Receives up to `max` (at most [`MAX_BURST`]) frames and runs `f` on
    /// them: `f(frames, ports, fates)` where `ports[i]` is the port frame
    /// `i` came in on and `fates[i]` (preset to [`Fate::Recycle`]) is what
    /// to do with it. Returns the number of frames (0: nothing arrived, `f`
    /// was not called).
    pub fn burst<F>(&mut self, max: usize, f: F) -> usize
    where
        F: for<'x> FnOnce(&mut [Frame<'x>], &[u8], &mut [Fate]),
    {
        self.service_rings();
        let max = max.min(MAX_BURST);
        let nports = self.socks.len();
        let area = &self.shared.area;
        for k in 0..nports {
            let room = max - self.pending.len();
            if room == 0 {
                break;
            }
            let port = (self.next_port + k) % nports;
            let pending = &mut self.pending;
            let (got, bad) = self.socks[port]
                .rx
                .recv(area, room as u32, |chunk, head, len| {
                    // recv takes at most `room`: the push cannot overflow.
                    pending.push(Pending {
                        chunk,
                        head,
                        len,
                        port: port as u8,
                    })
                });
            self.stats.umem_rx += got as u64;
            self.stats.bad_descs += bad as u64;
        }
        if nports > 0 {
            self.next_port = (self.next_port + 1) % nports;
        }
        self.run(f)
    }

    /// Runs `f` over frames handed in by other workers (at most
    /// [`MAX_BURST`] are taken from `items`), exactly as [`burst`](Self::burst)
    /// does over received ones.
    pub fn burst_handed<I, F>(&mut self, items: I, f: F) -> usize
    where
        I: IntoIterator<Item = Handed>,
        F: for<'x> FnOnce(&mut [Frame<'x>], &[u8], &mut [Fate]),
    {
        for h in items.into_iter().take(MAX_BURST - self.pending.len()) {
            self.pool.came_home(&self.shared, &h.chunk);
            self.pending.push(Pending {
                chunk: h.chunk,
                head: h.head,
                len: h.len,
                port: h.port,
            });
        }
        self.run(f)
    }

    /// Gives the frames marked [`Fate::Handoff`] in the last burst to `f`
    /// (target worker, frame). Call after every burst that may hand off;
    /// a later burst recycles what no longer fits.
    pub fn take_handoffs(&mut self, mut f: impl FnMut(u16, Handed)) {
        for (w, h) in self.handoffs.drain(..) {
            f(w, h);
        }
    }

    /// Takes back the chunks other workers freed for this one (done by
    /// [`burst`](Self::burst) when the pool runs low and before sleeping).
    pub fn collect_returns(&mut self) {
        self.pool.collect_returns(&self.shared);
    }

    /// Frees a handed frame that could not be delivered (e.g. the target
    /// worker's queue was full).
    pub fn recycle_handed(&mut self, h: Handed) {
        self.pool.came_home(&self.shared, &h.chunk);
        self.pool.put(&self.shared, h.chunk);
    }

    fn run<F>(&mut self, f: F) -> usize
    where
        F: for<'x> FnOnce(&mut [Frame<'x>], &[u8], &mut [Fate]),
    {
        let n = self.pending.len();
        if n == 0 {
            return 0;
        }
        self.stats.rx += n as u64;
        let area = &self.shared.area;
        let mut ports = [0u8; MAX_BURST];
        let mut fates = [Fate::Recycle; MAX_BURST];
        let mut layout = [(0usize, 0usize); MAX_BURST];
        {
            let mut frames: ArrayVec<Frame<'_>, MAX_BURST> = ArrayVec::new();
            for (i, p) in self.pending.iter_mut().enumerate() {
                ports[i] = p.port;
                frames.push(Frame::new(
                    area.chunk_mut(&mut p.chunk),
                    p.head as usize,
                    p.len as usize,
                ));
            }
            f(&mut frames, &ports[..n], &mut fates[..n]);
            for (l, fr) in layout.iter_mut().zip(frames.iter()) {
                *l = (fr.head, fr.len);
            }
        }

        let chunk_size = area.chunk_size() as usize;
        let mut touched = 0u64;
        for (i, p) in self.pending.drain(..).enumerate() {
            let (head, len) = layout[i];
            match fates[i] {
                Fate::Recycle => self.pool.put(&self.shared, p.chunk),
                Fate::Tx { port } => {
                    let sock = self.socks.get_mut(port as usize);
                    let fits = len > 0 && head.checked_add(len).is_some_and(|e| e <= chunk_size);
                    match sock {
                        Some(s) if fits => {
                            match s.tx.push(area, p.chunk, head as u32, len as u32) {
                                Ok(()) => {
                                    touched |= 1 << (port as u64 % 64);
                                    self.stats.tx += 1;
                                }
                                Err(c) => {
                                    self.stats.tx_full += 1;
                                    self.refused.tx_full.0 += 1;
                                    self.refused.tx_full.1 += len as u64;
                                    self.pool.put(&self.shared, c);
                                }
                            }
                        }
                        _ => {
                            self.stats.tx_invalid += 1;
                            self.refused.tx_invalid.0 += 1;
                            self.refused.tx_invalid.1 += len as u64;
                            self.pool.put(&self.shared, p.chunk);
                        }
                    }
                }
                Fate::Handoff { worker } => {
                    let h = Handed {
                        chunk: p.chunk,
                        head: head as u32,
                        len: len as u32,
                        port: p.port,
                    };
                    if head.checked_add(len).is_some_and(|e| e <= chunk_size) {
                        let own = self.pool.is_own(&self.shared, &h.chunk);
                        // Another worker not draining its inbox may hold
                        // this many of ours, no more.
                        if own && !self.pool.may_lend(&self.shared, self.quota) {
                            self.stats.handoff_quota += 1;
                            self.pool.put(&self.shared, h.chunk);
                            continue;
                        }
                        self.pool.lend(&self.shared, &h.chunk);
                        match self.handoffs.try_push((worker, h)) {
                            Ok(()) => self.stats.handed_out += 1,
                            Err(e) => {
                                self.stats.handoff_overflow += 1;
                                self.refused.handoff_full += 1;
                                let c = e.element().1.chunk;
                                self.pool.came_home(&self.shared, &c);
                                self.pool.put(&self.shared, c);
                            }
                        }
                    } else {
                        self.stats.tx_invalid += 1;
                        self.refused.handoff_invalid += 1;
                        self.pool.put(&self.shared, h.chunk);
                    }
                }
            }
        }
        for (port, s) in self.socks.iter_mut().enumerate() {
            if touched & (1 << (port % 64)) != 0 {
                s.tx.publish();
                kick_tx(s, &mut self.stats);
            }
        }
        // Recycled frames go straight back to the fill rings.
        for s in &mut self.socks {
            self.stats.umem_fill += s.fill.refill(&self.shared.area, &mut self.pool.free, u32::MAX) as u64;
        }
        self.stats.umem_free = self.pool.len() as u64;
        n
    }

    /// Builds up to `n` new frames in free chunks and queues them on port
    /// `port`'s TX ring (generators, frames not made from a received one).
    /// `f(i, frame)` writes frame `i` — `buf` is the whole chunk, `head`
    /// starts at [`RX_HEADROOM`](super::RX_HEADROOM), `len` at 0 — and
    /// returns false to stop. Returns how many frames were queued.
    pub fn send_new(
        &mut self,
        port: u8,
        n: usize,
        mut f: impl FnMut(usize, &mut Frame<'_>) -> bool,
    ) -> usize {
        self.service_rings();
        let area = &self.shared.area;
        let chunk_size = area.chunk_size() as usize;
        let Some(s) = self.socks.get_mut(port as usize) else {
            self.stats.tx_invalid += 1;
            return 0;
        };
        let mut sent = 0;
        for i in 0..n {
            let Some(mut c) = self.pool.take() else { break };
            let (go, head, len) = {
                let mut fr = Frame::new(area.chunk_mut(&mut c), super::RX_HEADROOM, 0);
                let go = f(i, &mut fr);
                (go, fr.head, fr.len)
            };
            let fits = len > 0 && head.checked_add(len).is_some_and(|e| e <= chunk_size);
            if !go || !fits {
                self.stats.tx_invalid += u64::from(go);
                self.pool.put(&self.shared, c);
                break;
            }
            match s.tx.push(area, c, head as u32, len as u32) {
                Ok(()) => sent += 1,
                Err(c) => {
                    self.stats.tx_full += 1;
                    self.pool.put(&self.shared, c);
                    break;
                }
            }
        }
        if sent > 0 {
            self.stats.tx += sent as u64;
            s.tx.publish();
            kick_tx(s, &mut self.stats);
        }
        sent
    }

    /// Call once per loop iteration with the number of frames the
    /// iteration handled. Does the wakeups the rings ask for, and in
    /// [`PollMode::Adaptive`] sleeps in `poll()` (at most `max_sleep`, the
    /// caller's next timer deadline) after `spin` empty iterations. Returns
    /// true when it slept.
    pub fn idle(&mut self, handled: usize, max_sleep: Duration) -> bool {
        self.idle_then::<()>(handled, max_sleep, None)
    }

    /// [`idle`](Self::idle) for a worker that other workers hand frames to:
    /// it sleeps only when `inbox` is empty, and a hand-off into it ends
    /// the sleep ([`Inbox`]), so `max_sleep` is only the caller's next timer.
    pub fn idle_inbox<T>(&mut self, handled: usize, max_sleep: Duration, inbox: &Inbox<T>) -> bool {
        self.idle_then(handled, max_sleep, Some(inbox))
    }

    fn idle_then<T>(&mut self, handled: usize, max_sleep: Duration, inbox: Option<&Inbox<T>>) -> bool {
        if handled > 0 {
            self.empty_polls = 0;
            return false;
        }
        self.empty_polls = self.empty_polls.saturating_add(1);
        // Copy mode may have left frames in a TX ring (32 per sendto):
        // push them out instead of sleeping on them.
        let mut tx_left = false;
        for s in &mut self.socks {
            if s.tx.outstanding() > 0 {
                tx_left = true;
                kick_tx(s, &mut self.stats);
            }
        }
        let sleep = match self.mode {
            PollMode::Busy => false,
            PollMode::Adaptive { spin } => self.empty_polls > spin && !tx_left,
        };
        if !sleep {
            for s in &self.socks {
                if s.fill.needs_wakeup() {
                    self.stats.kicks += 1;
                    if sys::kick_rx(s.fd.as_raw_fd()).is_err() {
                        self.stats.kick_errors += 1;
                    }
                }
            }
            return false;
        }
        self.pool.collect_returns(&self.shared);
        let bell = self.socks.len();
        if let Some(ib) = inbox {
            if !ib.arm() {
                // Handed frames arrived since the loop looked.
                self.empty_polls = 0;
                return false;
            }
            self.pollfds[bell].fd = ib.fd();
        }
        // poll() also does the fill-ring wakeup for zero-copy drivers.
        let ms = max_sleep.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        self.stats.sleeps += 1;
        if sys::poll_in(&mut self.pollfds, ms).is_err() {
            self.stats.kick_errors += 1;
        }
        if let Some(ib) = inbox {
            let rung = self.pollfds[bell].revents & libc::POLLIN != 0;
            self.pollfds[bell].fd = -1;
            if ib.disarm(rung) {
                self.stats.handoff_wakeups += 1;
            }
        }
        true
    }
}

/// The quota of [`QueueIo::handoff_quota`] for `per_queue` chunks and
/// fill rings of `fill` entries in all.
fn handoff_quota(per_queue: usize, fill: usize) -> u32 {
    let spare = per_queue.saturating_sub(fill + MAX_BURST) / 2;
    spare.max(MAX_BURST).min(u32::MAX as usize) as u32
}

/// Kicks the kernel to transmit when the TX ring asks for it. In copy mode
/// each `sendto` transmits up to 32 frames and answers EAGAIN while more
/// are left.
#[inline]
fn kick_tx(s: &mut Sock, stats: &mut IoStats) {
    if !s.tx.needs_wakeup() {
        return;
    }
    for _ in 0..MAX_KICKS {
        stats.kicks += 1;
        match sys::kick_tx(s.fd.as_raw_fd()) {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(_) => {
                stats.kick_errors += 1;
                return;
            }
        }
    }
}
