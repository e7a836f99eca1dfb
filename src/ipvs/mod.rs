//! The IPVS domain, by IPVS's names: [`service::Service`] (a virtual
//! service), [`dest::Dest`] (a real server), [`conn`] (connections and their
//! table), [`laddr`] (FULLNAT local addresses), [`proto`] (the TCP state
//! machine and per-protocol timeouts), [`sched`] (schedulers), [`xmit`]
//! (the four forwarding methods), [`timer`] (the expiry wheel), [`mem`]
//! (the tables' memory, supplied ahead of need), [`netif`] (the
//! director's interfaces), [`route`] (the route table), [`rss`] (the NIC's
//! Toeplitz hash: which worker owns a flow under RSS) and [`snapshot`]
//! (the compiled configuration the workers forward with).
//!
//! Nothing here imports the control plane: what the data path reads of
//! the compiled configuration ([`snapshot::Snapshot`] and what it holds:
//! [`dest::DestEntry`], [`dest::Hop`], [`netif::Netif`],
//! [`route::Routes`]) is defined here, and `ctl::snapshot` builds it.

pub mod conn;
pub mod dest;
pub mod laddr;
pub mod mem;
pub mod netif;
pub mod proto;
pub mod route;
pub mod rss;
pub mod sched;
pub mod seqadj;
pub mod synproxy;
pub mod service;
pub mod snapshot;
pub mod timer;
pub mod xmit;

use std::fmt;

/// A balanced transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    /// From an IP protocol number.
    pub const fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
    /// As ipvsadm prints it ("TCP", "UDP").
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a packet reaches its real server (ipvsadm `-g`, `-i`, `-m`, and
/// DPVS's FULLNAT). Bound to a connection when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FwdMethod {
    /// Direct routing: rewrite the destination MAC only (`-g`, "Route").
    Dr,
    /// IP-in-IP tunnelling (`-i`, "Tunnel").
    Tun,
    /// Destination NAT, replies come back through xvs (`-m`, "Masq").
    Nat,
    /// Destination and source NAT to a local address (`--fullnat`).
    #[serde(rename = "fullnat")]
    FullNat,
}

impl FwdMethod {
    pub const ALL: [FwdMethod; 4] = [FwdMethod::Dr, FwdMethod::Tun, FwdMethod::Nat, FwdMethod::FullNat];
    /// Index into per-method counter arrays.
    #[inline]
    pub const fn idx(self) -> usize {
        self as usize
    }
    /// The name ipvsadm prints in its Forward column.
    pub const fn ipvsadm_name(self) -> &'static str {
        match self {
            FwdMethod::Dr => "Route",
            FwdMethod::Tun => "Tunnel",
            FwdMethod::Nat => "Masq",
            FwdMethod::FullNat => "FullNat",
        }
    }
    /// Lower-case name used in the config file and counters.
    pub const fn name(self) -> &'static str {
        match self {
            FwdMethod::Dr => "dr",
            FwdMethod::Tun => "tun",
            FwdMethod::Nat => "nat",
            FwdMethod::FullNat => "fullnat",
        }
    }
    /// Replies pass back through the director (and need an out-direction
    /// connection entry).
    #[inline]
    pub const fn sees_replies(self) -> bool {
        matches!(self, FwdMethod::Nat | FwdMethod::FullNat)
    }
    /// Whether this method's transmit would drop a packet with TTL / hop
    /// limit `ttl`: NAT and FULLNAT route (decrement it, drop at 1 or 0);
    /// DR and TUN leave the IP header as it is.
    ///
    /// # Errors
    /// [`crate::stats::DropReason::TtlExceeded`].
    #[inline]
    pub fn check_ttl(self, ttl: u8) -> Result<(), crate::stats::DropReason> {
        if self.sees_replies() && ttl <= 1 {
            return Err(crate::stats::DropReason::TtlExceeded);
        }
        Ok(())
    }
}

impl fmt::Display for FwdMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
