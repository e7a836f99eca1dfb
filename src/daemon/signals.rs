//! SIGINT / SIGTERM / SIGHUP for `xvs run`.
//!
//! # Contract
//!
//! - [`install`] sets handlers that only set flags (async-signal-safe):
//!   the main thread polls [`stop_requested`] and [`take_reload`] and does
//!   the work (stopping workers, detaching XDP, reloading the config).
//! - A second SIGINT/SIGTERM while the first is being handled detaches
//!   every XDP program at once ([`emergency_detach_all`]: one netlink
//!   request each, on stack memory) and exits with status 130: an operator
//!   pressing Ctrl-C twice never leaves a program attached.

use crate::io::xdp::emergency_detach_all;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static STOPS: AtomicU32 = AtomicU32::new(0);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    if STOPS.fetch_add(1, Ordering::SeqCst) >= 1 {
        emergency_detach_all();
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

fn set(sig: libc::c_int, h: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler only touches atomics
    // (and, on a second stop signal, async-signal-safe calls).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = h as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Installs the handlers.
///
/// # Errors
/// `sigaction` failed.
pub fn install() -> io::Result<()> {
    set(libc::SIGINT, on_stop)?;
    set(libc::SIGTERM, on_stop)?;
    set(libc::SIGHUP, on_hup)
}

/// A SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOPS.load(Ordering::SeqCst) > 0
}

/// A SIGHUP arrived since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}
