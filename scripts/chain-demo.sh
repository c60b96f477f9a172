#!/usr/bin/env bash
# `make chain-demo`: the coordinator takes its tasks from the TaskRegistry contract and
# posts their results back to it, on a local chain, end to end.
#
# Steps: install the pinned anvil and cast (scripts/ensure-chain-tools.sh); start anvil on
# a free port of 127.0.0.1 (blocks every BLOCK_TIME seconds, and at once for each
# transaction); deploy contracts/TaskRegistry.json from anvil's first dev account (the
# owner); make a new executor key with `cast wallet new` into a temp dir (mode 600), fund
# its account with 10 ether and setExecutor it; submit the three sample tasks (fib, affine,
# add); wait until they are CONFIRMATIONS blocks deep; run the coordinator once with the
# local backend (modules and inputs from the mirror host/wasm) until it has posted their
# results; read the results back from the chain with `resultOf`, and check each
# resultHash against the report the coordinator published. anvil is killed and the temp
# dir (key, ledger, logs) removed on exit, whatever happens.
#
# The owner's transactions use anvil's unlocked dev account (no key on any command line);
# the executor's key exists only in its file, which the coordinator reads
# (--contract-key-file), and is never printed.
#
# Environment: TARGET_DIR (cargo's target dir, target), CONFIRMATIONS
# (contract_confirmations, 2), BLOCK_TIME (anvil's seconds per block, 1).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${TARGET_DIR:-target}
coordinator=$target_dir/debug/coordinator
confirmations=${CONFIRMATIONS:-2}
block_time=${BLOCK_TIME:-1}
artifact=contracts/TaskRegistry.json

die() {
  echo "error: chain-demo: $*" >&2
  exit 1
}
step() { echo "==> $*"; }

[ -x "$coordinator" ] || die "no $coordinator; build it first: cargo build --workspace --bins (make chain-demo does)"
[ -f "$artifact" ] || die "no $artifact; run make contracts"
case "$confirmations" in '' | *[!0-9]*) die "CONFIRMATIONS must be a whole number, not '$confirmations'" ;; esac

# Everything the demo writes, the executor's key included, is in $work and only readable by
# this user.
umask 077
# shellcheck source=scripts/anvil.sh
. "$root/scripts/anvil.sh"

# Sends a transaction from an unlocked dev account; its receipt lands in $work/receipt.json.
send() { # what from args...
  local what=$1 from=$2
  shift 2
  "$cast" send --unlocked --from "$from" --json "$@" >"$work/receipt.json" 2>"$work/send.err" \
    || { cat "$work/send.err" >&2; die "$what: cast send failed"; }
  [ "$(json "$work/receipt.json" j.status)" = 0x1 ] || die "$what: the transaction reverted"
}

# 1. The chain. Port 0: anvil binds a free port itself and says which. Mixed mining: each
# transaction is mined at once (the set-up is quick), and a block comes every BLOCK_TIME
# seconds besides, so that blocks get deep while nobody sends anything.
start_anvil --block-time "$block_time" --mixed-mining
step "anvil $(anvil_version) on $ETH_RPC_URL, chain id $("$cast" chain-id), a block every $block_time s"

IFS=, read -r owner requester _ < <("$cast" rpc eth_accounts | tr -d '[]" ')
[ -n "$requester" ] || die "anvil has fewer than two dev accounts"

# 2. The contract, its executor.
send "deploying $artifact" "$owner" --create "$(json "$artifact" j.bytecode)"
address=$(json "$work/receipt.json" j.contractAddress)
if [ -z "$address" ] || [ "$address" = null ]; then die "the deployment gave no contract address"; fi
step "TaskRegistry deployed at $address by $owner (the owner)"

