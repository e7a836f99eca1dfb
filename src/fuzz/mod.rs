//! Fuzzing harnesses: one function per input path, each taking the
//! fuzzer's bytes and panicking only when an invariant breaks.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line calls of
//! these functions, and `tests/fuzz_regress.rs` replays every input that
//! ever failed (`fuzz/regressions/<target>/`) and the seed corpora
//! (`fuzz/seeds/<target>/`) through the same functions in `make test`, so
//! a crash found once stays a test. See `docs/reliability.md`.
//!
//! | target | input path | invariants beyond "no panic" |
//! |---|---|---|
//! | `frames_raw` | frames, as received | see [`frames`] |
//! | `frames` | frames built from the bytes (headers valid, then bent) | see [`frames`] |
//! | `icmp_relay` | ICMP errors quoting tracked connections | see [`frames`] |
//! | `config` | the TOML loader, then `Snapshot::build` | a loaded model compiles or names its fault; compiling twice agrees |
//! | `ipvsadm` | the ipvsadm command parser, `apply`, save / restore | save → restore gives the same model |
//! | `control` | the control socket's request decoder and handler | a decoded request re-encodes to itself |
//! | `monitor` | the monitor's HTTP routing (method, path, headers, body) | every answer is a well-formed status |
//! | `sync` | sync messages into a backup: decoder, MAC / replay / sync id checks, records into a worker | decode → encode → decode agrees; only signed fresh messages taken with a key; records counted once; nothing left after timeouts |
//!
//! Test support, like [`crate::gen`]: nothing here is on the daemon's path.

pub mod control;
pub mod frames;
pub mod ipvsadm;
pub mod monitor;
pub mod sync;
pub mod text;

/// A cursor over the fuzzer's bytes that never fails: past the end every
/// read gives zeros, so any input decodes to something.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.left() == 0
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = (self.pos + 1).min(self.data.len());
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.pos.saturating_add(n).min(self.data.len());
        let s = &self.data[self.pos..end];
        self.pos = end;
        s
    }

    /// One of `items` (the first when the input is over).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.u8() as usize % items.len()]
    }
}

pub mod seeds;

/// A harness: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Harness = fn(&[u8]);

/// Every target: its name (the cargo-fuzz target and the folder of its
/// seeds and regressions) and its harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("frames_raw", |d| frames::run(d, frames::Mode::Raw)),
    ("frames", |d| frames::run(d, frames::Mode::Structured)),
    ("icmp_relay", |d| frames::run(d, frames::Mode::Icmp)),
    ("config", text::config),
    ("ipvsadm", ipvsadm::run),
    ("control", control::run),
    ("monitor", monitor::run),
    ("sync", sync::run),
];
