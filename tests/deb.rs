//! The Debian package (`make deb`) installs, works and leaves nothing
//! behind: `dpkg -i` on this machine, its files, `xvs --version`,
//! `xvsadm -h`, `man -l` of every page, `systemd-analyze verify` of the
//! unit, then `dpkg -r` (the configuration stays, as a conffile does) and
//! `dpkg --purge` (nothing stays: files, configuration, user, group).
//!
//! `make test` builds the package first and names it in `$XVS_DEB`;
//! without it (plain `cargo test`), or without root and dpkg, the test
//! prints SKIP. It never touches an xvs package the machine already has,
//! and never starts the service (the package neither enables nor starts
//! it), so tests running beside it are not disturbed. A guard purges the
//! package and removes the user and group it created, also when the test
//! fails.

use std::path::Path;
use std::process::Command;

fn run(cmd: &[&str]) -> (bool, String) {
    match Command::new(cmd[0]).args(&cmd[1..]).env("MANPAGER", "cat").env("MANWIDTH", "100").output() {
        Ok(o) => (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        ),
        Err(e) => (false, format!("{}: {e}", cmd[0])),
    }
}

fn must(cmd: &[&str]) -> String {
    let (ok, out) = run(cmd);
    assert!(ok, "`{}` failed:\n{out}", cmd.join(" "));
    out
}

fn installed() -> bool {
    run(&["dpkg-query", "-W", "-f=${Status}", "xvs"]).1.contains("install ok installed")
}

fn known(db: &str, name: &str) -> bool {
    run(&["getent", db, name]).0
}

/// Leaves the machine as it was: purges the package, then removes the
/// user and group (the test runs only where there were none) if purge
/// did not.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run(&["dpkg", "--purge", "xvs"]);
        if known("passwd", "xvs") {
            let _ = run(&["userdel", "xvs"]);
        }
        if known("group", "xvs") {
            let _ = run(&["groupdel", "xvs"]);
        }
    }
}

const FILES: &[&str] = &[
    "/usr/sbin/xvs",
    "/usr/sbin/xvsadm",
    "/etc/xvs/xvs.toml",
    "/usr/lib/systemd/system/xvs.service",
    "/usr/share/man/man8/xvs.8.gz",
    "/usr/share/man/man8/xvs-run.8.gz",
    "/usr/share/man/man8/xvsadm.8.gz",
    "/usr/share/man/man5/xvs.toml.5.gz",
    "/usr/share/bash-completion/completions/xvs",
    "/usr/share/bash-completion/completions/xvsadm",
    "/usr/share/zsh/vendor-completions/_xvsadm",
    "/usr/share/fish/vendor_completions.d/xvsadm.fish",
    "/usr/share/doc/xvs/examples/nat.toml",
    "/usr/share/doc/xvs/examples/health/health-http.toml",
    "/usr/share/doc/xvs/examples/keepalived/keepalived-director1.conf",
    "/usr/share/doc/xvs/examples/keepalived/keepalived-xvs.conf",
    "/usr/share/doc/xvs/examples/keepalived/xvs-notify.sh",
];

#[test]
fn the_package_installs_works_and_purges_cleanly() {
    let name = "the_package_installs_works_and_purges_cleanly";
    let Some(deb) = std::env::var_os("XVS_DEB") else {
        println!("SKIP {name}: no package named in $XVS_DEB (make test builds one)");
        return;
    };
    if !xvs::io::xdp::is_root() || !run(&["dpkg", "--version"]).0 {
        println!("SKIP {name}: needs root and dpkg");
        return;
    }
    if run(&["dpkg-query", "-W", "xvs"]).0 || known("passwd", "xvs") || known("group", "xvs") {
        println!("SKIP {name}: this machine has an xvs package, user or group; not touching them");
        return;
    }
    let deb = deb.to_string_lossy().into_owned();
    let contents = must(&["dpkg-deb", "-c", &deb]);
    let info = must(&["dpkg-deb", "-I", &deb]);
    for dep in ["libelf1", "zlib1g", "adduser"] {
        assert!(info.contains(dep), "Depends lacks {dep}:\n{info}");
    }
    let _cleanup = Cleanup;

    must(&["dpkg", "-i", &deb]);
    assert!(installed());
    for f in FILES {
        assert!(Path::new(f).exists(), "{f} is not installed");
    }
    assert!(known("passwd", "xvs") && known("group", "xvs"), "the service's user and group");
    let conffiles = must(&["dpkg-query", "-W", "-f=${Conffiles}", "xvs"]);
    assert!(conffiles.contains("/etc/xvs/xvs.toml"), "{conffiles}");

    let version = must(&["/usr/sbin/xvs", "--version"]);
    assert_eq!(version.trim(), format!("xvs {}", env!("CARGO_PKG_VERSION")));
    assert!(must(&["/usr/sbin/xvsadm", "-h"]).contains("--add-service     -A"));
    // The default configuration is valid and runs nothing.
    let check = must(&["/usr/sbin/xvs", "check-config", "/etc/xvs/xvs.toml"]);
    assert!(check.starts_with("/etc/xvs/xvs.toml: ok") && !check.contains(" scheduler "), "{check}");

    for (page, expect) in [
        ("/usr/share/man/man8/xvs.8.gz", "SIGNALS"),
        ("/usr/share/man/man8/xvs-run.8.gz", "--socket-group"),
        ("/usr/share/man/man8/xvsadm.8.gz", "--add-service"),
        ("/usr/share/man/man5/xvs.toml.5.gz", "control_socket_group"),
    ] {
        let text = must(&["man", "-l", page]);
        assert!(text.contains(expect), "man -l {page} lacks {expect}:\n{text}");
        assert!(!text.contains("warning:"), "man -l {page}: {text}");
    }

    let unit = std::fs::read_to_string("/usr/lib/systemd/system/xvs.service").unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "RuntimeDirectory=xvs",
        "LimitMEMLOCK=infinity",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON CAP_IPC_LOCK",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
    if run(&["systemd-analyze", "--version"]).0 {
        let (ok, out) = run(&["systemd-analyze", "verify", "/usr/lib/systemd/system/xvs.service"]);
        let about_xvs: Vec<&str> = out.lines().filter(|l| l.contains("xvs")).collect();
        assert!(ok && about_xvs.is_empty(), "systemd-analyze verify:\n{out}");
    } else {
        println!("{name}: no systemd-analyze here; the unit was not verified");
    }

    // Remove: files go, the configuration (a conffile) and the user stay.
    must(&["dpkg", "-r", "xvs"]);
    assert!(!Path::new("/usr/sbin/xvs").exists() && !Path::new("/usr/share/man/man8/xvs.8.gz").exists());
    assert!(Path::new("/etc/xvs/xvs.toml").exists(), "dpkg -r keeps the conffile");
    assert!(known("passwd", "xvs"));

    // Purge: nothing stays.
    must(&["dpkg", "--purge", "xvs"]);
    assert!(!run(&["dpkg-query", "-W", "xvs"]).0, "dpkg still knows xvs");
    assert!(!Path::new("/etc/xvs").exists(), "/etc/xvs stays after purge");
    assert!(!known("passwd", "xvs") && !known("group", "xvs"), "the user or group stays after purge");
    for l in contents.lines() {
        let Some(p) = l.split_whitespace().last().and_then(|p| p.strip_prefix('.')) else { continue };
        if !p.ends_with('/') {
            assert!(!Path::new(p).exists(), "{p} stays after purge");
        }
    }
}
