//! Memory for the connection tables: big arrays on huge pages, faulted in
//! ahead of need by a helper thread.
//!
//! A connection table grows by 2 MiB slab chunks and by index arrays twice
//! the size of the last. The kernel backs fresh anonymous memory on first
//! touch, and with (transparent) huge pages that means zeroing 2 MiB inside
//! the page fault: 0.1–0.7 ms on the project's VM, a whole burst's budget
//! many times over, once per 32 Ki connections. So a worker does not fault
//! its own memory in: a [`Provider`] thread (a control-plane thread, off the
//! workers' cores) keeps a few slab chunks mapped, faulted and zeroed for
//! every table that grows ([`Reserve`]), prepares the next index array when a
//! table asks ahead of its growth, and unmaps what tables discard. A table
//! without a provider, or whose provider is late, maps the memory itself
//! (the fallback; counted in [`Reserve::stats`]).
//!
//! Blocks of 2 MiB or more are 2 MiB aligned and ask for huge pages:
//! `MAP_HUGETLB` when the administrator reserved some (`vm.nr_hugepages`),
//! else `madvise(MADV_HUGEPAGE)` (transparent huge pages in `always` or
//! `madvise` mode), else ordinary pages. Smaller blocks come from the
//! allocator, zeroed. All the `unsafe` of the tables' memory is here.

use crossbeam::queue::ArrayQueue;
use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The huge page size these blocks are aligned to.
pub const HUGE_PAGE: usize = 2 << 20;

/// Whether `MAP_HUGETLB` failed once (no reserved huge pages): not tried
/// again.
static NO_HUGETLB: AtomicBool = AtomicBool::new(false);

/// How a block was obtained (and is given back).
#[derive(Debug)]
enum Kind {
    Heap(Layout),
    Map,
}

/// Zeroed memory, owned. `Send`: handed from the provider to a worker and
/// back for unmapping.
#[derive(Debug)]
pub struct Block {
    ptr: NonNull<u8>,
    len: usize,
    kind: Kind,
}

// SAFETY: a Block owns its memory exclusively, like a Box<[u8]>.
unsafe impl Send for Block {}
// SAFETY: shared references only read.
unsafe impl Sync for Block {}

impl Block {
    /// `len` zeroed bytes (at least 1), 2 MiB aligned on huge pages when
    /// `len` is 2 MiB or more (rounded up to whole huge pages), else from
    /// the allocator with `align`. Not faulted in: see [`Block::prefault`].
    pub fn zeroed(len: usize, align: usize) -> Block {
        let len = len.max(1);
        // Miri maps no aligned, trimmed or huge-page memory: the allocator
        // gives it the same zeroed, 2 MiB aligned block, rounded up to whole
        // huge pages as a mapping is (callers see the same capacity).
        if len < HUGE_PAGE || cfg!(miri) {
            let (len, align) =
                if len < HUGE_PAGE { (len, align.max(1)) } else { (len.next_multiple_of(HUGE_PAGE), HUGE_PAGE) };
            let layout = Layout::from_size_align(len, align).expect("block layout");
            // SAFETY: the layout's size is not zero.
            let p = unsafe { alloc_zeroed(layout) };
            let Some(ptr) = NonNull::new(p) else { handle_alloc_error(layout) };
            return Block { ptr, len, kind: Kind::Heap(layout) };
        }
        let len = len.next_multiple_of(HUGE_PAGE);
        match map(len) {
            Some(ptr) => Block { ptr, len, kind: Kind::Map },
            None => handle_alloc_error(Layout::from_size_align(len, HUGE_PAGE).expect("block layout")),
        }
    }

