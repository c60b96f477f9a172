#!/usr/bin/env bash
# End-to-end check of contracts/TaskRegistry.json (the committed artifact) on a real chain:
# starts anvil on a free port of 127.0.0.1, deploys the bytecode with cast, and drives the
# contract as the coordinator and operators will: setExecutor (owner only), submitTask
# (ids 1, 2, 3, the TaskSubmitted logs), postResult (the ResultPosted log, resultOf), and
# every revert, each matched to its custom error's exact data. anvil is killed on exit,
# whatever happens. Uses anvil's unlocked dev accounts: no private key anywhere.
#
#   scripts/check-contract.sh    (make contract-test)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
artifact=$root/contracts/TaskRegistry.json
checks=0
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
die() { fail "$@"; }
# shellcheck source=scripts/anvil.sh
. "$root/scripts/anvil.sh"
ok() {
  checks=$((checks + 1))
  echo "ok $checks - $*"
}
expect_eq() { # actual expected what
  if [ "$1" != "$2" ]; then
    if [ "${#1}" -gt 300 ] || [ "${#2}" -gt 300 ]; then
      local i=0
      while [ "${1:i:1}" = "${2:i:1}" ]; do i=$((i + 1)); done
      fail "$3: expected ${#2} characters, got ${#1}, the first difference at character $i: expected …${2:i:40}…, got …${1:i:40}…"
    fi
    fail "$3: expected $2, got $1"
  fi
  ok "$3"
}

# Auto-mining: each transaction in a block of its own, at once.
# shellcheck disable=SC2119
start_anvil
echo "anvil $(anvil_version) on $ETH_RPC_URL"

# The receipt's logs, one a line: address, topics and data, lowercase, separated by spaces.
logs_of() { # receipt
  json "$1" 'j.logs.map((l) => [l.address, ...l.topics, l.data].join(" ").toLowerCase()).join("\n")'
}
lower() { tr '[:upper:]' '[:lower:]' <<<"$1"; }
word() { "$cast" to-uint256 "$1"; }              # a uint256 as a 32-byte topic
addr_word() { "$cast" abi-encode 'f(address)' "$1"; } # an address as a 32-byte topic

# Sends a transaction from an unlocked account; its receipt lands in $work/receipt.json.
send() { # from args...
  local from=$1
  shift
  "$cast" send --unlocked --from "$from" --json "$@" >"$work/receipt.json" 2>"$work/send.err" \
    || { cat "$work/send.err" >&2; fail "cast send $* from $from failed"; }
  [ "$(json "$work/receipt.json" j.status)" = 0x1 ] || fail "transaction $* from $from reverted"
}
# A transaction that must revert with exactly this custom error (selector and arguments).
expect_revert() { # what from error-signature error-args... -- call-args...
  local what=$1 from=$2 sig=$3
  shift 3
  local error_args=()
  while [ "$1" != -- ]; do
    error_args+=("$1")
    shift
  done
  shift
  local expected
  expected=$("$cast" calldata "$sig" "${error_args[@]}")
  if "$cast" send --unlocked --from "$from" --json "$@" >"$work/receipt.json" 2>"$work/send.err"; then
    fail "$what: the transaction went through; expected the revert $sig"
  fi
  grep -qi "data: \"$expected\"" "$work/send.err" \
    || { cat "$work/send.err" >&2; fail "$what: expected the revert $sig ($expected)"; }
  ok "$what reverts $sig"
}

IFS=, read -r owner executor requester stranger _ < <("$cast" rpc eth_accounts | tr -d '[]" ')
[ -n "$stranger" ] || fail "anvil has fewer than four dev accounts"

# Deploy.
[ -f "$artifact" ] || fail "no $artifact; run make contracts"
send "$owner" --create "$(json "$artifact" j.bytecode)"
address=$(json "$work/receipt.json" j.contractAddress)
if [ -z "$address" ] || [ "$address" = null ]; then fail "the deployment gave no contract address"; fi
ok "deployed at $address"
expect_eq "$(lower "$("$cast" code "$address")")" "$(lower "$(json "$artifact" j.deployedBytecode)")" \
  "the code on chain is the artifact's deployedBytecode"
expect_eq "$(lower "$("$cast" call "$address" 'owner()(address)')")" "$owner" "the deployer is the owner"
expect_eq "$("$cast" call "$address" 'taskCount()(uint256)')" 0 "no task yet"
expect_eq "$("$cast" call "$address" 'isExecutor(address)(bool)' "$owner")" false "the owner is not an executor"

# Executors: owner only.
expect_revert "setExecutor by a non-owner" "$stranger" 'NotOwner(address)' "$stranger" -- \
  "$address" 'setExecutor(address,bool)' "$stranger" true
expect_eq "$("$cast" call "$address" 'isExecutor(address)(bool)' "$stranger")" false \
  "the non-owner did not make itself an executor"
send "$owner" "$address" 'setExecutor(address,bool)' "$executor" true
expect_eq "$(logs_of "$work/receipt.json")" \
  "$address $("$cast" keccak 'ExecutorSet(address,bool)') $(addr_word "$executor") $("$cast" abi-encode 'f(bool)' true)" \
  "setExecutor emits ExecutorSet(executor, true)"
