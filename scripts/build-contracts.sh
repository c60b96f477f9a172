#!/usr/bin/env bash
# Compiles contracts/TaskRegistry.sol with the pinned solcjs (contracts/package-lock.json,
# installed by scripts/ensure-chain-tools.sh) through its standard JSON interface and writes
# the artifact contracts/TaskRegistry.json: contractName, sourceName, compiler (version and
# settings), abi, bytecode, deployedBytecode, in that key order, so that a rebuild is
# byte-identical. A compiler warning fails the build, as clippy's do.
#
#   scripts/build-contracts.sh           rebuild the artifact (make contracts)
#   scripts/build-contracts.sh --check   rebuild into a temp file; fail if the committed
#                                        artifact differs (make contracts-check)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source_name=contracts/TaskRegistry.sol
artifact=contracts/TaskRegistry.json

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

"$root/scripts/ensure-chain-tools.sh"

out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Settings are pinned here, not taken from the compiler's defaults, which change between
# releases: optimizer on at 200 runs, the cancun EVM (anvil runs it), and no metadata hash in
# the bytecode (it would change with every comment and path).
node - "$root/.tools/node/node_modules/solc" "$root/$source_name" "$source_name" "$out" <<'JS'
const fs = require("fs");
const [solcPath, sourcePath, sourceName, outPath] = process.argv.slice(2);
const solc = require(solcPath);
const contractName = "TaskRegistry";
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "none" },
};
const input = {
  language: "Solidity",
  sources: { [sourceName]: { content: fs.readFileSync(sourcePath, "utf8") } },
  settings: {
    ...settings,
    outputSelection: {
      [sourceName]: { [contractName]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const messages = output.errors || [];
for (const m of messages) process.stderr.write(m.formattedMessage || `${m.severity}: ${m.message}\n`);
if (messages.length > 0) {
  const errors = messages.filter((m) => m.severity === "error").length;
  process.stderr.write(`error: solc ${solc.version()} reported ${errors} error(s) and ` +
    `${messages.length - errors} warning(s) or note(s) for ${sourceName}; the build allows none\n`);
  process.exit(1);
}
const contract = output.contracts?.[sourceName]?.[contractName];
if (!contract || !contract.evm.bytecode.object || !contract.evm.deployedBytecode.object) {
  process.stderr.write(`error: solc produced no bytecode for ${contractName} in ${sourceName}\n`);
  process.exit(1);
}
const artifact = {
  contractName,
  sourceName,
  compiler: { name: "solc", version: solc.version(), settings },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
fs.writeFileSync(outPath, JSON.stringify(artifact, null, 2) + "\n");
JS

if ! $check; then
  cat "$out" >"$root/$artifact"
  echo "wrote $artifact"
  exit 0
fi

if [ ! -f "$root/$artifact" ]; then
  echo "error: $artifact is missing; run \`make contracts\` and commit it" >&2
  exit 1
fi
if ! cmp -s "$out" "$root/$artifact"; then
  echo "error: $artifact is not what $source_name compiles to with the pinned solc" >&2
  echo "       (contracts/package-lock.json); run \`make contracts\` and commit the result. The difference" >&2
  echo "       (committed, then rebuilt; lines cut at 160 characters):" >&2
  diff -u "$root/$artifact" "$out" | cut -c 1-160 | head -n 40 >&2 || true
  exit 1
fi
echo "$artifact is up to date with $source_name"
