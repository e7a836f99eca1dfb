//! An in-memory burst: up to [`BURST`] frames copied into chunks with
//! [`HEADROOM`] in front, processed by a worker in one call. The arena is
//! allocated once and reused; pushing and processing allocate nothing.

use super::CHUNK;
use crate::stats::DropReason;
use crate::wire::frame::HEADROOM;
use crate::wire::Frame;
use crate::worker::{Verdict, Worker, BURST};
use arrayvec::ArrayVec;

/// Longest frame a chunk takes (room is kept for encapsulation).
pub const MAX_FRAME: usize = CHUNK - HEADROOM - 64;

/// A reusable burst of frames. See the module docs.
pub struct Batch {
    arena: Vec<u8>,
    /// (head, len, port) of each frame.
    meta: [(usize, usize, u8); BURST],
    n: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch { arena: vec![0u8; CHUNK * BURST], meta: [(0, 0, 0); BURST], n: 0 }
    }

    /// Frames in the batch.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn is_full(&self) -> bool {
        self.n == BURST
    }

    /// Copies `frame`, received on `port`, into the next chunk.
    ///
    /// # Errors
    /// A frame longer than [`MAX_FRAME`] is refused with
    /// [`DropReason::FrameTooLong`]. The batch must not be full (check
    /// [`Batch::is_full`]).
    pub fn push(&mut self, frame: &[u8], port: u8) -> Result<(), DropReason> {
        assert!(self.n < BURST, "push into a full batch");
        if frame.len() > MAX_FRAME {
            return Err(DropReason::FrameTooLong);
        }
        let base = self.n * CHUNK + HEADROOM;
        self.arena[base..base + frame.len()].copy_from_slice(frame);
        self.meta[self.n] = (HEADROOM, frame.len(), port);
        self.n += 1;
        Ok(())
    }

    /// Runs the batch through `w` at `now_ns`, then calls `out` with each
    /// frame's verdict and its (possibly rewritten) bytes, in order, each
    /// followed by the frames the worker made from it (`Tx` fragments of
    /// a tunnelled datagram, [`Worker::staged`]), and empties the batch.
    pub fn process(&mut self, w: &mut Worker, now_ns: u64, mut out: impl FnMut(Verdict, &[u8])) {
        self.process_indexed(w, now_ns, |_, v, b| out(v, b));
    }

    /// [`Batch::process`], telling `out` the index in the batch of the
    /// frame each output comes from (a fragment's is its datagram's).
    pub fn process_indexed(&mut self, w: &mut Worker, now_ns: u64, mut out: impl FnMut(usize, Verdict, &[u8])) {
        let n = self.n;
        let mut verdicts = [Verdict::Drop(DropReason::Truncated); BURST];
        {
            let mut frames: ArrayVec<Frame<'_>, BURST> = self
                .arena
                .chunks_exact_mut(CHUNK)
                .zip(self.meta.iter())
                .take(n)
                .map(|(buf, &(h, l, p))| Frame::on_port(buf, h, l, p))
                .collect();
            w.process_burst(&mut frames, &mut verdicts[..n], now_ns);
            for (i, f) in frames.iter().enumerate() {
                self.meta[i] = (f.head, f.len, f.port);
            }
        }
        let start = self.arena.as_ptr() as usize;
        let mut staged = w.staged().peekable();
        for (i, (&v, &(h, l, _))) in verdicts[..n].iter().zip(&self.meta[..n]).enumerate() {
            let base = i * CHUNK;
            out(i, v, &self.arena[base + h..base + h + l]);
            // The fragments cut from this frame (its chunk's address).
            while let Some((_, port, bytes)) = staged.next_if(|(o, _, _)| o.wrapping_sub(start) / CHUNK <= i) {
                out(i, Verdict::Tx { port }, bytes);
            }
        }
        for (_, port, bytes) in staged {
            out(n.saturating_sub(1), Verdict::Tx { port }, bytes);
        }
        w.clear_staged();
        self.n = 0;
    }
}
