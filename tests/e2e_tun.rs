//! TUN end to end: `xvs run` encapsulates the client's packets in IP-in-IP
//! to two real kernel TCP servers, which decapsulate them and answer the
//! client directly; and UDP datagrams without DF that outgrow the link once
//! encapsulated leave in outer fragments, which the real server's kernel
//! reassembles.
//!
//! Topology (`lab::lan`): one LAN; client 10.43.0.2, director 10.43.0.1
//! (+ VIP 10.43.0.100, so its kernel answers ARP for the VIP), rs1
//! 10.43.0.11 and rs2 10.43.0.12 with the VIP on lo. This kernel has no
//! ipip module: the real servers decapsulate with a tc ingress program of
//! the tests' own (`tests/lab/ipip_decap.bpf.c`, built with clang). The
//! director's kernel does not forward.

mod lab;

use lab::{http_gets, peer_ip, rs_index, Lab};

const CONFIG: &str = r#"
[[service]]
proto = "tcp"
vip = "10.43.0.100"
port = 80
scheduler = "rr"

  [[service.real_server]]
  ip = "10.43.0.11"
  mode = "tun"

  [[service.real_server]]
  ip = "10.43.0.12"
  mode = "tun"
"#;

#[test]
fn tun_real_servers_decapsulate_and_answer_directly() {
    let test = "tun_real_servers_decapsulate_and_answer_directly";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if let Err(e) = lab::ipip_decap_object() {
        println!("SKIP {test}: {e}");
        return;
    }
    let t = lab::lan(&mut lab, 43, 1, 2);
    for (i, r) in t.rs.clone().iter().enumerate() {
        lab.ipip_decap(r, "eth0");
        // The decapsulated packet arrives on eth0 for an address on lo.
        lab.sysctl(r, "net.ipv4.conf.all.rp_filter=0");
        lab.sysctl(r, "net.ipv4.conf.eth0.rp_filter=0");
        lab.http_server(r, "0.0.0.0:80".parse().unwrap(), &format!("rs{}", i + 1));
    }
    let x = lab.xvs(&t.director, CONFIG, &["-i", "d0"]);
    let answers = http_gets(&t.client, t.sock(0, 100, 80), 10);
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);

    let mut seen = [0usize; 2];
    for a in &answers {
        let body = a
            .as_ref()
            .unwrap_or_else(|e| panic!("GET through the VIP failed: {e}\n{}", c.text));
        seen[rs_index(body)] += 1;
        // The inner packet is the client's own.
        assert_eq!(peer_ip(body).to_string(), t.addr(0, 2), "{body}");
    }
    assert_eq!(seen, [5, 5], "rr over two real servers, one worker");
    assert_eq!(c.get("new_conns"), 10);
    assert!(c.get("fwd_tun_in") >= 10 * 3, "{}", c.text);
    // Replies bypass the director.
    assert_eq!(c.get("fwd_tun_out"), 0);
    assert_eq!(c.get("drop_too_big"), 0, "{}", c.text);
}

const UDP_CONFIG: &str = r#"
[[service]]
proto = "udp"
vip = "10.49.0.100"
port = 5300
scheduler = "rr"

  [[service.real_server]]
  ip = "10.49.0.11"
  mode = "tun"
"#;

/// Datagrams to send, and the UDP payload of each: with its 28 bytes of
/// headers the client's packet is 1500 bytes, the link's MTU; the IPIP
/// datagram (1520) no longer fits the director's link to the real server.
const DATAGRAMS: u8 = 8;
const PAYLOAD: usize = 1472;

/// Checks one IPIP datagram `p` (outer IPv4 header included, as a raw
/// socket reads it) that the real server's kernel reassembled: from the
/// director to the real server, whole (no fragment bits left), and inside
/// it client datagram `i` as the client sent it — addresses, ports,
/// length, no DF, every payload byte, and the IPv4 and UDP checksums
/// computed from scratch. Returns `i`.
fn intact(p: &[u8], director: [u8; 4], rs: [u8; 4], client: [u8; 4], vip: [u8; 4]) -> Result<u8, String> {
    let be16 = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]);
    if p.len() != 20 + 20 + 8 + PAYLOAD {
        return Err(format!("{} bytes, not the whole datagram", p.len()));
    }
    if p[0] != 0x45 || p[9] != 4 || p[12..16] != director || p[16..20] != rs || be16(6) & 0x3fff != 0 {
        return Err(format!("outer header {:02x?}", &p[..20]));
    }
    let inner = &p[20..];
    if inner[0] != 0x45 || inner[9] != 17 || inner[12..16] != client || inner[16..20] != vip || be16(20 + 6) & 0x4000 != 0 {
        return Err(format!("inner header {:02x?}", &inner[..20]));
    }
    let (dport, ulen) = (be16(40 + 2), be16(40 + 4) as usize);
    if dport != 5300 || ulen != 8 + PAYLOAD {
        return Err(format!("UDP port {dport}, length {ulen}"));
    }
    let i = inner[28];
    if inner[28..].iter().any(|b| *b != i) {
        return Err(format!("datagram {i}: payload changed"));
    }
    // As a frame, for the from-scratch checksum check.
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(inner);
    if !xvs::gen::packet::verify(&frame) {
        return Err(format!("datagram {i}: a checksum does not verify"));
    }
    Ok(i)
}

