//! Counters: why each frame was dropped or passed, what was forwarded.
//!
//! Every outcome of the data path has a counter. Reasons are small `Copy`
//! enums (no payload) so a verdict costs nothing to carry; each has a stable
//! snake_case name used in `xvs replay` output and the metrics endpoint.
//! Counters are plain `u64` owned by one worker: no atomics on the hot path;
//! the control plane reads published copies.

macro_rules! reasons {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// All variants, in counter order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Number of variants (size of a counter array).
            pub const COUNT: usize = $name::ALL.len();
            /// Stable snake_case name (counters, metrics, logs).
            pub const fn name(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

reasons! {
    /// Why a frame was dropped. Nothing dropped is transmitted.
    DropReason {
        /// Frame shorter than the headers it claims (Ethernet, VLAN, IP, L4).
        Truncated => "truncated",
        /// Frame longer than a frame buffer holds (driver).
        FrameTooLong => "frame_too_long",
        /// IP version field does not match the EtherType, or IHL < 5.
        BadIpHeader => "bad_ip_header",
        /// IP total / payload length disagrees with the header or the frame.
        BadIpLength => "bad_ip_length",
        /// IPv4 header checksum does not verify.
        BadIpChecksum => "bad_ip_checksum",
        /// IPv4 options that do not parse (an option running past the
        /// header, a length below 2): the kernel drops them too.
        BadIpOptions => "bad_ip_options",
        /// IPv4 loose or strict source route option: the kernel drops them
        /// unless `accept_source_route` is on (it is off by default).
        SourceRoute => "source_route",
        /// A fragment at a non-zero offset whose first fragment has not
        /// been seen (out of order, or its datagram's entry expired or was
        /// displaced): xvs does not know its ports.
        FragNoHead => "frag_no_head",
        /// TTL / hop limit would reach zero.
        TtlExceeded => "ttl_exceeded",
        /// TCP data offset, UDP length or ICMP header invalid or truncated.
        BadL4Header => "bad_l4_header",
        /// A TCP segment other than SYN for a flow with no connection entry.
        NoConn => "no_conn",
        /// The scheduler found no available real server.
        NoDest => "no_dest",
        /// The connection's real server was removed (expire_nodest_conn).
        DestGone => "dest_gone",
        /// FULLNAT: no free local address/port.
        NoLocalPort => "no_local_port",
        /// No MAC known for the next hop.
        NoNeighbour => "no_neighbour",
        /// Encapsulated packet would exceed the egress MTU and cannot be fragmented.
        TooBig => "too_big",
        /// No headroom in the frame for the encapsulation header.
        NoHeadroom => "no_headroom",
        /// Connection table is full and no embryonic connection could be
        /// evicted (drop_entry off, or none among those due soonest).
        TableFull => "table_full",
        /// A new connection's key (or reply key) is already another's.
        ConnClash => "conn_clash",
        /// ICMP error whose quoted packet is malformed.
        BadIcmp => "bad_icmp",
        /// The IPv6 extension header chain is too long or malformed.
        BadIpv6Ext => "bad_ipv6_ext",
        /// Hand-off queue to the owning worker is full.
        HandoffFull => "handoff_full",
        /// A frame for the kernel (counted under its pass reason too) that
        /// never reached it: the kernel path's queue was full, or there is
        /// no kernel path.
        KernelFull => "kernel_full",
        /// A frame the worker forwarded that its driver could not queue:
        /// the transmit ring was full.
        TxFull => "tx_full",
        /// A frame the worker forwarded (or handed off) that its driver
        /// refused: a port it does not have, or bytes outside the frame's
        /// buffer (a bug; never expected).
        TxInvalid => "tx_invalid",
        /// Packet family (IPv4/IPv6) differs from its real server's (e.g. TUN
        /// with an IPv6 real server for an IPv4 VIP).
        FamilyMismatch => "family_mismatch",
        /// A unicast frame to a MAC that is none of the director's (the
        /// kernel's PACKET_OTHERHOST: unicast flooded by a switch).
        OtherHost => "other_host",
        /// A frame tagged with a VLAN id that no sub-interface of its port
        /// has (the kernel drops it too).
        UnknownVlan => "unknown_vlan",
        /// A new flow from a martian source (RFC 1812: 0/8, 127/8,
        /// multicast, class E, limited broadcast; IPv6 ::, ::1, ff00::/8,
        /// ::ffff:0:0/96; or one of the director's own addresses).
        Martian => "martian",
        /// A SYN that also carries FIN or RST (never scheduled).
        BadSyn => "bad_syn",
        /// A new flow with source or destination port 0.
        ZeroPort => "zero_port",
        /// A client segment that had to carry the PROXY protocol header
        /// and could not: the header alone passes the egress MTU, or the
        /// frame buffer has no room (the client sends it again).
        ProxyNoRoom => "proxy_no_room",
        /// An ACK to a synproxy service without a connection whose
        /// acknowledgement is no valid cookie (forged, stale, or the
        /// secret of another director or worker start).
        SynproxyBadAck => "synproxy_bad_ack",
        /// A synproxy connection's segment before the splice that is
        /// none it can use: from the real server, anything but its
        /// SYN-ACK or a RST; a SYN-ACK the director could not build.
        SynproxyWait => "synproxy_wait",
    }
}

reasons! {
    /// Why a frame was handed to the kernel (through the kernel path:
    /// `io::xdp::kpath`) instead of forwarded.
    PassReason {
        /// Not IPv4/IPv6 (ARP, LLDP, ...).
        NonIp => "non_ip",
        /// Not addressed to a service, a local address, or a tracked flow.
        NotService => "not_service",
        /// ICMP that is not an error about a tracked connection (e.g. echo).
        Icmp => "icmp",
        /// A broadcast or multicast frame: IPVS takes only frames to the
        /// host's own MAC (PACKET_HOST) and leaves the others to the stack.
        NotHost => "not_host",
        /// A later fragment of a datagram whose first fragment went to the
        /// kernel.
        Fragment => "fragment",
    }
}

/// Forwarding direction of a connection packet, as IPVS names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// Client → real server (through the VIP).
    In = 0,
    /// Real server → client (NAT/FULLNAT replies).
    Out = 1,
}

pub mod estimator;
pub mod prom;

/// Rates per second, as IPVS's estimator gives them (`ipvsadm --rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

impl Rate {
    /// Adds `o` (a service's rate is the sum of its real servers').
    pub fn add(&mut self, o: &Rate) {
        self.cps += o.cps;
        self.inpps += o.inpps;
        self.outpps += o.outpps;
        self.inbps += o.inbps;
        self.outbps += o.outbps;
    }
}

/// Traffic counters of one real server (IPVS's `ip_vs_stats`), kept per
/// worker and summed by the control plane. A service's figures are the sum
/// of its real servers'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestStats {
    /// Connections scheduled to it.
    pub conns: u64,
    /// Packets and bytes client → real server.
    pub inpkts: u64,
    pub inbytes: u64,
    /// Packets and bytes real server → client (NAT/FULLNAT only: DR/TUN
    /// replies bypass the director).
    pub outpkts: u64,
    pub outbytes: u64,
}

