#!/usr/bin/env bash
# The live demo (make demo): builds a lab in network namespaces, runs
# `xvs run` with configs/demo.toml in the director's namespace, sends real
# HTTP requests through the VIP with curl, prints which real server
# answered each and the director's counters, then removes everything —
# also on Ctrl-C or an error.
#
#   client ─ d0 [director: xvs run] d1 ─ bridge ─ rs1 (python3 -m http.server)
#                                              └─ rs2 (python3 -m http.server)
#
# Usage: tests/demo/lab_demo.sh [requests]   (as root; default 9 requests)
# XVS=path/to/xvs overrides the binary (default target/release/xvs).

set -euo pipefail
cd "$(dirname "$0")/../.."

REQUESTS=${1:-9}
XVS=${XVS:-target/release/xvs}
CONFIG=configs/demo.toml
P=xvs-demo-$$
C=$P-c D=$P-d SW=$P-sw R1=$P-r1 R2=$P-r2
TMP=$(mktemp -d /tmp/xvs-demo.XXXXXX)
XVS_PID=""

cleanup() {
  trap - EXIT INT TERM
  if [ -n "$XVS_PID" ] && kill -0 "$XVS_PID" 2>/dev/null; then
    kill -TERM "$XVS_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$XVS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$XVS_PID" 2>/dev/null || true
  fi
  for ns in "$R1" "$R2"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  for ns in "$C" "$D" "$SW" "$R1" "$R2"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo; echo "interrupted: cleaning up"; exit 130' INT TERM

die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, XDP, AF_XDP)"
[ -x "$XVS" ] || die "$XVS not found (make build)"
for t in ip curl python3; do command -v $t >/dev/null || die "$t is not installed (make deps)"; done

step() { echo "== $*"; }
q() { "$@" >/dev/null; }

step "lab: namespaces $P-{c,d,sw,r1,r2}"
for ns in "$C" "$D" "$SW" "$R1" "$R2"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
# veth: $1 ns, $2 if, $3 peer ns, $4 peer if. Offloads stay at their
# defaults: the senders leave partial TCP checksums, which xvs completes.
veth() {
  ip -n "$1" link add name "$2" numtxqueues 1 numrxqueues 1 type veth peer name "$4" numtxqueues 1 numrxqueues 1 netns "$3"
  ip -n "$1" link set "$2" up; ip -n "$3" link set "$4" up
}
veth "$D" d0 "$C" c0
veth "$D" d1 "$SW" sw-d
veth "$R1" eth0 "$SW" sw-r1
veth "$R2" eth0 "$SW" sw-r2
ip -n "$SW" link add br0 type bridge; ip -n "$SW" link set br0 up
for p in sw-d sw-r1 sw-r2; do ip -n "$SW" link set "$p" master br0; done

ip -n "$C" addr add 10.60.0.2/24 dev c0
ip -n "$D" addr add 10.60.0.1/24 dev d0
ip -n "$D" addr add 10.60.0.100/32 dev d0        # the VIP: the director's kernel answers ARP for it
ip -n "$D" addr add 10.60.1.1/24 dev d1
q ip netns exec "$D" sysctl -w net.ipv4.ip_forward=0   # only xvs forwards
for i in 1 2; do
  ns=$P-r$i
  ip -n "$ns" addr add 10.60.1.1$i/24 dev eth0
  ip -n "$ns" route add default via 10.60.1.1      # NAT: replies go back through the director
  mkdir -p "$TMP/rs$i"
  echo "hello from rs$i (10.60.1.1$i)" > "$TMP/rs$i/index.html"
  ip netns exec "$ns" python3 -m http.server 8080 --bind 0.0.0.0 --directory "$TMP/rs$i" >/dev/null 2>&1 &
done

step "xvs run --config $CONFIG --workers 1 (in $D)"
ip netns exec "$D" "$XVS" run --config "$CONFIG" --workers 1 >"$TMP/counters" 2>"$TMP/log" &
XVS_PID=$!
for _ in $(seq 300); do
  # Next hops resolved and every worker forwarding (READY=1 for systemd):
  # the lines of xvs::daemon::LOG_HOPS_RESOLVED and LOG_READY.
  grep -q "all next hops resolved" "$TMP/log" 2>/dev/null &&
    grep -q "worker(s) forwarding" "$TMP/log" 2>/dev/null && break
  kill -0 "$XVS_PID" 2>/dev/null || { cat "$TMP/log" >&2; die "xvs exited"; }
  sleep 0.1
done
sed 's/^/   xvs: /' "$TMP/log"
for i in 1 2; do   # the servers may still be starting
  for _ in $(seq 50); do ip netns exec "$P-r$i" curl -s -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.1; done
done

step "$REQUESTS HTTP requests from the client to the VIP http://10.60.0.100/"
for n in $(seq "$REQUESTS"); do
  if body=$(ip netns exec "$C" curl -s --max-time 5 http://10.60.0.100/); then
    printf '   request %2d: %s\n' "$n" "$body"
  else
    printf '   request %2d: FAILED\n' "$n"
  fi
done

step "stopping xvs (SIGTERM): XDP detached, counters"
kill -TERM "$XVS_PID"
wait "$XVS_PID" || true
XVS_PID=""
sed 's/^/   /' "$TMP/counters"
if ip -n "$D" link show d0 | grep -q xdp; then die "an XDP program is still attached"; fi
step "done: lab removed"
