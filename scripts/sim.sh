#!/usr/bin/env bash
# Soak ferry's deterministic simulation (docs/SIMULATION.md): runs any number of seeds
# in parallel jobs, each a `cargo test --release --test sim` over its own range.
#
#   scripts/sim.sh --seeds 100000 [--jobs 4] [--start 0]
#
# A failing seed prints its violations, its trace and the command that replays it:
#   FERRY_SIM_SEED=<seed> cargo test --test sim
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=10000
jobs=$(nproc 2>/dev/null || echo 2)
start=0
while (($#)); do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --start) start="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "sim.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
((jobs >= 1 && seeds >= 1)) || { echo "sim.sh: --seeds and --jobs must be positive" >&2; exit 2; }

cargo test --release --test sim --no-run >/dev/null 2>&1 || cargo test --release --test sim --no-run

logs=$(mktemp -d)
per=$(((seeds + jobs - 1) / jobs))
pids=()
for ((j = 0; j < jobs; j++)); do
  from=$((start + j * per))
  to=$((from + per))
  ((to > start + seeds)) && to=$((start + seeds))
  ((from >= to)) && break
  FERRY_SIM_SEEDS="$from..$to" FERRY_SIM_THREADS=1 \
    cargo test --release --test sim seeds_hold_every_invariant >"$logs/$j.log" 2>&1 &
  pids+=("$!")
done
failed=0
for j in "${!pids[@]}"; do
  if ! wait "${pids[$j]}"; then
    failed=1
    cat "$logs/$j.log"
  fi
done
if ((failed)); then
  echo "sim.sh: some seeds failed (logs in $logs)" >&2
  exit 1
fi
grep -h "^sim:" "$logs"/*.log || true
echo "sim.sh: seeds $start..$((start + seeds)) passed"
rm -rf "$logs"
