//! Announcing the VIPs a director can serve, as kernel state a routing
//! daemon exports (`[announce]`, docs/scale-out.md).
//!
//! xvs speaks no BGP. While it can serve a VIP — it runs, its workers are
//! alive, and at least one service of that VIP has an available real
//! server (weight above 0, health checks passing, next hop known) — the
//! VIP is a host route (`/32`, `/128`, protocol `static`) in a routing
//! table of its own (`[announce] table`), out of a TUN device xvs creates
//! (`[announce] device`). BIRD's `kernel` protocol learns that table and
//! BGP announces it (configs/bird/); FRR, GoBGP or any daemon that reads
//! the kernel's routes can do the same. When no service of a VIP has an
//! available real server any more (a health check took the last one out,
//! xvsadm removed it), the route is deleted: the routing daemon withdraws
//! it and ECMP sends the VIP's flows to the other directors. FULLNAT local
//! addresses are announced whenever xvs runs: replies of established
//! connections must keep reaching the director that owns the address.
//!
//! **Why a TUN device.** A route left in the kernel by a dead process would
//! go on being announced. The device is not persistent (no `TUNSETPERSIST`):
//! the kernel deletes it when the last file descriptor to it closes — when
//! xvs exits, however it exits, SIGKILL included — and with it every route
//! out of it. Nothing is ever sent on it; the table is looked up by no
//! `ip rule`, so the routes steer no packet of the director itself.
//!
//! A worker that dies makes xvs stop (`Running::dead_thread`); the routes
//! are withdrawn first, on every stop, before the workers stop.

use crate::ctl::snapshot::Snapshot;
use crate::daemon::kernel::Rtnl;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::fd::{FromRawFd, OwnedFd};

/// `[announce]`: where the announced routes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceConf {
    /// The routing table of the routes (1 – 2^32−1, not main, local or
    /// default: 253 – 255).
    pub table: u32,
    /// The TUN device's name (at most 15 bytes).
    pub device: String,
}

/// The device name when `[announce]` gives none.
pub const DEFAULT_DEVICE: &str = "xvs-announce";

impl AnnounceConf {
    /// Checks a table id and device name as the kernel would take them.
    ///
    /// # Errors
    /// The field at fault (`table`, `device`) and why.
    pub fn new(table: i64, device: Option<&str>) -> Result<AnnounceConf, (&'static str, String)> {
        if !(1..=u32::MAX as i64).contains(&table) || (253..=255).contains(&table) {
            return Err(("table", format!("{table} is not a routing table of its own (1 to 4294967295, not 253-255: default, main, local)")));
        }
        let device = device.unwrap_or(DEFAULT_DEVICE);
        if device.is_empty() || device.len() > 15 || device.contains(['/', ':', '\0']) || device.contains(char::is_whitespace) || device == "." || device == ".." {
            return Err(("device", format!("'{device}' is not an interface name (1 to 15 bytes, no '/', ':' or space)")));
        }
        Ok(AnnounceConf { table: table as u32, device: device.to_string() })
    }
}

/// What should be announced for `snap`: the VIPs of every service with an
/// available real server, and every FULLNAT local address.
pub fn wanted(snap: &Snapshot) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for (si, svc) in snap.services.iter().enumerate() {
        out.extend(svc.laddrs.iter().copied());
        if snap.dests[svc.dests.clone()].iter().any(|d| d.weight > 0 && d.hop.is_some()) {
            out.extend(snap.vips_of(si as u32));
        }
    }
    out
}

/// The TUN device and the routes announced out of it.
pub struct Announcer {
    conf: AnnounceConf,
    /// Keeps the device alive; closing it deletes the device and routes.
    tun: Option<OwnedFd>,
    index: u32,
    rtnl: Rtnl,
    announced: BTreeSet<IpAddr>,
    /// The snapshot generation last announced; `None`: announce again
    /// (the last attempt failed).
    done: Option<u64>,
}

