//! Carrying commands out on the model, all or nothing.

use super::parse::parse_rules;
use super::{CmdError, Command, DestSpec, IpvsError, Outcome, ServiceSpec, SvcAddr};
use crate::ctl::model::Model;
use crate::ctl::snapshot::Snapshot;
use crate::ipvs::dest::Dest;
use crate::ipvs::sched::{self, SchedFlags, SchedKind};
use crate::ipvs::service::{Persistence, Service, ServiceKey};
use std::net::IpAddr;

/// Carries `cmd` out on `model`.
///
/// A change is made on a copy, validated whole with `Snapshot::build` and
/// only then stored, so on any error `model` is exactly as it was. Commands
/// that change nothing say what the caller has left to do ([`Outcome`]).
/// `Restore` applies its rules the same way, as one change.
///
/// # Errors
/// ipvsadm's message ([`IpvsError`]), the snapshot's (which names the bad
/// service or real server), or for rules the line at fault.
pub fn apply(model: &mut Model, cmd: &Command) -> Result<Outcome, CmdError> {
    match cmd {
        Command::List(_)
        | Command::Save { .. }
        | Command::GetLaddr(_)
        | Command::Help
        | Command::Version => Ok(Outcome::Query),
        Command::Reload
        | Command::DaemonStats
        | Command::StartDaemon { .. }
        | Command::StopDaemon(_)
        | Command::SyncStatus => Ok(Outcome::Daemon),
        Command::Zero(svc) => {
            if let Some(s) = svc {
                find(model, &s.key()).ok_or(IpvsError::NoService)?;
            }
            Ok(Outcome::Zero(svc.as_ref().map(SvcAddr::key)))
        }
        Command::Restore { rules } => {
            restore(model, rules)?;
            Ok(Outcome::Changed)
        }
        _ => {
            let mut next = model.clone();
            edit(&mut next, cmd)?;
            Snapshot::build(&next, None)?;
            *model = next;
            Ok(Outcome::Changed)
        }
    }
}

/// Applies ipvsadm-save `rules` (see [`super::parse_rules`]) on top of
/// `model` as one change: all lines or none. Like `ipvsadm -R` it does not
/// clear the table first (put `-C` at the top for that). Returns the
/// number of commands applied.
///
/// The result is validated once, at the end, so the order of lines only
/// matters where ipvsadm's own checks apply (a service before its
/// servers); a validation error names the last line that touched the
/// service at fault.
///
/// # Errors
/// The first failing line, by number; the model is unchanged.
pub fn restore(model: &mut Model, rules: &str) -> Result<usize, CmdError> {
    let cmds = parse_rules(rules)?;
    let mut next = model.clone();
    for (line, cmd) in &cmds {
        edit(&mut next, cmd).map_err(|e| CmdError::Line {
            line: *line,
            source: Box::new(e),
        })?;
    }
    if let Err(e) = Snapshot::build(&next, None) {
        let culprit = cmds.iter().rev().find(|(_, c)| {
            touched(c).is_some_and(|k| {
                e.what == format!("service {k}") || e.what.starts_with(&format!("service {k},"))
            })
        });
        let err = CmdError::Invalid(e);
        return Err(match culprit {
            Some((line, _)) => CmdError::Line {
                line: *line,
                source: Box::new(err),
            },
            None => err,
        });
    }
    *model = next;
    Ok(cmds.len())
}

/// The service a table command is about.
fn touched(cmd: &Command) -> Option<ServiceKey> {
    Some(match cmd {
        Command::AddService(s) | Command::EditService(s) => s.svc.key(),
        Command::DelService(s) => s.key(),
        Command::AddDest(d) | Command::EditDest(d) => d.svc.key(),
        Command::DelDest { svc, .. }
        | Command::AddLaddr { svc, .. }
        | Command::DelLaddr { svc, .. } => svc.key(),
        _ => return None,
    })
}

