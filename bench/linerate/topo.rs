//! The topology: three network namespaces joined by two veth pairs, and
//! the knobs the harness turns on them.
//!
//! ```text
//!  xvs-linerate-<pid>-gen        xvs-linerate-<pid>-dir                 xvs-linerate-<pid>-sink
//!  lr<pid>g 10.77.0.2/16 ──── lr<pid>d 10.77.0.1/16    lr<pid>e 10.78.0.1/24 ──── lr<pid>s 10.78.0.2/24
//!  generator (AF_XDP TX)      + VIP 10.77.0.100/32      (to the real server)       sink (tc counter)
//!  clients 10.77.16.1 ...     the director: xvs run | do-nothing forwarder | nftables DNAT
//! ```
//!
//! - Fixed MACs and permanent neighbour entries: nothing waits for ARP,
//!   and the sink's program never has to pass ARP for a measurement.
//! - TX checksum offload off on every veth end (`ethtool -K <if> tx off`).
//!   No kernel TCP/UDP sender is in this topology — the generator writes
//!   full checksums over AF_XDP, which no offload touches — so the frames
//!   measured are a NIC's either way; the setting stays as the recorded
//!   runs had it. (xvs completes the partial checksums a kernel sender
//!   on a veth leaves: docs/afxdp.md.)
//! - GRO on the director's generator-side veth: a veth without XDP uses
//!   NAPI only when GRO is on, and the kernel configuration needs NAPI to
//!   move its receive work to a thread ([`Topo::napi_threaded`]); with
//!   XDP attached (xvs, the forwarder) the veth uses NAPI anyway.
//! - [`Topo`]'s `Drop` deletes the namespaces (and with them the veths,
//!   tc hooks and any XDP program left behind); [`remove_stale`] deletes
//!   those of earlier runs that were killed.

use std::net::Ipv4Addr;
use std::process::Command;

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
pub const RIP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
pub const PORT: u16 = 9;
pub const MAC_GEN: [u8; 6] = [0x02, 0x4c, 0x52, 0, 0, 0x01];
pub const MAC_DIR_IN: [u8; 6] = [0x02, 0x4c, 0x52, 0, 0, 0x02];
pub const MAC_DIR_OUT: [u8; 6] = [0x02, 0x4c, 0x52, 0, 0, 0x03];
pub const MAC_SINK: [u8; 6] = [0x02, 0x4c, 0x52, 0, 0, 0x04];
const NS_PREFIX: &str = "xvs-linerate-";

/// Runs a command; its stdout, or an error with its stderr.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespaces and interface names of one harness process.
pub struct Topo {
    pub gen: String,
    pub dir: String,
    pub sink: String,
    pub gen_if: String,
    pub dir_in: String,
    pub dir_out: String,
    pub sink_if: String,
    made: Vec<String>,
}

