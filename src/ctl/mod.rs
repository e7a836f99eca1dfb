//! The control plane's data: the validated [`model::Model`] (what the
//! operator asked for, from a config file or ipvsadm commands), and the
//! immutable [`snapshot::Snapshot`] built from it and published to the
//! workers. The config file is one way to a model.

pub mod config;
pub mod model;
pub mod route;
pub mod control;
pub mod snapshot;
pub mod ipvsadm;