fn find<'a>(model: &'a Model, key: &ServiceKey) -> Option<&'a Service> {
    model.services.iter().find(|s| &s.key == key)
}

fn find_mut<'a>(model: &'a mut Model, key: &ServiceKey) -> Option<&'a mut Service> {
    model.services.iter_mut().find(|s| &s.key == key)
}

/// The address family of a service: its address's, or for a mark its
/// group's (the `-6` flag when the group is not defined).
fn family_v6(model: &Model, svc: &SvcAddr) -> Result<bool, IpvsError> {
    match svc {
        SvcAddr::Addr { addr, .. } => Ok(addr.is_ipv6()),
        SvcAddr::Mark { mark, v6 } => match model.groups.iter().find(|g| g.id == *mark) {
            Some(g) => {
                let group_v6 = g.members.first().is_some_and(|m| m.addr.is_ipv6());
                if *v6 && !group_v6 {
                    return Err(IpvsError::GroupFamily { mark: *mark });
                }
                Ok(group_v6)
            }
            None => Ok(*v6),
        },
    }
}

fn check_sched(name: &str) -> Result<(), IpvsError> {
    match SchedKind::from_name(name) {
        Some(_) => Ok(()),
        None => Err(IpvsError::SchedulerNotFound {
            name: name.to_string(),
            known: sched::names().join(", "),
        }),
    }
}

fn persistence(model: &Model, spec: &ServiceSpec) -> Result<Option<Persistence>, IpvsError> {
    let host = if family_v6(model, &spec.svc)? {
        128
    } else {
        32
    };
    Ok(spec.persistent.map(|timeout| Persistence {
        timeout,
        netmask: spec.netmask.unwrap_or(host),
    }))
}

fn dest_of(d: &DestSpec) -> Dest {
    Dest {
        addr: d.addr,
        port: d.port,
        weight: d.weight,
        fwd: d.fwd,
        u_threshold: d.u_threshold,
        l_threshold: d.l_threshold,
        proxy: d.proxy,
    }
}

