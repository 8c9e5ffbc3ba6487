#!/usr/bin/env bash
# Runs the whole suite N times on a fresh clone, as CI would (.ci/run), and
# counts failures by test: a flaky test shows up as failing some runs.
#
#   scripts/soak-tests.sh [--from REPO] [--ref REF] N
#
# REPO (default: the repository holding this script) is cloned at REF
# (default: its checked-out branch) into a new temporary directory, beside a
# link to the REPO's ../shared (the packet corpus), and set up (./run setup).
# Then `./run test --report` runs N times. Printed: per run its wall time,
# the load average before and after it and its failed tests; at the end, per
# test, in how many runs it failed. Logs stay in the directory it names; the
# clone is removed. Exits 0 only if every run passed.
set -euo pipefail

usage() {
  sed -n '5p' "$0" | sed 's/^# *//' >&2
  exit 2
}

from=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
ref=
while [ $# -gt 0 ]; do
  case "$1" in
    --from) [ $# -ge 2 ] || usage; from=$(cd "$2" && git rev-parse --show-toplevel); shift 2 ;;
    --ref) [ $# -ge 2 ] || usage; ref=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
if [ $# -ne 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then usage; fi
runs=$1
[ -n "$ref" ] || ref=$(git -C "$from" rev-parse --abbrev-ref HEAD)

work=$(mktemp -d /tmp/podflow-soak.XXXXXX)
clone=$work/podflow
logs=$work/logs
mkdir -p "$logs"
trap 'rm -rf "$clone"' EXIT
[ -d "$from/../shared" ] && ln -s "$(realpath "$from/../shared")" "$work/shared"

git clone --quiet --no-hardlinks --branch "$ref" "$from" "$clone"
commit=$(git -C "$clone" rev-parse --short HEAD)
echo "soak: $runs runs of ./run test on a fresh clone of $from at $ref ($commit); logs in $logs"
(cd "$clone" && ./run setup) >"$logs/setup.log" 2>&1 || { echo "soak: ./run setup failed: $logs/setup.log" >&2; exit 1; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
failed_runs=0
for i in $(seq 1 "$runs"); do
  load_before=$(loadavg)
  started=$(date +%s%N)
  rc=0
  (cd "$clone" && ./run test --report "$logs/run-$i.results") >"$logs/run-$i.log" 2>&1 || rc=$?
  seconds=$((($(date +%s%N) - started) / 1000000000))
  touch "$logs/run-$i.results"
  failures=$(grep -c '^fail' "$logs/run-$i.results" || true)
  tests=$(wc -l <"$logs/run-$i.results")
  printf 'run %d: %d s, %d tests, %d failed, exit %d, load %s -> %s\n' "$i" "$seconds" "$tests" "$failures" "$rc" "$load_before" "$(loadavg)"
  grep '^fail' "$logs/run-$i.results" | cut -f2,3 | sed 's/^/  failed: /' || true
  # A run that exits non-zero with no failed test (the type-check, a crash of the runner) is a failure too.
  if [ "$rc" -ne 0 ] || [ "$failures" -ne 0 ]; then failed_runs=$((failed_runs + 1)); fi
done

echo "soak: $runs runs, $failed_runs failed; failures per test:"
cat "$logs"/run-*.results | awk -F'\t' '$1 == "fail" { n[$2 ": " $3]++ } END { for (k in n) printf "  %d  %s\n", n[k], k; if (length(n) == 0) print "  none" }' | sort -rn
[ "$failed_runs" -eq 0 ]