impl Announcer {
    /// Creates the device (up, no address) in the calling thread's network
    /// namespace. Nothing is announced until [`Announcer::update`].
    ///
    /// # Errors
    /// The device could not be made (no `/dev/net/tun`, no CAP_NET_ADMIN,
    /// a device of that name another process holds, a persistent one).
    pub fn start(conf: &AnnounceConf) -> Result<Announcer, String> {
        let what = |e: String| format!("[announce] device {}: {e}", conf.device);
        let tun = sys::open_tun(&conf.device).map_err(what)?;
        let name = std::ffi::CString::new(conf.device.as_str()).map_err(|e| what(e.to_string()))?;
        // SAFETY: `name` is a NUL-terminated C string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(what(std::io::Error::last_os_error().to_string()));
        }
        let mut rtnl = Rtnl::open().map_err(|e| what(e.to_string()))?;
        rtnl.link_up(index).map_err(|e| what(e.to_string()))?;
        log::info!("announcing through device {} (index {index}), routing table {}", conf.device, conf.table);
        Ok(Announcer { conf: conf.clone(), tun: Some(tun), index, rtnl, announced: BTreeSet::new(), done: None })
    }

    /// The addresses announced now.
    pub fn announced(&self) -> &BTreeSet<IpAddr> {
        &self.announced
    }

    /// Brings the routes in line with `snap` (when its generation changed
    /// or the last attempt failed): adds the wanted ones, deletes the
    /// others, and logs each change.
    pub fn update(&mut self, snap: &Snapshot) {
        if self.done == Some(snap.generation) || self.tun.is_none() {
            return;
        }
        let want = wanted(snap);
        let mut ok = true;
        for a in self.announced.difference(&want).copied().collect::<Vec<_>>() {
            match self.rtnl.host_route(self.conf.table, a, self.index, false) {
                Ok(()) => {
                    log::info!("announce: withdrew {a} (no available real server)");
                    self.announced.remove(&a);
                }
                Err(e) => {
                    log::warn!("announce: withdrawing {a}: {e}");
                    ok = false;
                }
            }
        }
        for a in want.difference(&self.announced).copied().collect::<Vec<_>>() {
            match self.rtnl.host_route(self.conf.table, a, self.index, true) {
                Ok(()) => {
                    log::info!("announce: announced {a}");
                    self.announced.insert(a);
                }
                Err(e) => {
                    log::warn!("announce: announcing {a}: {e}");
                    ok = false;
                }
            }
        }
        self.done = ok.then_some(snap.generation);
    }

    /// Withdraws everything: deletes the device (and so its routes).
    pub fn withdraw_all(&mut self) {
        if self.tun.take().is_some() && !self.announced.is_empty() {
            log::info!("announce: withdrew {} address(es): stopping", self.announced.len());
        }
        self.announced.clear();
    }
}

