//! The fuzz targets' inputs through the same harnesses (`xvs::fuzz`) that
//! cargo-fuzz runs: every input that ever broke an invariant
//! (`fuzz/regressions/<target>/`, each named after what it found) and
//! the seed corpora (`fuzz/seeds/<target>/`). A crash found by `make fuzz`
//! becomes a file here before it is fixed. See docs/reliability.md.

use std::path::{Path, PathBuf};
use xvs::fuzz::TARGETS;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs every file of `<base>/<target>/` through its target; returns how many.
fn replay(base: &str) -> usize {
    let mut n = 0;
    for (name, run) in TARGETS {
        for f in files(&root().join(base).join(name)) {
            let data = std::fs::read(&f).expect("readable");
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{name}: {} breaks an invariant again", f.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_regression_input_passes() {
    let n = replay("fuzz/regressions");
    println!("{n} regression inputs replayed");
}

#[test]
fn every_seed_passes() {
    let n = replay("fuzz/seeds");
    assert!(n >= TARGETS.len(), "the seed corpora are missing (make fuzz-seeds)");
    for (name, _) in TARGETS {
        assert!(!files(&root().join("fuzz/seeds").join(name)).is_empty(), "no seeds for {name}");
    }
}

/// `make fuzz-seeds`: (re)writes fuzz/seeds/ from the project's files.
#[test]
#[ignore]
fn write_seeds() {
    xvs::fuzz::seeds::write_seeds(root(), &root().join("fuzz/seeds")).expect("seeds written");
}
