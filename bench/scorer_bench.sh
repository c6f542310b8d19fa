#!/usr/bin/env bash
# Usage: bench/scorer_bench.sh PARAMETER_STORE OUTDIR
#   env: BIN (release binaries, default $CARGO_TARGET_DIR/release), NOOP (the no-op actix-web
#   server, default $BIN/examples/noop_server), RUNS (default 3), SECONDS_PER_RUN (default 10),
#   CONNECTIONS (wrk connections, default 32), RATE (default 5000), WORKERS (scorer and no-op
#   workers, default 2), SERVER_CPUS / CLIENT_CPUS (taskset CPU lists: pin the servers and the
#   load tools apart, e.g. 0 and 1; default unpinned).
#
# Per round, interleaved:
#   1. maximum throughput: wrk (1 thread, CONNECTIONS keep-alive connections, as fast as they go)
#      against the no-op actix-web endpoint, then against the scorer; same body, same settings;
#   2. fixed rate: rtb-adserver-sim in its open loop at RATE requests/s (latency counted from each
#      request's intended send time, so queueing shows), client-side percentiles from its HDR
#      histogram; server-side from the scorer's own latency histogram (/metrics) over that run.
# The body is the first request of the ETL's inference data (/aik/inference_data).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PARAMETER_STORE OUTDIR" >&2; exit 2; }
STORE=$1 OUT=$2
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/rtb-target}/release}
NOOP=${NOOP:-$BIN/examples/noop_server}
RUNS=${RUNS:-3} SECS=${SECONDS_PER_RUN:-10} CONNS=${CONNECTIONS:-32} RATE=${RATE:-5000}
WORKERS=${WORKERS:-2} SERVER_CPUS=${SERVER_CPUS:-} CLIENT_CPUS=${CLIENT_CPUS:-}
on() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
# in the background, so that $! is the server itself (not a subshell the cleanup cannot reach)
on_bg() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@" & else "$@" & fi; }
command -v wrk >/dev/null || { echo "wrk not found: bench/setup.sh installs it" >&2; exit 1; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# one real request body
inference=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["/aik/inference_data"])' "$STORE")
first=$(find "${inference#file://}" -type f -name '*.json*' | sort | head -n1)
head -n1 "$first" >"$OUT/body.json"
echo "body: $(cat "$OUT/body.json")"
python3 - "$OUT/body.json" >"$OUT/post.lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read().strip()
print('wrk.method = "POST"')
print('wrk.headers["content-type"] = "application/json"')
print("wrk.body = " + json.dumps(body))
PY

scorer_port=$(free_port) noop_port=$(free_port)
on_bg "$SERVER_CPUS" "$BIN/rtb-scorer" serve --listen "127.0.0.1:$scorer_port" --parameter-store "$STORE" \
  --workers "$WORKERS" --reload-interval 0 >"$OUT/scorer.log" 2>&1
pids+=($!)
on_bg "$SERVER_CPUS" "$NOOP" "127.0.0.1:$noop_port" "$WORKERS" >"$OUT/noop.log" 2>&1
pids+=($!)
for _ in $(seq 1 100); do
  "$BIN/rtb-scorer" health --url "http://127.0.0.1:$scorer_port/readyz" 2>/dev/null && break
  sleep 0.2
done
"$BIN/rtb-scorer" health --url "http://127.0.0.1:$scorer_port/readyz"

throughput() {  # NAME PORT -> requests/s
  on "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$OUT/post.lua" "http://127.0.0.1:$2/v1/score" >"$OUT/$1.txt"
  grep -q 'Non-2xx' "$OUT/$1.txt" && { echo "$1: non-2xx answers, see $OUT/$1.txt" >&2; exit 1; }
  awk '/^Requests\/sec:/ {print $2}' "$OUT/$1.txt"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
scrape() { curl -fs "http://127.0.0.1:$scorer_port/metrics" >"$1"; }
# scored requests and the share the server answered within 100 us, from two /metrics scrapes
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
print(f"{total} {fast / total:.5f}")
PY
}

# warm both servers
throughput warm-noop "$noop_port" >/dev/null; throughput warm-scorer "$scorer_port" >/dev/null

for round in $(seq 1 "$RUNS"); do
  noop=$(throughput "max-noop-$round" "$noop_port")
  scorer=$(throughput "max-scorer-$round" "$scorer_port")
  scrape "$OUT/metrics-before-$round.txt"
  on "$CLIENT_CPUS" "$BIN/rtb-adserver-sim" replay --target "http://127.0.0.1:$scorer_port" --parameter-store "$STORE" \
    --load-model open --rate "$RATE" --warmup 2 --duration "$SECS" --max-connections 64 \
    --report-dir "$OUT/sim-$round" >"$OUT/sim-$round.txt" 2>"$OUT/sim-$round.log"
  scrape "$OUT/metrics-after-$round.txt"
  read -r total fast < <(within_100us "$OUT/metrics-before-$round.txt" "$OUT/metrics-after-$round.txt")
  s="$OUT/sim-$round/summary.json"
  printf 'round %s: no-op %.0f req/s, scorer %.0f req/s (%.2fx) | open loop %s/s: achieved %.0f/s, ok %s, failed %s, client p50 %.3f p99 %.3f p99.9 %.3f max %.3f ms, send lag p99 %.3f ms | server: %s scored, %s within 100 us\n' \
    "$round" "$noop" "$scorer" "$(python3 -c "print($scorer / $noop)")" "$RATE" \
    "$(field "$s" 'd["achieved_rate"]')" "$(field "$s" 'd["calls"]["ok"]')" "$(field "$s" 'd["calls"]["failed"]')" \
    "$(field "$s" 'd["latency_ms"]["p50"]')" "$(field "$s" 'd["latency_ms"]["p99"]')" \
    "$(field "$s" 'd["latency_ms"]["p99_9"]')" "$(field "$s" 'd["latency_ms"]["max"]')" \
    "$(field "$s" 'd["send_lag_p99_ms"]')" \
    "$total" "$fast" | tee -a "$OUT/rounds.txt"
done
