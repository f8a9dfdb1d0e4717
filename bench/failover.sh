#!/usr/bin/env bash
# Data-plane failover (M9): how long producers stall when a partition's leader is killed.
# 1 control node, 3 data nodes and 1 gateway as processes; one partition, RF=3; a producer
# sends RATE (2000) records/s, acks=all, and the partition's leader gets kill -9 after KILL_AT
# (8) seconds. Reported per run: the longest stretch without acknowledgements (in 100 ms
# reporting windows) and the largest produce latency, i.e. what the record sent just after
# the kill waited.
#
#   bench/failover.sh [runs] [--set KEY=VALUE ...]   (the --set options go to the data nodes)
#
# Default options: election timeout 200 ms, Raft heartbeats every 20 ms, node heartbeats every
# 100 ms (the M9 goal: producers resume within 2 s with a 200 ms election timeout). KEEP=1 keeps
# each run's directory (node logs, producer output).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
rate=${RATE:-2000}
kill_at=${KILL_AT:-8}
sets=(--set cluster.raft.election_timeout_ms=200 --set cluster.raft.heartbeat_interval_ms=20
  --set cluster.heartbeat.interval_ms=100 "$@")
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_release
trap cleanup EXIT

echo "failover: $runs runs, $rate records/s, kill -9 of the leader after $kill_at s, options: ${sets[*]}, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  start_cluster "$dir" "${sets[@]}"
  topic="failover-$run"
  target/release/chronik-bench produce --topic "$topic" --create-topic --partitions 1 --replication-factor 3 \
    --num-records 1 --record-size 100 --producer-props bootstrap.servers=127.0.0.1:15092 acks=all \
    >/dev/null 2>"$dir/create.err" || { tail -n 5 "$dir/create.err"; exit 1; }
  records=$((rate * (kill_at + 12)))
  target/release/chronik-bench produce --topic "$topic" --num-records "$records" --record-size 1024 \
    --throughput "$rate" --reporting-interval-ms 100 \
    --producer-props bootstrap.servers=127.0.0.1:15092 acks=all linger.ms=1 message.timeout.ms=60000 \
    >"$dir/produce.out" 2>"$dir/produce.err" &
  producer=$!
  sleep "$kill_at"
  # The leader is the data node that most recently logged taking office for the partition.
  leader=$(grep -l "Became leader for term.*$topic-0" "$dir"/node[234].log | while read -r f; do
    echo "$(grep "Became leader for term.*$topic-0" "$f" | tail -n 1 | cut -d' ' -f1) $f"
  done | sort | tail -n 1 | sed 's/.*node\([0-9]\)\.log/\1/')
  victim=${pids[$((leader - 1))]}
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  wait "$producer" || { tail -n 5 "$dir/produce.err"; exit 1; }
  python3 - "$dir/produce.err" "$dir/produce.out" "$run" "$leader" <<'PY'
import re, sys
err, out, run, leader = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
windows = [int(m.group(1)) for m in re.finditer(r"^(\d+) records sent, [\d.]+ records/sec", err + out, re.M)]
# Zero windows between the first and the last acknowledging one: the stall.
first = next(i for i, n in enumerate(windows) if n)
last = max(i for i, n in enumerate(windows) if n)
longest = run_ = 0
for n in windows[first:last + 1]:
    run_ = run_ + 1 if n == 0 else 0
    longest = max(longest, run_)
summary = [l for l in (out + err).splitlines() if "records sent" in l and "99th" in l][-1]
max_ms = float(re.search(r"([\d.]+) ms max latency", summary).group(1))
errors = re.search(r"(\d+) errors", summary).group(1)
print(f"run {run}: killed data node {leader}; no acknowledgement for {longest * 100} ms (100 ms windows), "
      f"max produce latency {max_ms:.0f} ms, {errors} errors")
PY
  cleanup
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
done
