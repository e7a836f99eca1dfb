//! The seed corpora (`fuzz/seeds/<target>/`), written by
//! `make fuzz-seeds` from the project's own files: the golden captures'
//! frames, the configurations in `configs/`, their ipvsadm-save form,
//! control requests made by the real parser, and a few generated inputs.
//! Small enough to keep in the repository; `make test` replays them.

use super::frames::{encode_raw, CONFIG};
use crate::ctl::config;
use crate::ctl::control::Request;
use crate::ctl::ipvsadm;
use crate::wire::parse;
use std::io;
use std::path::Path;

/// ipvsadm command lines used as seeds (ipvsadm and control targets).
const COMMANDS: &[&str] = &[
    "-L -n",
    "-L -n --stats --exact",
    "-L -n --rate",
    "-L -c -n",
    "-L --timeout",
    "-S -n",
    "-A -t 10.0.0.100:8000 -s wrr -p 60 -M 255.255.255.0",
    "-a -t 10.0.0.100:8000 -r 10.0.1.1:8000 -m -w 3 -x 100 -y 50",
    "-e -t 10.0.0.100:80 -r 10.0.1.3:8080 -m -w 0",
    "-E -t 10.0.0.100:80 -s mh -b mh-fallback,mh-port",
    "-d -t 10.0.0.100:80 -r 10.0.1.1",
    "-D -u 10.0.0.100:53",
    "-P -t 10.0.0.100:80 -z 10.0.1.202",
    "-Q -t 10.0.0.100:80 -z 10.0.1.200",
    "-G -t 10.0.0.100:80",
    "--set 900 120 300",
    "-Z",
    "-C",
    "-A -t [2001:db8::100]:443 -s sh -b sh-port",
    "-a -t [2001:db8::100]:443 -r [2001:db8:1::3]:8443 -b",
];

fn write(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), data)
}

/// Frames of a capture, with the port they arrive on (real servers' side: 1).
fn capture(path: &Path) -> io::Result<Vec<(Vec<u8>, u8)>> {
    let f = std::fs::File::open(path)?;
    let mut r = pcap_file::pcap::PcapReader::new(f).map_err(io::Error::other)?;
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.map_err(io::Error::other)?;
        let d = p.data.to_vec();
        let port = match parse(&d) {
            Ok(m) if !m.v6 => (d[m.l3 as usize + 12..m.l3 as usize + 15] == [10, 0, 1]) as u8,
            Ok(m) => (d[m.l3 as usize + 12..m.l3 as usize + 14] == [0, 1]) as u8,
            Err(_) => 0,
        };
        v.push((d, port));
    }
    Ok(v)
}

/// A small deterministic generator for the structured targets' seeds.
fn lcg(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Writes every target's seeds under `out` (`fuzz/seeds`), reading the
/// project at `root`.
///
/// # Errors
/// A file that cannot be read or written.
pub fn write_seeds(root: &Path, out: &Path) -> io::Result<()> {
    // frames_raw: each golden capture whole, and its first frames alone.
    for mode in ["dr", "tun", "nat", "fullnat"] {
        let frames = capture(&root.join(format!("tests/golden/{mode}.in.pcap")))?;
        let dir = out.join("frames_raw");
        write(&dir, &format!("{mode}-flow"), &encode_raw(&frames[..frames.len().min(128)]))?;
        for (i, f) in frames.iter().take(4).enumerate() {
            write(&dir, &format!("{mode}-{i}"), &encode_raw(std::slice::from_ref(f)))?;
        }
    }
    // frames, icmp_relay, monitor: generated programs.
    for t in ["frames", "icmp_relay", "monitor"] {
        for i in 0..8u64 {
            write(&out.join(t), &format!("gen-{i}"), &lcg(i + 1, 64 << (i % 4)))?;
        }
    }
    // config and ipvsadm: the configurations and their ipvsadm-save form.
    let mut tomls = vec![("director".to_string(), CONFIG.to_string())];
    for dir in ["configs", "configs/health"] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir))?.filter_map(Result::ok).map(|e| e.path()).collect();
        names.sort();
        for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            tomls.push((stem, std::fs::read_to_string(&p)?));
        }
    }
    for (name, text) in &tomls {
        write(&out.join("config"), &format!("{name}.toml"), text.as_bytes())?;
        if let Ok(m) = config::load_str(text, name) {
            let rules = ipvsadm::save(&m);
            write(&out.join("config"), &format!("{name}.rules"), rules.as_bytes())?;
            write(&out.join("ipvsadm"), &format!("{name}.rules"), rules.as_bytes())?;
        }
    }
    write(&out.join("ipvsadm"), "commands", COMMANDS.join("\n").as_bytes())?;
    for (i, c) in COMMANDS.iter().enumerate() {
        write(&out.join("ipvsadm"), &format!("command-{i}"), c.as_bytes())?;
    }
    // control: request lines as xvsadm sends them.
    let mut all = serde_json::to_vec(&Request::Ping).map_err(io::Error::other)?;
    all.push(b'\n');
    for (i, c) in COMMANDS.iter().enumerate() {
        let words: Vec<&str> = c.split_whitespace().collect();
        let Ok(cmd) = ipvsadm::parse(&words) else { continue };
        let line = serde_json::to_vec(&Request::Ipvsadm(cmd)).map_err(io::Error::other)?;
        write(&out.join("control"), &format!("request-{i}"), &line)?;
        all.extend_from_slice(&line);
        all.push(b'\n');
    }
    write(&out.join("control"), "requests", &all)?;
    // sync: messages of every kind the codec writes, and built ones.
    for (name, data) in super::sync::seeds() {
        write(&out.join("sync"), &name, &data)?;
    }
    Ok(())
}
