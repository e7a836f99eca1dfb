#![no_main]
//! See xvs::fuzz (src/fuzz/) for what this target feeds and checks.
use libfuzzer_sys::fuzz_target;
use xvs::fuzz::*;

fuzz_target!(|data: &[u8]| sync::run(data));
