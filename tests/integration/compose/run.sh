#!/usr/bin/env bash
# Compose tests (tier 3): the cluster of deploy/compose, faults injected from outside.
#
#   tests/integration/compose/run.sh              # build the image, run every scenario, tear down
#   KEEP=1 tests/integration/compose/run.sh       # leave the cluster running afterwards
#   SKIP_BUILD=1 tests/integration/compose/run.sh # use the chronik image as it is
#   CHRONIK_BINARY=path tests/integration/compose/run.sh   # build the image from this binary (no cargo)
#
# Scenarios, in order, while one idempotent producer (acks=all) writes to `compose-faults`
# through both gateways the whole time and a consumer group member (subscribe, commits every
# second) reads it; after each scenario both must still run and the consumer must have read
# more than before: the cluster comes up from nothing and the operations
# guide's Quick Diagnostic Checklist answers healthy; docker kill of the control-plane leader;
# docker network disconnect of a data-plane leader, then reconnect; docker pause of a follower
# for 30 s; a rolling restart of every node; data nodes scaled 3 -> 4 -> 3 (node7 joins, and
# on `stop` moves its replicas away before it exits); 1,000 messages through gateway1 while gateway2 is killed. At the end
# checker.py reads every partition back and fails on any acknowledged message lost, any
# message stored twice, any message the consumer read that differs from what is stored at its
# offset, or any acknowledged message the consumer never read.
#
# Needs Docker with compose (`docker compose` or `docker-compose`), python3 with
# confluent-kafka (`pip install confluent-kafka`), jq, and root (the docs test maps the node
# names in /etc/hosts while it runs).
set -euo pipefail
cd "$(dirname "$0")/../../.."
repo=$(pwd)
compose_file=deploy/compose/docker-compose.yml
if docker compose version >/dev/null 2>&1; then
  dc=(docker compose -f "$compose_file")
elif command -v docker-compose >/dev/null 2>&1; then
  dc=(docker-compose -f "$compose_file")
else
  echo "compose: neither \`docker compose\` nor docker-compose is installed" >&2
  exit 1
fi
# Names and ports as deploy/compose/.env and docker-compose.yml set them.
envval() { grep -E "^$1=" deploy/compose/.env | cut -d= -f2-; }
project=$(envval COMPOSE_PROJECT_NAME)
network=chronik
gw1="$(envval ADVERTISED_HOST):$(envval GATEWAY1_KAFKA_PORT)"
gw2="$(envval ADVERTISED_HOST):$(envval GATEWAY2_KAFKA_PORT)"
controls=(node1 node2 node3)
datanodes=(node4 node5 node6)
gateways=(gateway1 gateway2)
all=("${controls[@]}" "${datanodes[@]}" "${gateways[@]}")
topic=compose-faults
work=$(mktemp -d)
checker=(python3 "$repo/tests/integration/compose/checker.py")
producer=""
passed=0

say() { echo "compose: $(date +%T) $*"; }
fail() { say "FAIL: $*"; exit 1; }

dump_logs() {
  local c
  for c in $(docker ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}' | sort); do
    echo "----- docker logs $c (last 40 lines)"
    docker logs --tail 40 "$c" 2>&1 | cut -c1-400 || true
  done
}

teardown() {
  local rc=$?
  [ -n "$producer" ] && kill "$producer" 2>/dev/null || true
  [ -n "$consumer" ] && kill "$consumer" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    say "FAILED (exit $rc) after $passed passed scenario(s)"
    dump_logs
  fi
  if [ "${KEEP:-}" = 1 ]; then
    say "KEEP=1: the cluster is left running (${dc[*]} --profile scale down -v removes it)"
  else
    "${dc[@]}" --profile scale down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  [ "${KEEP:-}" = 1 ] && say "KEEP=1: the checker files are in $work" || rm -rf "$work"
  exit $rc
}
trap teardown EXIT

# `chronik-<name>`'s health status (or run state when it has no healthcheck).
health_of() {
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "chronik-$1" 2>/dev/null || echo missing
}

wait_healthy() { # "names" timeout_s
  local deadline=$((SECONDS + ${2:-120})) c
  for c in $1; do
    until [ "$(health_of "$c")" = healthy ]; do
      [ $SECONDS -lt $deadline ] || fail "chronik-$c is $(health_of "$c"), not healthy"
      sleep 1
    done
  done
}

# Waits until `cmd...` succeeds: until timeout_s what cmd...
until_ok() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "$what: not within ${timeout} s"
    sleep 1
  done
}