/// The TUN ioctl.
mod sys {
    use super::*;

    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_PERSIST: libc::c_short = 0x0800;

    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }

    /// Opens `/dev/net/tun` and attaches a (new) TUN device `name` to it.
    /// A persistent device of that name is refused: it would outlive xvs.
    pub(super) fn open_tun(name: &str) -> Result<OwnedFd, String> {
        let path = c"/dev/net/tun";
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!("/dev/net/tun: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let tun = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TUN | IFF_NO_PI, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is an `ifreq`-sized, initialised buffer that lives
        // across the call; TUNSETIFF reads and writes only it.
        if unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut IfReq) } < 0 {
            return Err(format!("creating the TUN device: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: as above (TUNGETIFF fills `req`).
        if unsafe { libc::ioctl(fd, TUNGETIFF, &mut req as *mut IfReq) } == 0 && req.flags & IFF_PERSIST != 0 {
            return Err("a persistent device of that name exists; it would outlive xvs (delete it: ip link del)".into());
        }
        Ok(tun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::model::{Model, Neighbour, NetConf, PortConf};
    use crate::ipvs::dest::Dest;
    use crate::ipvs::sched::SchedFlags;
    use crate::ipvs::service::{Service, ServiceKey};
    use crate::ipvs::{FwdMethod, Proto};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// (VIP, port, [(real server, weight)]) per service.
    type Spec<'a> = (&'a str, u16, &'a [(&'a str, u32)]);

    fn model(weights: &[Spec<'_>]) -> Model {
        Model {
            services: weights
                .iter()
                .map(|(vip, port, dests)| Service {
                    key: ServiceKey::Addr { proto: Proto::Tcp, addr: ip(vip), port: *port },
                    sched: "mh".into(),
                    sched_flags: SchedFlags::default(),
                    persistence: None,
                    dests: dests
                        .iter()
                        .map(|(a, w)| Dest { addr: ip(a), port: *port, weight: *w, fwd: FwdMethod::Dr, u_threshold: 0, l_threshold: 0, proxy: None })
                        .collect(),
                    laddrs: vec![],
                    synproxy: false,
                })
                .collect(),
            net: NetConf {
                ports: vec![PortConf {
                    name: "eth0".into(),
                    mac: [2, 0, 0, 0, 0, 0x10],
                    mtu: 1500,
                    addrs: vec![(ip("10.0.1.254"), 24), (ip("2001:db8:1::fe"), 64)],
                    gateways: vec![],
                }],
                neighbours: vec![
                    Neighbour { dev: None, addr: ip("10.0.1.1"), mac: [2, 0, 0, 0, 1, 1] },
                    Neighbour { dev: None, addr: ip("10.0.1.2"), mac: [2, 0, 0, 0, 1, 2] },
                    Neighbour { dev: None, addr: ip("2001:db8:1::1"), mac: [2, 0, 0, 0, 1, 3] },
                ],
                ..NetConf::default()
            },
            ..Model::default()
        }
    }

    fn want(m: &Model) -> Vec<String> {
        wanted(&Snapshot::build(m, None).unwrap()).iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_vip_is_wanted_while_one_of_its_services_has_an_available_real_server() {
        let m = model(&[
            ("10.0.0.100", 80, &[("10.0.1.1", 1), ("10.0.1.2", 1)]),
            ("10.0.0.101", 80, &[("10.0.1.1", 0)]),
            ("10.0.0.102", 80, &[]),
            // 10.0.0.103: one service down, the other up — announced.
            ("10.0.0.103", 80, &[("10.0.1.1", 0)]),
            ("10.0.0.103", 443, &[("10.0.1.2", 5)]),
            // No next hop for its only real server: it cannot be served.
            ("10.0.0.104", 80, &[("10.0.9.9", 1)]),
        ]);
        assert_eq!(want(&m), ["10.0.0.100", "10.0.0.103"]);
    }

    #[test]
    fn fullnat_local_addresses_are_always_wanted() {
        let mut m = model(&[("10.0.0.100", 80, &[("10.0.1.1", 0)])]);
        m.services[0].dests[0].fwd = FwdMethod::FullNat;
        m.services[0].laddrs = vec![ip("10.0.0.200")];
        assert_eq!(want(&m), ["10.0.0.200"]);
    }

    #[test]
    fn config_values_are_checked() {
        assert_eq!(AnnounceConf::new(100, None).unwrap(), AnnounceConf { table: 100, device: DEFAULT_DEVICE.into() });
        assert_eq!(AnnounceConf::new(4_000_000_000, Some("vips")).unwrap().table, 4_000_000_000);
        for (t, d, field, why) in [
            (0, None, "table", "0 is not a routing table"),
            (254, None, "table", "254 is not"),
            (-1, None, "table", "-1 is not"),
            (1 << 32, None, "table", "4294967296 is not"),
            (100, Some(""), "device", "'' is not an interface name"),
            (100, Some("a-name-too-long-x"), "device", "too-long"),
            (100, Some("a/b"), "device", "'a/b'"),
            (100, Some("a b"), "device", "'a b'"),
        ] {
            let (f, w) = AnnounceConf::new(t, d).unwrap_err();
            assert_eq!(f, field);
            assert!(w.contains(why), "{w} should contain {why}");
        }
    }

    /// The device and its routes, in a network namespace of this test's
    /// own (root only; skipped otherwise): routes follow the snapshot, and
    /// closing the device (what the kernel does when xvs dies, SIGKILL
    /// included) takes them away.
    #[test]
    fn routes_follow_the_snapshot_and_die_with_the_device() {
        let ns = format!("xvs-ann-{}", std::process::id());
        if std::process::Command::new("ip").args(["netns", "add", &ns]).status().map_or(true, |s| !s.success()) {
            println!("SKIP: cannot create a network namespace (not root?)");
            return;
        }
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let _del = Del(ns.clone());
        let routes = |ns: &str| -> String {
            let mut out = String::new();
            for fam in ["-4", "-6"] {
                let o = std::process::Command::new("ip").args([fam, "-n", ns, "route", "show", "table", "77"]).output().unwrap();
                out += &String::from_utf8_lossy(&o.stdout);
            }
            out
        };
        let ns2 = ns.clone();
        let steps = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns2}")).unwrap();
            // SAFETY: a valid namespace fd; only this thread changes namespace.
            assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }, 0);
            let mut a = Announcer::start(&AnnounceConf::new(77, Some("xvs-ann-t")).unwrap()).unwrap();
            let mut m = model(&[
                ("10.0.0.100", 80, &[("10.0.1.1", 1)]),
                ("10.0.0.101", 80, &[("10.0.1.2", 1)]),
                ("2001:db8::100", 80, &[("2001:db8:1::1", 1)]),
            ]);
            let s1 = Snapshot::build(&m, None).unwrap();
            a.update(&s1);
            let r1 = routes(&ns2);
            m.services[1].dests[0].weight = 0;
            let s2 = Snapshot::build(&m, Some(&s1)).unwrap();
            a.update(&s2);
            let r2 = routes(&ns2);
            drop(a);
            // The kernel deletes the device on the last close.
            let t0 = std::time::Instant::now();
            while !routes(&ns2).is_empty() && t0.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            (r1, r2, routes(&ns2))
        });
        let (r1, r2, r3) = steps.join().unwrap();
        assert!(r1.contains("10.0.0.100 dev xvs-ann-t proto static scope link") && r1.contains("10.0.0.101 dev xvs-ann-t"), "{r1}");
        assert!(r1.contains("2001:db8::100 dev xvs-ann-t proto static"), "{r1}");
        assert!(r2.contains("10.0.0.100 dev xvs-ann-t") && !r2.contains("10.0.0.101") && r2.contains("2001:db8::100"), "{r2}");
        assert!(r3.is_empty(), "{r3}");
    }
}
