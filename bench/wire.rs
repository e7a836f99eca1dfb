//! Micro-benchmarks of the packet path's pieces: RFC 1624 checksum
//! updates, parsing, and parse + rewrite per forwarding mode (the transmit
//! functions the worker calls, without lookup or state).
//!
//! Rewrites change the frame, so every iteration first copies the
//! pristine 64-byte frame into the buffer (a 60-byte copy, about 2 ns, is
//! part of each "rewrite" figure; `copy_only` measures it alone).
//!
//! Run: `cargo bench --bench wire` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::net::Ipv4Addr;
use xvs::ctl::config::load_str;
use xvs::ctl::snapshot::{Hop, Snapshot};
use xvs::gen::traffic::{write_frame, FlowSet, Kind, Peer, Topology, LEN_64};
use xvs::ipvs::conn::Conn;
use xvs::ipvs::xmit;
use xvs::ipvs::FwdMethod;
use xvs::wire::checksum::{checksum, complete, make_partial, update16, update_bytes};
use xvs::wire::frame::HEADROOM;
use xvs::wire::{parse, Frame};

fn checksums(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    let hdr: [u8; 20] = [
        0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0,
        0xc7,
    ];
    g.bench_function("update16", |b| {
        b.iter(|| black_box(update16(black_box(0x1234), black_box(80), black_box(8080))))
    });
    g.bench_function("update_addr_v4", |b| {
        b.iter(|| {
            black_box(update_bytes(
                black_box(0x1234),
                black_box(&[10, 0, 0, 100]),
                black_box(&[10, 0, 1, 1]),
            ))
        })
    });
    let a6 = [0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let b6 = [0x20u8, 1, 0xd, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    g.bench_function("update_addr_v6", |b| {
        b.iter(|| {
            black_box(update_bytes(
                black_box(0x1234),
                black_box(&a6),
                black_box(&b6),
            ))
        })
    });
    g.bench_function("full_ipv4_header", |b| {
        b.iter(|| black_box(checksum(black_box(&hdr))))
    });
    // Completing a partial TCP checksum (a veth sender's): the price a
    // frame from a sender with TX checksum offload pays, by segment size.
    for (name, payload) in [("complete_partial_tcp_64B", 10), ("complete_partial_tcp_1514B", 1460)] {
        let mut f = xvs::gen::packet::tcp4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, 0x10, &vec![7u8; payload]);
        let m = parse(&f).unwrap();
        make_partial::<Ipv4Addr>(&mut f, &m);
        let partial = f.clone();
        g.bench_function(name, |b| {
            b.iter(|| {
                // Restore the partial sum (two bytes) and complete it.
                f[m.l4 as usize + 16..m.l4 as usize + 18].copy_from_slice(&partial[m.l4 as usize + 16..m.l4 as usize + 18]);
                complete(black_box(&mut f), &m);
                black_box(&f);
            })
        });
    }
    g.finish();
}

fn conn(mode: FwdMethod) -> Conn<Ipv4Addr> {
    Conn {
        caddr: Ipv4Addr::new(100, 64, 0, 1),
        vaddr: Ipv4Addr::new(10, 0, 0, 100),
        daddr: Ipv4Addr::new(10, 0, 1, 1),
        laddr: Ipv4Addr::new(10, 0, 16, 1),
        cport: 40000,
        vport: 80,
        dport: 8080,
        lport: 5000,
        expires: 0,
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
        fwd: mode,
        flags: 0,
        sync_left: 0,
        in_pkts: 1,
    }
}

fn parse_rewrite(c: &mut Criterion) {
    let topo = Topology::new(FwdMethod::Nat, 1000);
    let snap = Snapshot::build(
        &load_str(&topo.config_toml(), "bench").expect("bench config"),
        None,
    )
    .expect("snapshot");
    let ports = &snap.links;
    let fs = FlowSet::new(1, 0.0);
    let peer = Peer {
        rs: [10, 0, 1, 1],
        rport: 8080,
        laddr: [10, 0, 16, 1],
        lport: 5000,
    };
    let mut client = vec![0u8; 256];
    let n = write_frame(&mut client[HEADROOM..], &fs, 7, Kind::Data, LEN_64, &peer).len;
    let mut reply = vec![0u8; 256];
    let nr = write_frame(&mut reply[HEADROOM..], &fs, 7, Kind::Reply, LEN_64, &peer).len;
    let mut buf = vec![0u8; 256];
    let mut g = c.benchmark_group("parse_rewrite");
    g.bench_function("copy_only", |b| {
        b.iter(|| {
            buf[..HEADROOM + n].copy_from_slice(&client[..HEADROOM + n]);
            black_box(&mut buf);
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| black_box(parse(black_box(&client[HEADROOM..HEADROOM + n]))))
    });
    let mut ip_id = xmit::tun::IpIds::new(0, 1);
    type Case<'a> = (&'a str, FwdMethod, bool);
    let cases: [Case<'_>; 6] = [
        ("dr", FwdMethod::Dr, false),
        ("tun", FwdMethod::Tun, false),
        ("nat_in", FwdMethod::Nat, false),
        ("nat_out", FwdMethod::Nat, true),
        ("fullnat_in", FwdMethod::FullNat, false),
        ("fullnat_out", FwdMethod::FullNat, true),
    ];
    for (name, mode, out) in cases {
        let cn = conn(mode);
        let (src, len) = if out { (&reply, nr) } else { (&client, n) };
        g.bench_function(name, |b| {
            b.iter(|| {
                buf[..HEADROOM + len].copy_from_slice(&src[..HEADROOM + len]);
                let mut fr = Frame::new(&mut buf, HEADROOM, len);
                let mut m = parse(fr.data()).expect("valid frame");
                let r = match (mode, out) {
                    (FwdMethod::Dr, _) => xmit::dr::xmit(&mut fr, &mut m, &cn.dest_hop, ports),
                    (FwdMethod::Tun, _) => xmit::tun::xmit(&mut fr, &mut m, &cn, ports, &mut ip_id)
                        .map_err(|_| xvs::stats::DropReason::TooBig),
                    (FwdMethod::Nat, false) => xmit::nat::xmit_in(&mut fr, &mut m, &cn, ports),
                    (FwdMethod::Nat, true) => xmit::nat::xmit_out(&mut fr, &mut m, &cn, ports),
                    (FwdMethod::FullNat, false) => {
                        xmit::fullnat::xmit_in(&mut fr, &mut m, &cn, ports, false).map(|(p, _)| p)
                    }
                    (FwdMethod::FullNat, true) => {
                        xmit::fullnat::xmit_out(&mut fr, &mut m, &cn, ports)
                    }
                };
                black_box(r).expect("forwarded");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, checksums, parse_rewrite);
criterion_main!(benches);
