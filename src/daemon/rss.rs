//! Ownership that follows the NIC: at start, have a multi-queue NIC's RSS
//! hash on the addresses only, read its key and indirection table back,
//! and let workers own a flow where the NIC delivers it.
//!
//! # Contract
//!
//! - [`decide`] is the whole decision, over a [`Nic`] (the ethtool calls):
//!   [`Ethtool`] on a real interface, a simulated NIC in the tests.
//! - `ownership = "hash"`, or one worker: nothing is asked of the NIC;
//!   flows are owned by the client address's hash (`worker::shard_hash`).
//! - Otherwise, on every interface: the RSS input of TCP and UDP over IPv4
//!   and IPv6 is set to source and destination address
//!   (`ethtool -N IF rx-flow-hash tcp4 sd`, ETHTOOL_SRXFH) and read back;
//!   the hash function must be Toeplitz without an input transform; an
//!   indirection table that sends buckets to queues without a worker is
//!   rewritten to spread over the workers' queues (`ethtool -X IF equal
//!   N`, ETHTOOL_SRSSH); every interface must end with the same key and
//!   table (one flow, one owner, whichever port it arrives on). Then the
//!   owner of a flow to a VIP that is not client-owned is the worker of
//!   `indir[toeplitz(client, VIP) % len]` (`Snapshot::rss`): the queue it
//!   arrives on, so it is never handed off.
//! - A NIC that refuses any step (veth: no RSS configuration at all,
//!   EOPNOTSUPP) leaves ownership to the client hash under `"auto"`, and
//!   fails the start under `"rss"`. Either way [`Decision::why`] says which
//!   mode runs and why, in one line the daemon logs.
//! - What the NIC cannot make consistent stays handed off: NAT replies
//!   (their addresses are the real server's and the client's, not the
//!   VIP's: NAT VIPs are owned by the client hash in every mode),
//!   persistent services (one template per client subnet), FULLNAT
//!   replies (owned by their local port; [`fullnat_rules`] gives the ntuple
//!   rules that would steer them, which the daemon logs for the operator),
//!   ICMP errors, and fragments' later pieces where the NIC hashes them
//!   otherwise.
//! - Settings made on the NIC stay after xvs stops (addresses-only hashing
//!   is harmless to the kernel's own traffic).

use crate::ipvs::rss::{RssConfig, RssMap};
use std::fmt;
use std::io;
use std::net::IpAddr;

/// How workers own flows (`[global] ownership`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ownership {
    /// Follow the NIC's RSS where the NIC allows it, else the client hash.
    #[default]
    Auto,
    /// Follow the NIC's RSS; refuse to start where it cannot be followed.
    Rss,
    /// The client address's hash (every flow's packets meet on one worker
    /// whatever the NIC does; most take the hand-off on a multi-queue NIC).
    Hash,
}

impl std::str::FromStr for Ownership {
    type Err = String;
    fn from_str(s: &str) -> Result<Ownership, String> {
        match s {
            "auto" => Ok(Ownership::Auto),
            "rss" => Ok(Ownership::Rss),
            "hash" => Ok(Ownership::Hash),
            _ => Err(format!("'{s}' is not \"auto\", \"rss\" or \"hash\"")),
        }
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ownership::Auto => "auto",
            Ownership::Rss => "rss",
            Ownership::Hash => "hash",
        })
    }
}

/// Flow types whose RSS input is set (`linux/ethtool.h`).
pub const TCP_V4_FLOW: u32 = 0x01;
pub const UDP_V4_FLOW: u32 = 0x02;
pub const TCP_V6_FLOW: u32 = 0x05;
pub const UDP_V6_FLOW: u32 = 0x06;
const FLOWS: [(u32, &str); 4] = [(TCP_V4_FLOW, "tcp4"), (UDP_V4_FLOW, "udp4"), (TCP_V6_FLOW, "tcp6"), (UDP_V6_FLOW, "udp6")];
/// RSS input fields: IP source and destination address.
pub const RXH_IP_SRC: u64 = 1 << 4;
pub const RXH_IP_DST: u64 = 1 << 5;
/// `ETH_RSS_HASH_TOP`: the Toeplitz hash function.
pub const HASH_TOP: u8 = 1;

/// A NIC's RSS as read back (ETHTOOL_GRSSH).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicRss {
    /// Hash function bits (`ETH_RSS_HASH_*`; [`HASH_TOP`]: Toeplitz).
    pub hfunc: u8,
    /// Input transform (`RXH_XFRM_*`; 0: none).
    pub xfrm: u8,
    pub config: RssConfig,
}

