//! Connection synchronisation between directors: IPVS's sync daemon
//! (`ip_vs_sync.c`), on the control plane.
//!
//! - [`wire`]: sync protocol version 1 messages, and xvs's additions that a
//!   kernel receiver ignores (the FULLNAT option, the trailer).
//! - [`auth`]: HMAC-SHA256 of messages with a shared key, and the replay
//!   window.
//! - [`conn`]: [`conn::SyncConn`], the connection as it moves between the
//!   workers, the sync thread and the wire.
//! - [`link`]: the bounded, lock-free queues between one worker and the
//!   sync thread (events out, received connections in, table walks).
//!
//! The worker's side (what makes a connection due, how a received one
//! lands in the table) is `worker::sync`.

pub mod auth;
pub mod conf;
pub mod conn;
pub mod daemon;
pub mod link;
pub mod net;
pub mod wire;
