// SPDX-License-Identifier: MIT OR Apache-2.0
//
// xvs kernel path: a tc ingress program on the TAP device of one director
// interface. Frames the workers give back to the kernel are written to the
// TAP; this program moves each one to the ingress of the interface it came
// from (bpf_redirect with BPF_F_INGRESS), so the kernel receives it as if
// from the wire there: same device for routing, rp_filter, sockets,
// netfilter. See src/io/kpath.rs.
//
// Self-contained like steer.bpf.c: no kernel or libbpf headers.

typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

struct __sk_buff {
	__u32 len;
};

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_F_INGRESS 1
#define TC_ACT_SHOT 2

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;

// Slot 0: the ifindex of the interface this TAP stands for (kpath.rs sets it).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

SEC("tc")
int xvs_kpath(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&target, &k);

	if (!ifindex || !*ifindex)
		return TC_ACT_SHOT;
	return bpf_redirect(*ifindex, BPF_F_INGRESS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
