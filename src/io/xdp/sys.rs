//! Every `unsafe` block and every raw syscall of the AF_XDP driver.
//!
//! # Contract
//!
//! The rest of `io::xdp` is safe code over the small API here:
//! - [`Area`] is the UMEM: one anonymous mapping cut into chunks. A chunk's
//!   bytes are reachable only through a [`Chunk`] token, which is neither
//!   `Clone` nor `Copy`; tokens are minted when the area is created and when
//!   the kernel hands a chunk back (RX and completion rings), and consumed
//!   when a chunk is given to the kernel (fill and TX rings). Holding the
//!   token is holding the chunk, so `&mut` access through it cannot alias
//!   the kernel or another thread.
//! - [`FillRing`], [`CompRing`], [`RxRing`], [`TxRing`] are the four
//!   single-producer/single-consumer rings shared with the kernel.
//! - The rest are thin syscall wrappers (sockets, BPF objects through
//!   libbpf, netlink, `poll`, `flock`, `setns`) that turn `-1`/`-errno`
//!   into `io::Error`.
//!
//! Nothing here allocates on the per-packet paths (ring operations).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// libbpf (1.x) returns `-errno`.
fn cvt_neg(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r))
    } else {
        Ok(r)
    }
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Index of a network interface in the calling thread's network namespace.
pub fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = cstring(name)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// Moves the calling thread into the network namespace `file` refers to
/// (e.g. `/var/run/netns/NAME`). Other threads are unaffected.
pub fn setns_net(file: &File) -> io::Result<()> {
    // SAFETY: the fd is valid for the call; setns only changes this thread.
    cvt(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Takes an exclusive, non-blocking `flock` on `file`. `Ok(false)` when
/// another open file description holds it (a live process).
pub fn try_flock(file: &File) -> io::Result<bool> {
    // SAFETY: the fd is valid for the call.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns
/// the number of ready descriptors; EINTR counts as zero.
pub fn poll_in(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    // SAFETY: `fds` is a valid, exclusive slice of pollfd for the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EINTR) {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(r as usize)
}

/// A non-blocking, close-on-exec eventfd (counter 0): a doorbell another
/// thread rings ([`eventfd_ring`]) and a sleeper polls beside its sockets.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is ours alone.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter (it becomes readable). A counter at its
/// maximum (EAGAIN) is readable already, so that is not an error.
pub fn eventfd_ring(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`, which lives across the call.
    let r = unsafe { libc::write(fd, (&one as *const u64).cast(), size_of::<u64>()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads (and so resets) an eventfd's counter; 0 when it was not rung.
pub fn eventfd_take(fd: RawFd) -> io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into `v`, which lives across the call.
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), size_of::<u64>()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EAGAIN) { Ok(0) } else { Err(e) };
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Memory mappings

/// An owned memory mapping, unmapped on drop.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; who may touch which bytes is decided
// by the chunk tokens and ring protocols built on top of it.
unsafe impl Send for Mmap {}
// SAFETY: as above; `Mmap` itself only hands out its base pointer.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn new(
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: RawFd,
        off: u64,
    ) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL) cannot
        // overlap any Rust object.
        let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, off as libc::off_t) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: NonNull::new(p as *mut u8)
                .ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and nothing borrows it any more (every
        // borrow is tied to a struct holding this Mmap).
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

// ---------------------------------------------------------------------------
// UMEM area and chunk tokens

static NEXT_AREA_ID: AtomicU32 = AtomicU32::new(1);

/// The right to read and write one UMEM chunk. Not `Clone`: exactly one
/// token exists per chunk that userspace owns, none for chunks the kernel
/// owns. It is `Send` so a frame can be handed to another worker.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    idx: u32,
    area: u32,
}

impl Chunk {
    /// Index of the chunk in its area.
    #[inline]
    pub fn index(&self) -> u32 {
        self.idx
    }
}

/// The UMEM: `chunks` chunks of `chunk_size` bytes (a power of two), in one
/// anonymous, pre-faulted mapping.
#[derive(Debug)]
pub struct Area {
    map: Mmap,
    id: u32,
    chunk_size: u32,
    chunk_shift: u32,
    chunks: u32,
}

impl Area {
    /// Maps the area and returns it with a token for every chunk.
    pub fn new(chunks: u32, chunk_size: u32) -> io::Result<(Area, Vec<Chunk>)> {
        if !chunk_size.is_power_of_two() || chunks == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "chunk size must be a power of two",
            ));
        }
        let len = chunks as usize * chunk_size as usize;
        let map = Mmap::new(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            // (No MAP_POPULATE under Miri, which maps only private anonymous memory.)
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if cfg!(miri) { 0 } else { libc::MAP_POPULATE },
            -1,
            0,
        )?;
        let id = NEXT_AREA_ID.fetch_add(1, Ordering::Relaxed);
        let area = Area {
            map,
            id,
            chunk_size,
            chunk_shift: chunk_size.trailing_zeros(),
            chunks,
        };
        let tokens = (0..chunks).map(|idx| Chunk { idx, area: id }).collect();
        Ok((area, tokens))
    }

    /// Bytes per chunk.
    #[inline]
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// UMEM offset of the chunk's first byte.
    #[inline]
    pub fn addr(&self, c: &Chunk) -> u64 {
        (c.idx as u64) << self.chunk_shift
    }

    /// The whole chunk, for as long as the token is borrowed.
    ///
    /// # Panics
    /// When `c` belongs to another area (a programming error, not reachable
    /// from packet contents).
    #[inline]
    pub fn chunk_mut<'a>(&'a self, c: &'a mut Chunk) -> &'a mut [u8] {
        assert_eq!(c.area, self.id, "chunk token of another UMEM area");
        let off = (c.idx as usize) << self.chunk_shift;
        // SAFETY: idx < chunks (tokens are only minted for in-range
        // indices), so the range is inside the mapping, which lives as long
        // as `self`. The token is unique and exclusively borrowed for 'a,
        // and the kernel does not own this chunk while a token exists, so
        // nothing else reads or writes these bytes during 'a.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(off), self.chunk_size as usize)
        }
    }

    /// Mints the token for a chunk the kernel handed back at `addr` (any
    /// offset inside the chunk). `None` for an address outside the area.
    #[inline]
    fn token(&self, addr: u64) -> Option<Chunk> {
        let idx = addr >> self.chunk_shift;
        (idx < self.chunks as u64).then_some(Chunk {
            idx: idx as u32,
            area: self.id,
        })
    }

    /// Offset of `addr` inside its chunk.
    #[inline]
    fn offset(&self, addr: u64) -> u32 {
        (addr & (self.chunk_size as u64 - 1)) as u32
    }

    fn umem_reg(&self) -> libc::xdp_umem_reg {
        // SAFETY: xdp_umem_reg is plain integers; all-zero is valid.
        let mut r: libc::xdp_umem_reg = unsafe { zeroed() };
        r.addr = self.map.ptr.as_ptr() as u64;
        r.len = self.map.len as u64;
        r.chunk_size = self.chunk_size;
        r.headroom = 0;
        r
    }
}

// ---------------------------------------------------------------------------
// Rings

/// The kernel's RX/TX descriptor (`struct xdp_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// One single-producer/single-consumer ring shared with the kernel. We are
/// the producer of fill and TX rings and the consumer of RX and completion
/// rings. `cached_*` mirror the shared indices so most operations touch no
/// shared cache line.
#[derive(Debug)]
struct Ring<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
    /// Keeps the memory behind the pointers alive.
    _backing: Backing,
    _t: PhantomData<T>,
}

#[derive(Debug)]
enum Backing {
    Kernel(#[allow(dead_code)] Mmap),
    #[cfg(test)]
    Heap(#[allow(dead_code)] HeapBuf),
}

/// The memory of a test ring, held as a raw pointer: a `Box` moved into
/// the ring after its pointers were taken would retag it as unique and
/// make them dangle for the aliasing model (found by `make miri`).
#[cfg(test)]
#[derive(Debug)]
struct HeapBuf(*mut [u64]);

#[cfg(test)]
impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in Ring::heap, freed once here.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

// SAFETY: the ring's memory is owned by the ring (mapping or heap) and the
// raw pointers point into it; a ring is used by one thread at a time.
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries of the socket `fd` at page offset `pgoff`.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let len = off.desc as usize + size as usize * size_of::<T>();
        let map = Mmap::new(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            pgoff,
        )?;
        let base = map.ptr.as_ptr();
        // SAFETY: the kernel placed the indices, flags and descriptors at
        // these offsets inside the mapping (XDP_MMAP_OFFSETS), suitably
        // aligned; the mapping lives as long as the ring.
        let mut r = unsafe {
            Ring {
                producer: base.add(off.producer as usize) as *const AtomicU32,
                consumer: base.add(off.consumer as usize) as *const AtomicU32,
                flags: base.add(off.flags as usize) as *const AtomicU32,
                descs: base.add(off.desc as usize) as *mut T,
                mask: size - 1,
                size,
                cached_prod: 0,
                cached_cons: 0,
                _backing: Backing::Kernel(map),
                _t: PhantomData,
            }
        };
        r.cached_prod = r.prod().load(Ordering::Acquire);
        r.cached_cons = r.cons().load(Ordering::Acquire);
        Ok(r)
    }

    /// A ring in heap memory, for unit tests of the index arithmetic.
    #[cfg(test)]
    fn heap(size: u32) -> Ring<T> {
        let words = 3 + (size as usize * size_of::<T>()).div_ceil(8);
        let b = Box::into_raw(vec![0u64; words].into_boxed_slice());
        let base = b as *mut u64 as *mut u8;
        // SAFETY: three aligned u32 slots (in separate u64 words) then the
        // descriptors, all inside the boxed slice the ring keeps.
        unsafe {
            Ring {
                producer: base as *const AtomicU32,
                consumer: base.add(8) as *const AtomicU32,
                flags: base.add(16) as *const AtomicU32,
                descs: base.add(24) as *mut T,
                mask: size - 1,
                size,
                cached_prod: 0,
                cached_cons: 0,
                _backing: Backing::Heap(HeapBuf(b)),
                _t: PhantomData,
            }
        }
    }

    #[inline]
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the ring's live backing memory (see `map`).
        unsafe { &*self.producer }
    }
    #[inline]
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as `prod`.
        unsafe { &*self.consumer }
    }

    #[inline]
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as `prod`.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }

    // -- producer side --

    /// Free entries, re-reading the consumer index only when the cached
    /// view says there are fewer than `want`.
    #[inline]
    fn prod_free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.cons().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes the next entry. The caller has checked `prod_free() > 0`.
    #[inline]
    fn prod_write(&mut self, v: T) {
        // SAFETY: the index is masked into the ring, and the entry is free
        // (between consumer and producer + size), so the kernel does not
        // read it until we publish it.
        unsafe { ptr::write(self.descs.add((self.cached_prod & self.mask) as usize), v) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes written entries to the kernel.
    #[inline]
    fn prod_publish(&mut self) {
        self.prod().store(self.cached_prod, Ordering::Release);
    }

    /// Entries published but not yet consumed by the kernel.
    #[inline]
    fn prod_outstanding(&mut self) -> u32 {
        self.cached_cons = self.cons().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    // -- consumer side --

    /// Entries ready to read (at most `max`).
    #[inline]
    fn cons_avail(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n == 0 {
            self.cached_prod = self.prod().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max)
    }

    /// Reads the next entry. The caller has checked `cons_avail() > 0`.
    #[inline]
    fn cons_read(&mut self) -> T {
        // SAFETY: masked index; the entry was published by the kernel
        // (acquire load of the producer index) and is ours until release.
        let v = unsafe { ptr::read(self.descs.add((self.cached_cons & self.mask) as usize)) };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        v
    }

    /// Hands read entries back to the kernel.
    #[inline]
    fn cons_release(&mut self) {
        self.cons().store(self.cached_cons, Ordering::Release);
    }
}

/// Fill ring: chunks we give the kernel to receive into.
#[derive(Debug)]
pub struct FillRing(Ring<u64>);
/// Completion ring: chunks the kernel has finished transmitting.
#[derive(Debug)]
pub struct CompRing(Ring<u64>);
/// RX ring: received frames.
#[derive(Debug)]
pub struct RxRing(Ring<XdpDesc>);
/// TX ring: frames to transmit.
#[derive(Debug)]
pub struct TxRing(Ring<XdpDesc>);

impl FillRing {
    /// Moves chunks from `pool` (taken from its end) into the ring until
    /// the ring is full, the pool empty or `max` moved; publishes them.
    /// Returns how many moved.
    #[inline]
    pub fn refill(&mut self, area: &Area, pool: &mut Vec<Chunk>, max: u32) -> u32 {
        let n = self.0.prod_free(max).min(max).min(pool.len() as u32);
        for _ in 0..n {
            if let Some(c) = pool.pop() {
                self.0.prod_write(area.addr(&c));
            }
        }
        if n > 0 {
            self.0.prod_publish();
        }
        n
    }
    /// The kernel asks for a wakeup (poll/recvfrom) to go on receiving.
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.0.needs_wakeup()
    }
    /// Ring size.
    pub fn size(&self) -> u32 {
        self.0.size
    }
}

impl CompRing {
    /// Takes up to `max` completed chunks, calling `f` with each token.
    /// Addresses outside the area (never expected) are skipped and counted
    /// in the second return value.
    #[inline]
    pub fn reap(&mut self, area: &Area, max: u32, mut f: impl FnMut(Chunk)) -> (u32, u32) {
        let n = self.0.cons_avail(max);
        let mut bad = 0;
        for _ in 0..n {
            match area.token(self.0.cons_read()) {
                Some(c) => f(c),
                None => bad += 1,
            }
        }
        if n > 0 {
            self.0.cons_release();
        }
        (n, bad)
    }
}

impl RxRing {
    /// Takes up to `max` received frames, calling `f(chunk, offset, len)`
    /// for each (offset of the packet inside the chunk). Descriptors the
    /// kernel should never produce (outside the area, past the chunk end)
    /// are skipped and counted in the second return value; their chunk is
    /// lost only in that impossible case.
    #[inline]
    pub fn recv(
        &mut self,
        area: &Area,
        max: u32,
        mut f: impl FnMut(Chunk, u32, u32),
    ) -> (u32, u32) {
        let n = self.0.cons_avail(max);
        let mut bad = 0;
        for _ in 0..n {
            let d = self.0.cons_read();
            let off = area.offset(d.addr);
            match area.token(d.addr) {
                Some(c) if off as u64 + d.len as u64 <= area.chunk_size as u64 => f(c, off, d.len),
                _ => bad += 1,
            }
        }
        if n > 0 {
            self.0.cons_release();
        }
        (n, bad)
    }
}

impl TxRing {
    /// Queues `len` bytes at `off` inside the chunk for transmission; the
    /// token is consumed (the kernel owns the chunk until it completes).
    /// Gives the chunk back when the ring is full or the range does not fit
    /// the chunk (the kernel would drop such a descriptor and lose it).
    #[inline]
    pub fn push(&mut self, area: &Area, c: Chunk, off: u32, len: u32) -> Result<(), Chunk> {
        if len == 0 || off as u64 + len as u64 > area.chunk_size as u64 || c.area != area.id {
            return Err(c);
        }
        if self.0.prod_free(1) == 0 {
            return Err(c);
        }
        self.0.prod_write(XdpDesc {
            addr: area.addr(&c) + off as u64,
            len,
            options: 0,
        });
        Ok(())
    }
    /// Publishes queued descriptors.
    #[inline]
    pub fn publish(&mut self) {
        self.0.prod_publish();
    }
    /// Descriptors the kernel has not taken yet.
    #[inline]
    pub fn outstanding(&mut self) -> u32 {
        self.0.prod_outstanding()
    }
    /// The kernel asks for a `sendto` to transmit.
    #[inline]
    pub fn needs_wakeup(&self) -> bool {
        self.0.needs_wakeup()
    }
}

// ---------------------------------------------------------------------------
// AF_XDP sockets

/// Ring sizes of one socket (powers of two).
#[derive(Clone, Copy, Debug)]
pub struct RingSizes {
    pub rx: u32,
    pub tx: u32,
    pub fill: u32,
    pub comp: u32,
}

/// Creates an AF_XDP socket.
pub fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the returned fd is owned by the OwnedFd.
    let fd = cvt(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid T for the call; the kernel copies size_of::<T>() bytes.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            v as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn getsockopt<T>(fd: RawFd, opt: libc::c_int) -> io::Result<T> {
    // SAFETY: T is one of the plain-integer uapi structs used below; zero is
    // a valid value and the kernel writes at most size_of::<T>() bytes.
    unsafe {
        let mut v: T = zeroed();
        let mut len = size_of::<T>() as libc::socklen_t;
        cvt(libc::getsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            &mut v as *mut T as *mut libc::c_void,
            &mut len,
        ))?;
        Ok(v)
    }
}

/// Registers `area` as the UMEM of socket `fd` (the first socket only;
/// later sockets share it with `XDP_SHARED_UMEM`).
pub fn register_umem(fd: &OwnedFd, area: &Area) -> io::Result<()> {
    setsockopt(fd.as_raw_fd(), libc::XDP_UMEM_REG, &area.umem_reg())
}

/// Sizes the four rings of a socket and maps them.
pub fn setup_rings(fd: &OwnedFd, s: RingSizes) -> io::Result<(RxRing, TxRing, FillRing, CompRing)> {
    let raw = fd.as_raw_fd();
    setsockopt(raw, libc::XDP_UMEM_FILL_RING, &s.fill)?;
    setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &s.comp)?;
    setsockopt(raw, libc::XDP_RX_RING, &s.rx)?;
    setsockopt(raw, libc::XDP_TX_RING, &s.tx)?;
    let off: libc::xdp_mmap_offsets = getsockopt(raw, libc::XDP_MMAP_OFFSETS)?;
    let rx = RxRing(Ring::map(
        raw,
        &off.rx,
        s.rx,
        libc::XDP_PGOFF_RX_RING as u64,
    )?);
    let tx = TxRing(Ring::map(
        raw,
        &off.tx,
        s.tx,
        libc::XDP_PGOFF_TX_RING as u64,
    )?);
    let fill = FillRing(Ring::map(
        raw,
        &off.fr,
        s.fill,
        libc::XDP_UMEM_PGOFF_FILL_RING,
    )?);
    let comp = CompRing(Ring::map(
        raw,
        &off.cr,
        s.comp,
        libc::XDP_UMEM_PGOFF_COMPLETION_RING,
    )?);
    Ok((rx, tx, fill, comp))
}

/// Binds the socket to (ifindex, queue). `shared` is the socket that
/// registered the UMEM, for every socket after the first.
pub fn bind_xsk(
    fd: &OwnedFd,
    ifindex: u32,
    queue: u32,
    flags: u16,
    shared: Option<&OwnedFd>,
) -> io::Result<()> {
    // SAFETY: plain integers; zero is valid.
    let mut sa: libc::sockaddr_xdp = unsafe { zeroed() };
    sa.sxdp_family = libc::AF_XDP as u16;
    sa.sxdp_ifindex = ifindex;
    sa.sxdp_queue_id = queue;
    sa.sxdp_flags = flags;
    if let Some(s) = shared {
        sa.sxdp_flags = libc::XDP_SHARED_UMEM;
        sa.sxdp_shared_umem_fd = s.as_raw_fd() as u32;
    }
    // SAFETY: `sa` is a valid sockaddr_xdp of the given length.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_xdp as *const libc::sockaddr,
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// True when the bound socket runs in zero-copy mode.
pub fn is_zerocopy(fd: &OwnedFd) -> io::Result<bool> {
    let o: libc::xdp_options = getsockopt(fd.as_raw_fd(), libc::XDP_OPTIONS)?;
    Ok(o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// The socket's kernel statistics.
pub fn xsk_statistics(fd: &OwnedFd) -> io::Result<libc::xdp_statistics> {
    getsockopt(fd.as_raw_fd(), libc::XDP_STATISTICS)
}

/// Asks the kernel to transmit what the TX ring holds (copy mode does the
/// work inside this call, a bounded batch at a time).
#[inline]
pub fn kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length sendto with no buffer and no address.
    cvt(
        unsafe { libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) }
            as libc::c_int,
    )
    .map(drop)
}

/// Wakes the driver to go on filling the RX ring (need-wakeup on the fill
/// ring, zero-copy drivers).
#[inline]
pub fn kick_rx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length recvfrom with no buffer and no address.
    cvt(unsafe {
        libc::recvfrom(
            fd,
            ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    } as libc::c_int)
    .map(drop)
}

// ---------------------------------------------------------------------------
// BPF through libbpf

/// A loaded BPF object (programs and maps), closed on drop.
#[derive(Debug)]
pub struct BpfObject {
    obj: NonNull<libbpf_sys::bpf_object>,
}

// SAFETY: libbpf objects are not tied to a thread; we never use one from two
// threads at once (`&mut`-free API, only fd lookups after load).
unsafe impl Send for BpfObject {}
// SAFETY: after load, the methods only read fds through libbpf getters.
unsafe impl Sync for BpfObject {}

impl BpfObject {
    /// Opens and loads (verifies) an ELF object from memory.
    pub fn load(elf: &[u8]) -> io::Result<BpfObject> {
        // libelf reads the ELF headers in place: give it 8-byte alignment.
        let mut buf = vec![0u64; elf.len().div_ceil(8)];
        // SAFETY: `buf` has room for elf.len() bytes and does not overlap `elf`.
        unsafe { ptr::copy_nonoverlapping(elf.as_ptr(), buf.as_mut_ptr() as *mut u8, elf.len()) };
        // SAFETY: buffer valid for the call (libbpf copies what it keeps).
        let obj = unsafe {
            libbpf_sys::bpf_object__open_mem(
                buf.as_ptr() as *const libc::c_void,
                elf.len() as _,
                ptr::null(),
            )
        };
        // libbpf 1.x returns NULL and sets errno on failure.
        let obj = NonNull::new(obj).ok_or_else(io::Error::last_os_error)?;
        let o = BpfObject { obj };
        // SAFETY: `obj` is a valid, opened object.
        cvt_neg(unsafe { libbpf_sys::bpf_object__load(o.obj.as_ptr()) })?;
        Ok(o)
    }

    /// The fd of a loaded program.
    pub fn prog_fd(&self, name: &str) -> io::Result<RawFd> {
        let c = cstring(name)?;
        // SAFETY: valid object and string; the returned program (if any) is
        // owned by the object.
        let p =
            unsafe { libbpf_sys::bpf_object__find_program_by_name(self.obj.as_ptr(), c.as_ptr()) };
        if p.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no program {name} in the object"),
            ));
        }
        // SAFETY: `p` is a valid program of the loaded object.
        cvt_neg(unsafe { libbpf_sys::bpf_program__fd(p) })
    }

    /// The fd of a map.
    pub fn map_fd(&self, name: &str) -> io::Result<RawFd> {
        let c = cstring(name)?;
        // SAFETY: valid object and string.
        cvt_neg(unsafe {
            libbpf_sys::bpf_object__find_map_fd_by_name(self.obj.as_ptr(), c.as_ptr())
        })
    }
}

