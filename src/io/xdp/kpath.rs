//! The way back to the kernel: frames the steering program sent to a
//! worker that are not the worker's to forward (a NAT real server's own
//! traffic, an ICMP message about no connection, a fragment of a datagram
//! the kernel got the head of, ...). AF_XDP cannot return a frame to the
//! stack, so xvs writes it to a TAP device, as DPVS does with KNI.
//!
//! # Contract
//!
//! - [`KernelPath::open`] creates one TAP device per director interface,
//!   named `xvsk<ifindex>` (the interface's MAC and MTU, IPv6 off, up),
//!   and one writer thread. In [`KernelMode::Ingress`] (the steering
//!   program is attached in driver mode) a tc ingress program on the TAP
//!   (`kpath.bpf.c`) moves every frame to the ingress of the interface it
//!   came from: the kernel receives it exactly as from the wire there
//!   (routing, rp_filter, sockets, netfilter). Native XDP does not run on
//!   such re-injected frames, generic (skb-mode) XDP does — it would send
//!   them straight back to the worker — so with a generic attachment
//!   ([`KernelMode::Tap`]) the frame is received on the TAP itself instead
//!   (same MAC, so it is for the host). The TAP has no address, and the
//!   kernel's reverse path filter, strict or loose, refuses every frame
//!   received on an address-less device: this mode needs
//!   `net.ipv4.conf.all.rp_filter=0` ([`rp_filter_all`] tells).
//!   Routing by destination, sockets and forwarding work the same;
//!   whatever matches the input device (`ip rule iif`, netfilter) sees
//!   the TAP.
//! - Workers hold a [`KernelTx`]: [`KernelTx::push`] copies the frame into
//!   one of the worker's own preallocated buffers and queues it on a
//!   bounded single-producer queue; no allocation, no syscall, no lock.
//!   With every buffer in flight `push` refuses, and the caller counts the
//!   frame (`kernel_full`). [`KernelTx::flush`], once per burst, wakes the
//!   writer if something was queued.
//! - The writer thread writes each frame with a virtio-net header: a
//!   TCP/UDP checksum a local veth sender left partial (the pseudo-header
//!   sum only, as `CHECKSUM_PARTIAL` skbs carry it) is marked
//!   `VIRTIO_NET_HDR_F_NEEDS_CSUM`, so the kernel treats it as the
//!   partial checksum it was and completes it where it would have. (The
//!   worker completes every TCP/UDP partial checksum it parses before it
//!   decides anything, so this is the safety net for frames handed over
//!   before that.) Then it
//!   gives the buffer back to its worker.
//! - Dropping the [`KernelPath`] stops the writer and closes the TAPs (the
//!   kernel removes them with their tc programs).

use super::sys::{self, BpfObject};
use super::XdpError;
use crate::wire::{parse, proto};
use crossbeam::queue::ArrayQueue;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

static KPATH_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kpath.bpf.o"));

/// Length of the virtio-net header in front of every frame written.
pub const VNET_HDR_LEN: usize = 10;
/// Largest frame a worker can hand over (a UMEM chunk).
pub const MAX_FRAME: usize = crate::io::CHUNK;
/// Frames each worker may have queued for the kernel at once.
pub const SLOTS: usize = 256;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;

/// How frames reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelMode {
    /// Re-injected at the ingress of the interface they came from (the
    /// steering program runs in driver mode, which never sees them again).
    Ingress,
    /// Received on the TAP device itself (generic XDP would take
    /// re-injected frames again).
    Tap,
}

/// A director interface the kernel path stands in for.
#[derive(Clone, Debug)]
pub struct KernelPort {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// Counters of the writer thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames written to a TAP.
    pub sent: u64,
    /// Frames whose write failed (counted, dropped).
    pub errors: u64,
    /// Frames written with a partial TCP/UDP checksum for the kernel to
    /// complete.
    pub partial_csum: u64,
}

