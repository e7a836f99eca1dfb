//! Micro-benchmarks of the connection table: lookup hit and miss in
//! tables of 1 k, 64 k and 1 M IPv4 connections (NAT: two keys each), and
//! insert + unlink.
//!
//! Keys are drawn in a random order from a precomputed list, so the big
//! tables show what a cache miss costs; each lookup is independent (no
//! overlap with the next one's misses beyond what the CPU finds itself).
//! The worker's burst path overlaps them explicitly; see the replay
//! benchmark for that figure.
//!
//! Run: `cargo bench --bench conn` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::net::Ipv4Addr;
use xvs::ctl::snapshot::Hop;
use xvs::gen::traffic::{FlowSet, Rng};
use xvs::ipvs::conn::{Conn, ConnTable, Key};
use xvs::ipvs::FwdMethod;

fn conn(fs: &FlowSet, id: u32) -> Conn<Ipv4Addr> {
    let (a, p) = fs.client(id);
    Conn {
        caddr: Ipv4Addr::from(a),
        vaddr: Ipv4Addr::new(10, 0, 0, 100),
        daddr: Ipv4Addr::new(10, 0, 1, 1 + (id % 8) as u8),
        laddr: Ipv4Addr::UNSPECIFIED,
        cport: p,
        vport: 80,
        dport: 8080,
        lport: 0,
        expires: 1_000_000,
        dest_uid: 1,
        dest: 0,
        snap_gen: 1,
        control: 0,
        dest_hop: Hop {
            link: 1,
            mac: [2, 0, 0, 0, 1, 1],
        },
        client_hop: Hop {
            link: 0,
            mac: [2, 0, 0, 0, 0, 0xfe],
        },
        proto: 6,
        state: 3,
        fwd: FwdMethod::Nat,
        flags: 0,
        sync_left: 0,
        in_pkts: 1,
    }
}

fn lookups(c: &mut Criterion) {
    let fs = FlowSet::new(1, 0.0);
    let mut g = c.benchmark_group("conn_lookup");
    for n in [1024u32, 65_536, 1 << 20] {
        let mut t = ConnTable::<Ipv4Addr>::new(n as usize * 2, 0);
        for id in 0..n {
            t.insert(conn(&fs, id)).expect("insert");
        }
        let mut rng = Rng::new(2);
        let hits: Vec<Key<Ipv4Addr>> = (0..4096)
            .map(|_| conn(&fs, rng.below(n as u64) as u32).in_key())
            .collect();
        let misses: Vec<Key<Ipv4Addr>> = (0..4096).map(|i| conn(&fs, n + i).in_key()).collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("hit", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(t.lookup(black_box(&hits[i])))
            })
        });
        g.bench_function(BenchmarkId::new("miss", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(t.lookup(black_box(&misses[i])))
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("conn_insert_unlink");
    let mut t = ConnTable::<Ipv4Addr>::new(1 << 20, 0);
    for id in 0..65_536 {
        t.insert(conn(&fs, id)).expect("insert");
    }
    let mut id = 1u32 << 20;
    let mut n = 0u64;
    g.bench_function("nat_64k", |b| {
        b.iter(|| {
            id += 1;
            n += 1;
            // The clock moves one tick per 1024 connections (a tick is
            // 100 ms: a fast worker makes that many in one), so the wheel
            // frees the unlinked ones a tick later, a few per call as the
            // worker's expiry budget does, and its visits to the 64 k
            // long-lived entries cost what they cost a worker.
            let now = (n >> 10) as u32;
            let k = t
                .insert(Conn {
                    expires: now,
                    ..conn(&fs, id)
                })
                .expect("insert");
            t.unlink(k);
            t.expire(now, 4, |_| true);
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
