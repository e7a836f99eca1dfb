//! The sink: `sink.bpf.c` as a tc ingress program on the real server's
//! veth, loaded through libbpf, and its counters read back.
//!
//! The program counts the generator's frames, puts each one's one-way
//! latency (generator transmit → sink) into a histogram and drops it. The
//! counters only grow; a measurement is the difference of two
//! [`Sink::read`]s ([`Counts::since`]).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::process::Command;
use std::ptr::{self, NonNull};

/// The program's source, compiled at run time with clang (as `make deps`
/// installs it): the harness is an example and has no build script of its
/// own.
const SOURCE: &str = include_str!("sink.bpf.c");

/// Histogram layout; must match `sink.bpf.c`.
const FINE: usize = 2048;
const COARSE: usize = 1024;
const BUCKETS: usize = FINE + COARSE;
const FINE_END_NS: u64 = (FINE as u64) << 8;
/// Fields before the histogram in `struct counts`.
const HEAD: usize = 4;

/// Counters of the sink (summed over CPUs).
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Generator frames received.
    pub frames: u64,
    /// Other frames (passed to the kernel).
    pub other: u64,
    /// Frames stamped in the future (never expected; not in the histogram).
    pub future: u64,
    /// Sum of latencies, ns.
    pub lat_sum: u64,
    hist: Vec<u64>,
}

impl Counts {
    /// What arrived between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            frames: self.frames - earlier.frames,
            other: self.other - earlier.other,
            future: self.future - earlier.future,
            lat_sum: self.lat_sum - earlier.lat_sum,
            hist: self
                .hist
                .iter()
                .zip(&earlier.hist)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// The latency below which fraction `q` of the frames arrived, in ns
    /// (the upper edge of the bucket; 256 ns resolution up to 524 µs, then
    /// 65.5 µs). `None` without frames.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(bucket_top(i));
            }
        }
        Some(bucket_top(BUCKETS - 1))
    }

    /// Mean latency in ns.
    pub fn mean(&self) -> Option<u64> {
        let n = self.frames - self.future;
        (n > 0).then(|| self.lat_sum / n)
    }
}

fn bucket_top(i: usize) -> u64 {
    if i < FINE {
        (i as u64 + 1) << 8
    } else {
        FINE_END_NS + (((i - FINE) as u64 + 1) << 16)
    }
}

/// The loaded sink program; the namespace's deletion removes the tc hook,
/// dropping this closes the object and its map.
pub struct Sink {
    obj: NonNull<libbpf_sys::bpf_object>,
    map_fd: RawFd,
    ncpus: usize,
}

// SAFETY: the object is only used to keep the program and map alive and to
// read the map through its fd; libbpf objects are not tied to a thread.
unsafe impl Send for Sink {}

fn last_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

