#!/usr/bin/env bash
# Usage: bench/cluster_etl.sh RAW_DIR OUTDIR
#   env: RUNS (default 3), EXECUTORS (default "1 2"), BIN (folder of the release binaries,
#   default $CARGO_TARGET_DIR/release), SLOTS (task slots of the whole cluster, split evenly over
#   its executors, at least 1 each; default 2, the cores of this machine). Ballista's default
#   task distribution fills one executor's slots first, so 2 executors with 2 slots each would
#   leave the second idle on a two-file job. KEEP_OUTPUT=1 keeps each run's output folder (by
#   default it is removed once timed; the run's log keeps the counts).
# The same feature job on the same files, embedded and on a loopback Ballista cluster with each
# executor count, interleaved per round (embedded first in odd rounds, last in even ones). Prints
# wall time per run and the medians.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 RAW_DIR OUTDIR" >&2; exit 2; }
RAW=$(cd "$1" && pwd) OUT=$2 RUNS=${RUNS:-3} SLOTS=${SLOTS:-2}
per_executor() { local n=$((SLOTS / $1)); echo $((n > 0 ? n : 1)); }
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/rtb-target}/release}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ready() { curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }

start_cluster() {  # EXECUTORS -> sets CLUSTER_URL
  # the scheduler deletes a job's shuffle files minutes after it ends; a stopped cluster leaves them
  cleanup; pids=(); rm -rf "$OUT"/executor-*
  "$BIN/rtb-scheduler" --port 50150 --min-ready-executors "$1" >"$OUT/scheduler.log" 2>&1 &
  pids+=($!)
  for i in $(seq 1 "$1"); do
    "$BIN/rtb-executor" --scheduler-host 127.0.0.1 --scheduler-port 50150 --external-host 127.0.0.1 \
      --port $((50160 + i)) --grpc-port $((50170 + i)) --health-port $((50180 + i)) \
      --slots "$(per_executor "$1")" --work-dir "$OUT/executor-$i" >"$OUT/executor-$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 1 300); do ready 50150 && break; sleep 0.2; done
  ready 50150 || { echo "cluster with $1 executors not ready, see $OUT/*.log" >&2; exit 1; }
  CLUSTER_URL=df://127.0.0.1:50150
}

run_once() {  # LABEL [EXTRA ARGS] -> wall seconds
  local label=$1; shift
  rm -rf "$OUT/$label"
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN/rtb-etl" run --input "$RAW" --out "$OUT/$label" \
    --parameter-store "$OUT/$label.params.json" "$@" >"$OUT/$label.out" 2>&1 \
    || { echo "$label failed, see $OUT/$label.out" >&2; tail -n 20 "$OUT/$label.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  # a week's features are 11 GB a run; the run's log keeps its counts
  [ -n "${KEEP_OUTPUT:-}" ] || rm -rf "$OUT/$label"
  echo "$t1 - $t0" | bc
}

declare -A results
echo "data: $(ls "$RAW" | tr '\n' ' '); $(nproc) cores"
embedded_round() {
  r=$(run_once embedded); results[embedded]+="$r"$'\n'
  echo "round $round embedded: ${r}s"
}
for round in $(seq 1 "$RUNS"); do
  # a run is slowed by what ran just before it (the page cache it left, the memory it freed):
  # embedded goes first in odd rounds and last in even ones, so neither side always follows the other
  [ $((round % 2)) = 1 ] && embedded_round
  for n in ${EXECUTORS:-1 2}; do
    start_cluster "$n"
    r=$(run_once "cluster$n" --cluster "$CLUSTER_URL"); results[cluster$n]+="$r"$'\n'
    echo "round $round cluster, $n executor(s): ${r}s"
  done
  cleanup; pids=()
  [ $((round % 2)) = 0 ] && embedded_round
done
for k in embedded $(for n in ${EXECUTORS:-1 2}; do echo "cluster$n"; done); do
  echo "$k median of $RUNS: $(printf '%s' "${results[$k]}" | awk 'NF' | median)s"
done
