#!/usr/bin/env bash
# Usage: bench/run_baselines.sh BIDS IMPS OUTDIR   (env RUNS, default 3; BASELINES, default both)
# Runs each baseline RUNS times; prints wall time and peak RSS per run, then the medians.
#
# Peak RSS, two ways:
#  - time_rss: GNU /usr/bin/time %M. It covers child processes (PySpark's JVM and Python
#    workers are children of the driver), but it is the max RSS of the LARGEST SINGLE process
#    among the waited-for descendants, not the sum over the tree. For PySpark it misses the JVM
#    in practice (the driver does not reap it: ~60 MiB is the Python driver alone).
#  - tree_rss (use this one for PySpark): the sum of RSS over the whole process tree (its own
#    session), sampled every 0.2 s; the peak of that sum. For PySpark this counts the JVM, the
#    driver and the Python workers.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 BIDS IMPS OUTDIR" >&2; exit 2; }
BIDS=$1 IMPS=$2 OUT=$3 RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x /usr/bin/time ] || { echo "run bench/setup.sh first (GNU time missing)" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

run_once() {  # NAME SCRIPT -> prints "wall_s time_rss_mb tree_rss_mb"
  local name=$1 script=$2 tf log peak=0 rss
  tf=$(mktemp); log="$OUT/$name.log"
  rm -rf "$OUT/$name"
  setsid /usr/bin/time -f "%e %M" -o "$tf" \
    python3 "$HERE/$script" --bids "$BIDS" --imps "$IMPS" --out "$OUT/$name" >"$log" 2>&1 &
  local pid=$!  # setsid execs in place: pid is the session id of the whole tree
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(ps -o rss= -s "$pid" 2>/dev/null | awk '{s+=$1} END {print s+0}')
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.2
  done
  wait "$pid" || { echo "$name failed, see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
  read -r wall kb <"$tf"; rm -f "$tf"
  echo "$wall $((kb / 1024)) $((peak / 1024))"
}

mkdir -p "$OUT"
for b in ${BASELINES:-duckdb pyspark}; do
  results=()
  for i in $(seq 1 "$RUNS"); do
    r=$(run_once "$b" "${b}_etl.py")
    results+=("$r")
    read -r w m t <<<"$r"
    echo "$b run $i: wall ${w}s  time_rss ${m} MiB  tree_rss ${t} MiB"
  done
  col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{print $c}' | median; }
  echo "$b median of $RUNS: wall $(col 1)s  time_rss $(col 2) MiB  tree_rss $(col 3) MiB"
done
