#!/usr/bin/env bash
# Runs the sample tasks in host/wasm through the runner, as a task's pod would, and shows
# each result. Usage: scripts/demo.sh RUNNER SCENARIO OUT_DIR (SCENARIO: fib|affine|add|stats|all)
set -euo pipefail
runner=$1 scenario=$2 out=$3
wasm=host/wasm
mkdir -p "$out"

run() { # name, then the runner's flags
  local name=$1; shift
  echo "== $name"
  # The runner's stdout is the result JSON; its log goes to stderr.
  "$runner" --task-id "demo-$name" --output "$out/$name-result.json" --termination-log /nonexistent "$@" \
    2> >(sed 's/^/   log: /' >&2) | sed 's/^/   result: /'
}

case $scenario in
  fib|all)    run fib --wasm $wasm/fib.wasm --input $wasm/fib-input.json ;;&
  affine|all) run affine --wasm $wasm/affine.wasm --input $wasm/affine-input.json ;;&
  add|all)    ADD_X=2 ADD_Y=3 run add --wasm $wasm/add.wasm --input "" ;;&
  stats|all)  run stats --wasm $wasm/stats.wasm --input $wasm/stats-input.json \
                --args-json '["/input/stats-input.json"]' ;;&
  fib|affine|add|stats|all) ;;
  *) echo "unknown SCENARIO '$scenario': use fib, affine, add, stats or all" >&2; exit 2 ;;
esac
echo "results written to $out/"
