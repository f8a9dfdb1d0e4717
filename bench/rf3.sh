#!/usr/bin/env bash
# RF=3 on one machine (M9): 1 control node, 3 data nodes and 1 gateway as separate processes,
# then `chronik-bench produce` through the gateway, acks=all, 1 KiB records.
#
#   bench/rf3.sh [runs] [--set KEY=VALUE ...]     (the --set options go to the data nodes)
#
# Environment: PARTITIONS (6), RECORDS (200000), THROUGHPUT (-1: as fast as possible),
# LINGER_MS (5), BATCH_SIZE (1048576). Each run starts a fresh cluster in a temporary directory
# and prints the produce summary (MB/s, p50/p99) and the peak RSS of each process; the last
# lines give min / median / max.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
shift || true
data_sets=("$@")
partitions=${PARTITIONS:-6}
records=${RECORDS:-200000}
throughput=${THROUGHPUT:--1}
linger=${LINGER_MS:-5}
batch=${BATCH_SIZE:-1048576}
bench=target/release/chronik-bench
out=$(mktemp -d)
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_release
trap cleanup EXIT

echo "RF=3: $runs runs, $partitions partitions, $records records, throughput $throughput, data nodes: ${data_sets[*]:-defaults}, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  start_cluster "$dir" "${data_sets[@]}"
  "$bench" produce --json --topic "rf3-$run" --create-topic --partitions "$partitions" --replication-factor 3 \
    --num-records "$records" --record-size 1024 --throughput "$throughput" \
    --producer-props bootstrap.servers=127.0.0.1:15092 acks=all linger.ms="$linger" batch.size="$batch" \
    >"$out/run-$run.json" 2>"$out/run-$run.err" || { tail -n 5 "$out/run-$run.err"; tail -n 20 "$dir"/node*.log; exit 1; }
  rss="gateway peak RSS $(hwm "${pids[4]}") MB, data nodes $(hwm "${pids[1]}")/$(hwm "${pids[2]}")/$(hwm "${pids[3]}") MB"
  python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(f\"run {sys.argv[2]}: {p['mb_per_sec']:.1f} MB/s, p50 {p['p50_latency_ms']:.1f} ms, p99 {p['p99_latency_ms']:.1f} ms, {p['errors']} errors, {sys.argv[3]}\")" "$out/run-$run.json" "$run" "$rss"
  cleanup
  rm -rf "$dir"
done
summarize "$out" "$runs"
