// An 802.1Q VLAN access port for the lab's real servers (this kernel may
// have no 8021q module, so no eth0.20 device): tc programs on the real
// server's veth that make its plain interface live on VLAN `VID` only.
//
// - ingress: a frame tagged VID loses its tag and goes up the stack as
//   if untagged; anything else (untagged, another VLAN) is dropped — the
//   real server hears only what xvs sent tagged.
// - egress: every frame gets the tag. With the veth's tx VLAN offload off
//   (`ethtool -K eth0 txvlan off`) the kernel writes it into the frame,
//   where the director's XDP program sees it.
//
// Built by tests/e2e_routes.rs with `clang -O2 -target bpf -DVID=20 -c`;
// no system header is needed (the few kernel ABI values are spelled out).

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#ifndef VID
#define VID 20
#endif

// The start of struct __sk_buff (include/uapi/linux/bpf.h).
struct __sk_buff {
    __u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto;
};

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
// BPF_FUNC_skb_vlan_push, BPF_FUNC_skb_vlan_pop
static long (*bpf_skb_vlan_push)(struct __sk_buff *skb, __u16 vlan_proto, __u16 vlan_tci) = (void *)18;
static long (*bpf_skb_vlan_pop)(struct __sk_buff *skb) = (void *)19;

__attribute__((section("tc"), used)) int vlan_ingress(struct __sk_buff *skb) {
    // The stack has already moved an in-frame tag to vlan_tci.
    if (!skb->vlan_present || (skb->vlan_tci & 0x0fff) != VID)
        return TC_ACT_SHOT;
    if (bpf_skb_vlan_pop(skb))
        return TC_ACT_SHOT;
    return TC_ACT_OK;
}

__attribute__((section("tc_egress"), used)) int vlan_egress(struct __sk_buff *skb) {
    // ETH_P_8021Q in network order.
    if (bpf_skb_vlan_push(skb, __builtin_bswap16(0x8100), VID))
        return TC_ACT_SHOT;
    return TC_ACT_OK;
}

__attribute__((section("license"), used)) char _license[] = "GPL";