mkdir "$work/key"
"$cast" wallet new --json >"$work/key/wallet.json" || die "cast wallet new failed"
# The key goes from cast's answer into the key file without passing through the shell.
node -e 'const fs = require("fs");
  const w = JSON.parse(fs.readFileSync(process.argv[1], "utf8"))[0];
  fs.writeFileSync(process.argv[2], w.private_key + "\n", { mode: 0o600 });' \
  "$work/key/wallet.json" "$work/key/executor.key"
executor=$(json "$work/key/wallet.json" 'j[0].address')
rm -f "$work/key/wallet.json"
send "funding the executor" "$owner" --value 10ether "$executor"
send "setExecutor($executor, true)" "$owner" "$address" 'setExecutor(address,bool)' "$executor" true
step "executor $executor: a new key (in a mode-600 file of the temp dir), funded with 10 ether, allowed by setExecutor"

# 3. The tasks, submitted by another account: ids 1, 2, 3.
tasks=(
  'fib|Qmakqmav82dp99fynQmoZHUr8UgmnmopakEmEaTeTnMHg1|Qmaecf1kUsJ8Hv7A1amYTmYxVm4WWetBQv66qgXTg3WZiK|fib'
  'affine|QmRSh2R6M4BLMLEZapMkYDVJtnXJts11sVwNnzPf3jQyHX|Qmew2KHny8cD5ZSPs5GLLD6Yb5Zu9f6v3jVZqHf1j3Bvwr|'
  'add|QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu|QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN|'
)
names=()
last_block=0
for task in "${tasks[@]}"; do
  IFS='|' read -r name wasm_cid input_cid entry <<<"$task"
  send "submitTask for $name" "$requester" "$address" 'submitTask(string,string,string)' \
    "$wasm_cid" "$input_cid" "$entry"
  names+=("$name")
  last_block=$(json "$work/receipt.json" 'Number(j.blockNumber)')
  step "task ${#names[@]} $name submitted in block $last_block (wasm $wasm_cid, input $input_cid, entry '${entry}')"
done

# 4. The coordinator reads an event once CONFIRMATIONS blocks are on top of its block, and
# with --once only up to the confirmed head when it starts: wait for that.
wanted=$((last_block + confirmations))
step "waiting for block $wanted ($confirmations confirmations of the last task)"
for _ in $(seq $((confirmations * 20 + 100))); do
  [ "$("$cast" block-number)" -ge "$wanted" ] && break
  sleep 0.1
done
head=$("$cast" block-number)
[ "$head" -ge "$wanted" ] || die "the chain is at block $head, not $wanted: anvil does not mine (see BLOCK_TIME)"

# 5. The coordinator: tasks from the contract, the local backend, results posted back.
step "coordinator --once: the contract as task source and result sink (log: the lines about the chain)"
set +e
COORDINATOR_CONTRACT_CONFIRMATIONS=$confirmations timeout 120 "$coordinator" --once --backend local --ipfs-mirror host/wasm --listen off \
  --state "$work/ledger.sqlite" --contract-address "$address" --contract-rpc "$ETH_RPC_URL" \
  --contract-key-file "$work/key/executor.key" \
  <"/dev/null" >"$work/reports.jsonl" 2>"$work/coordinator.log"
status=$?
set -e
grep -E 'TaskSubmitted|tasks submitted on chain|posting results|result posted on chain|already|summary|done' \
  "$work/coordinator.log" | sed 's/^/    /' || true
if [ "$status" -ne 0 ]; then
  echo "--- the coordinator's log:" >&2
  cat "$work/coordinator.log" >&2
  [ "$status" -eq 124 ] && die "the coordinator did not finish within 120 s"
  die "the coordinator exited $status"
fi

