#!/usr/bin/env bash
# Instruction counts of the worker's timed loop for one replay scenario,
# repeatable on a shared machine (timings are not):
#
#   bench/callgrind.sh est-dr-4k [packets]     # default 200000 packets
#   BIN=path/to/replay bench/callgrind.sh ...  # a replay binary kept from
#                                              # another commit (before/after)
#   ARGS=--no-mem-provider bench/callgrind.sh storm-nat  # more options for
#                                              # the replay benchmark
#
# Runs the replay benchmark under callgrind, counting only inside the
# timed bursts (replay::timed_burst), and prints instructions per packet
# and the functions that execute them. The raw profile is left in
# target/bench/callgrind.<scenario>.out for callgrind_annotate / kcachegrind.
set -eu
scenario=${1:?usage: bench/callgrind.sh SCENARIO [PACKETS]}
packets=${2:-200000}
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=${BIN:-$(cargo bench --bench replay --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*replay[^"]*\)".*/\1/p' | tail -1)}
[ -x "$bin" ] || { echo "could not build the replay benchmark" >&2; exit 1; }
mkdir -p target/bench
tag=${BIN:+.$(basename "$(dirname "$BIN")")}
out=target/bench/callgrind.$scenario$tag.out
valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*timed_burst*' \
  "$bin" --quick ${ARGS:-} --filter "$scenario" --packets "$packets" --json target/bench/callgrind$tag.json >/dev/null 2>target/bench/callgrind$tag.log
ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$scenario: $ir instructions in $packets packets = $((ir / packets)) per packet"
callgrind_annotate --inclusive=no "$out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | head -"${TOP:-25}" || true
