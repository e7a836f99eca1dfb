//! Authentication of sync messages: an HMAC-SHA256 with a key the
//! directors share, and a window against replays.
//!
//! IPVS's sync messages carry no authentication: whoever can send a UDP
//! datagram to a backup can insert connections into its table. With a key
//! configured, xvs signs everything it sends (the MAC follows the trailer,
//! see [`super::wire`]) and takes only messages whose MAC verifies; a kernel
//! receiver ignores the trailer and the MAC.
//!
//! Replays: every trailer carries the sender's id (random per start), its
//! message counter and its clock. A receiver keeps, per sender, the
//! highest counter seen and which of the 64 below it were seen
//! ([`ReplayWindow`]); a message seen before, older than the window, or
//! whose clock is further than the allowed skew from the receiver's, is
//! refused. The clock bound is what stops a message recorded from an
//! earlier life of a sender (whose id the receiver no longer tracks) from
//! being played back later.

use ring::hmac;

/// Shortest key accepted (bytes).
pub const MIN_KEY: usize = 16;

/// A shared key.
pub struct Auth {
    key: hmac::Key,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Auth(HMAC-SHA256)")
    }
}

impl Auth {
    /// A key from its bytes.
    ///
    /// # Errors
    /// Shorter than [`MIN_KEY`] bytes.
    pub fn new(secret: &[u8]) -> Result<Auth, String> {
        if secret.len() < MIN_KEY {
            return Err(format!("the sync key has {} bytes; at least {MIN_KEY} are needed", secret.len()));
        }
        Ok(Auth { key: hmac::Key::new(hmac::HMAC_SHA256, secret) })
    }

    /// The MAC of `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let t = hmac::sign(&self.key, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(t.as_ref());
        out
    }

    /// Whether `mac` is `data`'s (constant time).
    pub fn verify(&self, data: &[u8], mac: &[u8; 32]) -> bool {
        hmac::verify(&self.key, data, mac).is_ok()
    }
}

/// Why an authenticated message was refused by the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Its counter was seen before, or is below the window.
    Seen,
    /// Its clock is too far from ours.
    Skew,
}

/// Width of the per-sender window (counters).
const WINDOW: u64 = 64;
/// Senders tracked at most (the least recently heard is forgotten).
const SENDERS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Win {
    sender: u64,
    top: u64,
    /// Bit i: counter `top - i` was seen.
    seen: u64,
    last_ms: u64,
}

/// Per-sender replay windows. See the module docs.
#[derive(Debug)]
pub struct ReplayWindow {
    wins: Vec<Win>,
    max_skew_ms: u64,
}

impl ReplayWindow {
    /// Messages whose clock differs from ours by more than `max_skew_ms`
    /// are refused.
    pub fn new(max_skew_ms: u64) -> ReplayWindow {
        ReplayWindow { wins: Vec::new(), max_skew_ms }
    }

    /// Checks (and on success records) message `seq` of `sender`, stamped
    /// `time_ms`, received at `now_ms`.
    ///
    /// # Errors
    /// Why it is refused; nothing is recorded then.
    pub fn check(&mut self, sender: u64, seq: u64, time_ms: u64, now_ms: u64) -> Result<(), Replay> {
        if time_ms.abs_diff(now_ms) > self.max_skew_ms {
            return Err(Replay::Skew);
        }
        let Some(w) = self.wins.iter_mut().find(|w| w.sender == sender) else {
            if self.wins.len() >= SENDERS {
                let oldest = self.wins.iter().enumerate().min_by_key(|(_, w)| w.last_ms).map_or(0, |(i, _)| i);
                self.wins.swap_remove(oldest);
            }
            self.wins.push(Win { sender, top: seq, seen: 1, last_ms: now_ms });
            return Ok(());
        };
        if seq > w.top {
            let shift = seq - w.top;
            w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
            w.seen |= 1;
            w.top = seq;
        } else {
            let back = w.top - seq;
            if back >= WINDOW || w.seen & (1 << back) != 0 {
                return Err(Replay::Seen);
            }
            w.seen |= 1 << back;
        }
        w.last_ms = now_ms;
        Ok(())
    }

    /// Senders tracked.
    pub fn senders(&self) -> usize {
        self.wins.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_only_with_its_key_and_data() {
        let a = Auth::new(b"0123456789abcdef").unwrap();
        let b = Auth::new(b"0123456789abcdeF").unwrap();
        let m = a.sign(b"hello");
        assert!(a.verify(b"hello", &m));
        assert!(!a.verify(b"hellO", &m));
        assert!(!b.verify(b"hello", &m));
        let mut bad = m;
        bad[31] ^= 1;
        assert!(!a.verify(b"hello", &bad));
        assert!(Auth::new(b"short").unwrap_err().contains("at least 16"));
        assert_eq!(format!("{a:?}"), "Auth(HMAC-SHA256)");
    }

    #[test]
    fn the_window_refuses_repeats_old_counters_and_skewed_clocks() {
        let mut w = ReplayWindow::new(10_000);
        let now = 1_000_000;
        assert_eq!(w.check(7, 100, now, now), Ok(()));
        assert_eq!(w.check(7, 100, now, now), Err(Replay::Seen));
        // Out of order within the window is fine, once.
        assert_eq!(w.check(7, 98, now, now), Ok(()));
        assert_eq!(w.check(7, 98, now, now), Err(Replay::Seen));
        assert_eq!(w.check(7, 101, now, now), Ok(()));
        assert_eq!(w.check(7, 101 - 64, now, now), Err(Replay::Seen), "below the window");
        assert_eq!(w.check(7, 500, now, now), Ok(()), "a jump");
        assert_eq!(w.check(7, 101, now, now), Err(Replay::Seen));
        assert_eq!(w.check(7, 499, now, now), Ok(()));
        // Another sender has its own window.
        assert_eq!(w.check(8, 100, now, now), Ok(()));
        assert_eq!(w.check(9, 1, now - 10_001, now), Err(Replay::Skew));
        assert_eq!(w.check(9, 1, now + 10_001, now), Err(Replay::Skew));
        assert_eq!(w.senders(), 2);
    }

    #[test]
    fn the_least_recently_heard_sender_is_forgotten() {
        let mut w = ReplayWindow::new(u64::MAX);
        for s in 0..SENDERS as u64 {
            w.check(s, 1, 0, s).unwrap();
        }
        w.check(1000, 1, 0, 1000).unwrap();
        assert_eq!(w.senders(), SENDERS);
        // Sender 0 (heard first) was dropped: its counter 1 is new again.
        assert_eq!(w.check(0, 1, 0, 2000), Ok(()));
        assert_eq!(w.check(5, 1, 0, 2000), Err(Replay::Seen));
    }
}
