#!/usr/bin/env bash
# The test command: installs what the test suite needs on a fresh Debian machine that has only
# the Rust toolchain, gcc and Python, then runs every test of the workspace.
# librdkafka (built from source by the rdkafka crate for the Kafka-client tests) needs make,
# perl and pkg-config.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
command -v perl >/dev/null 2>&1 || missing+=(perl)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# libfaketime: the doctor test runs a node with a skewed clock.
compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null || missing+=(libfaketime)
# iptables: the doctor test cuts a data node off its peers.
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

exec cargo test --workspace "$@"