impl Drop for BpfObject {
    fn drop(&mut self) {
        // SAFETY: we own the object; its fds are not used after this.
        unsafe { libbpf_sys::bpf_object__close(self.obj.as_ptr()) };
    }
}

pub use libbpf_sys::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST};

/// Attaches an XDP program to an interface through netlink.
pub fn xdp_attach(ifindex: u32, prog_fd: RawFd, flags: u32) -> io::Result<()> {
    // SAFETY: plain call with valid fds; NULL opts.
    cvt_neg(unsafe { libbpf_sys::bpf_xdp_attach(ifindex as i32, prog_fd, flags, ptr::null()) })
        .map(drop)
}

/// Detaches the XDP program in `mode` (DRV or SKB flag) from an interface,
/// only if it is the program `expected_fd` refers to.
pub fn xdp_detach(ifindex: u32, mode: u32, expected_fd: RawFd) -> io::Result<()> {
    // SAFETY: plain integers; zero-initialised opts with the size set.
    let mut o: libbpf_sys::bpf_xdp_attach_opts = unsafe { zeroed() };
    o.sz = size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _;
    o.old_prog_fd = expected_fd;
    // SAFETY: valid opts for the call.
    cvt_neg(unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, mode, &o) }).map(drop)
}

/// Id of the XDP program attached in `mode` (DRV or SKB flag), 0 if none.
pub fn xdp_query_id(ifindex: u32, mode: u32) -> io::Result<u32> {
    let mut id = 0u32;
    // SAFETY: `id` is a valid out pointer.
    cvt_neg(unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, mode as i32, &mut id) })?;
    Ok(id)
}