expect_eq "$("$cast" call "$address" 'isExecutor(address)(bool)' "$executor")" true "the executor is one"

# Tasks: ids 1, 2, 3, each in its TaskSubmitted log.
submitted=$("$cast" keccak 'TaskSubmitted(uint256,address,string,string,string)')
tasks=(
  'Qmakqmav82dp99fynQmoZHUr8UgmnmopakEmEaTeTnMHg1|Qmaecf1kUsJ8Hv7A1amYTmYxVm4WWetBQv66qgXTg3WZiK|fib'
  'QmfZ7H1gRMey9ADX4gPezeughyT2d9EbpwXDa1K8NoysCy||'
  'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy|Qmaecf1kUsJ8Hv7A1amYTmYxVm4WWetBQv66qgXTg3WZiK|add'
)
id=0
for task in "${tasks[@]}"; do
  id=$((id + 1))
  IFS='|' read -r wasm_cid input_cid entry <<<"$task"
  expect_eq "$("$cast" call --from "$requester" "$address" 'submitTask(string,string,string)(uint256)' \
    "$wasm_cid" "$input_cid" "$entry")" "$id" "submitTask returns id $id"
  send "$requester" "$address" 'submitTask(string,string,string)' "$wasm_cid" "$input_cid" "$entry"
  expect_eq "$(logs_of "$work/receipt.json")" \
    "$address $submitted $(word "$id") $(addr_word "$requester") $("$cast" abi-encode 'f(string,string,string)' "$wasm_cid" "$input_cid" "$entry")" \
    "task $id: TaskSubmitted($id, requester, '$wasm_cid', '$input_cid', '$entry')"
done
expect_eq "$("$cast" call "$address" 'taskCount()(uint256)')" 3 "taskCount is 3"

# A result.
result='{"status":"trap","message":"wasm trap: unreachable executed"}'
hash=$("$cast" keccak "$result")
send "$executor" "$address" 'postResult(uint256,uint8,bytes32,string)' 2 1 "$hash" "$result"
expect_eq "$(logs_of "$work/receipt.json")" \
  "$address $("$cast" keccak 'ResultPosted(uint256,address,uint8,bytes32,string)') $(word 2) $(addr_word "$executor") $("$cast" abi-encode 'f(uint8,bytes32,string)' 1 "$hash" "$result")" \
  "postResult(2, trap) emits ResultPosted"
# resultOf compared as raw return data: cast's decoded output rewrites a string that is JSON.
expect_eq "$("$cast" call "$address" 'resultOf(uint256)' 2)" \
  "$("$cast" abi-encode 'f(bool,uint8,bytes32,string,address)' true 1 "$hash" "$result" "$executor")" \
  "resultOf(2) is (posted, 1, hash, result, executor)"
none=$("$cast" abi-encode 'f(bool,uint8,bytes32,string,address)' false 0 "$(word 0)" '' 0x0000000000000000000000000000000000000000)
expect_eq "$("$cast" call "$address" 'resultOf(uint256)' 1)" "$none" "resultOf(1) is not posted yet"
expect_eq "$("$cast" call "$address" 'resultOf(uint256)' 99)" "$none" "resultOf(99), no such task, is not posted"

# The reverts.
post='postResult(uint256,uint8,bytes32,string)'
expect_revert "postResult for task 4 (unknown)" "$executor" 'UnknownTask(uint256)' 4 -- \
  "$address" "$post" 4 0 "$hash" "$result"
expect_revert "postResult for task 0 (unknown)" "$executor" 'UnknownTask(uint256)' 0 -- \
  "$address" "$post" 0 0 "$hash" "$result"
expect_revert "postResult by the owner, not an executor" "$owner" 'NotExecutor(address)' "$owner" -- \
  "$address" "$post" 1 0 "$hash" "$result"
expect_revert "postResult for task 2 again" "$executor" 'AlreadyPosted(uint256,address)' 2 "$executor" -- \
  "$address" "$post" 2 0 "$hash" "$result"
expect_revert "postResult with status 9" "$executor" 'InvalidStatus(uint8)' 9 -- \
  "$address" "$post" 1 9 "$hash" "$result"
send "$executor" "$address" "$post" 1 8 "$hash" "$result"
ok "postResult with status 8 (nondeterministic), the highest, goes through"

# An executor stopped.
send "$owner" "$address" 'setExecutor(address,bool)' "$executor" false
expect_eq "$(logs_of "$work/receipt.json")" \
  "$address $("$cast" keccak 'ExecutorSet(address,bool)') $(addr_word "$executor") $("$cast" abi-encode 'f(bool)' false)" \
  "setExecutor(executor, false) emits ExecutorSet(executor, false)"
expect_revert "postResult by a stopped executor" "$executor" 'NotExecutor(address)' "$executor" -- \
  "$address" "$post" 3 0 "$hash" "$result"

echo "contract: all $checks checks passed"
