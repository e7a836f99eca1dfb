//! The health plan: which real servers are checked, by which checks, what
//! happens to them on failure, and the sorry server of each service.
//!
//! Building the plan validates every check and deduplicates them: checks
//! with the same [`CheckSpec`] (kind, target, parameters and timing) are
//! one check, run once, whose result fans out to every (service, real
//! server) that asked for it. [`HealthPlan::validate`] checks the plan
//! against the configured model, including that the worst case (every
//! checked server down, sorry servers in) still compiles into a snapshot.

use super::config::{CheckConfig, CheckSpec, ConfigError, OnFailure, SorryServerConfig};
use super::state::{DestHealth, HealthStates};
use super::DestId;
use crate::ctl::model::Model;
use crate::ctl::snapshot::Snapshot;
use crate::ipvs::dest::Dest;
use crate::ipvs::service::ServiceKey;
use std::collections::{BTreeMap, HashMap};

/// A checked real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: ServiceKey,
    pub dest: DestId,
    /// Its weight in the configured model (what recovery restores).
    pub configured_weight: u32,
    pub on_failure: OnFailure,
    /// Indices into [`HealthPlan::checks`]; the server is up when all are.
    pub checks: Vec<usize>,
    /// No check has `alpha`: the server starts up.
    pub starts_up: bool,
}

/// A service's sorry server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SorryServer {
    pub dest: Dest,
    /// Stays in the service at weight 0 while inactive.
    pub inhibit: bool,
}

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct HealthPlan {
    checks: Vec<CheckSpec>,
    check_index: HashMap<CheckSpec, usize>,
    targets: Vec<Target>,
    target_index: BTreeMap<(ServiceKey, DestId), usize>,
    sorry: BTreeMap<ServiceKey, SorryServer>,
}

fn where_(service: &ServiceKey, dest: DestId) -> String {
    format!("service {service}, real server {dest}")
}

impl HealthPlan {
    /// An empty plan: nothing checked.
    pub fn new() -> HealthPlan {
        HealthPlan::default()
    }

    /// Adds the checks of real server `dest` of `service`. No checks: the
    /// server is not checked (always up at its configured weight).
    ///
    /// # Errors
    /// A bad check (naming the service, the server and the field), the
    /// server added twice, or its checks disagreeing on `on_failure`.
    pub fn add_real_server(
        &mut self,
        service: &ServiceKey,
        dest: &Dest,
        checks: &[CheckConfig],
    ) -> Result<(), ConfigError> {
        let id = DestId {
            addr: dest.addr,
            port: dest.port,
        };
        let ctx = || where_(service, id);
        if self.target_index.contains_key(&(service.clone(), id)) {
            return Err(
                ConfigError::new("check", "this real server's checks are given twice")
                    .within(ctx()),
            );
        }
        if checks.is_empty() {
            return Ok(());
        }
        let mut idx = Vec::with_capacity(checks.len());
        let mut on_failure = None;
        let mut starts_up = true;
        for c in checks {
            let (spec, of) = c.validate(id).map_err(|e| e.within(ctx()))?;
            if on_failure.is_some_and(|o| o != of) {
                return Err(ConfigError::new(
                    "check.on_failure",
                    "the checks of one real server must agree",
                )
                .within(ctx()));
            }
            on_failure = Some(of);
            starts_up &= !spec.timing.alpha;
            let i = match self.check_index.get(&spec) {
                Some(i) => *i,
                None => {
                    self.checks.push(spec.clone());
                    self.check_index.insert(spec, self.checks.len() - 1);
                    self.checks.len() - 1
                }
            };
            if !idx.contains(&i) {
                idx.push(i);
            }
        }
        self.target_index
            .insert((service.clone(), id), self.targets.len());
        self.targets.push(Target {
            service: service.clone(),
            dest: id,
            configured_weight: dest.weight,
            on_failure: on_failure.unwrap_or_default(),
            checks: idx,
            starts_up,
        });
        Ok(())
    }

    /// Sets the sorry server of `service`, whose real servers are `dests`.
    ///
    /// # Errors
    /// A bad sorry server, one given twice, or one that is also a real
    /// server of the service.
    pub fn set_sorry_server(
        &mut self,
        service: &ServiceKey,
        dests: &[Dest],
        cfg: &SorryServerConfig,
    ) -> Result<(), ConfigError> {
        let ctx = format!("service {service}");
        let dest = cfg.to_dest(dests).map_err(|e| e.within(&ctx))?;
        if dests
            .iter()
            .any(|d| d.addr == dest.addr && d.port == dest.port)
        {
            return Err(ConfigError::new(
                "sorry_server",
                format!(
                    "{} is also a real server of the service",
                    DestId {
                        addr: dest.addr,
                        port: dest.port
                    }
                ),
            )
            .within(ctx));
        }
        if self
            .sorry
            .insert(
                service.clone(),
                SorryServer {
                    dest,
                    inhibit: cfg.inhibit,
                },
            )
            .is_some()
        {
            return Err(ConfigError::new("sorry_server", "given twice").within(ctx));
        }
        Ok(())
    }