#[derive(Debug, Default)]
struct Shared {
    sent: AtomicU64,
    errors: AtomicU64,
    partial: AtomicU64,
}

/// One frame on its way to the kernel: the receive port, the length of the
/// frame, and the bytes (virtio-net header, then the frame).
#[derive(Debug)]
struct Buf {
    port: u8,
    len: u16,
    data: Box<[u8]>,
}

/// One worker's queues: full buffers to the writer, empty ones back.
#[derive(Debug)]
struct Lane {
    full: ArrayQueue<Buf>,
    free: ArrayQueue<Buf>,
}

/// A worker's handle on the kernel path. See the module docs.
#[derive(Debug)]
pub struct KernelTx {
    lane: Arc<Lane>,
    writer: Thread,
    queued: bool,
}

impl KernelTx {
    /// Queues a copy of `frame` (received on `port`) for the kernel.
    /// `false` when the worker's buffers are all in flight or the frame is
    /// longer than [`MAX_FRAME`]: the caller counts it.
    #[inline]
    pub fn push(&mut self, port: u8, frame: &[u8]) -> bool {
        if frame.len() > MAX_FRAME {
            return false;
        }
        let Some(mut b) = self.lane.free.pop() else {
            return false;
        };
        b.port = port;
        b.len = frame.len() as u16;
        b.data[VNET_HDR_LEN..VNET_HDR_LEN + frame.len()].copy_from_slice(frame);
        // Never full (the buffers in circulation are its capacity); if it
        // were, the buffer goes back rather than out of circulation.
        if let Err(b) = self.lane.full.push(b) {
            let _ = self.lane.free.push(b);
            return false;
        }
        self.queued = true;
        true
    }

    /// Wakes the writer if frames were queued since the last call.
    #[inline]
    pub fn flush(&mut self) {
        if self.queued {
            self.queued = false;
            self.writer.unpark();
        }
    }
}

/// The TAP devices and the writer thread. See the module docs.
pub struct KernelPath {
    mode: KernelMode,
    names: Vec<String>,
    stop: Arc<AtomicBool>,
    stats: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath").field("mode", &self.mode).field("taps", &self.names).finish()
    }
}

/// The TAP device's name for interface `ifindex`.
pub fn tap_name(ifindex: u32) -> String {
    format!("xvsk{ifindex}")
}

struct Tap {
    fd: OwnedFd,
    /// The tc program (kept loaded while the TAP lives).
    _obj: Option<BpfObject>,
}

fn open_tap(p: &KernelPort, mode: KernelMode) -> Result<Tap, XdpError> {
    let name = tap_name(p.ifindex);
    let n = name.as_str();
    let err = |op: &'static str| move |e| XdpError::sys(n, op, e);
    let fd = sys::tap_open(&name).map_err(err("create TAP device (/dev/net/tun)"))?;
    // No IPv6 on the TAP: no link-local address, no router solicitations
    // written back to us. Missing when the kernel has no IPv6: fine.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    // Frames received on the TAP itself (KernelMode::Tap) pass no reverse
    // path filter (the TAP has no address): never its own. (The kernel
    // applies the higher of this and `all`; see `rp_filter_all`.)
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"), "0");
    sys::link_setup(&name, p.mac, p.mtu).map_err(err("set up TAP device"))?;
    let obj = match mode {
        KernelMode::Tap => None,
        KernelMode::Ingress => {
            let obj = BpfObject::load(KPATH_OBJ).map_err(|e| XdpError::Load(format!("xvs_kpath: {e}")))?;
            let prog = obj.prog_fd("xvs_kpath").map_err(|e| XdpError::Load(format!("xvs_kpath: {e}")))?;
            let map = obj.map_fd("target").map_err(|e| XdpError::Load(format!("xvs_kpath map: {e}")))?;
            sys::map_update(map, &0u32.to_ne_bytes(), &p.ifindex.to_ne_bytes()).map_err(err("set kernel path target"))?;
            let tap_index = sys::if_nametoindex(&name).map_err(err("find TAP device"))?;
            sys::tc_ingress_attach(tap_index, prog).map_err(err("attach tc program to TAP device"))?;
            Some(obj)
        }
    };
    Ok(Tap { fd, _obj: obj })
}

