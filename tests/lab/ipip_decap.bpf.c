// IP-in-IP decapsulation for the TUN real servers of the lab (this kernel
// has no ipip module). A tc ingress program: an IPv4 packet carrying IPv4
// (protocol 4), or an IPv6 packet carrying IPv6 (next header 41, no
// extension header), loses its outer header, and the inner packet goes up
// the stack as if it had arrived as it is. Everything else passes
// untouched — fragments of an outer IPv4 datagram too (tc runs before
// reassembly: stripping the first fragment's header would corrupt the
// datagram); the kernel reassembles them and hands the whole IPIP
// datagram to protocol 4, i.e. to a raw socket of the test's.
//
// Built by tests/e2e_tun.rs with `clang -O2 -target bpf -c`; no system
// header is needed (the few kernel ABI values are spelled out).
//
// Load: tc qdisc add dev eth0 clsact
//       tc filter add dev eth0 ingress bpf direct-action obj ipip_decap.o sec tc

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

// The start of struct __sk_buff (include/uapi/linux/bpf.h): data and
// data_end are at offsets 76 and 80.
struct __sk_buff {
    __u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto, priority,
        ingress_ifindex, ifindex, tc_index, cb[5], hash, tc_classid, data, data_end;
};

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define BPF_ADJ_ROOM_MAC 1
// BPF_FUNC_skb_adjust_room
static long (*bpf_skb_adjust_room)(struct __sk_buff *skb, int len_diff, __u32 mode, __u64 flags) = (void *)50;

__attribute__((section("tc"), used)) int ipip_decap(struct __sk_buff *skb) {
    __u8 *data = (__u8 *)(long)skb->data;
    __u8 *end = (__u8 *)(long)skb->data_end;
    if (data + 14 + 40 <= end && data[12] == 0x86 && data[13] == 0xdd && (data[14] >> 4) == 6 && data[14 + 6] == 41) {
        // EtherType IPv6, next header 41 (IPv6 in IPv6): drop the 40-byte outer header.
        if (bpf_skb_adjust_room(skb, -40, BPF_ADJ_ROOM_MAC, 0))
            return TC_ACT_SHOT;
        return TC_ACT_OK;
    }
    if (data + 14 + 20 > end)
        return TC_ACT_OK;
    // EtherType IPv4, IHL 5 (xvs sends no options), protocol 4 (IPIP).
    if (data[12] != 0x08 || data[13] != 0x00 || data[14] != 0x45 || data[14 + 9] != 4)
        return TC_ACT_OK;
    // A fragment (more fragments, or an offset): left whole for reassembly.
    if ((data[14 + 6] & 0x3f) || data[14 + 7])
        return TC_ACT_OK;
    if (bpf_skb_adjust_room(skb, -20, BPF_ADJ_ROOM_MAC, 0))
        return TC_ACT_SHOT;
    return TC_ACT_OK;
}

__attribute__((section("license"), used)) char _license[] = "GPL";