    /// The unique checks.
    pub fn checks(&self) -> &[CheckSpec] {
        &self.checks
    }

    /// The checked real servers.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The checked real server `dest` of `service`.
    pub fn target(&self, service: &ServiceKey, dest: DestId) -> Option<&Target> {
        self.target_index
            .get(&(service.clone(), dest))
            .map(|i| &self.targets[*i])
    }

    /// The sorry server of `service`.
    pub fn sorry(&self, service: &ServiceKey) -> Option<&SorryServer> {
        self.sorry.get(service)
    }

    /// For each check, the targets it feeds.
    pub fn fanout(&self) -> Vec<Vec<usize>> {
        let mut f = vec![Vec::new(); self.checks.len()];
        for (t, target) in self.targets.iter().enumerate() {
            for c in &target.checks {
                f[*c].push(t);
            }
        }
        f
    }

    /// The states to start from: `prev` (the states before a reload) for
    /// servers it knows, the configured start state (up unless `alpha`)
    /// for the others.
    pub fn initial_states(&self, prev: Option<&HealthStates>) -> HealthStates {
        let mut st = HealthStates::default();
        for t in &self.targets {
            let h = prev
                .and_then(|p| p.get(&t.service, t.dest))
                .cloned()
                .unwrap_or_else(|| DestHealth::new(t.starts_up));
            st.set(&t.service, t.dest, h);
        }
        st
    }

