// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The line-rate harness's sink (bench/linerate): a tc ingress program on
// the real server's veth that counts the generator's frames, measures how
// long each took from the generator to here, and drops them.
//
// A generator frame is Ethernet + IPv4 (no options) + UDP whose payload
// starts with MAGIC and the generator's CLOCK_MONOTONIC time in
// nanoseconds at transmit (little-endian). bpf_ktime_get_ns() reads the
// same clock, so the difference is the one-way time through the director
// and two veth hops. Everything else (ARP, ...) goes on to the kernel.
//
// tc rather than XDP: on a veth an XDP program makes the kernel copy every
// skb into a page with XDP headroom first; tc runs on the skb as it is,
// which keeps the sink's own cost per frame small (it runs on the CPU of
// whoever transmitted into the veth, i.e. the director's).
//
// Self-contained (no kernel headers), like src/io/xdp/steer.bpf.c.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

// Helper numbers from the stable UAPI (include/uapi/linux/bpf.h).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 off, void *to, __u32 len) = (void *)26;

// The first fields of struct __sk_buff (UAPI, stable).
struct __sk_buff {
	__u32 len;
};

#define MAGIC 0x31524c58u // "XLR1" read as a little-endian u32
#define PAYLOAD 42        // 14 Ethernet + 20 IPv4 + 8 UDP

// Latency histogram: 256 ns buckets below 2^19 ns (524 us), then 65.5 us
// buckets up to 67 ms; the last bucket takes everything beyond.
// Must match bench/linerate/sink.rs.
#define FINE 2048
#define COARSE 1024
#define BUCKETS (FINE + COARSE)
#define FINE_END ((__u64)FINE << 8)

struct counts {
	__u64 frames;    // generator frames (MAGIC) seen
	__u64 other;     // anything else, passed to the kernel
	__u64 future;    // stamped later than now (clock misuse; not in hist)
	__u64 lat_sum;   // sum of latencies in ns
	__u64 hist[BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counts);
} counts SEC(".maps");

SEC("tc")
int xlr_sink(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct counts *c = bpf_map_lookup_elem(&counts, &key);
	if (!c)
		return TC_ACT_OK;
	struct {
		__u32 magic;
		__u32 ts_lo;
		__u32 ts_hi;
	} p;
	// Ethertype IPv4, IHL 5, protocol UDP, then the payload.
	__u8 h[24];
	if (bpf_skb_load_bytes(skb, 12, h, sizeof(h)) < 0 || h[0] != 0x08 || h[1] != 0x00 ||
	    h[2] != 0x45 || h[11] != 17 ||
	    bpf_skb_load_bytes(skb, PAYLOAD, &p, sizeof(p)) < 0 || p.magic != MAGIC) {
		c->other++;
		return TC_ACT_OK;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 ts = ((__u64)p.ts_hi << 32) | p.ts_lo;
	c->frames++;
	if (ts > now) {
		c->future++;
		return TC_ACT_SHOT;
	}
	__u64 d = now - ts;
	c->lat_sum += d;
	__u64 i = d < FINE_END ? d >> 8 : FINE + ((d - FINE_END) >> 16);
	if (i >= BUCKETS)
		i = BUCKETS - 1;
	c->hist[i]++;
	return TC_ACT_SHOT;
}

char _license[] SEC("license") = "Dual MIT/GPL";