/// Opens a program by id and returns its fd and name.
pub fn prog_by_id(id: u32) -> io::Result<(OwnedFd, String)> {
    // SAFETY: plain call; the fd returned is ours.
    let fd = cvt_neg(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) })?;
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: bpf_prog_info is plain data, zero is valid; the kernel fills
    // at most `len` bytes.
    let name = unsafe {
        let mut info: libbpf_sys::bpf_prog_info = zeroed();
        let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
        cvt_neg(libbpf_sys::bpf_prog_get_info_by_fd(
            fd.as_raw_fd(),
            &mut info,
            &mut len,
        ))?;
        CStr::from_ptr(info.name.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    Ok((fd, name))
}

/// `bpf_map_update_elem(fd, key, value, BPF_ANY)`; sizes must match the map.
pub fn map_update(fd: RawFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    // SAFETY: key/value buffers valid for the call; the kernel reads the
    // map's key/value sizes, which the callers' types match.
    cvt_neg(unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd,
            key.as_ptr() as *const _,
            value.as_ptr() as *const _,
            libbpf_sys::BPF_ANY as u64,
        )
    })
    .map(drop)
}

/// `bpf_map_delete_elem`. A missing key is not an error.
pub fn map_delete(fd: RawFd, key: &[u8]) -> io::Result<()> {
    // SAFETY: as `map_update`.
    match cvt_neg(unsafe { libbpf_sys::bpf_map_delete_elem(fd, key.as_ptr() as *const _) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(drop),
    }
}

/// Sum over all CPUs of slot `idx` of a per-CPU array of u64.
pub fn percpu_u64_sum(fd: RawFd, idx: u32, ncpus: usize) -> io::Result<u64> {
    let mut vals = vec![0u64; ncpus.max(1)];
    // SAFETY: the kernel writes one u64 per possible CPU into `vals`.
    cvt_neg(unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd,
            &idx as *const u32 as *const _,
            vals.as_mut_ptr() as *mut _,
        )
    })?;
    Ok(vals.iter().sum())
}

