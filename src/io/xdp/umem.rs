//! The UMEM shared by every socket of a director, and each worker's pool of
//! free chunks.
//!
//! # Contract
//!
//! - One [`Area`] for all sockets (every interface, every queue): a frame
//!   received on interface A can be transmitted on interface B, or handed to
//!   another worker, by passing its chunk token — never by copying bytes.
//! - The chunks are partitioned: worker `q` owns chunks
//!   `q * per_queue .. (q + 1) * per_queue`. A worker that frees a chunk of
//!   another partition (a handed-off frame it transmitted or dropped) sends
//!   it home through that owner's return queue, so no worker's pool drains
//!   into another's over time. Return queues are bounded by the partition
//!   size and so can never be full.
//! - [`Pool`] is a plain `Vec` with its capacity reserved up front: putting
//!   and taking chunks never allocates.
//! - A pool counts its chunks *abroad*: handed to other workers and not
//!   back yet (home through the return queue, or handed back in). The
//!   worker hands off no more than its quota (`QueueIo`), so a worker that
//!   stops draining its inbox (or its completion ring) can hold no more of
//!   another's chunks than that, and every worker keeps enough at home to
//!   fill its own fill rings.

use super::sys::{Area, Chunk};
use crossbeam::queue::ArrayQueue;
use std::io;

/// The area and the return queues, shared (behind an `Arc`) by all workers.
#[derive(Debug)]
pub struct Shared {
    pub(super) area: Area,
    per_queue: u32,
    returns: Vec<ArrayQueue<Chunk>>,
}

impl Shared {
    /// Maps `queues * per_queue` chunks of `chunk_size` bytes and returns
    /// the shared part and one pool per worker.
    ///
    /// # Errors
    /// The mapping failed (out of memory, bad chunk size).
    pub fn new(queues: u32, per_queue: u32, chunk_size: u32) -> io::Result<(Shared, Vec<Pool>)> {
        let total = queues
            .checked_mul(per_queue)
            .filter(|t| *t > 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "UMEM chunk count is 0 or overflows",
                )
            })?;
        let (area, tokens) = Area::new(total, chunk_size)?;
        let mut pools: Vec<Pool> = (0..queues)
            .map(|q| Pool {
                owner: q,
                free: Vec::with_capacity(per_queue as usize),
                abroad: 0,
            })
            .collect();
        for t in tokens {
            let q = (t.index() / per_queue) as usize;
            pools[q].free.push(t);
        }
        let returns = (0..queues)
            .map(|_| ArrayQueue::new(per_queue as usize))
            .collect();
        Ok((
            Shared {
                area,
                per_queue,
                returns,
            },
            pools,
        ))
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.area.chunk_size()
    }

    /// Chunks per worker.
    pub fn per_queue(&self) -> u32 {
        self.per_queue
    }
}

/// A worker's free chunks.
#[derive(Debug)]
pub struct Pool {
    owner: u32,
    pub(super) free: Vec<Chunk>,
    /// Own chunks handed to other workers and not back yet.
    abroad: u32,
}

impl Pool {
    /// Gives a chunk back: into this pool if it is ours, else home to its
    /// owner's return queue.
    #[inline]
    pub fn put(&mut self, shared: &Shared, c: Chunk) {
        let owner = c.index() / shared.per_queue;
        if owner == self.owner {
            self.free.push(c);
        } else if let Some(q) = shared.returns.get(owner as usize) {
            // Cannot be full: it holds at most the owner's chunks.
            let _ = q.push(c);
        }
    }

    /// Takes back the chunks other workers returned (every one of them
    /// was abroad).
    #[inline]
    pub fn collect_returns(&mut self, shared: &Shared) {
        if let Some(q) = shared.returns.get(self.owner as usize) {
            while let Some(c) = q.pop() {
                self.free.push(c);
                self.abroad = self.abroad.saturating_sub(1);
            }
        }
    }

    /// Chunks other workers gave back that this pool has not collected
    /// yet (UMEM accounting).
    pub fn returning(&self, shared: &Shared) -> usize {
        shared.returns.get(self.owner as usize).map_or(0, ArrayQueue::len)
    }

    /// True when `c` belongs to this pool's partition.
    #[inline]
    pub fn is_own(&self, shared: &Shared, c: &Chunk) -> bool {
        c.index() / shared.per_queue == self.owner
    }

    /// Notes that `c` leaves for another worker (a hand-off).
    #[inline]
    pub fn lend(&mut self, shared: &Shared, c: &Chunk) {
        if self.is_own(shared, c) {
            self.abroad += 1;
        }
    }

    /// Notes that `c`, handed off before, is back in this worker's hands
    /// without passing the return queue (handed back in, or its hand-off
    /// refused).
    #[inline]
    pub fn came_home(&mut self, shared: &Shared, c: &Chunk) {
        if self.is_own(shared, c) {
            self.abroad = self.abroad.saturating_sub(1);
        }
    }

    /// Own chunks handed to other workers and not back yet.
    #[inline]
    pub fn abroad(&self) -> u32 {
        self.abroad
    }