    /// Checks the plan against the configured `model`: every checked
    /// server and every sorry server's service exists, configured weights
    /// match, and the model with every checked server down (sorry servers
    /// active) still compiles.
    ///
    /// # Errors
    /// The first mismatch, naming the service and server.
    pub fn validate(&self, model: &Model) -> Result<(), ConfigError> {
        for t in &self.targets {
            let svc = model.services.iter().find(|s| s.key == t.service);
            let d = svc.and_then(|s| {
                s.dests
                    .iter()
                    .find(|d| d.addr == t.dest.addr && d.port == t.dest.port)
            });
            match d {
                None => {
                    return Err(ConfigError::new(
                        "check",
                        "no such real server in the configuration",
                    )
                    .within(where_(&t.service, t.dest)))
                }
                Some(d) if d.weight != t.configured_weight => {
                    return Err(ConfigError::new(
                        "check",
                        format!(
                            "planned with weight {} but configured with {}",
                            t.configured_weight, d.weight
                        ),
                    )
                    .within(where_(&t.service, t.dest)))
                }
                Some(_) => {}
            }
        }
        for key in self.sorry.keys() {
            if !model.services.iter().any(|s| &s.key == key) {
                return Err(ConfigError::new(
                    "sorry_server",
                    "no such service in the configuration",
                )
                .within(format!("service {key}")));
            }
        }
        let mut down = self.initial_states(None);
        for h in down.dests.values_mut() {
            h.up = false;
        }
        let worst = super::policy::effective_model(model, self, &down);
        Snapshot::build(&worst, None)
            .map_err(|e| ConfigError::new("sorry_server", e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::config::CheckType;
    use crate::health::testutil::{dest, key, service};
    use crate::ipvs::FwdMethod;

    fn rs(a: &str, port: u16) -> Dest {
        dest(a, port, 3, FwdMethod::Dr)
    }
    fn tcp() -> CheckConfig {
        CheckConfig::new(CheckType::Tcp)
    }

    #[test]
    fn dedups_identical_checks_across_services() {
        let mut p = HealthPlan::new();
        p.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp()])
            .unwrap();
        let mut remove = tcp();
        remove.on_failure = Some(OnFailure::Remove);
        p.add_real_server(&key(0), &rs("10.0.1.1", 80), &[remove])
            .unwrap();
        let mut icmp_a = CheckConfig::new(CheckType::Icmp);
        icmp_a.rise = Some(2);
        // ICMP ignores the port: both servers' pings are one check.
        p.add_real_server(
            &key(81),
            &rs("10.0.1.1", 81),
            &[icmp_a.clone(), icmp_a.clone()],
        )
        .unwrap();
        p.add_real_server(&key(82), &rs("10.0.1.1", 82), &[icmp_a])
            .unwrap();
        let mut slower = tcp();
        slower.interval = Some(crate::health::config::ConfDuration(
            std::time::Duration::from_secs(5),
        ));
        p.add_real_server(&key(83), &rs("10.0.1.1", 80), &[slower])
            .unwrap();
        assert_eq!(p.checks().len(), 3, "tcp, icmp, tcp with another interval");
        assert_eq!(p.fanout(), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(
            p.targets()[2].checks,
            vec![1],
            "the same check twice counts once"
        );
        assert_eq!(
            p.target(
                &key(0),
                DestId {
                    addr: "10.0.1.1".parse().unwrap(),
                    port: 80
                }
            )
            .unwrap()
            .on_failure,
            OnFailure::Remove
        );
    }

    #[test]
    fn errors_name_service_server_and_field() {
        let mut p = HealthPlan::new();
        let mut bad = tcp();
        bad.rise = Some(0);
        let e = p
            .add_real_server(&key(80), &rs("10.0.1.1", 80), &[bad])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "service TCP 10.0.0.100:80, real server 10.0.1.1:80: check.rise: 0 is not in 1..=1000"
        );
        p.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp()])
            .unwrap();
        let e = p
            .add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp()])
            .unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        let mut r = CheckConfig::new(CheckType::Icmp);
        r.on_failure = Some(OnFailure::Remove);
        let e = p
            .add_real_server(&key(80), &rs("10.0.1.2", 80), &[tcp(), r])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("check.on_failure: the checks of one real server must agree"),
            "{e}"
        );
        let s: SorryServerConfig = toml::from_str("addr = \"10.0.1.1\"\nport = 80").unwrap();
        let e = p
            .set_sorry_server(&key(80), &[rs("10.0.1.1", 80)], &s)
            .unwrap_err();
        assert_eq!(e.to_string(), "service TCP 10.0.0.100:80: sorry_server: 10.0.1.1:80 is also a real server of the service");
        let s: SorryServerConfig = toml::from_str("addr = \"10.0.9.9\"").unwrap();
        p.set_sorry_server(&key(80), &[], &s).unwrap();
        assert!(p
            .set_sorry_server(&key(80), &[], &s)
            .unwrap_err()
            .to_string()
            .contains("given twice"));
    }

    fn model(dests: Vec<Dest>) -> Model {
        Model {
            services: vec![service(80, dests)],
            ..Model::default()
        }
    }

    #[test]
    fn validate_against_the_model() {
        let m = model(vec![rs("10.0.1.1", 80)]);
        let mut p = HealthPlan::new();
        p.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp()])
            .unwrap();
        p.validate(&m).unwrap();
        let mut other = HealthPlan::new();
        other
            .add_real_server(&key(80), &rs("10.0.1.2", 80), &[tcp()])
            .unwrap();
        assert!(other
            .validate(&m)
            .unwrap_err()
            .to_string()
            .contains("no such real server"));
        let mut heavier = HealthPlan::new();
        let mut d = rs("10.0.1.1", 80);
        d.weight = 9;
        heavier.add_real_server(&key(80), &d, &[tcp()]).unwrap();
        assert!(heavier
            .validate(&m)
            .unwrap_err()
            .to_string()
            .contains("planned with weight 9 but configured with 3"));
        let mut nosvc = HealthPlan::new();
        let s: SorryServerConfig = toml::from_str("addr = \"10.0.9.9\"").unwrap();
        nosvc.set_sorry_server(&key(443), &[], &s).unwrap();
        assert!(nosvc
            .validate(&m)
            .unwrap_err()
            .to_string()
            .contains("no such service"));
        // A DR sorry server on another port only breaks when it is used:
        // validate finds it up front.
        let s: SorryServerConfig =
            toml::from_str("addr = \"10.0.9.9\"\nport = 8080\nfwd = \"dr\"").unwrap();
        p.set_sorry_server(&key(80), &m.services[0].dests, &s)
            .unwrap();
        let e = p.validate(&m).unwrap_err().to_string();
        assert!(
            e.starts_with("sorry_server: service TCP 10.0.0.100:80, real server 10.0.9.9:8080")
                && e.contains("cannot change the port"),
            "{e}"
        );
    }

    #[test]
    fn initial_states_keep_previous_health() {
        let mut p = HealthPlan::new();
        p.add_real_server(&key(80), &rs("10.0.1.1", 80), &[tcp()])
            .unwrap();
        let mut alpha = tcp();
        alpha.alpha = Some(true);
        p.add_real_server(&key(80), &rs("10.0.1.2", 80), &[alpha])
            .unwrap();
        let st = p.initial_states(None);
        let d1 = DestId {
            addr: "10.0.1.1".parse().unwrap(),
            port: 80,
        };
        let d2 = DestId {
            addr: "10.0.1.2".parse().unwrap(),
            port: 80,
        };
        assert!(st.get(&key(80), d1).unwrap().up);
        assert!(!st.get(&key(80), d2).unwrap().up, "alpha starts down");
        let mut prev = HealthStates::default();
        let mut h = DestHealth::new(false);
        h.downs = 4;
        prev.set(&key(80), d1, h.clone());
        assert_eq!(p.initial_states(Some(&prev)).get(&key(80), d1), Some(&h));
    }
}
