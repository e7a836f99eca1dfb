//! The health checker's raw syscalls, kept in one place: every `unsafe`
//! of the module is here, with its safety argument.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// How an ICMP socket is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IcmpSocketKind {
    /// `SOCK_DGRAM` + `IPPROTO_ICMP(V6)`: the unprivileged "ping socket";
    /// allowed when the process's group is in `net.ipv4.ping_group_range`.
    /// The kernel sets the echo identifier and filters replies for us.
    Dgram,
    /// `SOCK_RAW`: needs `CAP_NET_RAW`; sees every ICMP message of the
    /// family (IPv4: with the IP header in front).
    Raw,
}

/// Opens a non-blocking, close-on-exec ICMP (`v6`: ICMPv6) socket.
///
/// # Errors
/// The OS error (EACCES / EPERM when not allowed).
pub(crate) fn icmp_socket(v6: bool, kind: IcmpSocketKind) -> io::Result<OwnedFd> {
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    let ty = match kind {
        IcmpSocketKind::Dgram => libc::SOCK_DGRAM,
        IcmpSocketKind::Raw => libc::SOCK_RAW,
    } | libc::SOCK_NONBLOCK
        | libc::SOCK_CLOEXEC;
    // SAFETY: socket(2) takes plain integers and returns a new descriptor
    // or -1; nothing is borrowed.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is valid and owned by
    // nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends SIGKILL to the process group `pgid` (a child started as the
/// leader of its own group). Errors (the group is gone) are ignored.
pub(crate) fn kill_group(pgid: u32) {
    // 0 or 1 would signal our own group or every process: never.
    let Ok(p) = i32::try_from(pgid) else { return };
    if p <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers; a negative pid addresses the
    // group, which is the child's own (process_group(0)), not ours.
    unsafe {
        libc::kill(-p, libc::SIGKILL);
    }
}
