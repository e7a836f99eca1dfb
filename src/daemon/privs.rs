//! The privileges `xvs run` needs, checked before anything is touched, so
//! a director started without one says which (instead of a libbpf error
//! half-way through the setup).
//!
//! # Contract
//!
//! - [`NEEDED`] lists the capabilities the live director uses and why;
//!   they were found by starting it with one capability fewer each time
//!   (docs/operations.md, "Least privilege"). Full root has them all.
//! - [`check`] reads the process's effective set (`CapEff` in
//!   `/proc/self/status`) and its memlock limit (`/proc/self/limits`) and
//!   returns every missing capability with its reason. `CAP_SYS_ADMIN`
//!   stands in for `CAP_BPF` and `CAP_PERFMON` (as in the kernel); a
//!   memlock limit that covers the UMEM stands in for `CAP_IPC_LOCK`.
//! - [`group_id`] resolves the control socket's group.
//!
//! Everything here reads files; nothing needs `unsafe` except the group
//! lookup through the C library (NSS), which is in [`group_id`].

use std::fmt;
use std::io;

/// A Linux capability the director may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    NetAdmin,
    NetRaw,
    IpcLock,
    SysAdmin,
    Perfmon,
    Bpf,
}

impl Cap {
    /// Its bit in the capability sets (linux/capability.h).
    pub fn bit(self) -> u32 {
        match self {
            Cap::NetAdmin => 12,
            Cap::NetRaw => 13,
            Cap::IpcLock => 14,
            Cap::SysAdmin => 21,
            Cap::Perfmon => 38,
            Cap::Bpf => 39,
        }
    }

    /// Its name as capabilities(7), setpriv and systemd write it.
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::IpcLock => "CAP_IPC_LOCK",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The capabilities of `xvs run` and what each is for.
pub const NEEDED: [(Cap, &str); 5] = [
    (
        Cap::NetAdmin,
        "attaching the XDP program to the interfaces and asking the kernel to resolve neighbours",
    ),
    (Cap::NetRaw, "creating AF_XDP sockets"),
    (Cap::Bpf, "loading the XDP steering program and creating its maps"),
    (Cap::Perfmon, "the verifier accepting the steering program's packet accesses"),
    (
        Cap::IpcLock,
        "locking the UMEM (packet buffer) in memory; a memlock limit as large as the UMEM does instead (LimitMEMLOCK=infinity)",
    ),
];

/// The missing capabilities, with their reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub Vec<(Cap, &'static str)>);

impl std::error::Error for Missing {}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(c, _)| c.name()).collect();
        write!(f, "missing capabilit{} {}: ", if names.len() == 1 { "y" } else { "ies" }, names.join(", "))?;
        for (i, (c, why)) in self.0.iter().enumerate() {
            write!(f, "{}{} is needed for {why}", if i == 0 { "" } else { "; " }, c.name())?;
        }
        write!(
            f,
            ". xvs run needs {} (or root); see docs/operations.md",
            NEEDED.iter().map(|(c, _)| c.name()).collect::<Vec<_>>().join(", ")
        )
    }
}

/// What [`check`] looks at, read from the process (or given by tests).
#[derive(Clone, Copy, Debug)]
pub struct Privileges {
    /// The effective capability set.
    pub effective: u64,
    /// The soft memlock limit in bytes, `None` when unlimited.
    pub memlock: Option<u64>,
}

impl Privileges {
    /// This process's.
    ///
    /// # Errors
    /// `/proc/self/status` or `/proc/self/limits` could not be read or
    /// parsed.
    pub fn current() -> io::Result<Privileges> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let limits = std::fs::read_to_string("/proc/self/limits")?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("no {what}"));
        Ok(Privileges {
            effective: parse_cap_eff(&status).ok_or_else(|| bad("CapEff in /proc/self/status"))?,
            memlock: parse_memlock(&limits).ok_or_else(|| bad("Max locked memory in /proc/self/limits"))?,
        })
    }

    /// Whether `c` is effective (CAP_SYS_ADMIN counting for CAP_BPF and
    /// CAP_PERFMON, as `bpf_capable()` and `perfmon_capable()` do).
    pub fn has(&self, c: Cap) -> bool {
        let has = |c: Cap| self.effective & (1u64 << c.bit()) != 0;
        has(c) || (matches!(c, Cap::Bpf | Cap::Perfmon) && has(Cap::SysAdmin))
    }

    /// The capabilities [`NEEDED`] that are missing for a UMEM of
    /// `umem_bytes`.
    ///
    /// # Errors
    /// [`Missing`], naming every one.
    pub fn check(&self, umem_bytes: u64) -> Result<(), Missing> {
        let missing: Vec<_> = NEEDED
            .iter()
            .filter(|(c, _)| match c {
                Cap::IpcLock => !self.has(Cap::IpcLock) && self.memlock.is_some_and(|l| l < umem_bytes),
                c => !self.has(*c),
            })
            .copied()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Missing(missing))
        }
    }
}