impl Topo {
    /// Builds the topology (see the module docs), both veth pairs with
    /// `queues` RX and TX queues on each end.
    pub fn new(queues: u32) -> Result<Topo, String> {
        let pid = std::process::id();
        let ns = |r: &str| format!("{NS_PREFIX}{pid}-{r}");
        // Interface names stay short: a threaded NAPI kthread is called
        // "napi/<if>-<id>" and the kernel keeps 15 characters of it.
        let ifn = |r: &str| format!("lr{pid}{r}");
        let mut t = Topo {
            gen: ns("gen"),
            dir: ns("dir"),
            sink: ns("sink"),
            gen_if: ifn("g"),
            dir_in: ifn("d"),
            dir_out: ifn("e"),
            sink_if: ifn("s"),
            made: Vec::new(),
        };
        for n in [t.gen.clone(), t.dir.clone(), t.sink.clone()] {
            sh(&["ip", "netns", "add", &n])?;
            t.made.push(n.clone());
            sh(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        }
        let (g, d, s) = (t.gen.clone(), t.dir.clone(), t.sink.clone());
        t.veth((&g, &t.gen_if, &MAC_GEN), (&d, &t.dir_in, &MAC_DIR_IN), queues)?;
        t.veth((&d, &t.dir_out, &MAC_DIR_OUT), (&s, &t.sink_if, &MAC_SINK), queues)?;
        let ip = |n: &str, a: &[&str]| {
            let mut v = vec!["ip", "-n", n];
            v.extend_from_slice(a);
            sh(&v).map(drop)
        };
        ip(&g, &["addr", "add", "10.77.0.2/16", "dev", &t.gen_if])?;
        ip(&g, &["route", "add", "default", "via", "10.77.0.1"])?;
        ip(&d, &["addr", "add", "10.77.0.1/16", "dev", &t.dir_in])?;
        ip(&d, &["addr", "add", &format!("{VIP}/32"), "dev", &t.dir_in])?;
        ip(&d, &["addr", "add", "10.78.0.1/24", "dev", &t.dir_out])?;
        ip(
            &s,
            &["addr", "add", &format!("{RIP}/24"), "dev", &t.sink_if],
        )?;
        ip(&s, &["route", "add", "default", "via", "10.78.0.1"])?;
        #[rustfmt::skip]
        let neigh = [
            (&g, "10.77.0.1", MAC_DIR_IN, &t.gen_if),
            (&d, "10.77.0.2", MAC_GEN, &t.dir_in),
            (&d, "10.78.0.2", MAC_SINK, &t.dir_out),
            (&s, "10.78.0.1", MAC_DIR_OUT, &t.sink_if),
        ];
        for (n, a, m, i) in neigh {
            ip(
                n,
                &[
                    "neigh",
                    "replace",
                    a,
                    "lladdr",
                    &mac_str(&m),
                    "dev",
                    i,
                    "nud",
                    "permanent",
                ],
            )?;
        }
        for kv in [
            "net.ipv4.ip_forward=0",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ] {
            t.exec(&d, &["sysctl", "-qw", kv])?;
        }
        t.exec(&d, &["ethtool", "-K", &t.dir_in, "gro", "on"])?;
        Ok(t)
    }

    /// A veth pair between (namespace, interface, MAC) ends `a` and `b`.
    fn veth(
        &self,
        (a, a_if, a_mac): (&str, &str, &[u8; 6]),
        (b, b_if, b_mac): (&str, &str, &[u8; 6]),
        queues: u32,
    ) -> Result<(), String> {
        let q = queues.max(1).to_string();
        #[rustfmt::skip]
        sh(&["ip", "-n", a, "link", "add", a_if, "address", &mac_str(a_mac),
             "numtxqueues", &q, "numrxqueues", &q, "type", "veth",
             "peer", "name", b_if, "address", &mac_str(b_mac), "numtxqueues", &q, "numrxqueues", &q, "netns", b])?;
        for (n, i) in [(a, a_if), (b, b_if)] {
            self.exec(n, &["ethtool", "-K", i, "tx", "off"])?;
            sh(&["ip", "-n", n, "link", "set", i, "up"])?;
        }
        Ok(())
    }

    /// `ip netns exec <ns> <args...>`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Turns on threaded NAPI for the director's generator-side veth, pins
    /// the kthread of RX queue `i` to `cpus[i % cpus.len()]` and gives them
    /// nice value `nice` (0: left alone). Call once the veth has NAPI (GRO
    /// on, or XDP attached); returns how many threads were pinned.
    ///
    /// A kthread is named after its NAPI instance's id, not its queue;
    /// veth adds one instance per RX queue in queue order and ids are
    /// handed out in increasing order, so the kthreads sorted by id are
    /// the queues in order.
    pub fn napi_threaded(&self, cpus: &[usize], nice: i32) -> Result<usize, String> {
        let path = format!("/sys/class/net/{}/threaded", self.dir_in);
        self.exec(&self.dir, &["sh", "-c", &format!("echo 1 > {path}")])?;
        // The kthreads appear right away; give the scheduler a moment.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let want = format!("napi/{}", self.dir_in);
        let mut found: Vec<(u64, i32)> = Vec::new();
        for e in std::fs::read_dir("/proc")
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim_end();
            // "napi/<if>-<id>", cut at 15 characters.
            let ours = comm
                .strip_prefix(&want)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'));
            if ours {
                // The id after the last '-' (cut off: sorts first).
                let id = comm.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or(0);
                found.push((id, pid));
            }
        }
        if found.is_empty() || cpus.is_empty() {
            return Err(format!("no NAPI thread for {} found", self.dir_in));
        }
        found.sort_unstable();
        for (i, &(_, pid)) in found.iter().enumerate() {
            pin(pid, cpus[i % cpus.len()])?;
            if nice != 0 {
                renice(pid, nice)?;
            }
        }
        Ok(found.len())
    }

    /// Turns threaded NAPI off again for the director's generator-side
    /// veth (veth's default): its receive work then runs in softirq on the
    /// CPU that transmitted into the pair, the generator's. Call once the
    /// veth has NAPI, as for [`Topo::napi_threaded`].
    pub fn napi_softirq(&self) -> Result<(), String> {
        let path = format!("/sys/class/net/{}/threaded", self.dir_in);
        self.exec(&self.dir, &["sh", "-c", &format!("echo 0 > {path}")])
            .map(drop)
    }

