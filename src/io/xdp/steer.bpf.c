// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xvs steering program: sends service traffic to the AF_XDP socket of the
// receive queue, passes everything else (ARP, NDP, ssh, VRRP, BGP, ...) to
// the kernel.
//
// Service traffic is what the `rules` map names (userspace keeps it in step
// with the configured services, see src/io/xdp/steer.rs):
//   K_VIP        TCP/UDP to VIP:port (port 0: every port of the VIP)
//   K_LADDR      TCP/UDP to a FULLNAT local address (replies)
//   K_REAL       TCP/UDP from a NAT real server's address:port (replies)
//   K_VIP_ADDR   fragments and ICMP errors to a VIP
//   K_REAL_ADDR  fragments and ICMP errors from a NAT real server
// ICMP errors and fragments carry no usable ports, so they match on the
// address alone; the worker decides what to do with them (it forwards
// fragments of its flows, and gives what is not its own to the kernel
// through the kernel path, kpath.rs).
//
// steer_model.rs mirrors this program in Rust, test by test, and a test
// holds the two equal (BPF_PROG_TEST_RUN): change both together.
//   K_LOCAL      an address of the director itself: what a NAT real server
//                sends to it is not a reply to a client (those go to the
//                client's address) but to the director's own kernel —
//                health checks, ssh, monitoring — and is passed.
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
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_XSKMAP 17
#define BPF_F_NO_PREALLOC 1

// Helper numbers from the stable UAPI (include/uapi/linux/bpf.h).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

// Must match steer.rs: kind, proto, port (network order), address (IPv6, or
// IPv4-mapped ::ffff:a.b.c.d).
struct rule_key {
	__u8 kind;
	__u8 proto;
	__u16 port;
	__u8 addr[16];
};

enum { K_VIP = 1, K_VIP_ADDR = 2, K_LADDR = 3, K_REAL = 4, K_REAL_ADDR = 5, K_LOCAL = 6 };

// Counter slots (steer.rs: SteerStats).
enum { S_REDIRECT = 0, S_PASS = 1, S_NO_SOCKET = 2, S_MAX = 4 };

// Key: rx queue index. Sized for the largest queue count xvs binds (steer.rs: MAX_QUEUES).
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rule_key);
	__type(value, __u8);
} rules SEC(".maps");

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

INLINE int has(struct rule_key *k, __u8 kind, __u8 proto, __u16 port)
{
	k->kind = kind;
	k->proto = proto;
	k->port = port;
	return bpf_map_lookup_elem(&rules, k) != 0;
}

INLINE int icmp4_is_error(__u8 t)
{
	return t == 3 || t == 4 || t == 11 || t == 12; // unreach, quench, time exceeded, param
}

INLINE int icmp6_is_error(__u8 t)
{
	return t >= 1 && t <= 4; // unreach, too big, time exceeded, param
}

SEC("xdp")
int xvs_steer(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	struct rule_key dk = {}, sk = {}; // destination-side and source-side keys
	__u8 *l3, *l4;
	__u8 proto;
	__u16 et, sport = 0, dport = 0;
	int frag = 0, is_icmp_err = 0;

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
		dk.addr[10] = sk.addr[10] = 0xff;
		dk.addr[11] = sk.addr[11] = 0xff;
		__builtin_memcpy(&sk.addr[12], l3 + 12, 4);
		__builtin_memcpy(&dk.addr[12], l3 + 16, 4);
		l4 = l3 + ihl;
	} else if (et == NET16(ETH_P_IPV6)) {
		if (l3 + 40 > end)
			goto pass;
		proto = l3[6];
		__builtin_memcpy(sk.addr, l3 + 8, 16);
		__builtin_memcpy(dk.addr, l3 + 24, 16);
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
	} else {
		goto pass; // ARP, LLDP, ...
	}

	if (frag) {
		// No ports to look at: fragments of service traffic go to the
		// worker (which forwards them), anything else to the kernel.
		if (has(&dk, K_VIP_ADDR, 0, 0) || has(&dk, K_LADDR, 0, 0))
			goto redirect;
		if (has(&sk, K_REAL_ADDR, 0, 0) && !has(&dk, K_LOCAL, 0, 0))
			goto redirect;
		goto pass;
	}

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (l4 + 4 > end)
			goto pass;
		sport = *(__u16 *)l4;
		dport = *(__u16 *)(l4 + 2);
		if (has(&dk, K_VIP, proto, dport) || has(&dk, K_VIP, proto, 0) ||
		    has(&dk, K_LADDR, 0, 0))
			goto redirect;
		if ((has(&sk, K_REAL, proto, sport) || has(&sk, K_REAL, proto, 0)) &&
		    !has(&dk, K_LOCAL, 0, 0))
			goto redirect;
		goto pass;
	}

	if (proto == IPPROTO_ICMP && et == NET16(ETH_P_IP)) {
		if (l4 + 1 > end)
			goto pass;
		is_icmp_err = icmp4_is_error(l4[0]);
	} else if (proto == IPPROTO_ICMPV6 && et == NET16(ETH_P_IPV6)) {
		if (l4 + 1 > end)
			goto pass;
		is_icmp_err = icmp6_is_error(l4[0]);
	}
	if (is_icmp_err && (has(&dk, K_VIP_ADDR, 0, 0) || has(&dk, K_LADDR, 0, 0)))
		goto redirect;
	if (is_icmp_err && has(&sk, K_REAL_ADDR, 0, 0) && !has(&dk, K_LOCAL, 0, 0))
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
