//! Connection synchronisation between directors: IPVS's sync daemon
//! (`ip_vs_sync.c`), on the control plane.
//!
//! - [`wire`]: sync protocol version 1 messages, and xvs's additions that a
//!   kernel receiver ignores (the FULLNAT option, the trailer).

pub mod wire;
