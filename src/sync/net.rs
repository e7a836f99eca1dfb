//! The sync daemons' sockets: what std's `UdpSocket` cannot set up alone
//! (address reuse before bind, the multicast interface by index, binding
//! to a device). Every `unsafe` of the sync module is here.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// The index of interface `name`.
///
/// # Errors
/// No such interface.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface '{name}'")));
    }
    Ok(i)
}

/// The MTU of interface `name` (1500 when it cannot be read).
pub fn mtu(name: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1500)
}

fn setopt<T>(fd: RawFd, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live T of the size given; the kernel copies it.
    let r = unsafe { libc::setsockopt(fd, level, name, v as *const T as *const libc::c_void, std::mem::size_of::<T>() as libc::socklen_t) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; the family-specific
    // struct written into it fits (sockaddr_storage is the largest).
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        match a {
            SocketAddr::V4(v) => {
                let sin = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v.port().to_be();
                sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(v.ip().octets()) };
                (ss, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(v) => {
                let sin6 = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v.port().to_be();
                sin6.sin6_addr = libc::in6_addr { s6_addr: v.ip().octets() };
                sin6.sin6_scope_id = v.scope_id();
                (ss, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }
}

/// A UDP socket with SO_REUSEADDR, optionally bound to `device`, bound to
/// `at`, non-blocking.
fn udp(at: SocketAddr, device: Option<&str>) -> io::Result<UdpSocket> {
    let fam = if at.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket creation; the fd is owned by the UdpSocket on
    // success and closed by it on every error path below.
    let fd = unsafe { libc::socket(fam, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own.
    let s = unsafe { UdpSocket::from_raw_fd(fd) };
    setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32)?;
    if let Some(dev) = device {
        let name = std::ffi::CString::new(dev).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad device name"))?;
        // SAFETY: the name bytes (with their NUL) are valid for the call.
        let r = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr() as *const libc::c_void, name.as_bytes_with_nul().len() as libc::socklen_t)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (ss, len) = sockaddr(at);
    // SAFETY: `ss` holds a valid address of `len` bytes.
    if unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

/// A sending socket: to `group` out of interface `ifindex` with `ttl`,
/// not looped back to ourselves (IPVS's `make_send_sock`), or plain
/// unicast when `group` is `None` (`v6` picks the family).
///
/// # Errors
/// What the kernel refused.
pub fn sender(group: Option<IpAddr>, v6: bool, ifindex: u32, ttl: u8) -> io::Result<UdpSocket> {
    let any: SocketAddr = if v6 { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    let s = udp(any, None)?;
    let fd = s.as_raw_fd();
    if group.is_some() {
        if v6 {
            setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &(ifindex as i32))?;
            setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &(ttl as i32))?;
            setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &0i32)?;
        } else {
            let m = libc::ip_mreqn { imr_multiaddr: libc::in_addr { s_addr: 0 }, imr_address: libc::in_addr { s_addr: 0 }, imr_ifindex: ifindex as i32 };
            setopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &m)?;
            setopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &(ttl as i32))?;
            setopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &0i32)?;
        }
    }
    Ok(s)
}

/// A receiving socket on `port` of interface `device`: joined to `group`
/// (IPVS's `make_receive_sock`), or for unicast peers bound to every
/// address of the family `v6`.
///
/// # Errors
/// What the kernel refused (no such interface, the port in use without
/// address reuse, ...).
pub fn receiver(group: Option<IpAddr>, v6: bool, port: u16, device: &str, ifindex: u32) -> io::Result<UdpSocket> {
    match group {
        Some(IpAddr::V4(g)) => {
            let s = udp((g, port).into(), Some(device))?;
            let m = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: u32::from_ne_bytes(g.octets()) },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex as i32,
            };
            setopt(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &m)?;
            Ok(s)
        }
        Some(IpAddr::V6(g)) => {
            let s = udp((g, port).into(), Some(device))?;
            s.join_multicast_v6(&g, ifindex)?;
            Ok(s)
        }
        None => {
            let any: SocketAddr = if v6 { (Ipv6Addr::UNSPECIFIED, port).into() } else { (Ipv4Addr::UNSPECIFIED, port).into() };
            udp(any, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_unicast_round_trip() {
        let lo = ifindex("lo").unwrap();
        assert!(ifindex("xvs-no-such-if0").is_err());
        let r = receiver(None, false, 0, "lo", lo).unwrap();
        let port = r.local_addr().unwrap().port();
        let s = sender(None, false, lo, 1).unwrap();
        s.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        r.set_nonblocking(false).unwrap();
        r.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 16];
        let (n, _) = r.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], b"hello");
        assert!(mtu("lo") >= 1500);
    }
}