# A node's /metrics, read inside its own container with the binary's probe (no curl in the image).
metrics() { docker exec "chronik-$1" chronik-server health --url http://127.0.0.1:8080/metrics --timeout 3s 2>/dev/null || true; }
# chronik_raft_state of a Raft group on a node: 0 follower, 1 leader, 2 candidate, 3 learner.
raft_state() { metrics "$1" | grep -F "chronik_raft_state{partition=\"$2\"}" | awk '{print $2}' | head -1; }
# The node among $2... that reports itself leader of group $1.
leader_among() {
  local group=$1 n
  shift
  for n in "$@"; do
    if [ "$(raft_state "$n" "$group")" = 1 ]; then echo "$n"; return 0; fi
  done
  return 1
}
has_leader() { leader_among "$@" >/dev/null; }
# A node of $3... other than $1 leads group $2 (the old leader may not know yet that it lost).
other_leads() {
  local old=$1 group=$2 n
  shift 2
  for n in "$@"; do
    [ "$n" != "$old" ] && [ "$(raft_state "$n" "$group")" = 1 ] && return 0
  done
  return 1
}
is_state() { [ "$(raft_state "$1" "$2")" = "$3" ]; }
hosts_replicas() { metrics "$1" | grep -q "chronik_raft_state{partition=\"$topic-"; }

ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "chronik-$1"; }

# The guide's Quick Diagnostic Checklist, steps 1-5, from the host against the nodes' addresses.
checklist() {
  local n
  for n in "${all[@]}"; do
    docker exec chronik-node1 chronik-server health --url "http://$n:8080/health" --timeout 3s >/dev/null \
      || fail "/health of $n (from node1)"
  done
  say "1-2. /health answers healthy on ${all[*]}"
  local token
  token=$(docker exec chronik-node1 chronik-server admin token --role viewer --ttl 1h --config /etc/chronik/chronik.toml)
  python3 - "$token" "$(ip_of node1)" "$(envval GATEWAY1_HTTP_PORT)" <<'PY' || fail "checklist steps 1, 3-4"
import json, sys, urllib.error, urllib.request
token, node1, gw_http = sys.argv[1:]
def get(url, auth=False):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
status, body = get(f"http://127.0.0.1:{gw_http}/health")
assert status == 200 and json.loads(body)["status"] == "healthy", (status, body)
print("compose: 1. curl http://localhost:<gateway1 http>/health: healthy")
status, body = get(f"http://{node1}:8080/admin/node/info", auth=True)
assert status == 200, (status, body)
for route in ("members", "leader"):
    status, body = get(f"http://{node1}:8080/admin/cluster/{route}", auth=True)
    if status == 404:
        print(f"compose: {3 if route == 'members' else 4}. /admin/cluster/{route}: not served by this build yet (skipped)")
    else:
        assert status == 200, (route, status, body)
        print(f"compose: {3 if route == 'members' else 4}. /admin/cluster/{route}: {body[:200]}")
PY
  local leader
  leader=$(leader_among __meta "${controls[@]}") || fail "no control node reports itself leader of __meta"
  for n in "${controls[@]}"; do
    metrics "$n" | grep -q '^chronik_raft_' || fail "node $n serves no chronik_raft metrics"
  done
  say "5. chronik_raft metrics on every control node; $leader leads __meta"
}

# The producer that runs through every scenario; when one stops (a fatal error of the idempotent
# producer), the failure is recorded and another takes over, so later scenarios still run
# under load and their data is checked too.
producers=0
problems=()
start_producer() {
  producers=$((producers + 1))
  "${checker[@]}" produce --bootstrap "$gw1,$gw2" --topic "$topic" --count 0 --rate 50 \
    --prefix "run$producers" --min-acked 0.95 --acked "$work/acked-run-$producers" &
  producer=$!
}

# The group consumer that reads through every scenario (restarted, like the producer, if it
# stops, so later scenarios still run under consume load).
consumer=""
consumers=0
start_consumer() {
  consumers=$((consumers + 1))
  "${checker[@]}" consume --bootstrap "$gw1,$gw2" --topic "$topic" --group compose-readers \
    --seen "$work/consumed-$consumers" &
  consumer=$!
}
# Messages the consumers have read so far.
consumed() { cat "$work"/consumed-* 2>/dev/null | wc -l; }

# Starts the producer or the consumer ($1) again if it stopped during scenario $2, recording
# the problem; fails if it had stopped.
revive() {
  local kind=$1 count_var="${1}s" rc=0
  local pid=${!kind} count=${!count_var}
  kill -0 "$pid" 2>/dev/null && return 0
  wait "$pid" || rc=$?
  problems+=("$kind $count stopped during: $2 (exit $rc)")
  say "FAIL $2: $kind $count stopped (exit $rc); starting another"
  "start_$kind"
  return 1
}