/// The ethtool calls [`decide`] makes, one interface at a time.
pub trait Nic {
    /// The RSS input fields of `flow` (ETHTOOL_GRXFH: `RXH_*` bits).
    fn flow_hash(&mut self, iface: &str, flow: u32) -> io::Result<u64>;
    /// Sets them (ETHTOOL_SRXFH).
    fn set_flow_hash(&mut self, iface: &str, flow: u32, fields: u64) -> io::Result<()>;
    /// Hash function, key and indirection table (ETHTOOL_GRSSH).
    fn rss(&mut self, iface: &str) -> io::Result<NicRss>;
    /// Replaces the indirection table, keeping the key (ETHTOOL_SRSSH).
    fn set_indir(&mut self, iface: &str, indir: &[u32]) -> io::Result<()>;
}

/// What [`decide`] chose.
#[derive(Debug)]
pub struct Decision {
    /// `Some`: workers own flows as the NIC spreads them.
    pub map: Option<RssMap>,
    /// The line to log: the mode and why.
    pub why: String,
}

/// Decides how `workers` workers on `ifaces` own flows (see the module
/// docs), programming the NIC through `nic`.
///
/// # Errors
/// `ownership` is [`Ownership::Rss`] and the NIC cannot be followed: the
/// reason.
pub fn decide(ownership: Ownership, ifaces: &[String], workers: u16, nic: &mut dyn Nic) -> Result<Decision, String> {
    let hash = |why: String| Decision { map: None, why: format!("ownership: hash (the client address's hash): {why}") };
    if ownership == Ownership::Hash {
        return Ok(hash("[global] ownership = \"hash\"".into()));
    }
    if workers <= 1 {
        return Ok(hash("one worker, nothing to hand off".into()));
    }
    match follow(ifaces, workers, nic) {
        Ok((map, what)) => Ok(Decision {
            map: Some(map),
            why: format!(
                "ownership: rss (the NIC's queue): {what}; flows to VIPs without NAT real servers or persistence are not handed off"
            ),
        }),
        Err(why) if ownership == Ownership::Rss => Err(format!("[global] ownership = \"rss\": {why}")),
        Err(why) => Ok(hash(why)),
    }
}

/// Programs and reads every interface; the map, and what was done.
fn follow(ifaces: &[String], workers: u16, nic: &mut dyn Nic) -> Result<(RssMap, String), String> {
    let mut first: Option<(&str, RssConfig)> = None;
    let mut done = Vec::new();
    for iface in ifaces {
        let want = RXH_IP_SRC | RXH_IP_DST;
        for (flow, name) in FLOWS {
            let now = nic
                .flow_hash(iface, flow)
                .map_err(|e| format!("{iface}: the driver has no RSS hash configuration ({})", os_error(&e)))?;
            if now != want {
                nic.set_flow_hash(iface, flow, want).map_err(|e| {
                    format!("{iface}: the driver refuses to hash {name} on the addresses only ({})", os_error(&e))
                })?;
                let back = nic.flow_hash(iface, flow).map_err(|e| format!("{iface}: reading the {name} hash back: {}", os_error(&e)))?;
                if back != want {
                    return Err(format!("{iface}: the driver took the {name} hash input but hashes on {back:#x}, not the addresses only"));
                }
                done.push(format!("{iface} {name} hashed on addresses only"));
            }
        }
        let mut r = nic.rss(iface).map_err(|e| format!("{iface}: reading the RSS key and table: {}", os_error(&e)))?;
        if r.hfunc != HASH_TOP {
            return Err(format!("{iface}: the RSS hash function is not Toeplitz (hfunc {:#x})", r.hfunc));
        }
        if r.xfrm != 0 {
            return Err(format!("{iface}: the RSS input is transformed (input_xfrm {:#x}, e.g. symmetric-xor)", r.xfrm));
        }
        if r.config.indir.iter().any(|&q| q >= workers as u32) {
            let equal: Vec<u32> = (0..r.config.indir.len() as u32).map(|i| i % workers as u32).collect();
            nic.set_indir(iface, &equal).map_err(|e| {
                format!("{iface}: the indirection table sends packets to queues without a worker, and the driver refuses a new one ({})", os_error(&e))
            })?;
            r = nic.rss(iface).map_err(|e| format!("{iface}: reading the RSS table back: {}", os_error(&e)))?;
            if r.config.indir != equal {
                return Err(format!("{iface}: the driver took a new indirection table but does not use it"));
            }
            done.push(format!("{iface} table spread over {workers} queues"));
        }
        match &first {
            None => first = Some((iface, r.config)),
            Some((f, c)) if *c != r.config => {
                return Err(format!("{f} and {iface} hash differently (RSS key or indirection table): one flow would have two owners"));
            }
            Some(_) => {}
        }
    }
    let Some((iface, config)) = first else {
        return Err("no interfaces".into());
    };
    let (keylen, buckets) = (config.key.len(), config.indir.len());
    let map = RssMap::new(config, workers).map_err(|e| format!("{iface}: {e}"))?;
    let mut what = format!("Toeplitz over the addresses, {keylen}-byte key, {buckets} buckets over {workers} queues");
    if !done.is_empty() {
        what += &format!(" (set: {})", done.join(", "));
    }
    Ok((map, what))
}

