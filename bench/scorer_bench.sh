#!/usr/bin/env bash
# Usage: bench/scorer_bench.sh PARAMETER_STORE OUTDIR
#   env: BIN (release binaries, default $CARGO_TARGET_DIR/release), NOOP (the no-op actix-web
#   server, default $BIN/examples/noop_server), RUNS (default 3), SECONDS_PER_RUN (default 10),
#   CONNECTIONS (default 32), RATE (default 5000), WORKERS (scorer and no-op workers, default 2).
#
# The scorer serving the model PARAMETER_STORE names, against a no-op actix-web endpoint, loaded by
# the same tool (oha) with the same settings, interleaved per round:
#   1. maximum throughput: CONNECTIONS keep-alive connections as fast as they go, no rate limit;
#   2. fixed rate: RATE requests/s with latency correction (latency counted from each request's
#      intended send time, so queueing shows up), client-side percentiles from oha;
#      server-side: the scorer's own latency histogram (/metrics) over the same run.
# The body is the first request of the ETL's inference data (/aik/inference_data).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PARAMETER_STORE OUTDIR" >&2; exit 2; }
STORE=$1 OUT=$2
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/rtb-target}/release}
NOOP=${NOOP:-$BIN/examples/noop_server}
RUNS=${RUNS:-3} SECS=${SECONDS_PER_RUN:-10} CONNS=${CONNECTIONS:-32} RATE=${RATE:-5000}
WORKERS=${WORKERS:-2}
command -v oha >/dev/null || { echo "oha not found: bench/setup.sh installs it" >&2; exit 1; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# one real request body
inference=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["/aik/inference_data"])' "$STORE")
first=$(find "${inference#file://}" -name '*.json*' -type f | sort | head -n1)
head -n1 "$first" >"$OUT/body.json"
echo "body: $(cat "$OUT/body.json")"

scorer_port=$(free_port) noop_port=$(free_port)
"$BIN/rtb-scorer" serve --listen "127.0.0.1:$scorer_port" --parameter-store "$STORE" \
  --workers "$WORKERS" --reload-interval 0 >"$OUT/scorer.log" 2>&1 &
pids+=($!)
"$NOOP" "127.0.0.1:$noop_port" "$WORKERS" >"$OUT/noop.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  "$BIN/rtb-scorer" health --url "http://127.0.0.1:$scorer_port/readyz" 2>/dev/null && break
  sleep 0.2
done
"$BIN/rtb-scorer" health --url "http://127.0.0.1:$scorer_port/readyz"

load() {  # NAME PORT [extra oha flags...] -> oha JSON in $OUT/NAME.json
  local name=$1 port=$2; shift 2
  oha --no-tui --output-format json -z "${SECS}s" -c "$CONNS" -m POST \
    -H 'content-type: application/json' -D "$OUT/body.json" "$@" \
    "http://127.0.0.1:$port/v1/score" >"$OUT/$name.json"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
# share of scored requests the server answered within 100 us, from two /metrics scrapes
scrape() { curl -fs "http://127.0.0.1:$scorer_port/metrics" >"$1"; }
within_100us() {
  python3 - "$1" "$2" <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'rtb_scorer_request_duration_seconds_bucket\{endpoint="score",le="([^"]+)"\} (\d+)', line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
total = b["+Inf"] - a.get("+Inf", 0)
fast = b["0.0001"] - a.get("0.0001", 0)
p99_bucket = next(le for le in sorted((k for k in b if k != "+Inf"), key=float)
                  if (b[le] - a.get(le, 0)) >= 0.99 * total)
print(f"{total} {fast / total:.5f} {p99_bucket}")
PY
}

# warm both servers and the page cache
load warm-scorer "$scorer_port" >/dev/null; load warm-noop "$noop_port" >/dev/null

for round in $(seq 1 "$RUNS"); do
  load "max-noop-$round" "$noop_port"
  load "max-scorer-$round" "$scorer_port"
  scrape "$OUT/metrics-before-$round.txt"
  load "rate-scorer-$round" "$scorer_port" -q "$RATE" --latency-correction
  scrape "$OUT/metrics-after-$round.txt"
  read -r total fast p99le < <(within_100us "$OUT/metrics-before-$round.txt" "$OUT/metrics-after-$round.txt")
  printf 'round %s: no-op %8.0f req/s  scorer %8.0f req/s  | at %s/s: client p50 %.3f ms p99 %.3f ms p99.9 %.3f ms, %s ok of %s; server <=100us %s (p99 bucket <= %ss)\n' \
    "$round" \
    "$(field "$OUT/max-noop-$round.json" 'd["summary"]["requestsPerSec"]')" \
    "$(field "$OUT/max-scorer-$round.json" 'd["summary"]["requestsPerSec"]')" \
    "$RATE" \
    "$(field "$OUT/rate-scorer-$round.json" 'd["latencyPercentiles"]["p50"]*1000')" \
    "$(field "$OUT/rate-scorer-$round.json" 'd["latencyPercentiles"]["p99"]*1000')" \
    "$(field "$OUT/rate-scorer-$round.json" 'd["latencyPercentiles"]["p99.9"]*1000')" \
    "$(field "$OUT/rate-scorer-$round.json" 'd["statusCodeDistribution"].get("200", 0)')" \
    "$total" "$fast" "$p99le" | tee -a "$OUT/rounds.txt"
done

echo "medians over $RUNS rounds:" | tee -a "$OUT/rounds.txt"
for what in max-noop max-scorer; do
  printf '  %-11s %8.0f req/s\n' "$what" \
    "$(for r in $(seq 1 "$RUNS"); do field "$OUT/$what-$r.json" 'd["summary"]["requestsPerSec"]'; done | median)"
done | tee -a "$OUT/rounds.txt"
for p in p50 p99 p99.9; do
  printf '  client %-6s %.3f ms at %s/s\n' "$p" \
    "$(for r in $(seq 1 "$RUNS"); do field "$OUT/rate-scorer-$r.json" "d['latencyPercentiles']['$p']*1000"; done | median)" "$RATE"
done | tee -a "$OUT/rounds.txt"
