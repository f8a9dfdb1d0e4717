# Shared by the bench/*.sh scripts (sourced). Paths are relative to the repository root.

# The release binaries every script runs.
build_release() {
  cargo build -q --release --bin chronik-server --bin chronik-bench
}

# Waits up to 30 s for something to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 1 300); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

# Peak resident memory (VmHWM) of process $1 so far, in MB.
hwm() {
  awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"
}

pids=()
# Stops every process start() started.
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

# Node N listens on 1N093 (gRPC), 1N080 (HTTP) and, for the gateway, 1N092 (Kafka), below the
# ephemeral port range (a client's outgoing connection cannot hold them); its data
# and log go under $3.
start() {
  local role=$1 id=$2 dir=$3
  shift 3
  target/release/chronik-server "$role" --set node.id="$id" --set node.data_dir="$dir/node$id" \
    --set listeners.grpc=127.0.0.1:1"$id"093 --set listeners.advertised_grpc=127.0.0.1:1"$id"093 \
    --set listeners.http=127.0.0.1:1"$id"080 --set listeners.kafka=127.0.0.1:1"$id"092 \
    "$@" >"$dir/node$id.log" 2>&1 &
  pids+=($!)
}

# 1 control node, data nodes 2-4 (with the --set options given after the directory) and
# gateway 5 (Kafka on 127.0.0.1:15092), registered and ready.
start_cluster() {
  local dir=$1
  shift
  start control 1 "$dir"
  wait_port 11093
  export CHRONIK_SEED_NODES="1@127.0.0.1:11093"
  for id in 2 3 4; do start data "$id" "$dir" "$@"; done
  start gateway 5 "$dir"
  unset CHRONIK_SEED_NODES
  wait_port 15092
  sleep 3 # the data nodes register with the control plane
}

# min / median / max of MB/s, p50 and p99 over the produce results $1/run-1.json .. run-$2.json.
summarize() {
  python3 - "$1" "$2" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rs = [json.load(open(f"{out}/run-{r}.json")) for r in range(1, runs + 1)]
for key, name in (("mb_per_sec", "MB/s"), ("p50_latency_ms", "p50 ms"), ("p99_latency_ms", "p99 ms")):
    v = sorted(r[key] for r in rs)
    print(f"{name}: min {v[0]:.1f} / median {statistics.median(v):.1f} / max {v[-1]:.1f}")
PY
}