    /// Bytes in the block.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Has the kernel back every page now (one write per 4 KiB page; with
    /// huge pages, one fault per 2 MiB), so that later accesses never
    /// fault. The contents stay zero.
    pub fn prefault(&mut self) {
        let p = self.ptr.as_ptr();
        let mut off = 0;
        while off < self.len {
            // SAFETY: off < len: inside the block, which we own; a volatile
            // write of the zero already there cannot be elided.
            unsafe { p.add(off).write_volatile(0) };
            off += 4096;
        }
    }

    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        match self.kind {
            // SAFETY: allocated by alloc_zeroed with this layout.
            Kind::Heap(l) => unsafe { dealloc(self.ptr.as_ptr(), l) },
            // SAFETY: mapped by `map` with this length; nothing refers to
            // it any more (we own it).
            Kind::Map => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            },
        }
    }
}

/// Maps `len` bytes (a multiple of [`HUGE_PAGE`]) 2 MiB aligned: reserved
/// huge pages if there are, else ordinary pages marked for transparent
/// huge pages.
fn map(len: usize) -> Option<NonNull<u8>> {
    const PROT: libc::c_int = libc::PROT_READ | libc::PROT_WRITE;
    const FLAGS: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if !NO_HUGETLB.load(Ordering::Relaxed) {
        // Not MAP_NORESERVE: without a reservation a huge page missing at
        // fault time is a SIGBUS; with it the mmap fails instead (and we
        // fall back to ordinary pages).
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, PROT, flags, -1, 0) };
        if p != libc::MAP_FAILED {
            return NonNull::new(p.cast());
        }
        NO_HUGETLB.store(true, Ordering::Relaxed);
    }
    // Over-map by a huge page and trim to an aligned range.
    let over = len + HUGE_PAGE;
    // SAFETY: as above.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), over, PROT, FLAGS, -1, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    // SAFETY: both ranges lie inside the mapping just made and are not
    // used; munmap of a zero length is skipped.
    unsafe {
        if aligned > start {
            libc::munmap(p, aligned - start);
        }
        let tail = start + over - (aligned + len);
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        // Errors (no THP) leave ordinary pages, which is fine.
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    NonNull::new(aligned as *mut u8)
}

/// Types whose all-zero bytes are a valid value (plain data).
///
/// # Safety
/// Every field must accept the all-zero bit pattern.
pub unsafe trait Zeroable: Copy {}

// SAFETY: integers accept zero.
unsafe impl Zeroable for u64 {}
// SAFETY: integers accept zero.
unsafe impl Zeroable for u32 {}

/// A fixed-capacity array of `Copy` values over a [`Block`] (nothing to
/// drop per element).
pub struct HugeArray<T: Copy> {
    block: Block,
    len: usize,
    cap: usize,
    _t: PhantomData<T>,
}

