//! xvs — Linux Virtual Server as a userspace, kernel-bypass L4 load balancer.
//!
//! The crate is laid out along the data path (see `docs/architecture.md`):
//!
//! - [`wire`]   packet views over frame buffers, parsing, checksums (RFC 1624)
//! - [`ipvs`]   the IPVS domain: services, dests (real servers), connections,
//!   the TCP state machine, schedulers and the transmit functions of the
//!   four forwarding methods
//! - [`worker`] the run-to-completion burst loop, which does not know its I/O
//! - [`io`]     I/O drivers: AF_XDP (live), pcap replay, in-memory
//! - [`ctl`]    configuration, validation and the immutable snapshot that the
//!   control plane publishes to the workers
//! - [`health`] real-server health checks (keepalived-style), off the data path
//! - [`stats`]  counters and drop reasons
//! - [`gen`]    traffic generation for tests, golden captures and benchmarks
//! - [`fuzz`]   fuzzing harnesses, one per input path (`fuzz/`, `docs/reliability.md`)

pub mod ctl;
pub mod daemon;
pub mod fuzz;
pub mod gen;
pub mod health;
pub mod io;
pub mod ipvs;
pub mod manual;
pub mod monitor;
pub mod stats;
pub mod sync;
pub mod wire;
pub mod worker;

#[cfg(test)]
pub(crate) mod testutil {
    /// `N` distinct ports on 127.0.0.1 that nobody listens on now (the
    /// kernel's picks for throwaway listeners, held together so they
    /// differ), for tests that start servers on fixed ports: several test
    /// processes run at once.
    pub fn free_ports<const N: usize>() -> [u16; N] {
        let held: Vec<_> = (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1")).collect();
        std::array::from_fn(|i| held[i].local_addr().expect("a bound listener's address").port())
    }
}
