//! Traffic generation: frames and captures for tests, golden files and
//! benchmarks. Deterministic: the same arguments give the same bytes.
//!
//! [`packet`] builds single frames (with etherparse's `PacketBuilder`, an
//! implementation independent of the rewrite code under test) and verifies
//! every checksum of a frame from scratch. [`scenario`] builds the golden
//! scenarios (timestamped captures per forwarding mode) and reads/writes pcap.
//! [`traffic`] generates many flows' worth of frames straight into buffers
//! (benchmarks) or captures.

pub mod packet;
pub mod scenario;
pub mod traffic;
