// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xvs steering program: sends service traffic to the AF_XDP socket of the
// receive queue, passes everything else (ARP, NDP, ssh, VRRP, BGP, BFD,
// ...) to the kernel.
//
// Service traffic is what the maps name (userspace keeps them in step with
// the configured services, see Tables in src/io/xdp/steer.rs). One lookup
// per address, keyed by the address itself (`addrs4`, `addrs6`), says
// which roles the address has (flags) and, per role and protocol, which
// port set applies (an index into `ports`, an array of 65536-bit maps;
// set 0 is empty, a port-0 rule is the set of every port):
//   TCP/UDP to VIP:port                  redirect (flags VIP, ports[VIP])
//   TCP/UDP to a FULLNAT local address   redirect (flags LADDR: replies)
//   TCP/UDP from a NAT real server's     redirect (ports[REAL], unless the
//     address:port                        destination is LOCAL)
//   fragments and ICMP errors to a VIP or local address, or from a NAT
//     real server (unless to a LOCAL address): redirect
//   ICMP errors to a LOCAL address quoting an IP-in-IP packet (about
//     xvs's own TUN packets): redirect
//   LOCAL: an address of the director itself: what a NAT real server
//     sends to it is not a reply to a client (those go to the client's
//     address) but to the director's own kernel — health checks, ssh,
//     monitoring — and is passed.
// ICMP errors and fragments carry no usable ports, so they match on the
// address alone; the worker decides what to do with them (it forwards
// fragments of its flows, and gives what is not its own to the kernel
// through the kernel path, kpath.rs).
//
// The common cases cost one hash lookup with the packet's own address as
// the key (service traffic, FULLNAT replies, frames to the director) or
// two (NAT replies, frames to addresses that are neither), plus an array
// access; ARP, ICMP echoes, VRRP and the like none. The verifier inlines
// every lookup as long as each call site has one map (see decide()):
// a lookup whose map depends on the path is a real helper call, which
// cost 15 ns more per frame (docs/performance.md, "Steering program").
//
// steer_model.rs states the same decision in Rust over the rules
// themselves, test by test, and a test holds the two equal
// (BPF_PROG_TEST_RUN): change both together.
//
// Self-contained on purpose: no kernel or libbpf headers are needed, only
// clang with the BPF target, so the build works on any machine with clang.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define INLINE static __attribute__((always_inline)) inline

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_XSKMAP 17
#define BPF_F_NO_PREALLOC 1

// Helper numbers from the stable UAPI (include/uapi/linux/bpf.h).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

// Must match steer.rs (AddrInfo::bytes): the port set of each role and
// protocol, then the flags.
enum { P_VIP_TCP, P_VIP_UDP, P_REAL_TCP, P_REAL_UDP, P_MAX };
struct addr_info {
	__u16 ports[P_MAX];
	__u8 flags;
	__u8 pad[3];
};
enum { F_VIP = 1, F_LADDR = 2, F_REAL = 4, F_LOCAL = 8 };

// A set of ports: bit p (host order) of byte p / 8.
struct port_set {
	__u8 bits[8192];
};

// Counter slots (steer.rs: SteerStats).
enum { S_REDIRECT = 0, S_PASS = 1, S_NO_SOCKET = 2, S_MAX = 4 };

// Key: rx queue index. Sized for the largest queue count xvs binds (steer.rs: MAX_QUEUES).
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Sizes: steer.rs MAX_ADDRS, PORT_SETS.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); // IPv4 address, network order
	__type(value, struct addr_info);
} addrs4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u8[16]); // IPv6 address
	__type(value, struct addr_info);
} addrs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct port_set);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, S_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58

#define bswap16(x) __builtin_bswap16(x)
// Packet fields are network order; BPF targets here are little endian.
#define NET16(x) ((__u16)bswap16((__u16)(x)))

INLINE void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &slot);
	if (c)
		*c += 1; // per-CPU slot: no atomics needed
}

// Whether `port` (network order) is in set `set` (0: the empty set).
INLINE int port_in(__u16 set, __u16 port)
{
	if (!set)
		return 0;
	__u32 k = set;
	struct port_set *s = bpf_map_lookup_elem(&ports, &k);
	if (!s)
		return 0;
	__u16 p = bswap16(port);
	return (s->bits[p >> 3] >> (p & 7)) & 1;
}

// The entries of the destination and source address (the packet's own
// bytes are the key).
#define DST() (v6 ? bpf_map_lookup_elem(&addrs6, l3 + 24) : bpf_map_lookup_elem(&addrs4, l3 + 16))
#define SRC() (v6 ? bpf_map_lookup_elem(&addrs6, l3 + 8) : bpf_map_lookup_elem(&addrs4, l3 + 12))

INLINE int icmp4_is_error(__u8 t)
{
	return t == 3 || t == 4 || t == 11 || t == 12; // unreach, quench, time exceeded, param
}

