#!/usr/bin/env bash
# Instructions per request of one stack of examples/perreq.rs, counted by
# callgrind: two runs of N1 and N2 requests, their difference divided by
# N2 - N1, so start-up and teardown cancel out. Exact and repeatable for the
# same binary, whatever else the machine is doing.
#
#   cargo build --release --features full --example perreq
#   benches/instructions-per-request.sh target/release/examples/perreq rl:armor-global
#
# COLLECT=FUNCTION counts only inside FUNCTION (callgrind's toggle-collect
# pattern): for stacks whose start-up is timed rather than fixed, such as
# the Prometheus exporter's clock calibration, which otherwise does not
# cancel out between the two runs.
set -euo pipefail
bin=${1:?usage: instructions-per-request.sh BINARY STACK [N1 N2]}
stack=${2:?usage: instructions-per-request.sh BINARY STACK [N1 N2]}
n1=${3:-2000}
n2=${4:-12000}
total() {
  local out
  out=$(mktemp)
  local collect=()
  if [[ -n "${COLLECT:-}" ]]; then
    collect=(--collect-atstart=no "--toggle-collect=$COLLECT")
  fi
  valgrind --tool=callgrind "${collect[@]}" --callgrind-out-file="$out" "$bin" "$stack" "$1" >/dev/null 2>&1
  callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
  rm -f "$out"
}
first=$(total "$n1")
second=$(total "$n2")
echo "$stack $(( (second - first) / (n2 - n1) ))"
