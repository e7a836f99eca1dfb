//! `xvs run` start and stop: clear errors with the documented exit codes
//! (2: command line or configuration, 1: the system refused), and nothing
//! left attached after a stop.

mod lab;

use lab::Lab;
use std::process::Command;

fn xvs_in(ns: Option<&str>, args: &[&str]) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_xvs");
    let out = match ns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, bin])
            .args(args)
            .output(),
        None => Command::new(bin).args(args).output(),
    }
    .expect("running xvs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("xvs-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

const SERVICE: &str = r#"
[[service]]
proto = "tcp"
vip = "10.47.0.100"
port = 80
  [[service.real_server]]
  ip = "10.47.0.11"
  mode = "dr"
"#;

#[test]
fn a_bad_config_or_command_line_exits_2() {
    let bad = write(
        "bad",
        "[[service]]\nproto = \"tcp\"\nvip = \"10.47.0.100\"\nport = 80\nscheduler = \"nope\"\n",
    );
    let (code, err) = xvs_in(
        None,
        &["run", "--config", bad.to_str().unwrap(), "-i", "lo"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown scheduler 'nope'"), "{err}");
    let empty = write("empty", "");
    let (code, err) = xvs_in(None, &["run", "--config", empty.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no interfaces"), "{err}");
    let (code, err) = xvs_in(
        None,
        &[
            "run",
            "--config",
            empty.to_str().unwrap(),
            "-i",
            "x",
            "--poll",
            "sometimes",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sometimes"), "{err}");
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_file(empty);
}

#[test]
fn check_config_summarises_a_file_or_names_the_bad_field() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out) = {
        let o = Command::new(env!("CARGO_BIN_EXE_xvs"))
            .args(["check-config", &format!("{root}/configs/fullnat.toml")])
            .output()
            .expect("running xvs");
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configs/fullnat.toml: ok"), "{out}");
    assert!(out.contains("conn_reuse_mode 1, drop_entry true, toa true"), "the defaults: {out}");
    assert!(out.contains("TCP 10.0.0.100:80 scheduler wrr (2 real servers)"), "{out}");
    assert!(out.contains("-> 10.0.1.2:8080 fullnat weight 2"), "{out}");
    let bad = write("check-bad", "[global]\nconn_reuse_mode = 9\n");
    let (code, err) = xvs_in(None, &["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("global.conn_reuse_mode: 9 exceeds 3"), "{err}");
    let _ = std::fs::remove_file(bad);
}

#[test]
fn environment_refusals_exit_1_and_a_stop_leaves_nothing_attached() {
    let Some(mut lab) = Lab::new("environment_refusals_exit_1_and_a_stop_leaves_nothing_attached")
    else {
        return;
    };
    let t = lab::lan(&mut lab, 47, 2, 1);
    let cfg = write("ok", SERVICE);
    let c = cfg.to_str().unwrap();
    let d = t.director.as_str();

    let (code, err) = xvs_in(Some(d), &["run", "--config", c, "-i", "nosuch0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("'nosuch0' does not exist"), "{err}");

    let (code, err) = xvs_in(
        Some(d),
        &["run", "--config", c, "-i", "d0", "--workers", "3"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("'d0' has 2 queue(s); 3 worker(s) need 3"),
        "{err}"
    );

    let (code, err) = xvs_in(
        Some(d),
        &["run", "--config", c, "-i", "d0", "--cores", "77"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CPU 77"), "{err}");

    // A FULLNAT local address that is the kernel's own source towards a
    // real server (d0's address) would swallow its health checks' answers.
    let own = write(
        "own-laddr",
        r#"
[[service]]
proto = "tcp"
vip = "10.47.0.100"
port = 80
local_addresses = ["10.47.0.1"]
  [[service.real_server]]
  ip = "10.47.0.11"
  port = 8080
  mode = "fullnat"
"#,
    );
    let (code, err) = xvs_in(Some(d), &["run", "--config", own.to_str().unwrap(), "-i", "d0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("local address 10.47.0.1 is the source the director's kernel uses to reach real server 10.47.0.11"),
        "{err}"
    );
    let link = lab.exec(d, &["ip", "link", "show", "d0"]);
    assert!(!link.contains("xdp"), "nothing attached after the refusal: {link}");
    let _ = std::fs::remove_file(own);

    // A second xvs on the same interface is refused while the first runs.
    let x = lab.xvs(d, SERVICE, &["-i", "d0"]);
    let (code, err) = xvs_in(Some(d), &["run", "--config", c, "-i", "d0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in use by another running xvs"), "{err}");
    let link = lab.exec(d, &["ip", "link", "show", "d0"]);
    assert!(link.contains("xdp"), "attached while running: {link}");

    let counters = lab.stop_xvs(x);
    assert!(
        counters.values.iter().any(|(k, _)| k == "rx_packets"),
        "counters printed at stop"
    );
    let link = lab.exec(d, &["ip", "link", "show", "d0"]);
    assert!(!link.contains("xdp"), "detached after the stop: {link}");
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn not_root_exits_1_with_a_clear_message() {
    if lab::unavailable().is_some() || Command::new("runuser").arg("--version").output().is_err() {
        println!(
            "SKIP not_root_exits_1_with_a_clear_message: needs root and runuser to drop to nobody"
        );
        return;
    }
    let cfg = write("nobody", SERVICE);
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            env!("CARGO_BIN_EXE_xvs"),
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "-i",
            "lo",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // runuser itself could not execute it (a checkout under a 0700
    // directory, as a fresh clone in mktemp -d is): not xvs's answer.
    if err.contains("Permission denied") && err.starts_with("runuser:") {
        println!("SKIP not_root_exits_1_with_a_clear_message: nobody cannot run the test binary here ({err})");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing capabilities CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK"), "{err}");
    let _ = std::fs::remove_file(cfg);
}