/// One table command on `model`, without the whole-model validation.
fn edit(model: &mut Model, cmd: &Command) -> Result<(), CmdError> {
    match cmd {
        Command::AddService(spec) => {
            let key = spec.svc.key();
            if find(model, &key).is_some() {
                return Err(IpvsError::ServiceExists.into());
            }
            check_sched(&spec.sched)?;
            let persistence = persistence(model, spec)?;
            model.services.push(Service {
                key,
                sched: spec.sched.clone(),
                sched_flags: SchedFlags(spec.sched_flags),
                persistence,
                dests: Vec::new(),
                laddrs: Vec::new(),
                synproxy: spec.synproxy,
            });
        }
        Command::EditService(spec) => {
            let key = spec.svc.key();
            find(model, &key).ok_or(IpvsError::NoService)?;
            check_sched(&spec.sched)?;
            let persistence = persistence(model, spec)?;
            // ipvsadm -E replaces the scheduling wholesale: what the line
            // does not say falls back to the defaults, as with -A.
            let s = find_mut(model, &key).ok_or(IpvsError::NoService)?;
            s.sched = spec.sched.clone();
            s.sched_flags = SchedFlags(spec.sched_flags);
            s.persistence = persistence;
            s.synproxy = spec.synproxy;
        }
        Command::DelService(svc) => {
            let key = svc.key();
            let i = model
                .services
                .iter()
                .position(|s| s.key == key)
                .ok_or(IpvsError::NoService)?;
            model.services.remove(i);
        }
        Command::AddDest(d) => {
            family_v6(model, &d.svc)?;
            let s = find_mut(model, &d.svc.key()).ok_or(IpvsError::ServiceNotDefined)?;
            if s.dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                return Err(IpvsError::DestExists.into());
            }
            s.dests.push(dest_of(d));
        }
        Command::EditDest(d) => {
            family_v6(model, &d.svc)?;
            let s = find_mut(model, &d.svc.key()).ok_or(IpvsError::ServiceNotDefined)?;
            let x = s
                .dests
                .iter_mut()
                .find(|x| x.addr == d.addr && x.port == d.port)
                .ok_or(IpvsError::NoDest)?;
            // Like ipvsadm -e: every attribute is set, defaults included.
            *x = dest_of(d);
        }
        Command::DelDest { svc, addr, port } => {
            let s = find_mut(model, &svc.key()).ok_or(IpvsError::ServiceNotDefined)?;
            let i = s
                .dests
                .iter()
                .position(|x| x.addr == *addr && x.port == *port)
                .ok_or(IpvsError::NoDest)?;
            s.dests.remove(i);
        }
        Command::Clear => model.services.clear(),
        Command::SetTimeouts { tcp, tcpfin, udp } => model.timeouts.set(*tcp, *tcpfin, *udp),
        Command::SetSloppyTcp(on) => model.sloppy_tcp = *on,
        Command::AddLaddr { svc, addr, .. } => {
            let s = find_mut(model, &svc.key()).ok_or(IpvsError::ServiceNotDefined)?;
            if s.laddrs.contains(addr) {
                return Err(IpvsError::LaddrExists.into());
            }
            s.laddrs.push(*addr);
        }
        Command::DelLaddr { svc, addr, .. } => {
            let s = find_mut(model, &svc.key()).ok_or(IpvsError::ServiceNotDefined)?;
            let i = s
                .laddrs
                .iter()
                .position(|a: &IpAddr| a == addr)
                .ok_or(IpvsError::NoLaddr)?;
            s.laddrs.remove(i);
        }
        Command::Zero(_)
        | Command::List(_)
        | Command::Save { .. }
        | Command::Restore { .. }
        | Command::GetLaddr(_)
        | Command::Reload
        | Command::DaemonStats
        | Command::StartDaemon { .. }
        | Command::StopDaemon(_)
        | Command::SyncStatus
        | Command::Help
        | Command::Version => {
            return Err(CmdError::NotHere("not a table change".to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use crate::ipvs::service::{Group, GroupMember};
    use crate::ipvs::{FwdMethod, Proto};

    fn run(m: &mut Model, line: &str) -> Result<Outcome, CmdError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        apply(m, &parse(&words).unwrap_or_else(|e| panic!("{line}: {e}")))
    }

    fn ok(m: &mut Model, line: &str) {
        assert_eq!(
            run(m, line).unwrap_or_else(|e| panic!("{line}: {e}")),
            Outcome::Changed,
            "{line}"
        );
    }

    /// Runs `line`, expects `want`, and checks the model did not move.
    fn fails(m: &mut Model, line: &str, want: &str) {
        let before = m.clone();
        let e = run(m, line).expect_err(line);
        assert_eq!(e.to_string(), want, "{line}");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(*m, before, "{line} changed the model");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nat_lab_builds_the_model() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 172.16.29.4:80 -s wrr");
        ok(&mut m, "-a -t 172.16.29.4:80 -r 192.168.95.2 -m -w 1");
        ok(&mut m, "-a -t 172.16.29.4:80 -r 192.168.95.3 -m -w 2");
        assert_eq!(m.services.len(), 1);
        let s = &m.services[0];
        assert_eq!(
            s.key,
            ServiceKey::Addr {
                proto: Proto::Tcp,
                addr: ip("172.16.29.4"),
                port: 80
            }
        );
        assert_eq!(s.sched, "wrr");
        assert_eq!(
            s.dests
                .iter()
                .map(|d| (d.addr, d.port, d.fwd, d.weight))
                .collect::<Vec<_>>(),
            vec![
                (ip("192.168.95.2"), 80, FwdMethod::Nat, 1),
                (ip("192.168.95.3"), 80, FwdMethod::Nat, 2)
            ]
        );
    }

    #[test]
    fn ipvsadm_errors_leave_the_model_alone() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 10.0.0.1:80 -s rr");
        ok(&mut m, "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m");
        fails(&mut m, "-A -t 10.0.0.1:80 -s wrr", "Service already exists");
        fails(&mut m, "-E -t 10.0.0.2:80 -s wrr", "No such service");
        fails(&mut m, "-D -t 10.0.0.2:80", "No such service");
        fails(
            &mut m,
            "-a -t 10.0.0.2:80 -r 10.0.1.1",
            "Service not defined",
        );
        fails(
            &mut m,
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -m -w 5",
            "Destination already exists",
        );
        fails(
            &mut m,
            "-e -t 10.0.0.1:80 -r 10.0.1.9 -m",
            "No such destination",
        );
        fails(
            &mut m,
            "-d -t 10.0.0.1:80 -r 10.0.1.9",
            "No such destination",
        );
        fails(
            &mut m,
            "-d -t 10.0.0.2:80 -r 10.0.1.1",
            "Service not defined",
        );
        fails(&mut m, "-Z -t 10.0.0.2:80", "No such service");
        fails(
            &mut m,
            "-A -t 10.0.0.3:80 -s bogus",
            &format!(
                "Scheduler or persistence engine not found (scheduler 'bogus'; xvs has: {})",
                sched::names().join(", ")
            ),
        );
        fails(
            &mut m,
            "--add-laddr -t 10.0.0.2:80 -z 10.0.0.9",
            "Service not defined",
        );
        fails(
            &mut m,
            "--del-laddr -t 10.0.0.1:80 -z 10.0.0.9",
            "No such local address",
        );
        // Whole-model validation: the snapshot names the culprit.
        fails(
            &mut m,
            "-a -t 10.0.0.1:80 -r 10.0.1.2:8080 --fullnat",
            "service TCP 10.0.0.1:80, real server 10.0.1.2:8080: fullnat needs local addresses on the service (laddrs)",
        );
        fails(
            &mut m,
            "-A -f 9 -s rr",
            "service FWM 9: group 9 is not defined",
        );
    }

    #[test]
    fn edits_replace_like_ipvsadm() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0");
        assert_eq!(
            m.services[0].persistence,
            Some(Persistence {
                timeout: 600,
                netmask: 24
            })
        );
        ok(
            &mut m,
            "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 5 -x 100 -y 10",
        );
        // -E without -p turns persistence off; without -s the scheduler is
        // ipvsadm's default (only if it is registered).
        ok(&mut m, "-E -t 10.0.0.1:80 -s wrr");
        assert_eq!(
            (m.services[0].sched.as_str(), m.services[0].persistence),
            ("wrr", None)
        );
        assert_eq!(m.services[0].dests.len(), 1, "-E keeps the real servers");
        ok(&mut m, "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 7");
        let d = &m.services[0].dests[0];
        assert_eq!(
            (d.weight, d.u_threshold, d.l_threshold),
            (7, 0, 0),
            "-e resets what it does not say"
        );
        ok(&mut m, "-d -t 10.0.0.1:80 -r 10.0.1.1:8080");
        assert!(m.services[0].dests.is_empty());
        ok(&mut m, "-D -t 10.0.0.1:80");
        assert!(m.services.is_empty());
    }

    #[test]
    fn fullnat_needs_laddrs_first() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 10.0.0.1:80 -s rr");
        ok(&mut m, "--add-laddr -t 10.0.0.1:80 -z 10.0.0.9");
        fails(
            &mut m,
            "-P -t 10.0.0.1:80 -z 10.0.0.9",
            "Local address already exists",
        );
        ok(&mut m, "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 --fullnat");
        fails(
            &mut m,
            "--del-laddr -t 10.0.0.1:80 -z 10.0.0.9",
            "service TCP 10.0.0.1:80, real server 10.0.1.1:8080: fullnat needs local addresses on the service (laddrs)",
        );
        ok(&mut m, "-d -t 10.0.0.1:80 -r 10.0.1.1:8080");
        ok(&mut m, "-Q -t 10.0.0.1:80 -z 10.0.0.9");
        assert!(m.services[0].laddrs.is_empty());
    }

    #[test]
    fn marks_use_config_groups() {
        let mut m = Model::default();
        let member = |a: &str, port| GroupMember {
            proto: Proto::Tcp,
            addr: ip(a),
            port,
        };
        m.groups.push(Group {
            id: 1,
            members: vec![member("10.0.0.1", 80), member("10.0.0.1", 443)],
        });
        m.groups.push(Group {
            id: 2,
            members: vec![member("2001:db8::1", 80)],
        });
        m.groups.push(Group {
            id: 3,
            members: vec![member("10.0.0.3", 80)],
        });
        ok(&mut m, "-A -f 1 -s rr -p");
        assert_eq!(
            m.services[0].persistence,
            Some(Persistence {
                timeout: 300,
                netmask: 32
            })
        );
        ok(&mut m, "-a -f 1 -r 10.0.1.1 -g");
        ok(&mut m, "-A -f 2 -6 -s rr -p");
        assert_eq!(
            m.services[1].persistence,
            Some(Persistence {
                timeout: 300,
                netmask: 128
            })
        );
        fails(
            &mut m,
            "-A -f 3 -6 -s rr",
            "FWM 3: service group 3 is IPv4, but -6 was given",
        );
        fails(
            &mut m,
            "-A -t 10.0.0.1:80 -s rr",
            "service TCP 10.0.0.1:80: TCP 10.0.0.1:80 is already a service",
        );
    }

    #[test]
    fn clear_timeouts_zero_and_queries() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 10.0.0.1:80 -s rr");
        ok(&mut m, "--set 3600 0 60");
        assert_eq!(m.timeouts.triple(), (3600, 120, 60));
        assert_eq!(
            run(&mut m, "-Z -t 10.0.0.1:80").unwrap(),
            Outcome::Zero(Some(ServiceKey::Addr {
                proto: Proto::Tcp,
                addr: ip("10.0.0.1"),
                port: 80
            }))
        );
        assert_eq!(run(&mut m, "-Z").unwrap(), Outcome::Zero(None));
        assert_eq!(run(&mut m, "-L -n").unwrap(), Outcome::Query);
        assert_eq!(run(&mut m, "--reload").unwrap(), Outcome::Daemon);
        ok(&mut m, "-C");
        assert!(m.services.is_empty());
        assert_eq!(
            m.timeouts.triple(),
            (3600, 120, 60),
            "-C keeps the timeouts"
        );
    }

    #[test]
    fn restore_is_all_or_nothing_and_names_lines() {
        let mut m = Model::default();
        ok(&mut m, "-A -t 10.0.0.9:80 -s rr");
        let before = m.clone();
        let rules = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m\n-A -t 10.0.0.9:80 -s rr\n";
        let e = restore(&mut m, rules).unwrap_err();
        assert_eq!(e.to_string(), "line 3: Service already exists");
        assert_eq!(m, before);
        // Validated as a whole: a fullnat server may come before its laddr.
        let rules = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 --fullnat\n--add-laddr -t 10.0.0.1:80 -z 10.0.0.5\n";
        assert_eq!(restore(&mut m, rules).unwrap(), 3);
        assert_eq!(m.services.len(), 2);
        let rules = "-C\n-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 --fullnat\n";
        let before = m.clone();
        let e = restore(&mut m, rules).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 4: service TCP 10.0.0.1:80, real server 10.0.1.1:80: fullnat needs local addresses on the service (laddrs)"
        );
        assert_eq!(m, before);
        // Through apply, the same.
        let cmd = Command::Restore {
            rules: "-C\n".into(),
        };
        assert_eq!(apply(&mut m, &cmd).unwrap(), Outcome::Changed);
        assert!(m.services.is_empty());
    }
}
