#!/usr/bin/env bash
# Restart over a large WAL (M9): how long a standalone node takes to serve again after a
# kill -9 with GIB (10) GiB of acknowledged records on disk.
#
#   bench/restart.sh [runs] [GiB] [partitions]
#
# Each run fills a fresh data directory (1 KiB records, acks=all, 6 partitions by default),
# kill -9s the node, drops the page cache (so recovery reads the disk, as after a reboot) and
# starts it again. Reported: seconds from the restart until a producer's first record is
# acknowledged, and how long a consumer then takes to read back as many records as were
# written before the kill.
# The data directory is removed after each run unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
gib=${2:-10}
partitions=${3:-6}
records=$((gib * 1024 * 1024))
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_release
trap cleanup EXIT
bench=target/release/chronik-bench
props=(bootstrap.servers=127.0.0.1:24092)

node() {
  target/release/chronik-server standalone --data-dir "$1" \
    --set listeners.kafka=127.0.0.1:24092 --set listeners.http=127.0.0.1:24080 \
    --set listeners.grpc=127.0.0.1:24093 >>"$1.log" 2>&1 &
  pids+=($!)
}

now() { date +%s.%N; }

echo "restart: $runs runs, $gib GiB in $partitions partition(s), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
  node "$dir/data"
  wait_port 24092
  "$bench" produce --json --topic restart --create-topic --partitions "$partitions" --num-records "$records" \
    --record-size 1024 --throughput -1 --producer-props "${props[@]}" acks=all linger.ms=5 batch.size=1048576 \
    >"$dir/fill.json" 2>"$dir/fill.err" || { tail -n 5 "$dir/fill.err"; exit 1; }
  on_disk=$(du -sm "$dir/data/wal" | cut -f1)
  kill -9 "${pids[0]}"
  wait "${pids[0]}" 2>/dev/null || true
  pids=()
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(page cache not dropped: not root)"

  started=$(now)
  node "$dir/data"
  # One record at a time until one is acknowledged (each attempt gives up after a second).
  until "$bench" produce --topic restart --num-records 1 --record-size 100 \
    --producer-props "${props[@]}" acks=all message.timeout.ms=1000 >/dev/null 2>&1; do
    sleep 0.05
  done
  produced=$(now)
  # As many records as were written before the kill, read back from the start.
  "$bench" consume --json --topic restart --num-records "$records" --consumer-props "${props[@]}" \
    >"$dir/read.json" 2>"$dir/read.err" || { tail -n 5 "$dir/read.err"; exit 1; }
  read_back=$(now)
  python3 - "$run" "$on_disk" "$started" "$produced" "$read_back" "$dir/fill.json" "$dir/read.json" <<'PY'
import json, sys
run, mb, t0, t1, t2 = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
fill, read = json.load(open(sys.argv[6])), json.load(open(sys.argv[7]))
print(f"run {run}: {mb / 1024:.1f} GiB of WAL ({fill['records']} records at {fill['mb_per_sec']:.0f} MB/s); "
      f"first acknowledged produce {t1 - t0:.2f} s after the restart; "
      f"{read['records']} records read back at {read['mb_per_sec']:.0f} MB/s ({t2 - t1:.1f} s)")
PY
  cleanup
  if [ -n "${KEEP:-}" ]; then echo "kept $dir"; else rm -rf "$dir"; fi
done
