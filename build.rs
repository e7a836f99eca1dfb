//! Compiles the XDP steering program (`src/io/xdp/steer.bpf.c`) and the
//! kernel path's tc program (`src/io/xdp/kpath.bpf.c`) with clang's BPF target
//! into `$OUT_DIR/steer.bpf.o` and `kpath.bpf.o`, which the AF_XDP driver
//! embeds.
//!
//! The program includes no system headers, so clang is all it needs
//! (`make deps` installs it). `CLANG` overrides the compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    compile("src/io/xdp/steer.bpf.c", "steer.bpf.o");
    compile("src/io/xdp/kpath.bpf.c", "kpath.bpf.o");
}

fn compile(src: &str, obj: &str) {
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(obj);
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let result = Command::new(&clang)
        .args([
            "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c", src, "-o",
        ])
        .arg(&out)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            panic!("xvs build: `{clang} -target bpf` failed to compile {src} (see the compiler output above)");
        }
        Err(e) => panic!(
            "xvs build: cannot run `{clang}` ({e}); the XDP steering program needs clang with the BPF target \
             (Debian: apt-get install clang llvm, or `make deps`; set CLANG=/path/to/clang to choose one)"
        ),
    }
}