// SAFETY: a HugeArray owns its elements like a Vec does.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: shared access only reads, like &Vec.
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// Bytes a block needs for `cap` elements.
    pub fn bytes(cap: usize) -> usize {
        cap.max(1).checked_mul(std::mem::size_of::<T>().max(1)).expect("array size overflows")
    }

    /// Room for `cap` elements, none yet (the memory is mapped, not
    /// faulted in).
    pub fn with_capacity(cap: usize) -> Self {
        Self::from_block(Block::zeroed(Self::bytes(cap), std::mem::align_of::<T>()), 0)
    }

    /// An array over `block` (zeroed, at least [`HugeArray::bytes`] of its
    /// capacity) with its first `len` elements taken as initialised —
    /// which only a [`Zeroable`] `T` may ask for (see [`HugeArray::zeroed`]).
    fn from_block(block: Block, len: usize) -> Self {
        assert_eq!(block.as_ptr() as usize % std::mem::align_of::<T>(), 0, "block alignment");
        let cap = block.len() / std::mem::size_of::<T>().max(1);
        assert!(len <= cap);
        HugeArray { block, len, cap, _t: PhantomData }
    }

    /// An empty array over a block from a provider, for pushing onto.
    ///
    /// # Panics
    /// The block is misaligned for `T`.
    pub fn over(block: Block) -> Self {
        Self::from_block(block, 0)
    }

    /// Appends `v`; a full array keeps its elements and ignores it
    /// (callers check [`HugeArray::capacity`] first).
    pub fn push(&mut self, v: T) {
        if self.len < self.cap {
            // SAFETY: len < cap: in bounds, and no reference to that slot
            // exists yet; write does not read or drop the old bytes.
            unsafe { self.block.as_ptr().cast::<T>().add(self.len).write(v) };
            self.len += 1;
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Gives the memory back (e.g. to a provider, to unmap off the worker).
    pub fn into_block(self) -> Block {
        self.block
    }
}

impl<T: Zeroable> HugeArray<T> {
    /// `n` zero elements (no write: the memory is zero already).
    pub fn zeroed(n: usize) -> Self {
        Self::from_block(Block::zeroed(Self::bytes(n), std::mem::align_of::<T>()), n)
    }

    /// `n` zero elements over `block` when it is big enough for them.
    pub fn zeroed_over(block: Block, n: usize) -> Result<Self, Block> {
        if block.len() < Self::bytes(n) || block.as_ptr() as usize % std::mem::align_of::<T>() != 0 {
            return Err(block);
        }
        Ok(Self::from_block(block, n))
    }
}

impl<T: Copy> std::ops::Deref for HugeArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the first len elements are initialised (pushed, or zero
        // for a Zeroable T).
        unsafe { std::slice::from_raw_parts(self.block.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as Deref; we hold &mut.
        unsafe { std::slice::from_raw_parts_mut(self.block.as_ptr().cast::<T>(), self.len) }
    }
}

/// Slab chunks a growing table keeps ready.
const READY_CHUNKS: usize = 4;
/// How often the provider looks at its reserves.
const PROVIDER_PERIOD: Duration = Duration::from_millis(1);

/// What a reserve's table got, and where from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReserveStats {
    /// Blocks taken ready from the provider.
    pub ready: u64,
    /// Blocks the table had to map itself (no provider, or it was late).
    pub inline: u64,
}

/// The part of a reserve the provider and the table share.
#[derive(Debug)]
struct Shared {
    /// Bytes of one slab chunk of this table.
    chunk_bytes: usize,
    chunks: ArrayQueue<Block>,
    /// Chunks the table wants ready (0 until it grows).
    want_chunks: AtomicUsize,
    /// The next index array, once asked for.
    index: ArrayQueue<Block>,
    /// Bytes of the next index array (0: none wanted).
    want_index: AtomicUsize,
    /// Blocks the table is done with, to unmap.
    trash: ArrayQueue<Block>,
    ready: AtomicU64,
    inline: AtomicU64,
}

/// One table's line to a [`Provider`]. Without one ([`Reserve::none`])
/// every block is mapped by the table itself.
#[derive(Debug, Default)]
pub struct Reserve {
    shared: Option<Arc<Shared>>,
    /// Slab chunk size, for the fallback.
    chunk_bytes: usize,
}

impl Reserve {
    /// No provider: the table maps its own memory.
    pub fn none() -> Reserve {
        Reserve::default()
    }

    /// A slab chunk of `bytes`, ready if the provider has one.
    pub fn chunk(&self, bytes: usize) -> Block {
        if let Some(s) = &self.shared {
            if s.chunk_bytes == bytes {
                // Keep READY_CHUNKS ready from now on.
                s.want_chunks.store(READY_CHUNKS, Ordering::Relaxed);
                if let Some(b) = s.chunks.pop() {
                    s.ready.fetch_add(1, Ordering::Relaxed);
                    return b;
                }
                s.inline.fetch_add(1, Ordering::Relaxed);
            }
        }
        Block::zeroed(bytes, 64)
    }

    /// Asks for an index array of `bytes` to be made ready (ahead of
    /// need). Without a provider, nothing happens.
    pub fn ask_index(&self, bytes: usize) {
        if let Some(s) = &self.shared {
            s.want_index.store(bytes, Ordering::Relaxed);
        }
    }

    /// The index array asked for, if it is ready and has at least `bytes`.
    pub fn take_index(&self, bytes: usize) -> Option<Block> {
        let s = self.shared.as_ref()?;
        let b = s.index.pop()?;
        if b.len() >= bytes {
            s.want_index.store(0, Ordering::Relaxed);
            s.ready.fetch_add(1, Ordering::Relaxed);
            Some(b)
        } else {
            // Made for an older request.
            self.discard(b);
            None
        }
    }

    /// Counts an index array the table had to map itself.
    pub fn note_inline(&self) {
        if let Some(s) = &self.shared {
            s.inline.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives a block back, to be unmapped by the provider (inline when
    /// there is none, or its queue is full).
    pub fn discard(&self, b: Block) {
        if let Some(s) = &self.shared {
            if let Err(b) = s.trash.push(b) {
                drop(b);
            }
        }
    }

    /// Blocks taken ready and mapped inline so far.
    pub fn stats(&self) -> ReserveStats {
        self.shared.as_ref().map_or(ReserveStats::default(), |s| ReserveStats {
            ready: s.ready.load(Ordering::Relaxed),
            inline: s.inline.load(Ordering::Relaxed),
        })
    }

    /// Bytes the provider holds ready for this table.
    pub fn ready_bytes(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.chunks.len() * s.chunk_bytes)
    }

    /// Slab chunk size this reserve provides (0 without a provider).
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }
}

/// The thread side: keeps every registered reserve supplied. Cheap to
/// clone (an `Arc`).
#[derive(Clone, Debug, Default)]
pub struct Provider {
    inner: Arc<ProviderInner>,
}

#[derive(Debug, Default)]
struct ProviderInner {
    reserves: Mutex<Vec<Weak<Shared>>>,
    stop: AtomicBool,
}

impl Provider {
    pub fn new() -> Provider {
        Provider::default()
    }

    /// A reserve for a table whose slab chunks are `chunk_bytes`.
    pub fn reserve(&self, chunk_bytes: usize) -> Reserve {
        let s = Arc::new(Shared {
            chunk_bytes,
            chunks: ArrayQueue::new(READY_CHUNKS),
            want_chunks: AtomicUsize::new(0),
            index: ArrayQueue::new(1),
            want_index: AtomicUsize::new(0),
            trash: ArrayQueue::new(16),
            ready: AtomicU64::new(0),
            inline: AtomicU64::new(0),
        });
        self.inner.reserves.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&s));
        Reserve { shared: Some(s), chunk_bytes }
    }

    /// One round over the reserves: frees their trash, tops their chunks
    /// up, prepares a wanted index array. Returns the blocks prepared.
    pub fn supply(&self) -> usize {
        let live: Vec<Arc<Shared>> = {
            let mut v = self.inner.reserves.lock().unwrap_or_else(|e| e.into_inner());
            v.retain(|w| w.strong_count() > 0);
            v.iter().filter_map(Weak::upgrade).collect()
        };
        let mut made = 0;
        for s in live {
            while let Some(b) = s.trash.pop() {
                drop(b);
            }
            let want = s.want_index.load(Ordering::Relaxed);
            if want > 0 && s.index.is_empty() {
                let mut b = Block::zeroed(want, 64);
                b.prefault();
                let _ = s.index.push(b);
                made += 1;
            }
            while s.chunks.len() < s.want_chunks.load(Ordering::Relaxed).min(READY_CHUNKS) {
                let mut b = Block::zeroed(s.chunk_bytes, 64);
                b.prefault();
                if s.chunks.push(b).is_err() {
                    break;
                }
                made += 1;
            }
        }
        made
    }

    /// Runs [`Provider::supply`] every millisecond on a thread of its own
    /// (`xvs-mem`) until [`Provider::stop`].
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn(&self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let p = self.clone();
        std::thread::Builder::new().name("xvs-mem".into()).spawn(move || {
            while !p.inner.stop.load(Ordering::Relaxed) {
                p.supply();
                std::thread::sleep(PROVIDER_PERIOD);
            }
        })
    }

    /// Tells the thread to end.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_zero_aligned_and_push_fills_arrays() {
        let mut a = HugeArray::<u64>::with_capacity(3);
        a.push(1);
        a.push(2);
        a.push(3);
        a.push(4); // full: ignored
        assert_eq!(&a[..], &[1, 2, 3]);
        let b = HugeArray::<u64>::zeroed(HUGE_PAGE / 8 + 1);
        assert_eq!(b.len(), HUGE_PAGE / 8 + 1);
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0, "big arrays are huge-page aligned");
        assert_eq!(b.capacity(), 2 * HUGE_PAGE / 8, "rounded up to whole huge pages");
        let mut blk = Block::zeroed(3 * HUGE_PAGE, 64);
        blk.prefault();
        let c = HugeArray::<u32>::zeroed_over(blk, 10).unwrap();
        assert_eq!(&c[..], &[0; 10]);
        let small = Block::zeroed(100, 64);
        assert!(HugeArray::<u64>::zeroed_over(small, 100).is_err(), "too small");
    }

    /// A reserve without a provider maps inline; with one, the provider
    /// keeps chunks ready once the table has grown, prepares an index
    /// array asked for, and unmaps what the table discards.
    #[test]
    fn the_provider_supplies_what_tables_ask_for() {
        let none = Reserve::none();
        assert_eq!(none.chunk(HUGE_PAGE).len(), HUGE_PAGE);
        assert!(none.take_index(64).is_none());
        assert_eq!(none.stats(), ReserveStats::default());

        let p = Provider::new();
        let r = p.reserve(HUGE_PAGE);
        assert_eq!(p.supply(), 0, "nothing wanted yet");
        let first = r.chunk(HUGE_PAGE);
        assert_eq!((first.len(), r.stats()), (HUGE_PAGE, ReserveStats { ready: 0, inline: 1 }));
        assert_eq!(p.supply(), READY_CHUNKS);
        assert_eq!(r.ready_bytes(), READY_CHUNKS * HUGE_PAGE);
        let c = r.chunk(HUGE_PAGE);
        assert_eq!(r.stats().ready, 1);
        assert!(HugeArray::<u64>::zeroed_over(c, HUGE_PAGE / 8).unwrap().iter().all(|&x| x == 0));
        // an index array: asked, prepared, taken; a stale one is discarded
        r.ask_index(4 * HUGE_PAGE);
        assert_eq!(p.supply(), 2, "the index array and the chunk taken");
        assert!(r.take_index(8 * HUGE_PAGE).is_none(), "too small: made for an older request");
        r.ask_index(8 * HUGE_PAGE);
        p.supply();
        let ix = r.take_index(8 * HUGE_PAGE).unwrap();
        assert_eq!(ix.len(), 8 * HUGE_PAGE);
        r.discard(ix);
        p.supply();
        assert_eq!(r.stats(), ReserveStats { ready: 2, inline: 1 });
        // a dropped table's reserve is forgotten
        drop(r);
        assert_eq!(p.supply(), 0);
        assert!(p.inner.reserves.lock().unwrap().is_empty());
    }

    #[test]
    fn the_provider_thread_stops() {
        let p = Provider::new();
        let r = p.reserve(HUGE_PAGE);
        let h = p.spawn().unwrap();
        r.chunk(HUGE_PAGE);
        for _ in 0..2000 {
            if r.ready_bytes() == READY_CHUNKS * HUGE_PAGE {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.ready_bytes(), READY_CHUNKS * HUGE_PAGE);
        p.stop();
        h.join().unwrap();
    }
}
