//! Health checking of real servers, like keepalived's checkers and
//! HAProxy's agent checks, entirely off the data path.
//!
//! Contract:
//! - Checks run as tokio tasks on control-plane threads ([`engine`]); a
//!   worker core never runs one. The data plane only ever sees the result
//!   as a new snapshot: [`policy::effective_model`] turns the configured
//!   [`Model`](crate::ctl::model::Model) plus the current
//!   [`state::HealthStates`] into the model to publish with
//!   [`Snapshot::build`](crate::ctl::snapshot::Snapshot::build).
//! - [`config`] holds the serde structs of a check (`[...check]`) and of a
//!   sorry server, and validates them into [`config::CheckSpec`]s with
//!   errors that name the field. Identical specs (same kind, target and
//!   parameters, same timing) are deduplicated by the [`plan::HealthPlan`]:
//!   they run once and their result fans out to every real server that
//!   asked for them.
//! - A check yields a [`check::Outcome`]: success (possibly with a new
//!   dynamic weight: agent percentages, `misc_dynamic` exit codes) or a
//!   failure with a human-readable reason. Rise/fall counting
//!   ([`state::CheckState`]) turns outcomes into up/down transitions.
//! - Every real-server transition is an [`Event`] on a channel, is counted
//!   in its [`state::DestHealth`] and is logged (through the `log` facade,
//!   see [`logger`]) with its reason.

pub mod check;
pub mod config;
pub mod engine;
pub mod logger;
pub mod plan;
pub mod policy;
pub mod state;
mod sys;
#[cfg(test)]
mod testutil;

use crate::ctl::snapshot::fmt_sock;
use crate::ipvs::service::ServiceKey;
use std::fmt;
use std::net::IpAddr;

pub use check::{Failure, Outcome, Success, WeightUpdate};
pub use config::{CheckConfig, CheckSpec, ConfigError, OnFailure, SorryServerConfig};
pub use engine::{EngineHandle, EngineOptions};
pub use plan::HealthPlan;
pub use policy::effective_model;
pub use state::{DestHealth, HealthStates};

/// A real server of a service, as the health checker names it: its address
/// and port (the identity IPVS uses for a dest inside a service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for DestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_sock(self.addr, self.port))
    }
}

/// A change of a real server's health, as the engine reports it. Every
/// event is also counted in the dest's [`DestHealth`] and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The dest failed `fall` consecutive checks (or a check it needs did):
    /// it gets weight 0 or is removed, as its `on_failure` says.
    DestDown {
        service: ServiceKey,
        dest: DestId,
        reason: String,
    },
    /// The dest passed `rise` consecutive checks of every check it has; it
    /// takes new connections again with `weight` (the configured weight, as
    /// scaled by any dynamic weight).
    DestUp {
        service: ServiceKey,
        dest: DestId,
        weight: u32,
        reason: String,
    },
    /// The effective weight of an up dest changed (an agent answered a new
    /// percentage or "drain", a `misc_dynamic` script a new exit code).
    WeightChange {
        service: ServiceKey,
        dest: DestId,
        new_weight: u32,
        reason: String,
    },
}

impl Event {
    /// The service the event is about.
    pub fn service(&self) -> &ServiceKey {
        match self {
            Event::DestDown { service, .. }
            | Event::DestUp { service, .. }
            | Event::WeightChange { service, .. } => service,
        }
    }

    /// The real server the event is about.
    pub fn dest(&self) -> DestId {
        match self {
            Event::DestDown { dest, .. }
            | Event::DestUp { dest, .. }
            | Event::WeightChange { dest, .. } => *dest,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::DestDown {
                service,
                dest,
                reason,
            } => write!(f, "service {service}, real server {dest} is down: {reason}"),
            Event::DestUp {
                service,
                dest,
                weight,
                reason,
            } => {
                write!(
                    f,
                    "service {service}, real server {dest} is up (weight {weight}): {reason}"
                )
            }
            Event::WeightChange {
                service,
                dest,
                new_weight,
                reason,
            } => {
                write!(
                    f,
                    "service {service}, real server {dest} weight is now {new_weight}: {reason}"
                )
            }
        }
    }
}