/// Number of possible CPUs (per-CPU map value count).
pub fn possible_cpus() -> io::Result<usize> {
    // SAFETY: plain call.
    cvt_neg(unsafe { libbpf_sys::libbpf_num_possible_cpus() }).map(|n| n as usize)
}

// ---------------------------------------------------------------------------
// Netlink detach that is safe in a signal handler

/// Opens a NETLINK_ROUTE socket in the calling thread's namespace.
pub fn netlink_route() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
const NLA_F_NESTED: u16 = 0x8000;
/// Length of the RTM_SETLINK request [`xdp_detach_msg`] builds.
pub const DETACH_MSG_LEN: usize = 16 + 16 + 4 + 3 * 8;

/// Builds the RTM_SETLINK request that detaches the XDP program in `mode`
/// from `ifindex` if it is still the program `expected_fd` refers to.
/// Plain byte writes into a stack buffer: usable from a signal handler.
pub fn xdp_detach_msg(ifindex: i32, mode: u32, expected_fd: i32) -> [u8; DETACH_MSG_LEN] {
    let mut m = [0u8; DETACH_MSG_LEN];
    fn put(m: &mut [u8], at: usize, b: &[u8]) {
        m[at..at + b.len()].copy_from_slice(b);
    }
    fn attr(m: &mut [u8], at: usize, ty: u16, v: &[u8; 4]) {
        put(m, at, &8u16.to_ne_bytes());
        put(m, at + 2, &ty.to_ne_bytes());
        put(m, at + 4, v);
    }
    // nlmsghdr: len, type, flags, seq, pid
    put(&mut m, 0, &(DETACH_MSG_LEN as u32).to_ne_bytes());
    put(&mut m, 4, &libc::RTM_SETLINK.to_ne_bytes());
    put(
        &mut m,
        6,
        &((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes(),
    );
    put(&mut m, 8, &1u32.to_ne_bytes());
    // ifinfomsg: family, pad, type, index, flags, change
    put(&mut m, 20, &ifindex.to_ne_bytes());
    // IFLA_XDP (nested)
    put(&mut m, 32, &((4 + 3 * 8) as u16).to_ne_bytes());
    put(&mut m, 34, &(IFLA_XDP | NLA_F_NESTED).to_ne_bytes());
    attr(&mut m, 36, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    attr(
        &mut m,
        44,
        IFLA_XDP_FLAGS,
        &(mode | libbpf_sys::XDP_FLAGS_REPLACE).to_ne_bytes(),
    );
    attr(&mut m, 52, IFLA_XDP_EXPECTED_FD, &expected_fd.to_ne_bytes());
    m
}

/// Sends a request built by [`xdp_detach_msg`] and reads the kernel's ack.
/// Async-signal-safe: only sendto/recv on stack memory. Returns whether the
/// kernel acknowledged without error.
pub fn netlink_send_ack(nl_fd: RawFd, msg: &[u8]) -> bool {
    // SAFETY: plain integers; zero is valid (the kernel as destination).
    let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and sa valid for the call.
    let r = unsafe {
        libc::sendto(
            nl_fd,
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
            &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return false;
    }
    let mut buf = [0u8; 256];
    // SAFETY: buf valid for writes of its length.
    let n = unsafe { libc::recv(nl_fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    // NLMSG_ERROR (2) with error 0 is the ack.
    n >= 20
        && u16::from_ne_bytes([buf[4], buf[5]]) == 2
        && i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) == 0
}

// ---------------------------------------------------------------------------
// The kernel path: TAP devices, tc programs, test runs

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    // SAFETY: ifreq is plain data; all zeroes is valid.
    let mut r: libc::ifreq = unsafe { zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

/// Creates (or attaches to) the TAP device `name` with a virtio-net header
/// in front of every frame (`IFF_VNET_HDR`), no packet information; the
/// device goes away when the returned fd (its last one) is closed.
pub fn tap_open(name: &str) -> io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: valid C string; the fd returned is ours.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut r = ifreq_named(name)?;
    r.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    // SAFETY: TUNSETIFF reads and writes one ifreq.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut r) })?;
    Ok(fd)
}

/// Sets an interface's MAC address, MTU and brings it up (ioctls on a
/// throwaway datagram socket).
pub fn link_setup(name: &str, mac: [u8; 6], mtu: u32) -> io::Result<()> {
    // SAFETY: plain socket(2).
    let s = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh fd.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut r = ifreq_named(name)?;
    // SAFETY: writing the union's sockaddr member of a zeroed ifreq.
    unsafe {
        r.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (d, b) in r.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *d = b as libc::c_char;
        }
    }
    // SAFETY: each ioctl reads/writes one ifreq.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFHWADDR as _, &mut r) })?;
    let mut r = ifreq_named(name)?;
    r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU as _, &mut r) })?;
    let mut r = ifreq_named(name)?;
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut r) })?;
    // SAFETY: the kernel filled the flags member.
    unsafe { r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut r) })?;
    Ok(())
}

