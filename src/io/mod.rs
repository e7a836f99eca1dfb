//! I/O drivers. The worker does not know where frames come from; a driver
//! lays frames out in fixed-size chunks with headroom in front (as AF_XDP's
//! UMEM does), hands a burst to the worker and acts on the verdicts.
//!
//! - [`mem`]:  an in-memory burst arena (tests, the pcap driver, benches)
//! - [`pcap`]: replay a capture through a worker and write what it sends
//! - [`xdp`]:  AF_XDP sockets and the XDP steering program of `xvs run`

pub mod mem;
pub mod pcap;
pub mod xdp;

/// Size of one frame buffer (headroom + frame + room to grow).
pub const CHUNK: usize = 4096;