# 6. The results, as the chain has them.
status_names=(ok trap out_of_fuel timeout invalid_module invalid_input fetch_failed error)
expected=('[144]' '[119]' '[5]')
chain_id=$("$cast" chain-id)
prefix="evm:$chain_id:$(tr '[:upper:]' '[:lower:]' <<<"$address"):"
step "results read back from the chain (resultOf), each resultHash checked against the published report"
failures=0
for i in "${!names[@]}"; do
  id=$((i + 1))
  # Raw return data, decoded as JSON: cast's plain decoded output rewrites a string that
  # is JSON.
  raw=$("$cast" call "$address" 'resultOf(uint256)' "$id")
  "$cast" abi-decode --json 'resultOf()(bool,uint8,bytes32,string,address)' "$raw" >"$work/result.json"
  IFS=$'\t' read -r posted code hash result by < <(json "$work/result.json" 'j.join("\t")')
  if [ "$posted" != true ]; then
    echo "task $id ${names[i]}: no result on chain" >&2
    failures=$((failures + 1))
    continue
  fi
  echo "task $id ${names[i]}: posted status $code (${status_names[code]:-unknown}) result $result by $by"
  # The report the coordinator published (stdout) for this task, its `result` object in
  # RFC 8785 form (keys sorted; JavaScript's number and string forms are RFC 8785's),
  # sha256.
  recomputed=$(node -e 'const fs = require("fs");
    const report = fs.readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l)
      .map((l) => JSON.parse(l)).find((r) => r.task_id === process.argv[2]);
    if (!report) { console.log("no report"); process.exit(0); }
    const canon = (v) => Array.isArray(v) ? "[" + v.map(canon).join(",") + "]"
      : v !== null && typeof v === "object"
        ? "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}"
        : JSON.stringify(v);
    const hash = report.result == null ? "00".repeat(32)
      : require("crypto").createHash("sha256").update(canon(report.result)).digest("hex");
    console.log("0x" + hash);' "$work/reports.jsonl" "$prefix$id")
  if [ "$recomputed" = "$hash" ]; then
    echo "    resultHash $hash = sha256 of the report's result object (RFC 8785)"
  else
    echo "    resultHash $hash, but the report gives $recomputed" >&2
    failures=$((failures + 1))
  fi
  if [ "$code" != 0 ] || [ "$result" != "${expected[i]}" ] || [ "$(tr '[:upper:]' '[:lower:]' <<<"$by")" != "$(tr '[:upper:]' '[:lower:]' <<<"$executor")" ]; then
    echo "    expected status 0 (ok) result ${expected[i]} by $executor" >&2
    failures=$((failures + 1))
  fi
done
[ "$failures" -eq 0 ] || die "$failures of the checks above failed"

# 7. Exactly once: a coordinator with a fresh ledger finds every result on chain already.
step "coordinator --once again, with a fresh ledger: every result is on chain already, nothing runs"
COORDINATOR_CONTRACT_CONFIRMATIONS=$confirmations timeout 60 "$coordinator" --once --backend local \
  --ipfs-mirror host/wasm --listen off --state "$work/ledger-2.sqlite" --contract-address "$address" --contract-rpc "$ETH_RPC_URL" \
  --contract-key-file "$work/key/executor.key" \
  <"/dev/null" >"$work/reports-2.jsonl" 2>"$work/coordinator-2.log" \
  || { cat "$work/coordinator-2.log" >&2; die "the second coordinator failed"; }
grep -E 'already on chain|summary' "$work/coordinator-2.log" | sed 's/^/    /' || true
[ "$(grep -c 'already on chain; not run' "$work/coordinator-2.log")" -eq "${#names[@]}" ] \
  || die "the second coordinator did not find all ${#names[@]} results on chain"
[ ! -s "$work/reports-2.jsonl" ] || die "the second coordinator ran tasks again"

# The key is in its file and nowhere else: not in either log.
sed 's/^0x//' "$work/key/executor.key" >"$work/key/pattern"
if grep -qiF -f "$work/key/pattern" "$work/coordinator.log" "$work/coordinator-2.log" "$work/anvil.log"; then
  die "the executor's private key appears in a log"
fi
echo "chain-demo: fib 144, affine 119, add 5, posted on chain by the coordinator"