/// Attaches `prog_fd` as a direct-action tc classifier on `ifindex`'s
/// ingress (creating its clsact qdisc). Both go away with the device.
pub fn tc_ingress_attach(ifindex: u32, prog_fd: RawFd) -> io::Result<()> {
    let mut hook = libbpf_sys::bpf_tc_hook {
        sz: size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: libbpf_sys::BPF_TC_INGRESS,
        ..Default::default()
    };
    // SAFETY: a valid hook; EEXIST (qdisc already there) is fine.
    match cvt_neg(unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) }) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
        _ => {}
    }
    let mut opts = libbpf_sys::bpf_tc_opts {
        sz: size_of::<libbpf_sys::bpf_tc_opts>() as _,
        prog_fd,
        ..Default::default()
    };
    // SAFETY: valid hook and opts for the call.
    cvt_neg(unsafe { libbpf_sys::bpf_tc_attach(&hook, &mut opts) }).map(drop)
}

/// `write(2)` of one buffer; the byte count.
pub fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Runs a loaded program once over `data` (`BPF_PROG_TEST_RUN`); its
/// return value.
pub fn prog_test_run(prog_fd: RawFd, data: &[u8]) -> io::Result<u32> {
    let mut out = vec![0u8; data.len() + 256];
    // SAFETY: zeroed opts are valid; the buffers outlive the call.
    let mut o: libbpf_sys::bpf_test_run_opts = unsafe { zeroed() };
    o.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    o.data_in = data.as_ptr() as *const _;
    o.data_size_in = data.len() as u32;
    o.data_out = out.as_mut_ptr() as *mut _;
    o.data_size_out = out.len() as u32;
    o.repeat = 1;
    // SAFETY: valid program fd and opts.
    cvt_neg(unsafe { libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut o) })?;
    Ok(o.retval)
}

