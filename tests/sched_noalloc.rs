//! Every scheduler decides without touching the allocator on the steady
//! path. lblc/lblcr may allocate only when their table grows (a new
//! destination address, a new member of a server set). A counting global
//! allocator — in this test binary only — counts the calls made on the
//! test's own thread while thousands of decisions are taken.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use xvs::ctl::snapshot::DestEntry;
use xvs::ipvs::dest::DestLoad;
use xvs::ipvs::sched::{SchedCtx, SchedFlags, SchedKind, SchedState};
use xvs::ipvs::FwdMethod;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the slot may be gone while the thread shuts down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local `Cell` that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count();
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn dests(n: usize) -> Vec<DestEntry> {
    (0..n)
        .map(|i| DestEntry {
            uid: i as u32 + 1,
            svc: 0,
            addr: IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i as u32)),
            port: 80,
            weight: (i % 5) as i32 + 1,
            fwd: FwdMethod::Dr,
            u_threshold: 0,
            l_threshold: 0,
            proxy: None,
            hop: Some(xvs::ipvs::dest::Hop { link: 0, mac: [2, 0, 0, 0, 1, 1] }),
            shared: Default::default(),
        })
        .collect()
}

#[test]
fn steady_state_decisions_do_not_allocate() {
    for n in [10, 1000] {
        let d = dests(n);
        for &kind in SchedKind::ALL {
            for flags in [0, SchedFlags::FLAG1 | SchedFlags::FLAG2] {
                let t = kind.build(&d, SchedFlags(flags));
                let mut s = t.new_state();
                s.seed(1);
                let mut load = vec![DestLoad::default(); n];
                // Two servers out of service so fallbacks are exercised.
                load[0].overloaded = true;
                load[n / 2].overloaded = true;
                // (what the schedulers read: the dests' shared counts)
                for (x, l) in d.iter().zip(&load) {
                    x.shared.set(l);
                }
                // Warm up: every destination address gets its entry.
                for k in 0..64 {
                    let _ = t.schedule(&mut s, &ctx(&d, k));
                }
                let mut grew = 0;
                for k in 64..5064 {
                    let (before, size) = (allocs(), shape(&s));
                    let got = t.schedule(&mut s, &ctx(&d, k));
                    if shape(&s) > size {
                        grew += 1;
                    } else {
                        assert_eq!(
                            allocs(),
                            before,
                            "{} with {n} dests, flags {flags}, decision {k}",
                            kind.name()
                        );
                    }
                    if let Some(i) = got {
                        load[i].active += 1;
                        if k % 3 == 0 {
                            load[i].active -= 1;
                            load[i].inactive += 1;
                        }
                        d[i].shared.set(&load[i]);
                    }
                }
                // Not vacuous: most decisions were steady-path ones. (With
                // 1000 small-weight servers lblcr's sets keep growing under
                // this piling load, as IPVS's would.)
                assert!(grew < 2500, "{}: {grew} growths", kind.name());
            }
        }
    }
}

/// How big a locality table is (entries, set members); 0 for the others.
fn shape(s: &SchedState) -> usize {
    match s {
        SchedState::Lblc(l) => l.entries(),
        SchedState::Lblcr(l) => l.entries() + l.members(),
        _ => 0,
    }
}

/// The `k`-th new connection: varying clients and ports, eight
/// destination addresses, a clock in milliseconds.
fn ctx(d: &[DestEntry], k: u32) -> SchedCtx<'_> {
    SchedCtx {
        dests: d,
        saddr: IpAddr::V4(Ipv4Addr::from(
            0xC000_0200u32.wrapping_add(k.wrapping_mul(7919)),
        )),
        sport: 1024 + (k % 60000) as u16,
        daddr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, (k % 8) as u8)),
        dport: 80,
        now: k as u64 * 1_000_000,
        due: &[],
    }
}