# After each scenario: the producer and the consumer must still be running, and the consumer
# must have read more than when the scenario began (`$2`).
load_alive() {
  local ok=0
  revive producer "$1" || ok=1
  if ! revive consumer "$1"; then
    ok=1
  elif [ -n "${2:-}" ]; then
    # The consumer may still be catching up after the fault: give it a little while.
    local deadline=$((SECONDS + 30))
    until [ "$(consumed)" -gt "$2" ]; do
      if [ $SECONDS -ge $deadline ]; then
        problems+=("the consumer read nothing new during and after: $1")
        say "FAIL $1: the consumer read nothing new ($2 read before)"
        ok=1
        break
      fi
      sleep 1
    done
  fi
  return $ok
}

# Marks the start of a scenario: its time and how much the consumers had read.
scenario_begins() {
  t=$SECONDS
  c0=$(consumed)
}

# A scenario passes when the producer and the consumer came through it (see load_alive).
scenario_done() {
  if load_alive "$1" "$c0"; then
    passed=$((passed + 1))
    say "PASS $1 ($((SECONDS - t)) s)"
  fi
}

# Stops the producer, lets the consumer catch up and stops it, then reads everything back:
# fails on any acknowledged message lost or duplicated, any consumed message that differs
# from the stored one, any acknowledged message never consumed, or any problem recorded on
# the way.
finish_producer() {
  local rc=0
  kill -TERM "$producer" 2>/dev/null || true
  wait "$producer" || rc=$?
  producer=""
  [ $rc -eq 0 ] || problems+=("producer $producers failed at the end (exit $rc)")
  # Caught up: nothing new read for 5 s.
  local before=-1 now deadline=$((SECONDS + 120))
  while now=$(consumed); [ "$now" != "$before" ] && [ $SECONDS -lt $deadline ]; do
    before=$now
    sleep 5
  done
  rc=0
  kill -TERM "$consumer" 2>/dev/null || true
  wait "$consumer" || rc=$?
  consumer=""
  [ $rc -eq 0 ] || problems+=("consumer $consumers failed at the end (exit $rc)")
  say "the consumers read $(consumed) messages"
  "${checker[@]}" verify --bootstrap "$gw1,$gw2" --topic "$topic" --acked "$work"/acked-run-* \
    --consumed "$work"/consumed-* \
    || problems+=("acknowledged messages lost, duplicated or misread (see checker's FAIL lines)")
}

if [ "${SKIP_BUILD:-}" != 1 ]; then
  say "building the image"
  deploy/compose/build-image.sh
  say "image built in $SECONDS s"
fi
t_start=$SECONDS

# ---- 1. up from nothing
say "starting the cluster from nothing"
"${dc[@]}" --profile scale down -v --remove-orphans >/dev/null 2>&1 || true
"${dc[@]}" up -d >"$work/up.log" 2>&1 || { cat "$work/up.log"; fail "compose up"; }
wait_healthy "${all[*]}" 120
until_ok 60 "a control-plane leader" has_leader __meta "${controls[@]}"
checklist
"${checker[@]}" create --bootstrap "$gw1" --topic "$topic" --partitions 6 --replication-factor 3
start_producer
start_consumer
sleep 5
passed=$((passed + 1))
say "PASS cluster up from nothing ($((SECONDS - t_start)) s)"

# ---- 1b. every runnable command of the troubleshooting guide, as written (it runs the doctor)
scenario_begins
python3 tests/integration/compose/docs_commands.py docs/operations/troubleshooting.md || fail "the troubleshooting guide's commands"
passed=$((passed + 1))
say "PASS the troubleshooting guide's runnable commands ($((SECONDS - t)) s)"

# ---- 2. docker kill the control-plane leader
scenario_begins
leader=$(leader_among __meta "${controls[@]}")
others=()
for n in "${controls[@]}"; do [ "$n" = "$leader" ] || others+=("$n"); done
say "docker kill chronik-$leader (leads __meta)"
docker kill chronik-"$leader" >/dev/null
until_ok 30 "a new control-plane leader among ${others[*]}" has_leader __meta "${others[@]}"
say "$(leader_among __meta "${others[@]}") leads __meta after $((SECONDS - t)) s"
sleep 5
docker start chronik-"$leader" >/dev/null
wait_healthy "$leader" 60
until_ok 60 "$leader following again" is_state "$leader" __meta 0
scenario_done "docker kill the control-plane leader"

