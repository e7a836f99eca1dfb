//! Faults the end-to-end tests inject into a running `xvs run`.
//!
//! The contract says no input may make the daemon panic, so nothing real
//! can show what a panic does to a running director: that a control
//! handler's panic costs one request and leaves forwarding alone, and
//! that a worker's death ends the process with a non-zero status and the
//! XDP programs detached. These triggers let the tests (`tests/e2e_run.rs`)
//! cause exactly those panics. They exist only in builds with debug
//! assertions — the test profile that builds the binary the tests run;
//! `cargo build --release` compiles them out, [`armed`] is then a
//! constant `false` — and only when the environment variable
//! `XVS_TEST_FAULT` names the fault, which nothing but those tests sets.

/// The variable that arms a fault (debug builds only).
pub const ENV: &str = "XVS_TEST_FAULT";

/// A fault a test can arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The control handler panics on a `Ping` request (`control-panic`).
    ControlPanic,
    /// Worker 0 panics after the first loop that handled frames
    /// (`worker-panic`).
    WorkerPanic,
}

impl Fault {
    /// The value of [`ENV`] that arms it.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::ControlPanic => "control-panic",
            Fault::WorkerPanic => "worker-panic",
        }
    }
}

/// True when `f` is armed: a debug build with [`ENV`] set to its name.
/// Always false in release builds.
#[inline]
pub fn armed(f: Fault) -> bool {
    #[cfg(debug_assertions)]
    {
        std::env::var(ENV).is_ok_and(|v| v == f.name())
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = f;
        false
    }
}

