#!/usr/bin/env bash
# Idle cost of many RF=3 partitions (M9): 1 control node, 3 data nodes and 1 gateway as
# processes; a topic of PARTITIONS (1000) partitions, RF=3, created through the gateway; then
# nothing is produced, and the CPU each data node uses over SECONDS (20) is read from
# /proc/<pid>/stat once every replica has been up for SETTLE (20) seconds.
#
#   bench/idle.sh [runs] [--set KEY=VALUE ...]     (the --set options go to the data nodes)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
partitions=${PARTITIONS:-1000}
seconds=${SECONDS_MEASURED:-20}
settle=${SETTLE:-20}
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_release
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo "idle: $runs runs, $partitions partitions RF=3, data nodes: ${*:-defaults}, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  start_cluster "$dir" "$@"
  t0=$(date +%s.%N)
  target/release/chronik-bench produce --topic "idle-$run" --create-topic --partitions "$partitions" \
    --replication-factor 3 --num-records 1 --record-size 100 \
    --producer-props bootstrap.servers=127.0.0.1:15092 acks=all >/dev/null 2>"$dir/bench.err" ||
    { tail -n 5 "$dir/bench.err"; exit 1; }
  created=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$t0")
  sleep "$settle"
  data=("${pids[1]}" "${pids[2]}" "${pids[3]}")
  before=(); for p in "${data[@]}"; do before+=("$(ticks "$p")"); done
  sleep "$seconds"
  line="run $run: created and first record acknowledged in ${created} s; idle CPU per data node (% of one core):"
  for i in 0 1 2; do
    used=$(($(ticks "${data[$i]}") - before[i]))
    line+=" $(python3 -c "print(f'{100*$used/($hz*$seconds):.1f}')")"
  done
  echo "$line; heartbeat failures logged: $(cat "$dir"/node[234].log | grep -c 'failed to send a heartbeat' || true)"
  cleanup
  rm -rf "$dir"
done
