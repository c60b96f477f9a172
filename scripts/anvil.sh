# shellcheck shell=bash
# `root` comes from the sourcing script, and `cast` is for it: not unset, not unused.
# shellcheck disable=SC2154,SC2034
# What the chain scripts share (sourced by scripts/check-contract.sh and
# scripts/chain-demo.sh): a temp dir `$work`, removed on exit, and a local anvil on a free
# port of 127.0.0.1, killed on exit whatever happens; `json` reads a JSON file with node
# (there already, for solcjs). The sourcing script sets `root` and defines `die MESSAGE`.

"$root/scripts/ensure-chain-tools.sh"
anvil=$root/.tools/bin/anvil
cast=$root/.tools/bin/cast

work=$(mktemp -d)
anvil_pid=
cleanup() {
  if [ -n "$anvil_pid" ]; then
    kill "$anvil_pid" 2>/dev/null || true
    wait "$anvil_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts anvil with these extra arguments and exports ETH_RPC_URL for cast. Port 0: anvil
# binds a free port itself and says which, so no other process can take it between a probe
# and the bind.
start_anvil() { # anvil arguments...
  "$anvil" --host 127.0.0.1 --port 0 --hardfork cancun "$@" >"$work/anvil.log" 2>&1 &
  anvil_pid=$!
  local port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^Listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/anvil.log")
    [ -n "$port" ] && break
    kill -0 "$anvil_pid" 2>/dev/null || { cat "$work/anvil.log" >&2; die "anvil exited at start"; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$work/anvil.log" >&2; die "anvil did not listen within 10 s"; }
  export ETH_RPC_URL=http://127.0.0.1:$port
}

# anvil's version, for the scripts' first line.
anvil_version() {
  "$anvil" --version | sed -n '1s/^anvil Version: //p'
}

# A value of a JSON file, by a JavaScript expression over it (`j`).
json() { # file expression
  node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const v = eval(process.argv[2]); console.log(typeof v === "string" ? v : JSON.stringify(v));' "$1" "$2"
}