# ---- 3. docker network disconnect a data-plane leader, then reconnect
scenario_begins
group="$topic-0"
leader=$(leader_among "$group" "${datanodes[@]}") || fail "no data node leads $group"
say "docker network disconnect $network chronik-$leader (leads $group)"
docker network disconnect "$network" chronik-"$leader"
until_ok 30 "a new leader of $group" other_leads "$leader" "$group" "${datanodes[@]}"
say "a new leader of $group after $((SECONDS - t)) s"
sleep 10
docker network connect --alias "$leader" "$network" chronik-"$leader"
until_ok 60 "$leader following $group again" is_state "$leader" "$group" 0
scenario_done "network disconnect of a data-plane leader"

# ---- 4. docker pause a follower for 30 s
scenario_begins
follower=""
for n in "${datanodes[@]}"; do
  if is_state "$n" "$group" 0; then follower=$n; break; fi
done
[ -n "$follower" ] || fail "no data node follows $group"
say "docker pause chronik-$follower (follows $group) for 30 s"
docker pause chronik-"$follower" >/dev/null
sleep 30
docker unpause chronik-"$follower" >/dev/null
wait_healthy "$follower" 60
until_ok 60 "$follower following $group again" is_state "$follower" "$group" 0
scenario_done "docker pause of a follower"

# ---- 5. rolling restart
scenario_begins
for n in "${all[@]}"; do
  docker restart -t 30 chronik-"$n" >/dev/null
  wait_healthy "$n" 90
  case " ${controls[*]} " in
    *" $n "*) until_ok 60 "a control-plane leader after restarting $n" has_leader __meta "${controls[@]}" ;;
  esac
  case " ${datanodes[*]} " in
    *" $n "*) until_ok 60 "$n hosting its replicas again" hosts_replicas "$n" ;;
  esac
  say "restarted $n"
done
scenario_done "rolling restart"

# ---- 6. scale the data plane 3 -> 4 -> 3
scenario_begins
say "scaling out: node7 joins"
"${dc[@]}" --profile scale up -d node7 >"$work/up7.log" 2>&1 || { cat "$work/up7.log"; fail "compose up node7"; }
wait_healthy node7 60
until_ok 120 "node7 receiving replicas" hosts_replicas node7
say "node7 hosts replicas after $((SECONDS - t)) s; stopping it (it decommissions itself first)"
t_stop=$SECONDS
"${dc[@]}" --profile scale stop node7 >/dev/null 2>&1
# (grep reads the whole log: with -q it could stop early and fail the pipe under pipefail)
docker logs chronik-node7 2>&1 | grep -F "Data node 7 decommissioned: no replica left on it" >/dev/null \
  || fail "node7 stopped without decommissioning itself (see its log)"
say "node7 moved its replicas away and stopped in $((SECONDS - t_stop)) s"
for n in "${datanodes[@]}"; do
  until_ok 60 "$n hosting replicas" hosts_replicas "$n"
done
"${dc[@]}" --profile scale rm -f node7 >/dev/null 2>&1
docker volume rm "${project}_node7" >/dev/null
scenario_done "scale data nodes 3 -> 4 -> 3"

# ---- 7. kill one of two gateways while 1,000 messages go through gateway1
scenario_begins
"${checker[@]}" create --bootstrap "$gw1" --topic compose-gateways --partitions 3 --replication-factor 3
"${checker[@]}" produce --bootstrap "$gw1" --topic compose-gateways --count 1000 --prefix gw --rate 100 \
  --acked "$work/acked-gw" --min-acked 0.9 &
gw_producer=$!
sleep 3
say "docker kill chronik-gateway2"
docker kill chronik-gateway2 >/dev/null
gw_ok=1
wait $gw_producer || { gw_ok=0; problems+=("the producer through gateway1 failed while gateway2 was killed"); }
"${checker[@]}" verify --bootstrap "$gw1" --topic compose-gateways --acked "$work/acked-gw" \
  || { gw_ok=0; problems+=("compose-gateways: acknowledged messages lost or duplicated"); }
docker start chronik-gateway2 >/dev/null
wait_healthy gateway2 60
if [ $gw_ok = 1 ] && load_alive "kill one of two gateways" "$c0"; then
  passed=$((passed + 1))
  say "PASS kill one of two gateways ($(wc -l <"$work/acked-gw") of 1000 acknowledged, $((SECONDS - t)) s)"
else
  say "FAIL kill one of two gateways"
fi

# ---- the check through all of them
say "stopping the producer; reading everything back"
finish_producer
if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do say "FAIL: $p"; done
  fail "${#problems[@]} problem(s) while the scenarios ran"
fi
passed=$((passed + 1))
say "PASS no acknowledged message lost or duplicated through every scenario"

say "$passed passed, 0 failed in $((SECONDS - t_start)) s"