/// TUN's outer fragmentation through the live AF_XDP path: a kernel
/// client sends UDP datagrams of 1500 bytes without DF (IP_PMTUDISC_DONT)
/// from a veth with the default offloads (its UDP checksums left partial);
/// encapsulated they exceed the 1500-byte link to the real server, so xvs
/// sends each as two outer fragments — the first from the received frame,
/// the second staged and copied into UMEM by the driver (`send_staged`).
/// The real server's kernel reassembles them (its tc decapsulation leaves
/// fragments alone) and hands the IPIP datagram to a raw socket of the
/// test's: each must hold the client's datagram intact, and `frags_made`
/// counts a fragment per datagram.
#[test]
fn tun_fragments_datagrams_that_outgrow_the_link_and_the_real_server_reassembles_them() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    let test = "tun_fragments_datagrams_that_outgrow_the_link_and_the_real_server_reassembles_them";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if let Err(e) = lab::ipip_decap_object() {
        println!("SKIP {test}: {e}");
        return;
    }
    let t = lab::lan(&mut lab, 49, 1, 1);
    let rs_ns = t.rs[0].clone();
    lab.ipip_decap(&rs_ns, "eth0");
    let a4 = |s: String| s.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let (director, rs, client, vip) = (a4(t.addr(0, 1)), a4(t.addr(0, 11)), a4(t.addr(0, 2)), a4(t.addr(0, 100)));

    // The real server's end of the tunnel: a raw socket for protocol 4.
    let (got_tx, got_rx) = mpsc::channel::<Result<u8, String>>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let receiver = std::thread::spawn(move || {
        lab::enter(&rs_ns);
        // SAFETY: plain socket calls; the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_IPIP) };
        if fd < 0 {
            let _ = ready_tx.send(Err(format!("raw socket: {}", std::io::Error::last_os_error())));
            return;
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        // SAFETY: tv outlives the call; the length is its size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let _ = ready_tx.send(Ok(()));
        let mut buf = vec![0u8; 65536];
        while !stop2.load(Ordering::Relaxed) {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                let _ = got_tx.send(intact(&buf[..n as usize], director, rs, client, vip));
            }
        }
    });
    ready_rx.recv().unwrap().unwrap_or_else(|e| panic!("{e}"));

    let x = lab.xvs(&t.director, UDP_CONFIG, &["-i", "d0"]);
    let to = t.sock(0, 100, 5300);
    // Each datagram until the real server has it (the first may be lost
    // while the director resolves the real server's MAC; a busy machine
    // may delay any), at most 5 times.
    let results = lab::in_ns(&t.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let off: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: off outlives the call; the length is its size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&off as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "IP_MTU_DISCOVER: {}", std::io::Error::last_os_error());
        let mut results = Vec::new();
        for i in 0..DATAGRAMS {
            let mut got = Err(format!("datagram {i} never reached the real server"));
            'send: for _ in 0..5 {
                s.send_to(&[i; PAYLOAD], to).unwrap();
                loop {
                    match got_rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(Ok(j)) if j == i => {
                            got = Ok(i);
                            break 'send;
                        }
                        // A late copy of an earlier one (sent again).
                        Ok(Ok(j)) if j < i => {}
                        Ok(Ok(j)) => {
                            got = Err(format!("datagram {j} when {i} was sent"));
                            break 'send;
                        }
                        Ok(Err(e)) => {
                            got = Err(e);
                            break 'send;
                        }
                        Err(_) => break,
                    }
                }
            }
            results.push(got);
        }
        results
    });
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    let c = lab.stop_xvs(x);
    println!("{}\n{}", lab.log(x), c.text);
    assert!(results.iter().all(Result::is_ok), "{results:?}\n{}", c.text);
    assert!(c.get("frags_made") >= DATAGRAMS as u64, "a second fragment per datagram: {}", c.text);
    assert!(c.get("fwd_tun_in") >= DATAGRAMS as u64, "{}", c.text);
    assert_eq!((c.get("drop_too_big"), c.get("icmp_sent")), (0, 0), "{}", c.text);
}