impl DestStats {
    pub fn merge(&mut self, o: &DestStats) {
        self.conns += o.conns;
        self.inpkts += o.inpkts;
        self.inbytes += o.inbytes;
        self.outpkts += o.outpkts;
        self.outbytes += o.outbytes;
    }
}

/// Live figures of a service or a real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Connections in ESTABLISHED (ActiveConn).
    pub active: u32,
    /// Other connections (InActConn).
    pub inactive: u32,
    /// Persistence templates (PersistConn).
    pub persist: u32,
    /// Totals since the last `-Z` (`--stats`).
    pub stats: DestStats,
    /// `--rate`.
    pub rate: Rate,
}

impl Figures {
    /// Zeroes what `-Z` zeroes (see `ctl::ipvsadm::StatsView::zero`).
    pub fn zero(&mut self) {
        self.stats = DestStats::default();
        self.rate = Rate::default();
    }
}

/// Per-worker counters. Plain integers: only the owning worker writes them.
#[derive(Clone, Debug, Default)]
pub struct WorkerCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Forwarded packets per forwarding method (DR, TUN, NAT, FULLNAT) and
    /// direction (in, out).
    pub fwd: [[u64; 2]; 4],
    pub new_conns: u64,
    pub expired_conns: u64,
    /// Connections ended early because a client SYN reused their ports
    /// (IPVS conn_reuse_mode) and scheduled afresh.
    pub reused_conns: u64,
    /// Embryonic connections ended early to make room in a full table
    /// (drop_entry: SYN flood defense).
    pub evicted_conns: u64,
    /// Connections made from a TCP packet other than a SYN (`sloppy_tcp`:
    /// a flow ECMP moved here from another director); also in `new_conns`.
    pub sloppy_conns: u64,
    /// FULLNAT handshake ACKs given the client's address (TOA option).
    pub toa_added: u64,
    /// FULLNAT handshake ACKs sent without it: no option space, the
    /// egress MTU or no headroom.
    pub toa_skipped: u64,
    /// Client segments given the PROXY protocol header (handshake ACKs,
    /// first data, their retransmissions until the server acknowledged it).
    pub proxy_headers: u64,
    /// Of those, segments whose payload's tail was left out to keep
    /// within the egress MTU (the client sends it again).
    pub proxy_cut: u64,
    /// SYNs to synproxy services answered with a cookie SYN-ACK.
    pub synproxy_syn: u64,
    /// Valid cookie ACKs: connections opened (a SYN to the real server).
    pub synproxy_ack: u64,
    /// Connections spliced (the real server's SYN-ACK answered).
    pub synproxy_spliced: u64,
    pub templates_created: u64,
    pub templates_expired: u64,
    /// ICMP errors about a connection translated and relayed.
    pub icmp_relayed: u64,
    /// ICMP errors generated by xvs (fragmentation needed, unreachable).
    pub icmp_sent: u64,
    /// ICMP errors xvs did not send because of their rate limit
    /// (`[global] icmp_msgs_per_sec`); their frames count as dropped.
    pub icmp_limited: u64,
    /// Frames made beyond those received: the fragments after the first of
    /// a tunnelled datagram too big for its egress MTU (outer
    /// fragmentation, IPv4 without DF). Counted in `tx_packets` too.
    pub frags_made: u64,
    /// Frames handed to another worker (put in its inbox).
    pub handoffs: u64,
    /// TCP/UDP frames that arrived with a partial checksum (a sender with
    /// TX checksum offload behind a veth or virtual NIC) and had it
    /// completed in software.
    pub csum_completed: u64,
    /// Frames other workers handed to this one (counted in `rx_packets`
    /// too: they are processed here).
    pub handed_in: u64,
    pub drops: Counts<{ DropReason::COUNT }>,
    pub passes: Counts<{ PassReason::COUNT }>,
}

