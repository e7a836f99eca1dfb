//! External command (keepalived's MISC_CHECK).
//!
//! The command runs without a shell, with stdin/stdout/stderr on
//! /dev/null, in its own process group, with `XVS_CHECK_ADDR` and
//! `XVS_CHECK_PORT` in its environment. Exit 0 = up, 1 = down; with
//! `misc_dynamic`, 2..=255 = up with weight `code - 2` (0..=253), otherwise
//! down. Killed by a signal = down. When the deadline passes the whole
//! process group is killed (a script's children too) and the check fails.

use super::{up, Failure, Outcome, Success, WeightUpdate};
use crate::health::config::ExecProbe;
use crate::health::sys;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use tokio::process::Command;
use tokio::time::Instant;

/// Kills the child's process group unless it was reaped.
struct GroupGuard {
    pid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            sys::kill_group(pid);
        }
    }
}

/// Judges an exit status.
pub(crate) fn judge(status: ExitStatus, dynamic: bool) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(0), _) => up(),
        (Some(c @ 2..=255), _) if dynamic => Ok(Success {
            weight: WeightUpdate::Absolute(c as u32 - 2),
        }),
        (Some(c), _) => Err(Failure::new(format!("exited with status {c}"))),
        (None, Some(s)) => Err(Failure::new(format!("killed by signal {s}"))),
        (None, None) => Err(Failure::new("ended without a status")),
    }
}

/// Runs the command.
pub async fn check(p: &ExecProbe, deadline: Instant) -> Outcome {
    let prog = &p.argv[0];
    let mut cmd = Command::new(prog);
    cmd.args(&p.argv[1..])
        .env("XVS_CHECK_ADDR", p.target.addr.to_string())
        .env("XVS_CHECK_PORT", p.target.port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::new(format!("cannot run {prog}: {}", super::io_reason(&e))))?;
    let mut guard = GroupGuard { pid: child.id() };
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => {
            // Reaped: the pid (and group id) may be reused, do not kill.
            guard.pid = None;
            judge(status, p.dynamic)
        }
        Ok(Err(e)) => Err(Failure::new(format!(
            "waiting for {prog}: {}",
            super::io_reason(&e)
        ))),
        Err(_) => Err(Failure::new(format!("{prog} timed out (killed)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::deadline;
    use super::*;
    use crate::health::DestId;

    fn sh(script: &str, dynamic: bool) -> ExecProbe {
        ExecProbe {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            target: DestId {
                addr: "127.0.0.1".parse().unwrap(),
                port: 8080,
            },
            dynamic,
        }
    }

    #[tokio::test]
    async fn exit_codes() {
        assert_eq!(check(&sh("exit 0", false), deadline(5000)).await, up());
        assert_eq!(
            check(&sh("exit 1", true), deadline(5000))
                .await
                .unwrap_err()
                .reason,
            "exited with status 1"
        );
        assert_eq!(
            check(&sh("exit 7", false), deadline(5000))
                .await
                .unwrap_err()
                .reason,
            "exited with status 7"
        );
        let r = check(&sh("exit 77", true), deadline(5000)).await;
        assert_eq!(
            r,
            Ok(Success {
                weight: WeightUpdate::Absolute(75)
            })
        );
        let r = check(&sh("exit 2", true), deadline(5000)).await;
        assert_eq!(
            r,
            Ok(Success {
                weight: WeightUpdate::Absolute(0)
            })
        );
        // The target is in the environment.
        let r = check(
            &sh(
                "test \"$XVS_CHECK_ADDR:$XVS_CHECK_PORT\" = 127.0.0.1:8080",
                false,
            ),
            deadline(5000),
        )
        .await;
        assert_eq!(r, up());
        let r = check(&sh("kill -9 $$", false), deadline(5000)).await;
        assert_eq!(r.unwrap_err().reason, "killed by signal 9");
    }

    #[tokio::test]
    async fn missing_and_hanging() {
        let p = ExecProbe {
            argv: vec!["/nonexistent/xvs-check".into()],
            ..sh("", false)
        };
        let e = check(&p, deadline(5000)).await.unwrap_err().reason;
        assert_eq!(
            e,
            "cannot run /nonexistent/xvs-check: no such file or directory"
        );
        // The script and its child (a background sleep) are both killed.
        let dir = std::env::temp_dir().join(format!("xvs-hc-exec-{}", std::process::id()));
        let pidfile = dir.with_extension("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let e = check(&sh(&script, false), deadline(300))
            .await
            .unwrap_err()
            .reason;
        assert_eq!(e, "/bin/sh timed out (killed)");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_file(&pidfile).ok();
        // The grandchild got SIGKILL: it is gone, or a zombie until init
        // reaps it (it was reparented when the shell died).
        let mut gone = false;
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if matches!(state, None | Some('Z') | Some('X')) {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(gone, "the script's child {pid} was killed with its group");
    }

    #[test]
    fn judge_statuses() {
        let st = |raw: i32| ExitStatus::from_raw(raw);
        assert_eq!(judge(st(0), true), up());
        assert_eq!(
            judge(st(255 << 8), true),
            Ok(Success {
                weight: WeightUpdate::Absolute(253)
            })
        );
        assert!(judge(st(255 << 8), false).is_err());
        assert_eq!(
            judge(st(15), false).unwrap_err().reason,
            "killed by signal 15"
        );
    }
}
