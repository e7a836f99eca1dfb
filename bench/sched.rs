//! Scheduler benchmarks: nanoseconds per scheduling decision for every
//! registered scheduler with 10 and 1000 real servers, and the build time
//! of the Maglev (`mh`) table for 10, 100 and 1000 servers.
//!
//! Decisions see varied clients, ports and eight destination addresses (so
//! the hashing schedulers hit different buckets and lblc/lblcr hit warm
//! entries), weights 1..=5 and uneven loads (1..=97 active connections),
//! two servers overloaded, the fallback flag set (sh/mh). The
//! loads stay fixed during a run: what is measured is the decision, not the
//! accounting around it.
//!
//! Run: `cargo bench --bench sched` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use xvs::ctl::snapshot::DestEntry;
use xvs::ipvs::dest::DestLoad;
use xvs::ipvs::sched::{SchedCtx, SchedFlags, SchedKind};
use xvs::ipvs::FwdMethod;

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

fn loads(n: usize) -> Vec<DestLoad> {
    (0..n)
        .map(|i| DestLoad {
            // At least one active connection everywhere, so nq finds no
            // idle server and scans like sed (its worst case).
            active: 1 + (i as u32 * 7919) % 97,
            inactive: (i as u32 * 104_729) % 331,
            overloaded: i == 1 || i == n / 2 + 1,
            ..DestLoad::default()
        })
        .collect()
}

fn ctx(d: &[DestEntry], k: u32) -> SchedCtx<'_> {
    SchedCtx {
        dests: d,
        saddr: IpAddr::V4(Ipv4Addr::from(
            0xC000_0200u32.wrapping_add(k.wrapping_mul(2_654_435_761)),
        )),
        sport: 1024 + (k % 60000) as u16,
        daddr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, (k % 8) as u8)),
        dport: 80,
        now: k as u64 * 1000,
        due: &[],
    }
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule");
    for n in [10usize, 1000] {
        let d = dests(n);
        // The schedulers read the dests' shared counts.
        for (x, l) in d.iter().zip(loads(n)) {
            x.shared.set(&l);
        }
        for &kind in SchedKind::ALL {
            let t = kind.build(&d, SchedFlags(SchedFlags::FLAG1));
            let mut s = t.new_state();
            s.seed(1);
            for k in 0..64 {
                let _ = t.schedule(&mut s, &ctx(&d, k));
            }
            let mut k = 64u32;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter(|| {
                    k = k.wrapping_add(1);
                    black_box(t.schedule(&mut s, &ctx(&d, black_box(k))))
                })
            });
        }
    }
    g.finish();
}

fn mh_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("mh_build");
    g.sample_size(20);
    for n in [10usize, 100, 1000] {
        let d = dests(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(SchedKind::Mh.build(black_box(&d), SchedFlags::default())))
        });
    }
    g.finish();
}

criterion_group!(benches, decisions, mh_build);
criterion_main!(benches);