    /// Whether one more own chunk may go abroad under `quota`; at the
    /// quota, the returns are collected first (rare: the return queue's
    /// atomics stay off the common path).
    #[inline]
    pub fn may_lend(&mut self, shared: &Shared, quota: u32) -> bool {
        if self.abroad < quota {
            return true;
        }
        self.collect_returns(shared);
        self.abroad < quota
    }

    /// Free chunks in the pool.
    #[inline]
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// True when no chunk is free.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    /// The worker (queue slot) that owns this pool.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Takes a free chunk (e.g. to build a frame from scratch).
    #[inline]
    pub fn take(&mut self) -> Option<Chunk> {
        self.free.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_partitioned_by_worker() {
        let (sh, pools) = Shared::new(3, 4, 2048).unwrap();
        assert_eq!(pools.len(), 3);
        for (q, p) in pools.iter().enumerate() {
            assert_eq!(p.len(), 4);
            assert!(p.free.iter().all(|c| c.index() / 4 == q as u32));
        }
        assert_eq!(sh.chunk_size(), 2048);
        assert!(Shared::new(0, 4, 2048).is_err());
        assert!(Shared::new(u32::MAX, 4, 2048).is_err());
    }

    #[test]
    fn foreign_chunks_go_home_and_pools_never_reallocate() {
        let (sh, mut pools) = Shared::new(2, 8, 2048).unwrap();
        let cap1 = pools[1].free.capacity();
        // Worker 0 hands three of its chunks to worker 1 (e.g. a hand-off),
        // which frees them.
        let moved: Vec<Chunk> = (0..3).filter_map(|_| pools[0].take()).collect();
        for c in moved {
            pools[1].put(&sh, c);
        }
        assert_eq!((pools[0].len(), pools[1].len()), (5, 8));
        pools[0].collect_returns(&sh);
        assert_eq!(pools[0].len(), 8);
        assert_eq!(pools[1].free.capacity(), cap1);
        // Nothing left to collect.
        pools[0].collect_returns(&sh);
        assert_eq!(pools[0].len(), 8);
    }

    /// A receiver that stops draining holds at most the quota of a
    /// sender's chunks: the sender's hand-offs are refused beyond it, its
    /// own chunks stay home for its fill rings, and once the receiver
    /// frees them the sender lends again.
    #[test]
    fn a_stuck_receiver_holds_no_more_than_the_quota() {
        let (sh, mut pools) = Shared::new(2, 64, 2048).unwrap();
        let quota = 16;
        let mut inbox = Vec::new(); // worker 1's, never drained
        let mut refused = 0;
        for _ in 0..64 {
            let c = pools[0].take().unwrap();
            if pools[0].may_lend(&sh, quota) {
                pools[0].lend(&sh, &c);
                inbox.push(c);
            } else {
                refused += 1;
                pools[0].put(&sh, c);
            }
        }
        assert_eq!((inbox.len(), refused), (16, 48));
        assert_eq!(pools[0].len(), 64 - 16, "the rest stays home");
        // worker 1 wakes up and frees what it held
        for c in inbox.drain(..) {
            pools[1].put(&sh, c);
        }
        assert!(pools[0].may_lend(&sh, quota), "collected at the quota");
        assert_eq!((pools[0].abroad(), pools[0].len()), (0, 64));
    }

    /// Chunks abroad are counted on every way out and back: handed off
    /// (+1), home through the return queue, handed back in or refused
    /// (−1); a foreign chunk passed on changes nothing for the one that
    /// passes it.
    #[test]
    fn chunks_abroad_are_counted_out_and_home() {
        let (sh, mut pools) = Shared::new(3, 8, 2048).unwrap();
        let (p0, rest) = pools.split_first_mut().unwrap();
        let (p1, p2) = rest.split_at_mut(1);
        let (p1, p2) = (&mut p1[0], &mut p2[0]);
        let mut out: Vec<Chunk> = (0..5).map(|_| p0.take().unwrap()).collect();
        for c in &out {
            p0.lend(&sh, c);
        }
        assert_eq!(p0.abroad(), 5);
        // worker 1 frees two: home through the return queue
        p1.put(&sh, out.pop().unwrap());
        p1.put(&sh, out.pop().unwrap());
        // worker 1 passes one on to worker 2, which frees it
        let c = out.pop().unwrap();
        p1.lend(&sh, &c);
        assert_eq!(p1.abroad(), 0, "not worker 1's chunk");
        p2.put(&sh, c);
        assert_eq!(p0.abroad(), 5, "counted when collected");
        p0.collect_returns(&sh);
        assert_eq!(p0.abroad(), 2);
        // one handed back in, one whose hand-off was refused
        let c = out.pop().unwrap();
        p0.came_home(&sh, &c);
        p0.put(&sh, c);
        let c = out.pop().unwrap();
        p0.came_home(&sh, &c);
        p0.put(&sh, c);
        assert_eq!((p0.abroad(), p0.len()), (0, 8));
        // a foreign chunk coming home elsewhere changes nothing here
        let c = p1.take().unwrap();
        p0.came_home(&sh, &c);
        assert_eq!(p0.abroad(), 0);
        p1.put(&sh, c);
    }
}
