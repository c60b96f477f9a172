#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after the other, each for FUZZ_SECONDS (default
# 60), on the stable toolchain (RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly flags).
# Not part of `make test`. Installs cargo-fuzz into target/tools when it is missing.
#
#   FUZZ_SECONDS=600 scripts/fuzz.sh            every target, 10 minutes each
#   FUZZ_TARGETS="cid car" scripts/fuzz.sh      some of them
#   FUZZ_SANITIZER=none scripts/fuzz.sh         without AddressSanitizer (faster)
#
# Each target first replays its seeds (fuzz/corpus/<target>) and the reproducers of past
# findings (fuzz/regressions/<target>). New inputs go to fuzz/work/<target>, crash
# inputs to fuzz/artifacts/<target>, logs to fuzz/work/logs; all three are git-ignored, so
# the committed corpus stays the hand-picked seeds. Exits 1 when any target crashed, hung,
# ran out of memory or failed to build, printing the artifacts' paths.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-address}
tools="$root/target/tools"
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# Builds go in fuzz/target (the fuzz crate is its own workspace), never in the main target/.
export CARGO_TARGET_DIR="$root/fuzz/target"

case $seconds in
  '' | *[!0-9]*) echo "error: FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2; exit 2 ;;
esac

# Target, the longest input it gets (bytes), and the largest single allocation allowed (MiB;
# enforced by libFuzzer's malloc hooks, so with a sanitizer only). Inputs are small: any
# allocation near these limits is a length from the input trusted before it was checked.
targets=(
  "task_line 4096 64"
  "input_args 4096 64"
  "car 65536 64"
  "dagpb_unixfs 16384 64"
  "cid 256 16"
  "module 65536 256"
)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $tools" >&2
  cargo install --locked --root "$tools" cargo-fuzz
fi

wanted=${FUZZ_TARGETS:-}
selected=()
for entry in "${targets[@]}"; do
  read -r name _ _ <<<"$entry"
  if [ -z "$wanted" ] || [[ " $wanted " == *" $name "* ]]; then
    selected+=("$entry")
  fi
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "error: FUZZ_TARGETS='$wanted' names no target; the targets are: $(printf '%s ' "${targets[@]%% *}")" >&2
  exit 2
fi

cd fuzz
mkdir -p work/logs
build=(cargo fuzz build --sanitizer "$sanitizer")
echo "building the fuzz targets (sanitizer: $sanitizer)" >&2
nice -n 19 "${build[@]}"

failed=()
summary=()
for entry in "${selected[@]}"; do
  read -r name max_len malloc_mb <<<"$entry"
  log="work/logs/$name.log"
  artifacts="artifacts/$name/"
  mkdir -p "work/$name" "corpus/$name" "$artifacts" "regressions/$name"
  flags=(
    -max_len="$max_len"
    -rss_limit_mb=2048
    -malloc_limit_mb="$malloc_mb"
    -timeout=20
    -artifact_prefix="$artifacts"
    -print_final_stats=1
  )
  stamp=$(mktemp)
  # Seeds and past findings' reproducers run first (a finding that is back fails here);
  # the working corpus comes first because libFuzzer adds new inputs to the first
  # directory only.
  echo "== $name: $seconds s (log: fuzz/$log)" >&2
  if ! nice -n 19 cargo fuzz run --sanitizer "$sanitizer" "$name" \
    "work/$name" "corpus/$name" "regressions/$name" \
    -- "${flags[@]}" -max_total_time="$seconds" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    failed+=("$name")
  fi

  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$' || true)
  # libFuzzer's last count of the corpus it holds (inputs, bytes), after merging duplicates.
  corpus=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
  new_artifacts=$(find "$artifacts" -type f -newer "$stamp" -printf 'fuzz/%p ')
  rm -f "$stamp"
  summary+=("$(printf '%-13s %6s s %12s runs  corpus %-14s %s' \
    "$name" "$seconds" "${runs:-?}" "${corpus:-?}" "${new_artifacts:-no artifact}")")
done

echo >&2
printf '%s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: fuzzing failed for: ${failed[*]}" >&2
  echo "artifacts (reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>):" >&2
  find artifacts -type f -printf '  fuzz/%p\n' >&2
  exit 1
fi
echo "no crash, hang or out-of-memory in ${#selected[@]} target(s)" >&2