    /// Steers the kernel's protocol work for frames arriving on the
    /// director's generator-side veth to `cpu` (RPS), or nowhere else
    /// (`None`): with NAPI in softirq mode the receive work runs on the
    /// generator's CPU, and this moves the kernel configuration's
    /// forwarding to the director's CPU. Frames XDP redirects to AF_XDP
    /// never reach RPS.
    pub fn rps(&self, cpu: Option<usize>) -> Result<(), String> {
        let path = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", self.dir_in);
        let mask = cpu.map_or("0".into(), |c| format!("{:x}", 1u64 << (c % 64)));
        self.exec(&self.dir, &["sh", "-c", &format!("echo {mask} > {path}")])
            .map(drop)
    }

    /// Frames the generator-side veth pair dropped because the director's
    /// receive queue was full (the generator's veth counts them as TX drops).
    pub fn gen_tx_dropped(&self) -> Result<u64, String> {
        let out = sh(&[
            "ip",
            "-n",
            &self.gen,
            "-s",
            "-j",
            "link",
            "show",
            &self.gen_if,
        ])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        v[0]["stats64"]["tx"]["dropped"]
            .as_u64()
            .ok_or_else(|| format!("no tx drop counter in `ip -s -j link`: {out}"))
    }
}

/// Pins thread `pid` to `cpu`.
pub fn pin(pid: i32, cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; the call
    // reads `size_of` bytes of it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        return Err(format!(
            "pinning thread {pid} to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Sets the nice value of thread `tid` (0: the calling thread).
pub fn renice(tid: i32, nice: i32) -> Result<(), String> {
    // SAFETY: plain call on a thread id.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r != 0 {
        return Err(format!(
            "setting nice {nice} on thread {tid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The nice value of the calling process's scheduler autogroup, restored
/// on drop. With autogroups (`kernel.sched_autogroup_enabled`), each
/// session's processes share one scheduling entity and a thread's own nice
/// value only counts inside it: the group's nice is what competes with the
/// other sessions on the machine.
pub struct Autogroup {
    old: i32,
}

impl Autogroup {
    /// Sets the autogroup's nice value; `None` when the kernel has no
    /// autogroups (then thread nice values are enough).
    pub fn set(nice: i32) -> Result<Option<Autogroup>, String> {
        let Ok(cur) = std::fs::read_to_string("/proc/self/autogroup") else {
            return Ok(None);
        };
        let old = autogroup_nice(&cur)
            .ok_or_else(|| format!("unexpected /proc/self/autogroup: {cur:?}"))?;
        std::fs::write("/proc/self/autogroup", nice.to_string())
            .map_err(|e| format!("setting the autogroup's nice value: {e}"))?;
        Ok(Some(Autogroup { old }))
    }
}

/// The nice value in `/proc/self/autogroup` ("/autogroup-75 nice 0").
fn autogroup_nice(s: &str) -> Option<i32> {
    let mut w = s.split_whitespace();
    match (w.next(), w.next(), w.next(), w.next()) {
        (Some(g), Some("nice"), Some(n), None) if g.starts_with("/autogroup-") => n.parse().ok(),
        _ => None,
    }
}

impl Drop for Autogroup {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/self/autogroup", self.old.to_string());
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for n in self.made.iter().rev() {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

/// Deletes the namespaces of earlier harness runs whose process is gone
/// (killed before it could clean up); returns their names.
pub fn remove_stale() -> Vec<String> {
    let mut gone = Vec::new();
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return gone;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        let alive = !pid.is_empty() && std::path::Path::new("/proc").join(pid).exists();
        if !alive && sh(&["ip", "netns", "del", &name]).is_ok() {
            gone.push(name);
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autogroup_lines_parse() {
        assert_eq!(autogroup_nice("/autogroup-75 nice 0\n"), Some(0));
        assert_eq!(autogroup_nice("/autogroup-3 nice -20"), Some(-20));
        assert_eq!(autogroup_nice("/autogroup-3 nice x"), None);
        assert_eq!(autogroup_nice("nice 0"), None);
        assert_eq!(autogroup_nice(""), None);
    }

    #[test]
    fn macs_print_as_ip_wants_them() {
        assert_eq!(mac_str(&MAC_SINK), "02:4c:52:00:00:04");
    }
}
