//! I/O drivers behind the worker loop; [`xdp`] is the AF_XDP driver of `xvs run`.
pub mod xdp;
