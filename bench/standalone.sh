#!/usr/bin/env bash
# Standalone produce (M9): a fresh `chronik-server standalone` per run, `chronik-bench produce`
# acks=all, 1 KiB records, then the server's CPU time per GB written.
#
#   bench/standalone.sh [runs] [profile] [partitions] [throughput] [records]
#
# throughput -1 (the default) produces as fast as possible; a rate in records/s measures the
# latency at that rate. Prints one line per run (MB/s, p50, p99, server CPU seconds per GB),
# then min / median / max. LINGER_MS (5) is the client's linger.ms: at low rates a batch waits
# all of it before it is sent, and that wait is part of every latency figure.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
profile=${2:-medium}
partitions=${3:-1}
throughput=${4:--1}
records=${5:-1000000}
linger=${LINGER_MS:-5}
out=$(mktemp -d)
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_release
trap cleanup EXIT

echo "standalone: $runs runs, profile $profile, $partitions partitions, $records records, throughput $throughput, linger.ms $linger, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  target/release/chronik-server standalone --data-dir "$dir" --set wal.profile="$profile" \
    --set listeners.kafka=127.0.0.1:23092 --set listeners.http=127.0.0.1:23080 \
    --set listeners.grpc=127.0.0.1:23093 >"$dir/server.log" 2>&1 &
  pids+=($!)
  wait_port 23092
  target/release/chronik-bench produce --json --topic "standalone-$run" --create-topic --partitions "$partitions" \
    --num-records "$records" --record-size 1024 --throughput "$throughput" \
    --producer-props bootstrap.servers=127.0.0.1:23092 acks=all linger.ms="$linger" batch.size=1048576 \
    >"$out/run-$run.json" 2>"$out/run-$run.err" || { tail -n 5 "$out/run-$run.err"; tail -n 20 "$dir/server.log"; exit 1; }
  # utime + stime in clock ticks (100 per second), fields 14 and 15 of /proc/<pid>/stat.
  ticks=$(awk '{print $14 + $15}' "/proc/${pids[0]}/stat")
  python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(f\"run {sys.argv[2]}: {p['mb_per_sec']:.1f} MB/s, p50 {p['p50_latency_ms']:.1f} ms, p99 {p['p99_latency_ms']:.1f} ms, {p['errors']} errors, server CPU {int(sys.argv[3]) / 100 / (p['bytes'] / 1e9):.2f} s/GB\")" \
    "$out/run-$run.json" "$run" "$ticks"
  cleanup
  rm -rf "$dir"
done
summarize "$out" "$runs"