/// `CapEff:` of a `/proc/PID/status` text.
fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The soft `Max locked memory` of a `/proc/PID/limits` text: `Some(None)`
/// for unlimited.
fn parse_memlock(limits: &str) -> Option<Option<u64>> {
    let l = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = l["Max locked memory".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(None)
    } else {
        soft.parse().ok().map(Some)
    }
}

/// The id of group `name` (a name from the group database, or a number).
///
/// # Errors
/// No such group, or the lookup failed.
pub fn group_id(name: &str) -> io::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a group name has no NUL byte"))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: `grp`, `buf` and `result` outlive the call; getgrnam_r
        // writes only into them (at most buf.len() bytes into buf), and
        // `result` is either null or points at `grp`.
        let (rc, found) = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, (!result.is_null()).then_some(grp.gr_gid))
        };
        match (rc, found) {
            (0, Some(gid)) => return Ok(gid),
            (0, None) => {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("no group '{name}'")))
            }
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            (e, _) => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(cs: &[Cap]) -> u64 {
        cs.iter().fold(0, |a, c| a | 1u64 << c.bit())
    }

    const ALL: [Cap; 5] = [Cap::NetAdmin, Cap::NetRaw, Cap::Bpf, Cap::Perfmon, Cap::IpcLock];

    #[test]
    fn each_missing_capability_is_named_with_its_reason() {
        let p = Privileges { effective: caps(&ALL), memlock: Some(8 << 20) };
        assert_eq!(p.check(1 << 30), Ok(()));
        for (i, c) in ALL.iter().enumerate() {
            let mut less = ALL.to_vec();
            less.remove(i);
            let e = Privileges { effective: caps(&less), memlock: Some(8 << 20) }.check(1 << 30).unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert_eq!(e.0[0].0, *c);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("missing capability {}: {} is needed for ", c.name(), c.name())), "{msg}");
        }
        let e = Privileges { effective: 0, memlock: Some(0) }.check(1).unwrap_err();
        assert_eq!(e.0.len(), 5);
        assert!(e.to_string().starts_with(
            "missing capabilities CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK: "
        ));
    }

    #[test]
    fn sys_admin_and_a_memlock_limit_stand_in() {
        let base = caps(&[Cap::NetAdmin, Cap::NetRaw]);
        let p = Privileges { effective: base | caps(&[Cap::SysAdmin]), memlock: None };
        assert_eq!(p.check(u64::MAX), Ok(()), "CAP_SYS_ADMIN covers bpf and perfmon; unlimited memlock");
        let p = Privileges { effective: base | caps(&[Cap::Bpf, Cap::Perfmon]), memlock: Some(64 << 20) };
        assert_eq!(p.check(64 << 20), Ok(()));
        assert_eq!(p.check((64 << 20) + 1).unwrap_err().0[0].0, Cap::IpcLock);
    }

    #[test]
    fn proc_files_are_parsed() {
        let status = "Name:\txvs\nCapInh:\t0000000000000000\nCapEff:\t000000c000007000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(caps(&ALL)));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff(""), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(parse_memlock(limits), Some(Some(8 << 20)));
        let unl = "Max locked memory         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_memlock(unl), Some(None));
        assert_eq!(parse_memlock("Max open files 1 1 files\n"), None);
        // This process's own files parse.
        Privileges::current().unwrap();
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(group_id("0").unwrap(), 0);
        assert_eq!(group_id("root").unwrap(), 0);
        let e = group_id("xvs-no-such-group-here").unwrap_err();
        assert!(e.to_string().contains("no group 'xvs-no-such-group-here'"), "{e}");
        assert!(group_id("a\0b").is_err());
    }
}