/// A count per reason, indexed by the reason (`[u64; N]` as far as
/// readers go; its own type so that it has a `Default` past 32 reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts<const N: usize>(pub [u64; N]);

impl<const N: usize> Default for Counts<N> {
    fn default() -> Self {
        Counts([0; N])
    }
}

impl<const N: usize> std::ops::Deref for Counts<N> {
    type Target = [u64; N];
    fn deref(&self) -> &[u64; N] {
        &self.0
    }
}

impl<const N: usize> std::ops::DerefMut for Counts<N> {
    fn deref_mut(&mut self) -> &mut [u64; N] {
        &mut self.0
    }
}

/// Where a worker's frames went: the terms of the balance every worker's
/// counters keep (docs/operations.md, "Counters that balance"):
///
/// `rx + made == tx + dropped + to_kernel + handed_off`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    /// Frames the worker processed: received on its sockets, handed in by
    /// other workers, or refused by its driver before processing.
    pub rx: u64,
    /// Frames xvs made beyond those: ICMP errors it built in place of a
    /// frame (which counts as dropped under its reason), and the fragments
    /// after the first of a tunnelled datagram.
    pub made: u64,
    /// Frames queued for transmission.
    pub tx: u64,
    /// Frames dropped, every reason.
    pub dropped: u64,
    /// Frames given to the kernel (through the kernel path).
    pub to_kernel: u64,
    /// Frames put in another worker's inbox.
    pub handed_off: u64,
}

impl Balance {
    /// Whether the terms balance.
    pub fn holds(&self) -> bool {
        self.rx + self.made == self.tx + self.dropped + self.to_kernel + self.handed_off
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rx={} made={} tx={} dropped={} to_kernel={} handed_off={}",
            self.rx, self.made, self.tx, self.dropped, self.to_kernel, self.handed_off
        )
    }
}

