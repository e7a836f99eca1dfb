//! From health to forwarding: a pure function from the configured model,
//! the health plan and the current health states to the model the data
//! path should use. The control plane publishes its result as a snapshot
//! (`Snapshot::build(&effective_model(..), Some(&current))`); dest uids are
//! keyed by (service, address, port), so a quiesced or restored server
//! keeps its uid and its connections.
//!
//! Per real server of each service:
//! - not checked: as configured;
//! - checked and up: the configured weight, as scaled by its dynamic
//!   weight (agent percentage, `misc_dynamic` exit code);
//! - checked and down: weight 0 (`on_failure = "quiesce"`, established
//!   connections go on) or left out (`"remove"`).
//!
//! A service's sorry server is added (with its weight) while the live
//! weight of the service — the sum of the effective weights of its up
//! servers — is 0, i.e. when no real server can take a new connection
//! (keepalived's quorum of 1). Otherwise it is left out, or kept at weight
//! 0 with `inhibit`. Quiesced real servers stay in either way.

use super::plan::HealthPlan;
use super::state::HealthStates;
use super::DestId;
use crate::ctl::model::Model;

/// The model to publish. See the module docs.
pub fn effective_model(configured: &Model, plan: &HealthPlan, states: &HealthStates) -> Model {
    let mut m = configured.clone();
    for svc in &mut m.services {
        let mut live: u64 = 0;
        let mut dests = Vec::with_capacity(svc.dests.len() + 1);
        for d in &svc.dests {
            let id = DestId {
                addr: d.addr,
                port: d.port,
            };
            let Some(t) = plan.target(&svc.key, id) else {
                live += d.weight as u64;
                dests.push(d.clone());
                continue;
            };
            let h = states.get(&svc.key, id);
            if h.map_or(t.starts_up, |h| h.up) {
                let w = h.map_or(d.weight, |h| h.effective_weight(d.weight));
                live += w as u64;
                let mut d = d.clone();
                d.weight = w;
                dests.push(d);
            } else if t.on_failure == super::OnFailure::Quiesce {
                let mut d = d.clone();
                d.weight = 0;
                dests.push(d);
            }
        }
        if let Some(s) = plan.sorry(&svc.key) {
            if live == 0 {
                dests.push(s.dest.clone());
            } else if s.inhibit {
                let mut d = s.dest.clone();
                d.weight = 0;
                dests.push(d);
            }
        }
        svc.dests = dests;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::snapshot::Snapshot;
    use crate::health::config::{CheckConfig, CheckType, OnFailure, SorryServerConfig};
    use crate::health::state::{DestHealth, DynWeight};
    use crate::health::testutil::{dest, key, service};
    use crate::ipvs::dest::{Dest, MAX_WEIGHT};
    use crate::ipvs::FwdMethod;

    fn rs(last: u8, weight: u32) -> Dest {
        dest(&format!("10.0.1.{last}"), 80, weight, FwdMethod::Nat)
    }
    fn id(last: u8) -> DestId {
        DestId {
            addr: format!("10.0.1.{last}").parse().unwrap(),
            port: 80,
        }
    }
    fn check(on_failure: OnFailure) -> CheckConfig {
        let mut c = CheckConfig::new(CheckType::Tcp);
        c.on_failure = Some(on_failure);
        c
    }
    /// (addr last byte, weight) of each dest of service `i`.
    fn weights(m: &Model, i: usize) -> Vec<(u8, u32)> {
        m.services[i]
            .dests
            .iter()
            .map(|d| match d.addr {
                std::net::IpAddr::V4(a) => (a.octets()[3], d.weight),
                _ => unreachable!(),
            })
            .collect()
    }

    /// Service 80 with servers .1 (w 4, quiesce), .2 (w 2, remove), .3 (w 1,
    /// unchecked); service 81 with .1 (w 5, quiesce) and a sorry server
    /// .9 (w 2); service 82 with .4 (w 3, remove) and an inhibited sorry .9.
    fn setup() -> (Model, HealthPlan) {
        let m = Model {
            services: vec![
                service(80, vec![rs(1, 4), rs(2, 2), rs(3, 1)]),
                service(81, vec![rs(1, 5)]),
                service(82, vec![rs(4, 3)]),
            ],
            ..Model::default()
        };
        let mut p = HealthPlan::new();
        p.add_real_server(&key(80), &rs(1, 4), &[check(OnFailure::Quiesce)])
            .unwrap();
        p.add_real_server(&key(80), &rs(2, 2), &[check(OnFailure::Remove)])
            .unwrap();
        p.add_real_server(&key(80), &rs(3, 1), &[]).unwrap();
        p.add_real_server(&key(81), &rs(1, 5), &[check(OnFailure::Quiesce)])
            .unwrap();
        p.add_real_server(&key(82), &rs(4, 3), &[check(OnFailure::Remove)])
            .unwrap();
        let sorry: SorryServerConfig = toml::from_str("addr = \"10.0.1.9\"\nweight = 2").unwrap();
        p.set_sorry_server(&key(81), &m.services[1].dests, &sorry)
            .unwrap();
        let inhibited: SorryServerConfig =
            toml::from_str("addr = \"10.0.1.9\"\ninhibit = true").unwrap();
        p.set_sorry_server(&key(82), &m.services[2].dests, &inhibited)
            .unwrap();
        p.validate(&m).unwrap();
        (m, p)
    }

    fn set(st: &mut HealthStates, port: u16, last: u8, up: bool, weight: DynWeight) {
        let mut h = DestHealth::new(up);
        h.weight = weight;
        st.set(&key(port), id(last), h);
    }

    #[test]
    fn all_up_is_the_configured_model_plus_inhibited_sorry() {
        let (m, p) = setup();
        let st = p.initial_states(None);
        let e = effective_model(&m, &p, &st);
        assert_eq!(weights(&e, 0), vec![(1, 4), (2, 2), (3, 1)]);
        assert_eq!(weights(&e, 1), vec![(1, 5)], "sorry server inactive");
        assert_eq!(
            weights(&e, 2),
            vec![(4, 3), (9, 0)],
            "inhibited sorry server at weight 0"
        );
        assert_eq!(e.timeouts, m.timeouts);
        // Missing states mean the configured start state.
        assert_eq!(effective_model(&m, &p, &HealthStates::default()), e);
    }

    #[test]
    fn down_quiesces_or_removes() {
        let (m, p) = setup();
        let mut st = p.initial_states(None);
        set(&mut st, 80, 1, false, DynWeight::default());
        let e = effective_model(&m, &p, &st);
        assert_eq!(weights(&e, 0), vec![(1, 0), (2, 2), (3, 1)], "quiesced");
        set(&mut st, 80, 2, false, DynWeight::default());
        let e = effective_model(&m, &p, &st);
        assert_eq!(weights(&e, 0), vec![(1, 0), (3, 1)], "removed");
        // Recovery restores the configured weight.
        set(&mut st, 80, 1, true, DynWeight::default());
        set(&mut st, 80, 2, true, DynWeight::default());
        assert_eq!(
            weights(&effective_model(&m, &p, &st), 0),
            vec![(1, 4), (2, 2), (3, 1)]
        );
        // The same server in another service is independent.
        assert_eq!(weights(&effective_model(&m, &p, &st), 1), vec![(1, 5)]);
    }

    #[test]
    fn dynamic_weights() {
        let (m, p) = setup();
        let mut st = p.initial_states(None);
        set(
            &mut st,
            80,
            1,
            true,
            DynWeight {
                absolute: None,
                percent: Some(75),
            },
        );
        set(
            &mut st,
            80,
            2,
            true,
            DynWeight {
                absolute: Some(10),
                percent: None,
            },
        );
        let e = effective_model(&m, &p, &st);
        assert_eq!(
            weights(&e, 0),
            vec![(1, 3), (2, 10), (3, 1)],
            "agent 75% of 4, misc_dynamic 10"
        );
        set(
            &mut st,
            80,
            1,
            true,
            DynWeight {
                absolute: Some(MAX_WEIGHT),
                percent: Some(1000),
            },
        );
        assert_eq!(
            weights(&effective_model(&m, &p, &st), 0)[0],
            (1, MAX_WEIGHT),
            "clamped"
        );
        // A down server's dynamic weight does not matter.
        set(
            &mut st,
            80,
            1,
            false,
            DynWeight {
                absolute: None,
                percent: Some(50),
            },
        );
        assert_eq!(weights(&effective_model(&m, &p, &st), 0)[0], (1, 0));
        // Drain (0%) keeps the server, at weight 0.
        set(
            &mut st,
            81,
            1,
            true,
            DynWeight {
                absolute: None,
                percent: Some(0),
            },
        );
        assert_eq!(
            weights(&effective_model(&m, &p, &st), 1),
            vec![(1, 0), (9, 2)],
            "drained to 0: the sorry server takes over"
        );
    }

    #[test]
    fn sorry_server_takes_over_when_all_are_down() {
        let (m, p) = setup();
        let mut st = p.initial_states(None);
        set(&mut st, 81, 1, false, DynWeight::default());
        let e = effective_model(&m, &p, &st);
        assert_eq!(
            weights(&e, 1),
            vec![(1, 0), (9, 2)],
            "quiesced server stays, sorry server active"
        );
        assert_eq!(
            e.services[1].dests[1].fwd,
            FwdMethod::Nat,
            "the real servers' method"
        );
        set(&mut st, 82, 4, false, DynWeight::default());
        let e = effective_model(&m, &p, &st);
        assert_eq!(
            weights(&e, 2),
            vec![(9, 1)],
            "removed server gone, inhibited sorry server active at its weight"
        );
        // Back up: the sorry server leaves (or returns to weight 0).
        set(&mut st, 81, 1, true, DynWeight::default());
        set(&mut st, 82, 4, true, DynWeight::default());
        let e = effective_model(&m, &p, &st);
        assert_eq!(weights(&e, 1), vec![(1, 5)]);
        assert_eq!(weights(&e, 2), vec![(4, 3), (9, 0)]);
        // An unchecked server keeps the service live: no sorry server in 80.
        let mut st80 = p.initial_states(None);
        set(&mut st80, 80, 1, false, DynWeight::default());
        set(&mut st80, 80, 2, false, DynWeight::default());
        assert_eq!(
            weights(&effective_model(&m, &p, &st80), 0),
            vec![(1, 0), (3, 1)]
        );
    }

    #[test]
    fn sorry_server_with_no_real_servers_and_operator_weight_zero() {
        let m = Model {
            services: vec![service(80, vec![]), service(81, vec![rs(1, 0)])],
            ..Model::default()
        };
        let mut p = HealthPlan::new();
        let s: SorryServerConfig = toml::from_str("addr = \"10.0.1.9\"").unwrap();
        p.set_sorry_server(&key(80), &[], &s).unwrap();
        p.set_sorry_server(&key(81), &m.services[1].dests, &s)
            .unwrap();
        let e = effective_model(&m, &p, &HealthStates::default());
        assert_eq!(
            weights(&e, 0),
            vec![(9, 1)],
            "an empty service uses its sorry server"
        );
        assert_eq!(
            weights(&e, 1),
            vec![(1, 0), (9, 1)],
            "a service quiesced by the operator too (keepalived's quorum)"
        );
    }

    #[test]
    fn effective_models_compile_and_keep_uids() {
        let (m, p) = setup();
        let up = p.initial_states(None);
        let s1 = Snapshot::build(&effective_model(&m, &p, &up), None).unwrap();
        let mut down = up.clone();
        set(&mut down, 80, 1, false, DynWeight::default());
        set(&mut down, 80, 2, false, DynWeight::default());
        set(&mut down, 81, 1, false, DynWeight::default());
        let s2 = Snapshot::build(&effective_model(&m, &p, &down), Some(&s1)).unwrap();
        // 10.0.1.1 of service 80 is quiesced, keeps its uid and gets weight 0.
        let (d1, d2) = (&s1.svc_dests(0)[0], &s2.svc_dests(0)[0]);
        assert_eq!((d1.uid, d2.uid, d2.weight), (d1.uid, d1.uid, 0));
        assert_eq!(s2.svc_dests(0).len(), 2, "10.0.1.2 removed");
        let s3 = Snapshot::build(&effective_model(&m, &p, &up), Some(&s2)).unwrap();
        assert_eq!(s3.svc_dests(0)[0].uid, d1.uid);
        assert_eq!(s3.svc_dests(0)[0].weight, 4);
        // The sorry server keeps its uid while inhibited and active.
        let mut d82 = up.clone();
        set(&mut d82, 82, 4, false, DynWeight::default());
        let s4 = Snapshot::build(&effective_model(&m, &p, &d82), Some(&s3)).unwrap();
        assert_eq!(s4.svc_dests(2)[0].uid, s3.svc_dests(2)[1].uid);
    }
}