/// Runs an XDP program `repeat` times on `data` in the kernel's test loop
/// (`BPF_PROG_TEST_RUN`): its return value and the kernel's mean time per
/// run in nanoseconds (the loop's own overhead included).
pub fn prog_test_run_timed(prog_fd: RawFd, data: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let mut out = vec![0u8; data.len() + 256];
    // SAFETY: zeroed opts are valid; the buffers outlive the call.
    let mut o: libbpf_sys::bpf_test_run_opts = unsafe { zeroed() };
    o.sz = size_of::<libbpf_sys::bpf_test_run_opts>() as _;
    o.data_in = data.as_ptr() as *const _;
    o.data_size_in = data.len() as u32;
    o.data_out = out.as_mut_ptr() as *mut _;
    o.data_size_out = out.len() as u32;
    o.repeat = repeat.max(1) as _;
    // SAFETY: valid program fd and opts.
    cvt_neg(unsafe { libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut o) })?;
    Ok((o.retval, o.duration))
}

/// Loads `r0 = XDP_PASS; exit`: the least an XDP program can do (the
/// floor of a `BPF_PROG_TEST_RUN` timing).
pub fn load_xdp_pass() -> io::Result<OwnedFd> {
    let mut mov = libbpf_sys::bpf_insn { code: 0xb7, imm: 2, ..Default::default() }; // mov64 r0, 2
    mov.set_dst_reg(0);
    let exit = libbpf_sys::bpf_insn { code: 0x95, ..Default::default() };
    let insns = [mov, exit];
    let name = cstring("xvs_pass")?;
    let lic = cstring("GPL")?;
    // SAFETY: valid instruction array and strings for the call; NULL opts.
    let fd = cvt_neg(unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            name.as_ptr(),
            lic.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            ptr::null_mut(),
        )
    })?;
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ring_counts_free_entries_and_wraps() {
        let mut r: Ring<u64> = Ring::heap(4);
        assert_eq!(r.prod_free(1), 4);
        for v in 0..4 {
            r.prod_write(v);
        }
        r.prod_publish();
        assert_eq!(r.prod_free(1), 0);
        assert_eq!(r.prod().load(Ordering::Relaxed), 4);
        // The "kernel" consumes three.
        r.cons().store(3, Ordering::Release);
        assert_eq!(r.prod_free(1), 3);
        for v in 4..7 {
            r.prod_write(v);
        }
        r.prod_publish();
        assert_eq!(r.prod_outstanding(), 4);
        // Entries 4..7 landed in slots 0..3 (wrapped).
        // SAFETY (test): reading our own heap ring.
        let slots: Vec<u64> = (0..4).map(|i| unsafe { *r.descs.add(i) }).collect();
        assert_eq!(slots, vec![4, 5, 6, 3]);
    }

    #[test]
    fn consumer_ring_sees_only_published_entries() {
        let mut r: Ring<u64> = Ring::heap(8);
        assert_eq!(r.cons_avail(8), 0);
        for i in 0..8u64 {
            // SAFETY (test): writing our own heap ring as the "kernel".
            unsafe { *r.descs.add(i as usize) = 100 + i };
        }
        r.prod().store(5, Ordering::Release);
        assert_eq!(r.cons_avail(3), 3);
        assert_eq!(
            (r.cons_read(), r.cons_read(), r.cons_read()),
            (100, 101, 102)
        );
        r.cons_release();
        assert_eq!(r.cons().load(Ordering::Relaxed), 3);
        assert_eq!(r.cons_avail(8), 2);
        // Index arithmetic survives u32 wrap-around.
        let mut w: Ring<u64> = Ring::heap(4);
        w.cached_prod = u32::MAX - 1;
        w.cached_cons = u32::MAX - 1;
        w.prod().store(u32::MAX - 1, Ordering::Relaxed);
        w.cons().store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(w.prod_free(1), 4);
        for v in 0..3 {
            w.prod_write(v);
        }
        w.prod_publish();
        assert_eq!(w.prod().load(Ordering::Relaxed), 1);
        assert_eq!(w.prod_free(1), 1);
    }

    #[test]
    fn area_tokens_map_to_disjoint_chunks() {
        let (area, mut toks) = Area::new(4, 2048).unwrap();
        assert_eq!(toks.len(), 4);
        let (a, rest) = toks.split_at_mut(1);
        area.chunk_mut(&mut a[0]).fill(0xaa);
        area.chunk_mut(&mut rest[0]).fill(0xbb);
        assert_eq!(area.chunk_mut(&mut a[0])[2047], 0xaa);
        assert_eq!(area.addr(&rest[0]), 2048);
        // A kernel address anywhere inside chunk 3 names chunk 3.
        assert_eq!(area.token(3 * 2048 + 256).map(|c| c.idx), Some(3));
        assert_eq!(area.offset(3 * 2048 + 256), 256);
        assert!(area.token(4 * 2048).is_none());
        assert!(Area::new(4, 3000).is_err());
    }

    #[test]
    #[should_panic(expected = "another UMEM area")]
    fn a_token_of_another_area_is_refused() {
        let (a, _) = Area::new(1, 2048).unwrap();
        let (_b, mut tb) = Area::new(1, 2048).unwrap();
        let _ = a.chunk_mut(&mut tb[0]);
    }

    #[test]
    fn detach_message_layout() {
        let m = xdp_detach_msg(7, XDP_FLAGS_SKB_MODE, 42);
        let u16at = |o: usize| u16::from_ne_bytes([m[o], m[o + 1]]);
        let u32at = |o: usize| u32::from_ne_bytes([m[o], m[o + 1], m[o + 2], m[o + 3]]);
        assert_eq!(u32at(0) as usize, m.len());
        assert_eq!(u16at(4), libc::RTM_SETLINK);
        assert_eq!(u32at(20), 7);
        assert_eq!((u16at(32), u16at(34)), (28, IFLA_XDP | NLA_F_NESTED));
        assert_eq!((u16at(38), u32at(40) as i32), (IFLA_XDP_FD, -1));
        assert_eq!(
            (u16at(46), u32at(48)),
            (
                IFLA_XDP_FLAGS,
                XDP_FLAGS_SKB_MODE | libbpf_sys::XDP_FLAGS_REPLACE
            )
        );
        assert_eq!((u16at(54), u32at(56)), (IFLA_XDP_EXPECTED_FD, 42));
    }
}