fn os_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP".into(),
        _ => e.to_string(),
    }
}

/// One ntuple rule that steers FULLNAT replies to the queue of the worker
/// that owns their local port (`ipvs::laddr::port_owner`: port % workers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtupleRule {
    pub laddr: IpAddr,
    /// `"tcp4"`, `"udp4"`, `"tcp6"` or `"udp6"`.
    pub flow: &'static str,
    /// Destination port value and the mask of its compared bits.
    pub port: u16,
    pub port_mask: u16,
    pub queue: u16,
}

impl NtupleRule {
    /// The `ethtool -N` command that installs it (ethtool's `m` marks the
    /// bits to ignore, the complement of the compared ones).
    pub fn command(&self, iface: &str) -> String {
        format!(
            "ethtool -N {iface} flow-type {} dst-ip {} dst-port {} m {:#06x} action {}",
            self.flow, self.laddr, self.port, !self.port_mask, self.queue
        )
    }
}

/// The rules that deliver FULLNAT replies (to `laddrs`) where their owner
/// is: one per local address, protocol and worker, matching the port's low
/// bits — expressible as a mask only for a power-of-two worker count
/// (`None` otherwise, and for one worker: nothing to steer). DPVS does the
/// same with flow director rules on its local address pools.
pub fn fullnat_rules(laddrs: &[IpAddr], workers: u16) -> Option<Vec<NtupleRule>> {
    if workers <= 1 || !workers.is_power_of_two() {
        return None;
    }
    let mask = workers - 1;
    let mut out = Vec::new();
    for &laddr in laddrs {
        let protos = if laddr.is_ipv4() { ["tcp4", "udp4"] } else { ["tcp6", "udp6"] };
        for flow in protos {
            for w in 0..workers {
                out.push(NtupleRule { laddr, flow, port: w, port_mask: mask, queue: w });
            }
        }
    }
    Some(out)
}

// ---- the ethtool ioctl -------------------------------------------------

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GRXFH: u32 = 0x29;
const ETHTOOL_SRXFH: u32 = 0x2a;
const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_SRSSH: u32 = 0x47;
/// `struct ethtool_rxnfc` with its flow spec (192 bytes on 64-bit Linux).
const RXNFC_LEN: usize = 192;
/// `struct ethtool_rxfh` up to `rss_config`.
const RXFH_HEAD: usize = 24;