INLINE int icmp6_is_error(__u8 t)
{
	return t >= 1 && t <= 4; // unreach, too big, time exceeded, param
}

// Whether the ICMP error at `l4` quotes an IP-in-IP packet: IPv4 in IPv4
// (protocol 4) or IPv6 in IPv6 (next header 41), as xvs's TUN sends.
INLINE int quotes_tunnel(__u8 *l4, __u8 *end, const int v6)
{
	__u8 *q = l4 + 8;
	if (v6)
		return q + 40 <= end && (q[0] >> 4) == 6 && q[6] == 41;
	return q + 20 <= end && (q[0] >> 4) == 4 && q[9] == 4;
}

// The decision once the headers are found (`v6` is a constant at each of
// the two call sites: each has its own map lookups, which the verifier
// then inlines; a lookup whose map depends on the path stays a helper
// call).
INLINE int decide(__u8 *l3, __u8 *l4, __u8 *end, __u8 proto, int frag, const int v6)
{
	struct addr_info *d, *s;
	int is_icmp_err = 0;

	if (frag)
		goto addresses;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (l4 + 4 > end)
			return XDP_PASS;
		int u = proto == IPPROTO_UDP;
		d = DST();
		if (d) {
			if ((d->flags & F_LADDR) || port_in(d->ports[P_VIP_TCP + u], *(__u16 *)(l4 + 2)))
				return XDP_REDIRECT;
			if (d->flags & F_LOCAL)
				return XDP_PASS;
		}
		s = SRC();
		if (s && port_in(s->ports[P_REAL_TCP + u], *(__u16 *)l4))
			return XDP_REDIRECT;
		return XDP_PASS;
	}
	if (proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP)) {
		if (l4 + 1 > end)
			return XDP_PASS;
		is_icmp_err = v6 ? icmp6_is_error(l4[0]) : icmp4_is_error(l4[0]);
	}
	if (!is_icmp_err)
		return XDP_PASS; // ICMP echo, VRRP, OSPF, GRE, ...

addresses:
	// Fragments and ICMP errors carry no usable ports: of service traffic
	// to the worker (which forwards them), anything else to the kernel.
	d = DST();
	if (d && (d->flags & (F_VIP | F_LADDR)))
		return XDP_REDIRECT;
	if (d && (d->flags & F_LOCAL))
		// An error about one of xvs's own tunnel packets (their source is
		// the director's address) is the worker's: it tells the client
		// the path MTU, as ip_vs_in_icmp does.
		return is_icmp_err && quotes_tunnel(l4, end, v6) ? XDP_REDIRECT : XDP_PASS;
	s = SRC();
	if (s && (s->flags & F_REAL))
		return XDP_REDIRECT;
	return XDP_PASS;
}

SEC("xdp")
int xvs_steer(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	__u8 *l3, *l4;
	__u8 proto;
	__u16 et;
	int frag = 0;
	int verdict;

	if (data + 14 > end)
		goto pass;
	et = *(__u16 *)(data + 12);
	l3 = data + 14;
	if (et == NET16(ETH_P_8021Q) || et == NET16(ETH_P_8021AD)) {
		if (data + 18 > end)
			goto pass;
		et = *(__u16 *)(data + 16);
		l3 = data + 18;
	}

	if (et == NET16(ETH_P_IP)) {
		if (l3 + 20 > end)
			goto pass;
		__u32 ihl = (l3[0] & 0x0f) * 4;
		if (ihl < 20)
			goto pass;
		proto = l3[9];
		frag = (*(__u16 *)(l3 + 6) & NET16(0x3fff)) != 0; // MF or offset
		l4 = l3 + ihl;
		verdict = decide(l3, l4, end, proto, frag, 0);
	} else if (et == NET16(ETH_P_IPV6)) {
		if (l3 + 40 > end)
			goto pass;
		proto = l3[6];
		l4 = l3 + 40;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (proto == 0 || proto == 43 || proto == 60) { // hop-by-hop, routing, dst opts
				if (l4 + 8 > end)
					goto pass;
				proto = l4[0];
				l4 += (l4[1] + 1) * 8;
			} else if (proto == 44) { // fragment header
				frag = 1;
				break;
			} else {
				break;
			}
		}
		verdict = decide(l3, l4, end, proto, frag, 1);
	} else {
		goto pass; // ARP, LLDP, ...
	}
	if (verdict == XDP_REDIRECT)
		goto redirect;

pass:
	count(S_PASS);
	return XDP_PASS;

redirect:
	// No socket on this queue: xvs is starting, or it died (a SIGKILL
	// leaves this program attached). The packet is dropped, not given to
	// the kernel: with the VIP still local (a killed keepalived leaves it)
	// the kernel would reset the client's connection, which the peer
	// director is about to take over (docs/ha.md).
	if (bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP) == XDP_REDIRECT) {
		count(S_REDIRECT);
		return XDP_REDIRECT;
	}
	count(S_NO_SOCKET);
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual MIT/GPL";
