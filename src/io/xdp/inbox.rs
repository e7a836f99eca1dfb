//! A worker's hand-off inbox: the bounded lock-free queue other workers
//! put frames for it in, and a doorbell that wakes it when it sleeps.
//!
//! # Contract
//!
//! - Senders [`push`](Inbox::push) their frames and, once per burst and
//!   target, [`wake`](Inbox::wake) the target: one fence and one load of
//!   the target's "asleep" flag; only when the target said it is going to
//!   sleep is the flag taken back and the eventfd written (a syscall per
//!   sleep, never per frame).
//! - The owner, before sleeping, [`arm`](Inbox::arm)s: it raises the flag
//!   and then looks at the queue; a frame pushed before the flag was seen
//!   is found there (the owner does not sleep), one pushed after it finds
//!   the flag raised (the sender rings). Both sides order the flag and the
//!   queue with sequentially consistent fences, so one of the two always
//!   sees the other: a handed frame never waits for a sleep to time out.
//!   [`QueueIo::idle_inbox`](super::QueueIo::idle_inbox) polls the
//!   eventfd beside the worker's sockets and [`disarm`](Inbox::disarm)s
//!   after waking.
//! - A ring that comes after the owner woke for another reason leaves the
//!   eventfd readable: the next sleep returns at once, once. Nothing is
//!   lost, and nothing is counted twice.

use super::sys;
use crossbeam::queue::ArrayQueue;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};

/// The inbox of one worker (see the module docs). `T` is
/// [`Handed`](super::Handed) in the daemon.
#[derive(Debug)]
pub struct Inbox<T> {
    queue: ArrayQueue<T>,
    /// Set by the owner just before it sleeps; taken back by the sender
    /// that rings, or by the owner when it wakes.
    asleep: AtomicBool,
    bell: OwnedFd,
}

impl<T> Inbox<T> {
    /// An empty inbox of `capacity` frames (at least 1).
    ///
    /// # Errors
    /// The eventfd could not be created (descriptor limit).
    pub fn new(capacity: usize) -> io::Result<Inbox<T>> {
        Ok(Inbox {
            queue: ArrayQueue::new(capacity.max(1)),
            asleep: AtomicBool::new(false),
            bell: sys::eventfd()?,
        })
    }

    /// Queues `item` for the owner; gives it back when the inbox is full.
    /// Call [`wake`](Inbox::wake) after the burst's last push.
    #[inline]
    pub fn push(&self, item: T) -> Result<(), T> {
        self.queue.push(item)
    }

    /// Takes the oldest item (owner side).
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sender side, after pushing: rings the doorbell if the owner is
    /// asleep (or about to be). Returns true when it rang.
    #[inline]
    pub fn wake(&self) -> bool {
        // Orders the pushes before the flag's load (against `arm`).
        fence(Ordering::SeqCst);
        if !self.asleep.load(Ordering::SeqCst) {
            return false;
        }
        self.ring()
    }

    #[cold]
    #[inline(never)]
    fn ring(&self) -> bool {
        // One sender rings per sleep.
        if !self.asleep.swap(false, Ordering::SeqCst) {
            return false;
        }
        // An eventfd write fails only on a bad descriptor, which an owned
        // one is not; the owner's sleep bound covers it anyway.
        sys::eventfd_ring(self.bell.as_raw_fd()).is_ok()
    }

    /// Owner side, before sleeping: says so, then returns false (do not
    /// sleep; the flag is down again) if something is waiting already.
    #[inline]
    pub fn arm(&self) -> bool {
        self.asleep.store(true, Ordering::SeqCst);
        // Orders the flag's store before the queue's load (against `wake`).
        fence(Ordering::SeqCst);
        if self.queue.is_empty() {
            return true;
        }
        self.asleep.store(false, Ordering::SeqCst);
        false
    }

    /// Owner side, after the sleep: the flag down, and the doorbell reset
    /// when `rung` (the poll saw the eventfd readable). Returns whether it
    /// had been rung.
    pub fn disarm(&self, rung: bool) -> bool {
        self.asleep.store(false, Ordering::SeqCst);
        rung && sys::eventfd_take(self.bell.as_raw_fd()).is_ok_and(|n| n > 0)
    }

