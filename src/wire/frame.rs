//! A frame inside its buffer, with headroom in front of it.
//!
//! AF_XDP frames live in fixed-size UMEM chunks with headroom before the
//! packet; the pcap and memory drivers lay their buffers out the same way.
//! Encapsulation (TUN) and ICMP errors built in place grow the frame to the
//! front, into that headroom, without copying the packet.

/// Headroom every driver leaves in front of a received frame. Enough for an
/// outer IPv6 header (40) and for an ICMPv6 error built in place (48).
pub const HEADROOM: usize = 64;

/// A frame occupying `buf[head..head + len]`, received on port `port`.
#[derive(Debug)]
pub struct Frame<'a> {
    pub buf: &'a mut [u8],
    pub head: usize,
    pub len: usize,
    /// The port (interface index in the snapshot) it arrived on; errors we
    /// send back to its sender leave through the same port.
    pub port: u8,
}

impl<'a> Frame<'a> {
    /// A frame of `len` bytes at `head`, from port 0. `head + len` must be
    /// within `buf`.
    #[inline]
    pub fn new(buf: &'a mut [u8], head: usize, len: usize) -> Self {
        debug_assert!(head + len <= buf.len());
        Frame { buf, head, len, port: 0 }
    }

    /// A frame received on `port`.
    #[inline]
    pub fn on_port(buf: &'a mut [u8], head: usize, len: usize, port: u8) -> Self {
        debug_assert!(head + len <= buf.len());
        Frame { buf, head, len, port }
    }

    /// The frame bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The frame bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    /// Bytes available in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Bytes available after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.head - self.len
    }

    /// Moves the frame start `n` bytes to the front (the new bytes are
    /// whatever the headroom held). False when the headroom is too small.
    #[inline]
    #[must_use]
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        self.len += n;
        true
    }

    /// Moves the frame start `n` bytes to the back (dropping them; they
    /// become headroom). False when the frame is shorter than `n`.
    #[inline]
    #[must_use]
    pub fn pop_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }

    /// Shortens the frame to `len` bytes (no-op when already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_front_uses_headroom_only() {
        let mut b = vec![0u8; 128];
        let mut f = Frame::new(&mut b, 20, 50);
        assert_eq!((f.headroom(), f.tailroom()), (20, 58));
        assert!(f.push_front(20));
        assert_eq!((f.head, f.len), (0, 70));
        assert!(!f.push_front(1));
        assert!(f.pop_front(4));
        assert_eq!((f.head, f.len, f.headroom()), (4, 66, 4));
        assert!(!f.pop_front(67));
        f.truncate(10);
        assert_eq!(f.data().len(), 10);
    }
}
