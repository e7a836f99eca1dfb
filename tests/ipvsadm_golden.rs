//! Golden tests: xvs's listings against ipvsadm's exact layout.
//!
//! The expected text in `tests/golden/ipvsadm/` is derived by
//! `derive.sh` there from ipvsadm 1.31's printf formats, independently of
//! this crate; the state below is the one the script describes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use xvs::ctl::ipvsadm::{self, Command, ConnEntry, Figures, LaddrFigures, Rate, StatsView, View};
use xvs::ctl::model::Model;
use xvs::ipvs::service::{Group, GroupMember, ServiceKey};
use xvs::ipvs::Proto;
use xvs::stats::DestStats;

fn cmd(line: &str) -> Command {
    ipvsadm::parse(&line.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(proto: Proto, addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        proto,
        addr: ip(addr),
        port,
    }
}

fn state() -> (Model, StatsView, Vec<ConnEntry>) {
    let mut m = Model::default();
    m.groups.push(Group {
        id: 5,
        members: vec![GroupMember {
            proto: Proto::Tcp,
            addr: ip("10.0.0.101"),
            port: 22,
        }],
    });
    for line in [
        "-A -t 10.0.0.100:80 -s wrr",
        "-a -t 10.0.0.100:80 -r 10.0.1.2:80 -g -w 2",
        "-a -t 10.0.0.100:80 -r 10.0.1.1 -g -w 1",
        "-A -u 10.0.0.100:53 -s rr -p 600 -M 255.255.255.0",
        "-a -u 10.0.0.100:53 -r 10.0.1.1:5353 -m -x 100 -y 50",
        "-A -t [2001:db8::100]:443 -s wrr -b flag-2",
        "-a -t [2001:db8::100]:443 -r [2001:db8::10]:8443 -m -w 3",
        "-A -t 10.0.0.100:0 -s rr -p",
        "-a -t 10.0.0.100:0 -r 10.0.1.3 -i",
        "-A -f 5 -s rr",
        "-a -f 5 -r 10.0.1.4 -g",
        "-A -t 10.0.0.200:80 -s rr",
        "--add-laddr -t 10.0.0.200:80 -z 10.0.0.250",
        "--add-laddr -t 10.0.0.200:80 -z 10.0.0.251",
        "-a -t 10.0.0.200:80 -r 10.0.2.1:8080 --fullnat",
        "--set 3600 0 60",
    ] {
        ipvsadm::apply(&mut m, &cmd(line)).unwrap_or_else(|e| panic!("{line}: {e}"));
    }

    let fig = |active, inactive, persist, s: [u64; 5], r: [u64; 5]| Figures {
        active,
        inactive,
        persist,
        stats: DestStats {
            conns: s[0],
            inpkts: s[1],
            outpkts: s[2],
            inbytes: s[3],
            outbytes: s[4],
        },
        rate: Rate {
            cps: r[0],
            inpps: r[1],
            outpps: r[2],
            inbps: r[3],
            outbps: r[4],
        },
    };
    let mut dests = HashMap::new();
    let web = key(Proto::Tcp, "10.0.0.100", 80);
    dests.insert(
        (web.clone(), ip("10.0.1.1"), 80),
        fig(
            12,
            3,
            0,
            [1234, 98765, 0, 123456789, 0],
            [5, 120, 0, 98000, 0],
        ),
    );
    dests.insert(
        (web, ip("10.0.1.2"), 80),
        fig(
            7,
            1,
            0,
            [100000000, 2000000000, 0, 150000000000, 0],
            [1, 2, 0, 123456789, 0],
        ),
    );
    dests.insert(
        (key(Proto::Udp, "10.0.0.100", 53), ip("10.0.1.1"), 5353),
        fig(0, 4, 2, [4, 4, 4, 300, 500], [0; 5]),
    );
    dests.insert(
        (
            key(Proto::Tcp, "2001:db8::100", 443),
            ip("2001:db8::10"),
            8443,
        ),
        fig(
            1,
            0,
            0,
            [1, 10, 8, 1000, 9000],
            [0, 0, 0, 0, 250000000000000],
        ),
    );
    let mut laddrs = HashMap::new();
    laddrs.insert(
        (key(Proto::Tcp, "10.0.0.200", 80), ip("10.0.0.250")),
        LaddrFigures {
            conflicts: 3,
            conns: 17,
        },
    );
    let stats = StatsView {
        services: HashMap::new(),
        dests,
        laddrs,
    };

    let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
    let conn = |proto, c, v, d, state: &str, expire| ConnEntry {
        proto,
        client: sa(c),
        vip: sa(v),
        dest: sa(d),
        state: state.into(),
        expire,
    };
    let conns = vec![
        conn(
            Proto::Tcp,
            "198.51.100.7:40001",
            "10.0.0.100:80",
            "10.0.1.1:80",
            "ESTABLISHED",
            899,
        ),
        conn(
            Proto::Udp,
            "198.51.100.8:5353",
            "10.0.0.100:53",
            "10.0.1.1:5353",
            "UDP",
            299,
        ),
        conn(
            Proto::Tcp,
            "[2001:db8::77]:50000",
            "[2001:db8::100]:443",
            "[2001:db8::10]:8443",
            "FIN_WAIT",
            65,
        ),
        conn(
            Proto::Tcp,
            "198.51.100.9:0",
            "10.0.0.100:0",
            "10.0.1.3:0",
            "NONE",
            300,
        ),
    ];
    (m, stats, conns)
}

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/ipvsadm/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn listings_match_ipvsadm_byte_for_byte() {
    let (m, stats, conns) = state();
    let view = View {
        stats: &stats,
        conns: &conns,
        table_size: ipvsadm::TABLE_SIZE,
    };
    let cases = [
        ("-L -n", "list_n.txt"),
        ("-L", "list_n.txt"),
        ("-l -n --sort", "list_n.txt"),
        ("-L -n --stats", "list_stats.txt"),
        ("-L -n --stats --exact", "list_stats_exact.txt"),
        ("-L -n --rate", "list_rate.txt"),
        ("-L -n --rate --exact", "list_rate_exact.txt"),
        ("-L -n --thresholds", "list_thresholds.txt"),
        ("-L -n --persistent-conn", "list_persistent_conn.txt"),
        ("-L -n --tun-info", "list_tun_info.txt"),
        ("-L -n --nosort", "list_nosort.txt"),
        ("-L -n -t 10.0.0.100:80", "list_service.txt"),
        (
            "-L -n --stats -t [2001:db8::100]:443",
            "list_service_stats.txt",
        ),
        ("-L --timeout", "timeout.txt"),
        ("-L -n -c", "conns.txt"),
        ("-S -n", "save.txt"),
        ("-S", "save.txt"),
        ("--get-laddr", "get_laddr.txt"),
        ("--get-laddr -t 10.0.0.200:80", "get_laddr.txt"),
    ];
    for (line, file) in cases {
        let got = ipvsadm::render(&cmd(line), &m, &view).unwrap_or_else(|e| panic!("{line}: {e}"));
        let want = golden(file);
        if got != want {
            panic!("{line} differs from {file}\n--- got ---\n{got}--- want ---\n{want}");
        }
    }
}

#[test]
fn saved_golden_rules_restore_the_same_model() {
    let (m, _, _) = state();
    let mut back = Model {
        services: Vec::new(),
        ..m.clone()
    };
    ipvsadm::restore(&mut back, &golden("save.txt")).unwrap();
    assert_eq!(back, m);
}

#[test]
fn zero_clears_totals_not_connections() {
    let (m, mut stats, conns) = state();
    stats.zero(Some(&key(Proto::Tcp, "10.0.0.100", 80)));
    let view = View {
        stats: &stats,
        conns: &conns,
        table_size: ipvsadm::TABLE_SIZE,
    };
    let out = ipvsadm::render(&cmd("-L -n --stats -t 10.0.0.100:80"), &m, &view).unwrap();
    assert!(
        out.lines()
            .skip(2)
            .all(|l| l.split_whitespace().skip(2).all(|v| v == "0")),
        "{out}"
    );
    let out = ipvsadm::render(&cmd("-L -n -t 10.0.0.100:80"), &m, &view).unwrap();
    assert!(
        out.contains("Route   1      12         3"),
        "active/inactive stay: {out}"
    );
    let out = ipvsadm::render(&cmd("-L -n --stats -t [2001:db8::100]:443"), &m, &view).unwrap();
    assert_eq!(
        out,
        golden("list_service_stats.txt"),
        "other services keep their totals"
    );
}

#[test]
fn missing_service_is_an_ipvsadm_error() {
    let (m, stats, conns) = state();
    let view = View {
        stats: &stats,
        conns: &conns,
        table_size: ipvsadm::TABLE_SIZE,
    };
    let e = ipvsadm::render(&cmd("-L -n -t 10.9.9.9:80"), &m, &view).unwrap_err();
    assert_eq!(
        (e.to_string(), e.exit_code()),
        ("No such service".to_string(), 1)
    );
}