    /// Whether the owner said it sleeps and no sender has rung since.
    pub fn is_armed(&self) -> bool {
        self.asleep.load(Ordering::SeqCst)
    }

    /// The doorbell to poll for reading.
    pub fn fd(&self) -> RawFd {
        self.bell.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn readable(fd: RawFd, timeout_ms: i32) -> bool {
        let mut p = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
        sys::poll_in(&mut p, timeout_ms).unwrap() == 1 && p[0].revents & libc::POLLIN != 0
    }

    #[test]
    fn an_armed_inbox_is_rung_once_and_an_awake_one_never() {
        let ib: Inbox<u32> = Inbox::new(4).unwrap();
        ib.push(1).unwrap();
        assert!(!ib.wake(), "owner awake: no syscall");
        assert!(!readable(ib.fd(), 0));
        assert!(!ib.arm(), "something waits: the owner must not sleep");
        assert!(!ib.is_armed());
        assert_eq!(ib.pop(), Some(1));
        assert!(ib.arm());
        ib.push(2).unwrap();
        assert!(ib.wake());
        assert!(!ib.wake(), "the second sender finds the flag taken");
        assert!(readable(ib.fd(), 0));
        assert!(ib.disarm(true));
        assert!(!readable(ib.fd(), 0), "the doorbell was reset");
        assert!(!ib.disarm(true), "not rung again");
        assert_eq!(ib.pop(), Some(2));
    }

    #[test]
    fn a_full_inbox_gives_the_item_back() {
        let ib: Inbox<u32> = Inbox::new(1).unwrap();
        ib.push(1).unwrap();
        assert_eq!(ib.push(2), Err(2));
        assert_eq!(ib.len(), 1);
    }

    /// A ring that lands after the owner woke for another reason is
    /// found by its next sleep, which then returns at once.
    #[test]
    fn a_late_ring_makes_the_next_sleep_return() {
        let ib: Inbox<u32> = Inbox::new(4).unwrap();
        assert!(ib.arm());
        ib.push(7).unwrap();
        // The owner woke on its socket before the sender's ring.
        assert!(!ib.disarm(false));
        assert!(!ib.wake(), "owner awake");
        assert_eq!(ib.pop(), Some(7));
        assert!(ib.arm());
        ib.push(8).unwrap();
        ib.wake();
        assert!(!ib.disarm(false));
        assert!(readable(ib.fd(), 0), "the ring stays until a sleep takes it");
        assert!(!ib.arm(), "8 waits: no sleep");
        assert_eq!(ib.pop(), Some(8));
        assert!(ib.arm());
        assert!(readable(ib.fd(), 0), "this sleep returns at once");
        assert!(ib.disarm(true));
        assert!(ib.arm());
        assert!(!readable(ib.fd(), 0), "and only this one");
        ib.disarm(false);
    }

    /// A sleeper with no bound (poll without timeout) is woken by the
    /// hand-off, from another thread, for every item, however the two
    /// threads interleave: no push is left waiting on a sleeping owner.
    #[test]
    fn every_hand_off_wakes_a_sleeping_owner() {
        const N: u32 = 2000;
        let ib: Arc<Inbox<u32>> = Arc::new(Inbox::new(8).unwrap());
        let owner = {
            let ib = ib.clone();
            std::thread::spawn(move || {
                let (mut got, mut slept, mut rung) = (0u32, 0u32, 0u32);
                while got < N {
                    if let Some(v) = ib.pop() {
                        assert_eq!(v, got, "in order");
                        got += 1;
                        continue;
                    }
                    if !ib.arm() {
                        continue;
                    }
                    slept += 1;
                    // Every sleep here is followed by a push, so it must
                    // end by a ring; the bound only keeps a lost wake-up
                    // from hanging the test.
                    let r = readable(ib.fd(), 20_000);
                    assert!(r, "sleep {slept} was not woken by the hand-off after item {got}");
                    rung += u32::from(ib.disarm(r));
                }
                (slept, rung)
            })
        };
        for i in 0..N {
            while ib.push(i).is_err() {
                ib.wake();
                std::thread::yield_now();
            }
            ib.wake();
            if i % 7 == 0 {
                std::thread::yield_now();
            }
        }
        let (slept, rung) = owner.join().unwrap();
        assert_eq!(rung, slept, "one ring per sleep");
    }
}