/// `net.ipv4.conf.all.rp_filter` of the calling thread's namespace (0
/// when unreadable).
pub fn rp_filter_all() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

impl KernelPath {
    /// Creates the TAP devices for `ports` (in port order) and the writer,
    /// and one [`KernelTx`] per worker.
    ///
    /// # Errors
    /// No `/dev/net/tun`, no permission, a device that cannot be set up or
    /// a tc program that cannot be attached (each names the TAP device).
    pub fn open(ports: &[KernelPort], workers: usize, mode: KernelMode) -> Result<(KernelPath, Vec<KernelTx>), XdpError> {
        let taps = ports.iter().map(|p| open_tap(p, mode)).collect::<Result<Vec<_>, _>>()?;
        let lanes: Vec<Arc<Lane>> = (0..workers)
            .map(|_| {
                let l = Lane { full: ArrayQueue::new(SLOTS), free: ArrayQueue::new(SLOTS) };
                for _ in 0..SLOTS {
                    let _ = l.free.push(Buf { port: 0, len: 0, data: vec![0u8; VNET_HDR_LEN + MAX_FRAME].into_boxed_slice() });
                }
                Arc::new(l)
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Shared::default());
        let (s, st, ls) = (stop.clone(), stats.clone(), lanes.clone());
        let thread = std::thread::Builder::new()
            .name("xvs-kpath".into())
            .spawn(move || writer(taps, ls, s, st))
            .map_err(|e| XdpError::sys("-", "spawn kernel path thread", e))?;
        let txs = lanes
            .into_iter()
            .map(|lane| KernelTx { lane, writer: thread.thread().clone(), queued: false })
            .collect();
        Ok((
            KernelPath { mode, names: ports.iter().map(|p| tap_name(p.ifindex)).collect(), stop, stats, thread: Some(thread) },
            txs,
        ))
    }

    /// How frames reach the kernel.
    pub fn mode(&self) -> KernelMode {
        self.mode
    }

    /// The TAP devices, in port order.
    pub fn taps(&self) -> &[String] {
        &self.names
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> KernelStats {
        KernelStats {
            sent: self.stats.sent.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            partial_csum: self.stats.partial.load(Ordering::Relaxed),
        }
    }
}

impl KernelPath {
    /// Stops the writer once it has written what the workers queued
    /// (they have stopped) and returns its final counters.
    pub fn finish(mut self) -> KernelStats {
        self.stop_writer();
        self.stats()
    }

    fn stop_writer(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for KernelPath {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// Longest sleep of an idle writer (it is woken by every burst that
/// queued frames; this bounds a missed wake-up and the stop latency).
const IDLE: Duration = Duration::from_millis(100);

fn writer(taps: Vec<Tap>, lanes: Vec<Arc<Lane>>, stop: Arc<AtomicBool>, st: Arc<Shared>) {
    loop {
        let mut n = 0u64;
        for l in &lanes {
            while let Some(mut b) = l.full.pop() {
                n += 1;
                let len = VNET_HDR_LEN + b.len as usize;
                let partial = vnet_header(&mut b.data[..len]);
                match taps.get(b.port as usize).map(|t| sys::write_fd(t.fd.as_raw_fd(), &b.data[..len])) {
                    Some(Ok(_)) => {
                        st.sent.fetch_add(1, Ordering::Relaxed);
                        if partial {
                            st.partial.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = l.free.push(b);
            }
        }
        if n == 0 {
            if stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::park_timeout(IDLE);
        }
    }
}

/// Fills the virtio-net header in front of the frame in `buf`; true when
/// the frame's checksum was marked partial.
fn vnet_header(buf: &mut [u8]) -> bool {
    let (h, frame) = buf.split_at_mut(VNET_HDR_LEN);
    h.fill(0);
    let Some((start, off)) = partial_checksum(frame) else {
        return false;
    };
    h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h[6..8].copy_from_slice(&start.to_ne_bytes());
    h[8..10].copy_from_slice(&off.to_ne_bytes());
    true
}

/// Where a TCP/UDP checksum that holds only the pseudo-header sum (a
/// veth sender's `CHECKSUM_PARTIAL`) starts and its field's offset from
/// there; `None` for anything else. A complete checksum that happens to
/// equal the pseudo-header sum is recomputed to the same value, so a
/// false positive does no harm.
pub fn partial_checksum(f: &[u8]) -> Option<(u16, u16)> {
    // The parser's test (`wire::checksum::is_partial`; never a fragment).
    let m = parse(f).ok()?;
    let field = match m.proto {
        proto::TCP if m.partial => 16,
        proto::UDP if m.partial => 6,
        _ => return None,
    };
    Some((m.l4, field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::packet::*;
    use crate::wire::checksum::{checksum, fold, pseudo_v4, pseudo_v6};

    /// Replaces the frame's TCP/UDP checksum with its pseudo-header sum,
    /// as a veth sender with TX checksum offload leaves it.
    fn make_partial(f: &mut [u8], field: usize) {
        let m = parse(f).unwrap();
        let l4 = m.l4 as usize;
        let len = (m.end - m.l4) as usize;
        let sum = if m.v6 {
            pseudo_v6(f[22..38].try_into().unwrap(), f[38..54].try_into().unwrap(), m.proto, len as u32)
        } else {
            pseudo_v4(f[26..30].try_into().unwrap(), f[30..34].try_into().unwrap(), m.proto, len as u16)
        };
        f[l4 + field..l4 + field + 2].copy_from_slice(&fold(sum).to_be_bytes());
    }

    #[test]
    fn partial_checksums_are_marked_and_complete_ones_are_not() {
        let mut t = tcp4([10, 0, 1, 1], 53, [203, 0, 113, 5], 53, 0x02, b"query");
        assert_eq!(partial_checksum(&t), None, "a complete checksum");
        make_partial(&mut t, 16);
        assert_eq!(partial_checksum(&t), Some((34, 16)));
        let mut u = udp6(V6A, 5353, V6B, 53, b"q");
        assert_eq!(partial_checksum(&u), None);
        make_partial(&mut u, 6);
        assert_eq!(partial_checksum(&u), Some((54, 6)));
        let mut buf = vec![0xaau8; VNET_HDR_LEN];
        buf.extend_from_slice(&u);
        assert!(vnet_header(&mut buf));
        assert_eq!(buf[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(u16::from_ne_bytes([buf[6], buf[7]]), 54);
        assert_eq!(u16::from_ne_bytes([buf[8], buf[9]]), 6);
        // What the kernel then computes from csum_start (the fold of the
        // segment, whose field holds the pseudo-header sum) is the full
        // checksum of the datagram.
        let kernel = checksum(&u[54..]);
        let mut z = u[54..].to_vec();
        z[6..8].copy_from_slice(&[0, 0]);
        let full = !fold(crate::wire::checksum::sum(pseudo_v6(&V6A, &V6B, proto::UDP, z.len() as u32), &z));
        assert_eq!(kernel, full);
    }

    #[test]
    fn non_tcp_udp_and_fragments_get_a_plain_header() {
        let e = icmp4_echo([1, 2, 3, 4], [5, 6, 7, 8]);
        let mut buf = vec![0x55u8; VNET_HDR_LEN];
        buf.extend_from_slice(&e);
        assert!(!vnet_header(&mut buf));
        assert_eq!(&buf[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
        assert_eq!(partial_checksum(b"short"), None);
    }
}
