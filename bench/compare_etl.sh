#!/usr/bin/env bash
# Usage: bench/compare_etl.sh RAW_DIR OUTDIR
#   env: RUNS (default 3), ENGINES (default "rtb duckdb pyspark"), RTB_ETL (the release binary,
#   default $CARGO_TARGET_DIR/release/rtb-etl). Engine `rtb-whole` is rtb-etl reading each file
#   as one task (`--range-size 0`), as before byte ranges; `bzip2-decode` only decodes a `.bz2`
#   day's two files on one thread (`bzip2 -t`, no output written), the bar for parallel decoding,
#   and `gzip-decode` a `.gz` day's (`gzip -t`);
#   `rtb-base` is another rtb-etl build (RTB_ETL_BASE), to measure a change side by side.
#   SETTLE (default 2) seconds of rest after each run, once every process of the run is gone.
# Runs the feature ETL of one generated day with each engine, interleaved (round 1 of every
# engine, then round 2, ...) so that background load hits every engine alike. Prints wall time and
# peak RSS of the whole process tree per run, then the medians.
#
# Peak RSS is the sum of RSS over the engine's process tree (its own session), sampled every
# 0.2 s: for PySpark that counts the JVM, the driver and the Python workers. GNU time's %M would
# only see the largest single process.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 RAW_DIR OUTDIR" >&2; exit 2; }
RAW=$(cd "$1" && pwd) OUT=$2 RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
RTB_ETL=${RTB_ETL:-${CARGO_TARGET_DIR:-$HOME/.cache/rtb-target}/release/rtb-etl}
BIDS=$(ls "$RAW"/bid.* | head -n1) IMPS=$(ls "$RAW"/imp.* | head -n1)
[ -x /usr/bin/time ] || { echo "run bench/setup.sh first (GNU time missing)" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

engine_cmd() {  # ENGINE OUT_DIR
  case $1 in
    rtb) echo "$RTB_ETL run --input $RAW --out $2 --parameter-store $2/parameter-store.json" ;;
    rtb-base) echo "${RTB_ETL_BASE:?set RTB_ETL_BASE} run --input $RAW --out $2 --parameter-store $2/parameter-store.json" ;;
    rtb-whole) echo "$RTB_ETL run --input $RAW --out $2 --parameter-store $2/parameter-store.json --range-size 0" ;;
    bzip2-decode) echo "bzip2 -t $BIDS $IMPS" ;;
    gzip-decode) echo "gzip -t $BIDS $IMPS" ;;
    duckdb | pyspark) echo "python3 $HERE/${1}_etl.py --bids $BIDS --imps $IMPS --out $2" ;;
    *) echo "unknown engine $1" >&2; exit 2 ;;
  esac
}

run_once() {  # ENGINE -> "wall_s tree_rss_mib"
  local name=$1 tf log peak=0 rss dir="$OUT/$1"
  tf=$(mktemp); log="$OUT/$name.log"
  rm -rf "$dir"; mkdir -p "$dir"
  # shellcheck disable=SC2046 # the command is split into words on purpose
  setsid /usr/bin/time -f "%e" -o "$tf" $(engine_cmd "$name" "$dir") >"$log" 2>&1 &
  local pid=$!  # setsid execs in place: pid is the session id of the whole tree
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(ps -o rss= -s "$pid" 2>/dev/null | awk '{s+=$1} END {print s+0}')
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.2
  done
  wait "$pid" || { echo "$name failed, see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
  # a JVM outlives its launcher by a second or more: the next engine must not share the cores
  # with it, or whichever engine runs after PySpark is slowed
  while ps -o pid= -s "$pid" >/dev/null 2>&1; do sleep 0.2; done
  sleep "${SETTLE:-2}"
  echo "$(cat "$tf") $((peak / 1024))"; rm -f "$tf"
}

mkdir -p "$OUT"
declare -A results
engines=${ENGINES:-rtb duckdb pyspark}
case "$BIDS" in
  *.bz2 | *.gz) size="$(du -h "$BIDS" | cut -f1) compressed" ;;
  *) size="$(wc -l <"$BIDS") lines" ;;
esac
echo "data: $BIDS ($size), $IMPS; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$RUNS"); do
  for e in $engines; do
    r=$(run_once "$e")
    results[$e]+="$r"$'\n'
    read -r w t <<<"$r"
    echo "round $i $e: wall ${w}s  peak RSS ${t} MiB  (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
for e in $engines; do
  col() { printf '%s' "${results[$e]}" | awk -v c="$1" 'NF {print $c}' | median; }
  echo "$e median of $RUNS: wall $(col 1)s  peak RSS $(col 2) MiB"
done
