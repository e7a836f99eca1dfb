//! The directors under test besides the ceiling ([`crate::fwd`]): the real
//! `xvs run` binary as a child process, and the kernel's nftables DNAT.

use crate::topo::{sh, Topo, PORT, RIP, VIP};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Forwarding method of the xvs service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Nat,
    Dr,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Nat => "NAT",
            Method::Dr => "DR",
        }
    }
}

/// The xvs configuration: one UDP service, the sink as its only real
/// server.
pub fn xvs_config(m: Method) -> String {
    let (port, mode) = match m {
        Method::Nat => (format!("port = {PORT}\n  "), "nat"),
        Method::Dr => (String::new(), "dr"),
    };
    format!(
        "[[service]]\nproto = \"udp\"\nvip = \"{VIP}\"\nport = {PORT}\nscheduler = \"rr\"\n\
         \n  [[service.real_server]]\n  ip = \"{RIP}\"\n  {port}mode = \"{mode}\"\n"
    )
}

/// A running `xvs run`; dropping it stops it (SIGTERM, SIGKILL after 5 s).
pub struct Xvs {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Option<ChildStdout>,
}

impl Xvs {
    /// Starts `bin run` in the director's namespace with `config`, worker
    /// `i` on `cpus[i]` (one worker per CPU given), polling `poll`
    /// ("adaptive" or "busy"), and waits until it has resolved its next
    /// hop.
    pub fn start(
        bin: &Path,
        topo: &Topo,
        config: &Path,
        poll: &str,
        cpus: &[usize],
        stop: &dyn Fn() -> bool,
    ) -> Result<Xvs, String> {
        let cores: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.dir])
            .arg(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["-i", &topo.dir_in, "-i", &topo.dir_out])
            .args([
                "--workers",
                &cpus.len().max(1).to_string(),
                "--cores",
                &cores.join(","),
                "--poll",
                poll,
            ])
            .arg("--counters")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped");
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take();
        let mut x = Xvs { child, log, stdout };
        let t0 = Instant::now();
        loop {
            // Next hops resolved and every worker forwarding (its index
            // faulted in first).
            let log = x.log();
            if log.contains(xvs::daemon::LOG_HOPS_RESOLVED) && log.contains(xvs::daemon::LOG_READY) {
                return Ok(x);
            }
            if let Ok(Some(st)) = x.child.try_wait() {
                return Err(format!("xvs exited ({st}) while starting:\n{}", x.log()));
            }
            if stop() {
                return Err("interrupted".into());
            }
            if t0.elapsed() > Duration::from_secs(15) {
                return Err(format!("xvs did not get ready within 15 s:\n{}", x.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Stops it with SIGTERM and returns the counters it prints.
    pub fn stop(mut self) -> Result<Vec<(String, u64)>, String> {
        signal(&self.child, libc::SIGTERM);
        let st = wait(&mut self.child, Duration::from_secs(10))
            .ok_or_else(|| format!("xvs did not stop within 10 s:\n{}", self.log()))?;
        let mut out = String::new();
        if let Some(mut s) = self.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if !st.success() {
            return Err(format!("xvs exited with {st}:\n{}\n{out}", self.log()));
        }
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect())
    }
}

fn signal(c: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(c.id() as i32, sig) };
}

fn wait(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Xvs {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        signal(&self.child, libc::SIGTERM);
        if wait(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The kernel as the director: nftables DNAT of VIP:port to the sink, and
/// IPv4 forwarding on. Dropping it removes the table and turns forwarding
/// off again.
pub struct Nft<'a> {
    topo: &'a Topo,
}

const NFT_TABLE: &str = "xvs_linerate";

impl<'a> Nft<'a> {
    pub fn start(topo: &'a Topo, scratch: &Path) -> Result<Nft<'a>, String> {
        let rules = format!(
            "table ip {NFT_TABLE} {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             ip daddr {VIP} udp dport {PORT} dnat to {RIP}:{PORT}\n  }}\n}}\n"
        );
        let f: PathBuf = scratch.join("dnat.nft");
        std::fs::write(&f, rules).map_err(|e| e.to_string())?;
        let n = Nft { topo };
        topo.exec(&topo.dir, &["nft", "-f", &f.to_string_lossy()])?;
        topo.exec(&topo.dir, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(n)
    }
}

impl Drop for Nft<'_> {
    fn drop(&mut self) {
        let d = &self.topo.dir;
        let _ = self
            .topo
            .exec(d, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        let _ = self
            .topo
            .exec(d, &["nft", "delete", "table", "ip", NFT_TABLE]);
    }
}

/// Why the kernel configuration cannot run here, if it cannot.
pub fn nft_unavailable() -> Option<String> {
    match sh(&["nft", "--version"]) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "nft is not installed ({e}); `make deps` installs nftables"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid_xvs_configs() {
        for m in [Method::Nat, Method::Dr] {
            let model = xvs::ctl::config::load_str(&xvs_config(m), "linerate")
                .unwrap_or_else(|e| panic!("{m:?}: {e}\n{}", xvs_config(m)));
            assert_eq!(model.services.len(), 1);
        }
    }
}