/// [`Nic`] through the SIOCETHTOOL ioctl on a datagram socket.
pub struct Ethtool {
    fd: std::os::fd::OwnedFd,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

impl Ethtool {
    /// A socket to ask through.
    ///
    /// # Errors
    /// The socket cannot be made.
    pub fn open() -> io::Result<Ethtool> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        Ok(Ethtool { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) } })
    }

    /// One ETHTOOL_* command: `buf` is its structure, in and out.
    fn call(&self, iface: &str, buf: &mut [u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: buf.as_mut_ptr().cast(), _pad: [0; 16] };
        let n = iface.len();
        if n == 0 || n >= libc::IFNAMSIZ || iface.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name '{iface}'")));
        }
        req.name[..n].copy_from_slice(iface.as_bytes());
        // SAFETY: req names a buffer as long as the command's structure
        // (the callers size it), alive for the call.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn rxnfc(cmd: u32, flow: u32, data: u64) -> [u8; RXNFC_LEN] {
        let mut b = [0u8; RXNFC_LEN];
        b[0..4].copy_from_slice(&cmd.to_ne_bytes());
        b[4..8].copy_from_slice(&flow.to_ne_bytes());
        b[8..16].copy_from_slice(&data.to_ne_bytes());
        b
    }

    fn rxfh_head(cmd: u32, indir: u32, key: u32) -> Vec<u8> {
        let mut b = vec![0u8; RXFH_HEAD];
        b[0..4].copy_from_slice(&cmd.to_ne_bytes());
        b[8..12].copy_from_slice(&indir.to_ne_bytes());
        b[12..16].copy_from_slice(&key.to_ne_bytes());
        b
    }
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Nic for Ethtool {
    fn flow_hash(&mut self, iface: &str, flow: u32) -> io::Result<u64> {
        let mut b = Ethtool::rxnfc(ETHTOOL_GRXFH, flow, 0);
        self.call(iface, &mut b)?;
        Ok(u64::from_ne_bytes(b[8..16].try_into().expect("8 bytes")))
    }

    fn set_flow_hash(&mut self, iface: &str, flow: u32, fields: u64) -> io::Result<()> {
        let mut b = Ethtool::rxnfc(ETHTOOL_SRXFH, flow, fields);
        self.call(iface, &mut b)
    }

    fn rss(&mut self, iface: &str) -> io::Result<NicRss> {
        let mut head = Ethtool::rxfh_head(ETHTOOL_GRSSH, 0, 0);
        self.call(iface, &mut head)?;
        let (indir, key) = (word(&head, 8), word(&head, 12));
        if indir > 1 << 16 || key > 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("RSS sizes out of range: table {indir}, key {key}")));
        }
        let mut b = Ethtool::rxfh_head(ETHTOOL_GRSSH, indir, key);
        b.resize(RXFH_HEAD + 4 * indir as usize + key as usize, 0);
        self.call(iface, &mut b)?;
        let table = (0..indir as usize).map(|i| word(&b, RXFH_HEAD + 4 * i)).collect();
        let k = RXFH_HEAD + 4 * indir as usize;
        Ok(NicRss { hfunc: b[16], xfrm: b[17], config: RssConfig { key: b[k..k + key as usize].to_vec(), indir: table } })
    }

    fn set_indir(&mut self, iface: &str, indir: &[u32]) -> io::Result<()> {
        let mut b = Ethtool::rxfh_head(ETHTOOL_SRSSH, indir.len() as u32, 0);
        for q in indir {
            b.extend_from_slice(&q.to_ne_bytes());
        }
        self.call(iface, &mut b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::rss::DEFAULT_KEY;
    use std::collections::HashMap;

    /// A NIC in memory: what the driver supports and what it holds.
    #[derive(Clone)]
    struct SimNic {
        /// Refuse every call (veth: no RSS configuration).
        none: bool,
        /// Refuse setting the hash input.
        fixed_fields: bool,
        /// Refuse a new indirection table.
        fixed_table: bool,
        fields: HashMap<(String, u32), u64>,
        rss: HashMap<String, NicRss>,
        calls: Vec<String>,
    }

    fn eopnotsupp() -> io::Error {
        io::Error::from_raw_os_error(libc::EOPNOTSUPP)
    }

    impl SimNic {
        /// `ifaces` with queues 0..queues in a 128-bucket table and the
        /// 4-tuple hashed (most drivers' default for TCP).
        fn new(ifaces: &[&str], queues: u32) -> SimNic {
            let mut nic = SimNic {
                none: false,
                fixed_fields: false,
                fixed_table: false,
                fields: HashMap::new(),
                rss: HashMap::new(),
                calls: Vec::new(),
            };
            for i in ifaces {
                for (f, _) in FLOWS {
                    nic.fields.insert((i.to_string(), f), RXH_IP_SRC | RXH_IP_DST | 0xc0);
                }
                let config = RssConfig { key: DEFAULT_KEY.to_vec(), indir: (0..128).map(|b| b % queues).collect() };
                nic.rss.insert(i.to_string(), NicRss { hfunc: HASH_TOP, xfrm: 0, config });
            }
            nic
        }
    }

    impl Nic for SimNic {
        fn flow_hash(&mut self, iface: &str, flow: u32) -> io::Result<u64> {
            if self.none {
                return Err(eopnotsupp());
            }
            Ok(self.fields[&(iface.to_string(), flow)])
        }
        fn set_flow_hash(&mut self, iface: &str, flow: u32, fields: u64) -> io::Result<()> {
            if self.none || self.fixed_fields {
                return Err(eopnotsupp());
            }
            self.calls.push(format!("{iface} fields {flow} {fields:#x}"));
            self.fields.insert((iface.to_string(), flow), fields);
            Ok(())
        }
        fn rss(&mut self, iface: &str) -> io::Result<NicRss> {
            if self.none {
                return Err(eopnotsupp());
            }
            Ok(self.rss[iface].clone())
        }
        fn set_indir(&mut self, iface: &str, indir: &[u32]) -> io::Result<()> {
            if self.none || self.fixed_table {
                return Err(eopnotsupp());
            }
            self.calls.push(format!("{iface} table {}", indir.len()));
            self.rss.get_mut(iface).unwrap().config.indir = indir.to_vec();
            Ok(())
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_multi_queue_nic_is_programmed_and_followed() {
        let mut nic = SimNic::new(&["eth0"], 4);
        let d = decide(Ownership::Auto, &names(&["eth0"]), 4, &mut nic).unwrap();
        let map = d.map.expect("rss mode");
        assert!(d.why.starts_with("ownership: rss"), "{}", d.why);
        assert!(d.why.contains("40-byte key, 128 buckets over 4 queues"), "{}", d.why);
        assert!(d.why.contains("eth0 tcp4 hashed on addresses only"), "{}", d.why);
        // Every flow type now hashes on the addresses only.
        for (f, _) in FLOWS {
            assert_eq!(nic.fields[&("eth0".to_string(), f)], RXH_IP_SRC | RXH_IP_DST);
        }
        // The owner is the NIC's queue for the pair: bucket 0x42 of the
        // published vector's hash 0x323e8fc2 is queue 66 % 4.
        assert_eq!(map.owner(&[66, 9, 149, 187], &[161, 142, 100, 80]), 2);
        // Asked again, the NIC is already right: nothing is set.
        nic.calls.clear();
        let again = decide(Ownership::Rss, &names(&["eth0"]), 4, &mut nic).unwrap();
        assert!(again.map.is_some());
        assert!(nic.calls.is_empty(), "{:?}", nic.calls);
    }

    #[test]
    fn veth_keeps_the_client_hash_and_says_why() {
        let mut nic = SimNic::new(&["veth0"], 2);
        nic.none = true;
        let d = decide(Ownership::Auto, &names(&["veth0"]), 2, &mut nic).unwrap();
        assert!(d.map.is_none());
        assert_eq!(d.why, "ownership: hash (the client address's hash): veth0: the driver has no RSS hash configuration (EOPNOTSUPP)");
        // Demanded, it is an error naming the setting.
        let e = decide(Ownership::Rss, &names(&["veth0"]), 2, &mut nic).unwrap_err();
        assert!(e.starts_with("[global] ownership = \"rss\": veth0: the driver has no RSS"), "{e}");
    }

    #[test]
    fn hash_mode_and_one_worker_ask_nothing_of_the_nic() {
        let mut nic = SimNic::new(&["eth0"], 4);
        nic.none = true; // any call would fail the decision
        let d = decide(Ownership::Hash, &names(&["eth0"]), 4, &mut nic).unwrap();
        assert!(d.map.is_none() && d.why.contains("ownership = \"hash\""), "{}", d.why);
        let d = decide(Ownership::Rss, &names(&["eth0"]), 1, &mut nic).unwrap();
        assert!(d.map.is_none() && d.why.contains("one worker"), "{}", d.why);
    }

    #[test]
    fn a_table_wider_than_the_workers_is_spread_over_them() {
        // 8 queues, 2 workers: buckets to queues 2..7 would reach no worker.
        let mut nic = SimNic::new(&["eth0"], 8);
        let d = decide(Ownership::Auto, &names(&["eth0"]), 2, &mut nic).unwrap();
        assert!(d.map.is_some(), "{}", d.why);
        assert_eq!(nic.rss["eth0"].config.indir, (0..128).map(|b| b % 2).collect::<Vec<_>>());
        assert!(d.why.contains("eth0 table spread over 2 queues"), "{}", d.why);
        // A driver that refuses the new table: the client hash.
        let mut nic = SimNic::new(&["eth0"], 8);
        nic.fixed_table = true;
        let d = decide(Ownership::Auto, &names(&["eth0"]), 2, &mut nic).unwrap();
        assert!(d.map.is_none());
        assert!(d.why.contains("refuses a new one (EOPNOTSUPP)"), "{}", d.why);
    }

    #[test]
    fn what_cannot_be_followed_falls_back() {
        type Spoil = Box<dyn Fn(&mut SimNic)>;
        let cases: Vec<(Spoil, &str)> = vec![
            (Box::new(|n| n.fixed_fields = true), "eth0: the driver refuses to hash tcp4 on the addresses only (EOPNOTSUPP)"),
            (Box::new(|n| n.rss.get_mut("eth0").unwrap().hfunc = 2), "eth0: the RSS hash function is not Toeplitz (hfunc 0x2)"),
            (Box::new(|n| n.rss.get_mut("eth0").unwrap().xfrm = 1), "eth0: the RSS input is transformed"),
            (Box::new(|n| n.rss.values_mut().for_each(|r| r.config.key.truncate(16))), "eth0: the RSS key is 16 bytes"),
            (
                Box::new(|n| n.rss.values_mut().for_each(|r| r.config.indir = vec![0, 1, 0])),
                "eth0: the indirection table has 3 entries",
            ),
            (
                Box::new(|n| n.rss.get_mut("eth1").unwrap().config.key[0] ^= 1),
                "eth0 and eth1 hash differently",
            ),
        ];
        for (spoil, want) in cases {
            let mut nic = SimNic::new(&["eth0", "eth1"], 2);
            spoil(&mut nic);
            let d = decide(Ownership::Auto, &names(&["eth0", "eth1"]), 2, &mut nic).unwrap();
            assert!(d.map.is_none(), "{want}");
            assert!(d.why.contains(want), "{} / {want}", d.why);
            assert!(decide(Ownership::Rss, &names(&["eth0", "eth1"]), 2, &mut nic).unwrap_err().contains(want));
        }
        // Two ports with one key and table: followed.
        let mut nic = SimNic::new(&["eth0", "eth1"], 2);
        assert!(decide(Ownership::Rss, &names(&["eth0", "eth1"]), 2, &mut nic).unwrap().map.is_some());
    }

    #[test]
    fn ownership_parses_its_three_words() {
        assert_eq!("auto".parse(), Ok(Ownership::Auto));
        assert_eq!("rss".parse(), Ok(Ownership::Rss));
        assert_eq!("hash".parse(), Ok(Ownership::Hash));
        assert_eq!("RSS".parse::<Ownership>().unwrap_err(), "'RSS' is not \"auto\", \"rss\" or \"hash\"");
        assert_eq!(Ownership::default().to_string(), "auto");
    }

    #[test]
    fn fullnat_rules_cover_every_port_once() {
        let laddrs: Vec<IpAddr> = vec!["10.0.0.9".parse().unwrap(), "2001:db8::9".parse().unwrap()];
        assert_eq!(fullnat_rules(&laddrs, 1), None);
        assert_eq!(fullnat_rules(&laddrs, 3), None, "port % 3 is no mask");
        let rules = fullnat_rules(&laddrs, 4).unwrap();
        assert_eq!(rules.len(), 2 * 2 * 4);
        for port in [0u16, 1, 2, 3, 1024, 40001, 65535] {
            for (laddr, flow) in [(laddrs[0], "tcp4"), (laddrs[0], "udp4"), (laddrs[1], "tcp6"), (laddrs[1], "udp6")] {
                let hits: Vec<_> =
                    rules.iter().filter(|r| r.laddr == laddr && r.flow == flow && port & r.port_mask == r.port).collect();
                assert_eq!(hits.len(), 1, "{laddr} {flow} port {port}");
                assert_eq!(hits[0].queue, crate::ipvs::laddr::port_owner(port, 4), "the port's owner's queue");
            }
        }
        assert_eq!(rules[1].command("eth0"), "ethtool -N eth0 flow-type tcp4 dst-ip 10.0.0.9 dst-port 1 m 0xfffc action 1");
    }

    #[test]
    fn ethtool_on_a_missing_interface_is_an_error_not_a_panic() {
        let Ok(mut e) = Ethtool::open() else { return };
        assert!(e.flow_hash("xvs-none-such0", TCP_V4_FLOW).is_err());
        assert!(e.rss("xvs-none-such0").is_err());
        assert!(e.flow_hash("", TCP_V4_FLOW).is_err());
        assert!(e.flow_hash("a-name-longer-than-ifnamsiz", TCP_V4_FLOW).is_err());
        // lo has no RSS at all.
        assert!(e.rss("lo").is_err());
    }
}