impl WorkerCounters {
    /// The terms of the balance (see [`Balance`]).
    pub fn balance(&self) -> Balance {
        Balance {
            rx: self.rx_packets,
            made: self.icmp_sent + self.frags_made,
            tx: self.tx_packets,
            dropped: self.total_drops(),
            to_kernel: self.total_passes(),
            handed_off: self.handoffs,
        }
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }
    #[inline]
    pub fn pass(&mut self, r: PassReason) {
        self.passes[r as usize] += 1;
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn total_passes(&self) -> u64 {
        self.passes.iter().sum()
    }
    /// Adds `o` into `self` (aggregating workers).
    pub fn merge(&mut self, o: &WorkerCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.fwd.iter_mut().zip(o.fwd.iter()) {
            a[0] += b[0];
            a[1] += b[1];
        }
        self.new_conns += o.new_conns;
        self.expired_conns += o.expired_conns;
        self.reused_conns += o.reused_conns;
        self.evicted_conns += o.evicted_conns;
        self.sloppy_conns += o.sloppy_conns;
        self.toa_added += o.toa_added;
        self.toa_skipped += o.toa_skipped;
        self.proxy_headers += o.proxy_headers;
        self.proxy_cut += o.proxy_cut;
        self.synproxy_syn += o.synproxy_syn;
        self.synproxy_ack += o.synproxy_ack;
        self.synproxy_spliced += o.synproxy_spliced;
        self.templates_created += o.templates_created;
        self.templates_expired += o.templates_expired;
        self.icmp_relayed += o.icmp_relayed;
        self.icmp_sent += o.icmp_sent;
        self.icmp_limited += o.icmp_limited;
        self.frags_made += o.frags_made;
        self.handoffs += o.handoffs;
        self.csum_completed += o.csum_completed;
        self.handed_in += o.handed_in;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.passes.iter_mut().zip(o.passes.iter()) {
            *a += b;
        }
    }
}

impl WorkerCounters {
    /// Every counter as a `(name, value)` pair, zeros included, in a fixed
    /// order: the machine-readable form (`xvs replay --counters`, metrics).
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("rx_packets".to_string(), self.rx_packets),
            ("rx_bytes".into(), self.rx_bytes),
            ("tx_packets".into(), self.tx_packets),
            ("tx_bytes".into(), self.tx_bytes),
        ];
        for m in crate::ipvs::FwdMethod::ALL {
            v.push((format!("fwd_{}_in", m.name()), self.fwd[m.idx()][0]));
            v.push((format!("fwd_{}_out", m.name()), self.fwd[m.idx()][1]));
        }
        v.push(("new_conns".into(), self.new_conns));
        v.push(("expired_conns".into(), self.expired_conns));
        v.push(("reused_conns".into(), self.reused_conns));
        v.push(("evicted_conns".into(), self.evicted_conns));
        v.push(("sloppy_conns".into(), self.sloppy_conns));
        v.push(("toa_added".into(), self.toa_added));
        v.push(("toa_skipped".into(), self.toa_skipped));
        v.push(("proxy_headers".into(), self.proxy_headers));
        v.push(("proxy_cut".into(), self.proxy_cut));
        v.push(("synproxy_syn".into(), self.synproxy_syn));
        v.push(("synproxy_ack".into(), self.synproxy_ack));
        v.push(("synproxy_spliced".into(), self.synproxy_spliced));
        v.push(("templates_created".into(), self.templates_created));
        v.push(("templates_expired".into(), self.templates_expired));
        v.push(("icmp_relayed".into(), self.icmp_relayed));
        v.push(("icmp_sent".into(), self.icmp_sent));
        v.push(("icmp_limited".into(), self.icmp_limited));
        v.push(("frags_made".into(), self.frags_made));
        v.push(("handoffs".into(), self.handoffs));
        v.push(("csum_completed".into(), self.csum_completed));
        v.push(("handed_in".into(), self.handed_in));
        for r in DropReason::ALL {
            v.push((format!("drop_{}", r.name()), self.drops[*r as usize]));
        }
        for r in PassReason::ALL {
            v.push((format!("pass_{}", r.name()), self.passes[*r as usize]));
        }
        v
    }

    /// A human summary: traffic, forwarding per method and direction,
    /// connections, and every non-zero drop and pass reason.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "packets      rx {:>12}  tx {:>12}", self.rx_packets, self.tx_packets);
        let _ = writeln!(s, "bytes        rx {:>12}  tx {:>12}", self.rx_bytes, self.tx_bytes);
        let _ = writeln!(s, "forwarded       {:>12}     {:>12}", "in", "out");
        for m in crate::ipvs::FwdMethod::ALL {
            let f = self.fwd[m.idx()];
            let _ = writeln!(s, "  {:<10}    {:>12}     {:>12}", m.name(), f[0], f[1]);
        }
        let _ = writeln!(s, "connections  new {:>11}  expired {:>8}", self.new_conns, self.expired_conns);
        if self.reused_conns > 0 {
            let _ = writeln!(s, "  ended by a SYN reusing their ports {}", self.reused_conns);
        }
        if self.sloppy_conns > 0 {
            let _ = writeln!(s, "  picked up in mid-connection (sloppy_tcp) {}", self.sloppy_conns);
        }
        if self.evicted_conns > 0 {
            let _ = writeln!(s, "  embryonic, evicted from a full table {}", self.evicted_conns);
        }
        if self.toa_added + self.toa_skipped > 0 {
            let _ = writeln!(s, "toa          added {:>9}  skipped {:>8}", self.toa_added, self.toa_skipped);
        }
        if self.proxy_headers > 0 {
            let _ = writeln!(s, "proxy header sent {:>10}  cut {:>12}", self.proxy_headers, self.proxy_cut);
        }
        if self.synproxy_syn > 0 {
            let _ = writeln!(s, "synproxy     syn {:>11}  ack {:>12}  spliced {:>8}", self.synproxy_syn, self.synproxy_ack, self.synproxy_spliced);
        }
        let _ = writeln!(s, "icmp         relayed {:>7}  sent {:>11}", self.icmp_relayed, self.icmp_sent);
        if self.icmp_limited > 0 {
            let _ = writeln!(s, "  not sent, over the rate limit {}", self.icmp_limited);
        }
        if self.frags_made > 0 {
            let _ = writeln!(s, "fragments made (tunnel) {}", self.frags_made);
        }
        if self.handoffs + self.handed_in > 0 {
            let _ = writeln!(s, "handoffs     out {:>10}  in {:>13}", self.handoffs, self.handed_in);
        }
        if self.csum_completed > 0 {
            let _ = writeln!(s, "partial checksums completed {}", self.csum_completed);
        }
        let _ = writeln!(s, "dropped      {}", self.total_drops());
        for r in DropReason::ALL {
            let n = self.drops[*r as usize];
            if n > 0 {
                let _ = writeln!(s, "  {:<22} {n}", r.name());
            }
        }
        let _ = writeln!(s, "passed       {}", self.total_passes());
        for r in PassReason::ALL {
            let n = self.passes[*r as usize];
            if n > 0 {
                let _ = writeln!(s, "  {:<22} {n}", r.name());
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_render_name_every_reason() {
        let mut c = WorkerCounters::default();
        c.drop(DropReason::NoDest);
        c.fwd[2][1] = 7;
        let p = c.pairs();
        assert_eq!(p.len(), 4 + 8 + 21 + DropReason::COUNT + PassReason::COUNT);
        assert!(p.contains(&("drop_no_dest".to_string(), 1)));
        assert!(p.contains(&("fwd_nat_out".to_string(), 7)));
        let r = c.render();
        assert!(r.contains("no_dest"), "{r}");
        assert!(!r.contains("fragment"), "zero reasons are not listed: {r}");
    }

    #[test]
    fn reason_names_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.name()), "duplicate {}", r.name());
            assert!(r.name().chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
        }
        for r in PassReason::ALL {
            assert!(seen.insert(r.name()));
        }
        assert_eq!(DropReason::COUNT, DropReason::ALL.len());
        assert_eq!(DropReason::ALL[DropReason::TxFull as usize], DropReason::TxFull);
    }

    #[test]
    fn merge_adds() {
        let mut a = WorkerCounters::default();
        let mut b = WorkerCounters::default();
        a.drop(DropReason::FragNoHead);
        b.drop(DropReason::FragNoHead);
        b.fwd[2][1] = 5;
        b.pass(PassReason::NonIp);
        a.merge(&b);
        assert_eq!(a.drops[DropReason::FragNoHead as usize], 2);
        assert_eq!(a.fwd[2][1], 5);
        assert_eq!(a.total_passes(), 1);
    }
}