impl Sink {
    /// Compiles the program into `scratch`, loads it, and attaches it to
    /// tc ingress of `iface` in network namespace `ns`.
    pub fn attach(ns: &str, iface: &str, scratch: &Path) -> Result<Sink, String> {
        let src = scratch.join("sink.bpf.c");
        let obj = scratch.join("sink.bpf.o");
        std::fs::write(&src, SOURCE).map_err(|e| format!("writing {}: {e}", src.display()))?;
        let out = Command::new(std::env::var("CLANG").unwrap_or_else(|_| "clang".into()))
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .map_err(|e| format!("running clang ({e}); `make deps` installs it"))?;
        if !out.status.success() {
            return Err(format!(
                "clang failed on the sink program:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = CString::new(obj.to_string_lossy().into_owned()).map_err(|e| e.to_string())?;
        let (ns, iface) = (ns.to_string(), iface.to_string());
        // Loading may happen anywhere; the tc hook is made through netlink
        // in the calling thread's namespace, hence the thread.
        std::thread::spawn(move || -> Result<Sink, String> {
            xvs::io::xdp::enter_netns(&ns).map_err(|e| format!("entering {ns}: {e}"))?;
            let ifindex = xvs::io::xdp::ifindex(&iface).map_err(|e| e.to_string())?;
            // SAFETY: a valid C string; NULL options. libbpf 1.x returns
            // NULL with errno set on failure.
            let o = unsafe { libbpf_sys::bpf_object__open_file(path.as_ptr(), ptr::null()) };
            let obj = NonNull::new(o).ok_or_else(|| last_err("opening the sink object"))?;
            let ncpus = xvs_possible_cpus()?;
            let mut sink = Sink {
                obj,
                map_fd: -1,
                ncpus,
            };
            // SAFETY: `obj` is a valid opened object (closed by Sink's Drop
            // on every path below).
            if unsafe { libbpf_sys::bpf_object__load(sink.obj.as_ptr()) } < 0 {
                return Err(last_err(
                    "loading the sink program (LIBBPF_LOG_LEVEL=debug shows the verifier log)",
                ));
            }
            let name = CString::new("xlr_sink").unwrap();
            // SAFETY: valid object and name; the program belongs to the object.
            let prog = unsafe {
                libbpf_sys::bpf_object__find_program_by_name(sink.obj.as_ptr(), name.as_ptr())
            };
            if prog.is_null() {
                return Err("no program xlr_sink in the sink object".into());
            }
            // SAFETY: a valid, loaded program.
            let prog_fd = unsafe { libbpf_sys::bpf_program__fd(prog) };
            let map = CString::new("counts").unwrap();
            // SAFETY: valid object and name.
            let map_fd = unsafe {
                libbpf_sys::bpf_object__find_map_fd_by_name(sink.obj.as_ptr(), map.as_ptr())
            };
            if prog_fd < 0 || map_fd < 0 {
                return Err("the sink object lacks its program or map".into());
            }
            let mut hook = libbpf_sys::bpf_tc_hook {
                sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
                ifindex: ifindex as i32,
                attach_point: libbpf_sys::BPF_TC_INGRESS,
                ..Default::default()
            };
            // SAFETY: a fully initialised hook; creates the clsact qdisc.
            let r = unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) };
            if r < 0 && r != -libc::EEXIST {
                return Err(format!(
                    "creating the tc hook on {iface}: {}",
                    io::Error::from_raw_os_error(-r)
                ));
            }
            let mut opts = libbpf_sys::bpf_tc_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
                prog_fd,
                ..Default::default()
            };
            // SAFETY: valid hook and options with a loaded program's fd.
            let r = unsafe { libbpf_sys::bpf_tc_attach(&hook, &mut opts) };
            if r < 0 {
                return Err(format!(
                    "attaching the sink program to {iface}: {}",
                    io::Error::from_raw_os_error(-r)
                ));
            }
            sink.map_fd = map_fd;
            Ok(sink)
        })
        .join()
        .map_err(|_| "the sink loader thread panicked".to_string())?
    }

    /// The counters now.
    pub fn read(&self) -> Result<Counts, String> {
        let words = HEAD + BUCKETS;
        let mut vals = vec![0u64; words * self.ncpus];
        let key = 0u32;
        // SAFETY: a per-CPU array lookup writes value_size (rounded up to 8
        // bytes, which it is) for every possible CPU: `words * ncpus` u64s.
        let r = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.map_fd,
                &key as *const u32 as *const _,
                vals.as_mut_ptr() as *mut _,
            )
        };
        if r < 0 {
            return Err(last_err("reading the sink counters"));
        }
        let mut c = Counts {
            hist: vec![0; BUCKETS],
            ..Counts::default()
        };
        for cpu in vals.chunks_exact(words) {
            c.frames += cpu[0];
            c.other += cpu[1];
            c.future += cpu[2];
            c.lat_sum += cpu[3];
            for (h, v) in c.hist.iter_mut().zip(&cpu[HEAD..]) {
                *h += v;
            }
        }
        Ok(c)
    }
}

fn xvs_possible_cpus() -> Result<usize, String> {
    // SAFETY: plain call.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    if n <= 0 {
        return Err(format!(
            "counting CPUs: {}",
            io::Error::from_raw_os_error(-n)
        ));
    }
    Ok(n as usize)
}

impl Drop for Sink {
    fn drop(&mut self) {
        // SAFETY: we own the object; its fds are not used after this.
        unsafe { libbpf_sys::bpf_object__close(self.obj.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_bucket_tops() {
        let mut c = Counts {
            hist: vec![0; BUCKETS],
            ..Counts::default()
        };
        c.hist[3] = 90; // 768..1024 ns
        c.hist[FINE + 1] = 10; // 524 288 + 65 536 .. + 131 072 ns
        c.frames = 100;
        assert_eq!(c.percentile(0.5), Some(1024));
        assert_eq!(c.percentile(0.9), Some(1024));
        assert_eq!(c.percentile(0.99), Some(FINE_END_NS + 2 * 65536));
        let e = Counts {
            hist: vec![0; BUCKETS],
            ..Counts::default()
        };
        assert_eq!(e.percentile(0.5), None);
        assert_eq!(c.since(&e).percentile(0.5), Some(1024));
    }
}
