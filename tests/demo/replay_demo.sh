#!/usr/bin/env bash
# `make demo` until the live AF_XDP lab lands: xvs forwarding a NAT
# scenario, through the very worker code the live data path runs.
#
#   1. generate the golden NAT scenario (src/gen/scenario.rs): six TCP
#      clients and two DNS clients talking to VIP 10.0.0.100, the real
#      servers' replies, ICMP errors, and frames xvs must not forward;
#   2. replay it with `xvs replay --config configs/nat.toml`;
#   3. show where each client flow went, what came back, and the counters.
#
# Needs cargo; tshark (installed by `make deps`) for the per-flow tables.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=nat
config=configs/$mode.toml
work=$(mktemp -d -t xvs-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building (release)"
cargo build --release --quiet --bin xvs --example gen_scenario
xvs=target/release/xvs

echo "== generating the $mode scenario"
target/release/examples/gen_scenario --mode "$mode" --config "$config" --out "$work/in.pcap"

echo "== xvs replay --config $config --in in.pcap --out out.pcap"
"$xvs" replay --config "$config" --in "$work/in.pcap" --out "$work/out.pcap"
echo

if ! command -v tshark >/dev/null 2>&1; then
    echo "(tshark is not installed: run 'make deps' to see the per-flow tables)"
    exit 0
fi
ts() { tshark -n -r "$@" 2>/dev/null; }

echo "== one packet, before and after (the first SYN)"
fmt='-T fields -E separator=, -e eth.src -e eth.dst -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport -e ip.ttl'
syn='tcp.flags.syn == 1 && tcp.flags.ack == 0'
# shellcheck disable=SC2086
ts "$work/in.pcap" -Y "$syn" -c 1 $fmt |
    awk -F, '{ printf "  in   %s > %s   %s:%s > %s:%s   ttl %s\n", $1, $2, $3, $4, $5, $6, $7 }'
# shellcheck disable=SC2086
ts "$work/out.pcap" -Y "$syn" -c 1 $fmt |
    awk -F, '{ printf "  out  %s > %s   %s:%s > %s:%s   ttl %s\n", $1, $2, $3, $4, $5, $6, $7 }'
echo

echo "== where each client flow went (wrr 1:2 for TCP, rr for DNS)"
{
    ts "$work/out.pcap" -Y "$syn" -T fields -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport |
        awk '{ printf "  tcp  %-22s -> real server %s\n", $1 ":" $2, $3 ":" $4 }'
    ts "$work/out.pcap" -Y 'udp.dstport == 53 && ip.dst == 10.0.1.0/24 && !icmp' \
        -T fields -e ip.src -e udp.srcport -e ip.dst -e udp.dstport |
        sort -u | awk '{ printf "  udp  %-22s -> real server %s\n", $1 ":" $2, $3 ":" $4 }'
}
echo

echo "== packets per real server, and replies sent back as 10.0.0.100"
ts "$work/out.pcap" -Y 'ip.dst == 10.0.1.0/24 && !icmp' -T fields -e ip.dst |
    sort | uniq -c | awk '{ printf "  %4d packets to   %s\n", $1, $2 }'
ts "$work/out.pcap" -Y 'ip.src == 10.0.0.100 && !icmp' -T fields -e ip.dst |
    sort | uniq -c | awk '{ printf "  %4d replies to   %s (source rewritten to the VIP)\n", $1, $2 }'
echo

echo "== ICMP errors relayed (outer source > destination, what they quote)"
ts "$work/out.pcap" -Y icmp -T fields -E occurrence=a -E aggregator=, -e ip.src -e ip.dst -e icmp.type -e icmp.code -e icmp.mtu \
    -e tcp.srcport -e udp.srcport -e tcp.dstport -e udp.dstport |
    awk -F'\t' '{
        split($1, src, ","); split($2, dst, ",")
        kind = ($3 == 3 && $4 == 4) ? "fragmentation needed (mtu " $5 ")" : ($3 == 3 && $4 == 3) ? "port unreachable" : "type " $3 " code " $4
        printf "  %s > %s: %s about %s:%s > %s:%s\n", src[1], dst[1], kind, src[2], $6 $7, dst[2], $8 $9
    }'
echo
echo "Counters as machine-readable lines: xvs replay ... --counters"
echo "The golden captures of all four modes: tests/golden/ (docs/modes.md)"
