#!/usr/bin/env bash
# The whole system on one machine, as local processes on loopback (127.0.0.1 only):
#
#   s3s-fs (S3) . moto (SSM Parameter Store) . npm statsd (StatsD) . rtb-scheduler + 2 rtb-executor
#
# then the pipeline against them: rtb-etl generate (bzip2, straight to S3) -> rtb-etl run on the
# cluster, S3 to S3, locations published to SSM -> rtb-trainer train (finds the run through SSM,
# publishes the model to S3 and its pointer to SSM) -> rtb-scorer serve (from SSM + S3 only) ->
# rtb-adserver-sim replay (open loop) -> the simulator's summary, the trainer's metrics and the
# StatsD metrics that arrived. Everything it started is stopped when it ends, however it ends.
# Exits non-zero when a step fails, the simulator saw an error, or a StatsD metric is missing.
#
#   deploy/local/run.sh                      # binaries from $CARGO_TARGET_DIR/debug
#   RTB_BIN=~/.cache/rtb-target/release deploy/local/run.sh
#
# Environment (all optional):
#   RTB_BIN               folder holding rtb-etl, rtb-scheduler, rtb-executor, rtb-trainer,
#                         rtb-scorer, rtb-adserver-sim (default: $CARGO_TARGET_DIR/debug, where
#                         `cargo build --workspace --bins` puts them; CARGO_TARGET_DIR defaults to
#                         ~/.cache/rtb-target, see scripts/env.sh)
#   RTB_ONEBOX_DIR        run folder, new or empty: logs/, the S3 data, reports; kept afterwards
#                         (default: a new mktemp -d folder, also kept; RTB_ONEBOX_CLEAN=1
#                         removes a folder the script made after a success, as CI does)
#   RTB_ONEBOX_BIDS       bids in the generated day (default 50000)
#   RTB_ONEBOX_RATE       simulator calls per second, open loop (default 200)
#   RTB_ONEBOX_DURATION   seconds the simulator measures, after 1 s of warm-up (default 5)
#   RTB_STATSD_HOME       where npm statsd is installed (default ~/.cache/rtb-statsd; scripts/setup.sh)
# Other RTB_* variables reach the binaries as usual (flags the script passes win); RTB_CONFIG is
# ignored. The AWS credentials are the emulators' own; nothing here talks to AWS.
#
# Needs s3s-fs, moto_server, node and npm statsd: scripts/setup.sh installs them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# CARGO_TARGET_DIR's default and the pip scripts folder (moto_server) on PATH
source "$repo/scripts/env.sh"

bin="${RTB_BIN:-$CARGO_TARGET_DIR/debug}"
run="${RTB_ONEBOX_DIR:-}"
bids="${RTB_ONEBOX_BIDS:-50000}"
rate="${RTB_ONEBOX_RATE:-200}"
duration="${RTB_ONEBOX_DURATION:-5}"
statsd_home="${RTB_STATSD_HOME:-$HOME/.cache/rtb-statsd}"
bucket=aik
logs=

started_at=$EPOCHREALTIME
say() { printf 'onebox [%5.1fs] %s\n' "$(elapsed)" "$*" >&2; }
elapsed() { awk -v a="$started_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
fail() { say "FAILED: $*"; exit 1; }

# --- what runs, and stopping it -----------------------------------------------------------------
# Every process runs in its own process group (setsid), so stopping a group also stops anything
# it forked. `services` are the long-running ones, `step_pid` the one-shot command in progress.
services=()   # "name pid", in start order
step_pid=
culprit=      # the service or step whose log explains a failure
run_made=     # set when this script made the run folder

stop_group() { kill "-$1" -- "-$2" 2>/dev/null || true; }
group_alive() { pgrep -g "$1" >/dev/null 2>&1; }

cleanup() {
  local rc=$?
  set +e
  trap '' INT TERM
  local entry name pid i left=() deadline
  [ -n "$step_pid" ] && stop_group TERM "$step_pid"
  # newest first: the scorer before the S3 server it reads from
  for ((i = ${#services[@]} - 1; i >= 0; i--)); do
    read -r name pid <<<"${services[i]}"
    stop_group TERM "$pid"
  done
  deadline=$((SECONDS + 15))
  for entry in ${step_pid:+"step $step_pid"} "${services[@]}"; do
    read -r name pid <<<"$entry"
    while group_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if group_alive "$pid"; then
      say "$name (process group $pid) ignored SIGTERM; killing it"
      stop_group KILL "$pid"
    fi
  done
  wait 2>/dev/null
  for entry in ${step_pid:+"step $step_pid"} "${services[@]}"; do
    read -r name pid <<<"$entry"
    group_alive "$pid" && left+=("$name($pid)")
  done
  # the executors' shuffle and spill files are scratch (most of the run folder's size)
  [ -n "$run" ] && [ ${#left[@]} -eq 0 ] && rm -rf "$run"/executor-[0-9]
  # on failure: the end of every log, the one that failed last and longest
  if [ "$rc" -ne 0 ] && [ -n "$logs" ] && [ -d "$logs" ]; then
    for log in "$logs"/*.log; do
      [ -s "$log" ] && [ "$log" != "$logs/$culprit.log" ] || continue
      printf '\n----- last lines of %s\n' "$log" >&2
      tail -n 10 "$log" >&2
    done
    if [ -n "$culprit" ] && [ -s "$logs/$culprit.log" ]; then
      printf '\n----- last lines of %s (failed)\n' "$logs/$culprit.log" >&2
      tail -n 40 "$logs/$culprit.log" >&2
    fi
    echo >&2
  fi
  if [ ${#left[@]} -gt 0 ]; then
    say "processes still running after stop: ${left[*]}"
    [ "$rc" -eq 0 ] && rc=1
  else
    say "stopped ${#services[@]} services, no process left behind"
  fi
  # kept for a person to read (logs, data, reports); CI asks for a folder it made to go
  if [ "$rc" -eq 0 ] && [ -n "$run_made" ] && [ -n "${RTB_ONEBOX_CLEAN:-}" ]; then
    rm -rf "$run" && say "removed run folder $run (RTB_ONEBOX_CLEAN is set)"
  elif [ -n "$run" ]; then
    say "run folder: $run"
  fi
  if [ "$rc" -eq 0 ]; then say "OK"; else say "FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# start NAME CMD...: a long-running service, output in logs/NAME.log
start() {
  local name=$1
  shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  services+=("$name $!")
}

# step NAME CMD...: a one-shot command run to its end, stdout in logs/NAME.out, stderr in
# logs/NAME.log. Run in the background and waited for, so a signal reaches the traps at once.
step() {
  local name=$1 rc=0 t0=$EPOCHREALTIME
  shift
  say "$name ..."
  setsid "$@" >"$logs/$name.out" 2>"$logs/$name.log" </dev/null &
  step_pid=$!
  wait "$step_pid" || rc=$?
  step_pid=
  [ "$rc" -eq 0 ] || { culprit=$name; fail "$name exited with $rc (logs/$name.log)"; }
  say "$name done in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

pid_of() {
  local entry name pid
  for entry in "${services[@]}"; do
    read -r name pid <<<"$entry"
    [ "$name" = "$1" ] && { echo "$pid"; return; }
  done
}

# status code of GET PATH on a loopback PORT, empty when nothing answers
http_status() {
  ( exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    IFS=' ' read -r -t 5 _ status _ <&3 && echo "$status" ) 2>/dev/null || true
}

# wait_until NAME SECONDS CMD...: polls CMD until it succeeds; fails early if NAME's process died
wait_until() {
  local name=$1 timeout=$2 pid
  shift 2
  pid=$(pid_of "$name")
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    culprit=$name
    kill -0 "$pid" 2>/dev/null || fail "$name exited during start-up (logs/$name.log)"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name not ready after ${timeout}s (logs/$name.log)"
    culprit=
    sleep 0.2
  done
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
answers_200() { [ "$(http_status "$1" "$2")" = 200 ]; }
log_has() { grep -q "$2" "$logs/$1.log" 2>/dev/null; }

# --- prerequisites ------------------------------------------------------------------------------
for b in rtb-etl rtb-scheduler rtb-executor rtb-trainer rtb-scorer rtb-adserver-sim; do
  [ -x "$bin/$b" ] || fail "$bin/$b missing: run \`cargo build --workspace --bins\` or set RTB_BIN"
done
for tool in s3s-fs moto_server node python3 setsid pgrep; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not on PATH; scripts/setup.sh installs what is missing"
done
statsd_js="$statsd_home/node_modules/statsd/stats.js"
[ -f "$statsd_js" ] || fail "npm statsd not found under $statsd_home; scripts/setup.sh installs it"

# a fresh folder, so nothing from an earlier run (StatsD flushes, reports) can pass for this one
if [ -z "$run" ]; then
  run=$(mktemp -d -t rtb-onebox.XXXXXX) run_made=1
elif [ -n "$(ls -A "$run" 2>/dev/null)" ]; then
  run_given=$run run=
  fail "RTB_ONEBOX_DIR=$run_given is not empty; give a new or empty folder"
fi
mkdir -p "$run"
run=$(cd "$run" && pwd)
logs="$run/logs"
mkdir -p "$logs" "$run/s3/$bucket" "$run/statsd"
say "run folder: $run (binaries: $bin)"

# Free loopback ports: 11 TCP, then 1 UDP for StatsD. Chosen below the kernel's ephemeral range,
# which outgoing connections draw from: a port picked by binding port 0 can be taken by one of the
# many connections the pipeline makes (and then sit in TIME_WAIT) before its service binds it.
ports=$(python3 -c '
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    low = 32768
kinds = [socket.SOCK_STREAM] * 11 + [socket.SOCK_DGRAM]
socks = []
for kind in kinds:
    for _ in range(200):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", random.randrange(10000, low) if low > 11000 else 0))
            break
        except OSError:
            s.close()
    else:
        raise SystemExit("no free loopback port found")
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))') || fail "cannot find free ports"
read -r -a port <<<"$ports"
p_s3=${port[0]} p_ssm=${port[1]} p_statsd_mgmt=${port[2]} p_sched=${port[3]} p_scorer=${port[4]}
p_statsd=${port[11]}   # UDP; ports 5-10 are the executors' (Flight, gRPC, health each)

# the emulators' credentials; S3 at s3s-fs (path-style), SSM through the parameter-store spec
unset RTB_CONFIG AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SSM
export AWS_ACCESS_KEY_ID=rtb AWS_SECRET_ACCESS_KEY=rtb-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$p_s3" AWS_EC2_METADATA_DISABLED=true
# logs go to files: no colour codes in them
export NO_COLOR=1
params="ssm://?endpoint=http://127.0.0.1:$p_ssm&region=us-east-1"
statsd="127.0.0.1:$p_statsd"

# --- services -----------------------------------------------------------------------------------
start s3 s3s-fs --host 127.0.0.1 --port "$p_s3" --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$run/s3"
start ssm moto_server -H 127.0.0.1 -p "$p_ssm"

cat >"$run/statsd/config.js" <<EOF
{
  "address": "127.0.0.1",
  "port": $p_statsd,
  "mgmt_address": "127.0.0.1",
  "mgmt_port": $p_statsd_mgmt,
  "flushInterval": 1000,
  "percentThreshold": [99],
  "backends": ["$repo/deploy/local/statsd-jsonl-backend.js"],
  "jsonl": { "file": "$run/statsd/flushes.jsonl" }
}
EOF
start statsd node "$statsd_js" "$run/statsd/config.js"

start scheduler "$bin/rtb-scheduler" --bind-host 127.0.0.1 --port "$p_sched" \
  --external-host 127.0.0.1 --min-ready-executors 2
for n in 1 2; do
  i=$((5 + 3 * (n - 1)))
  start "executor-$n" "$bin/rtb-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
    --port "${port[i]}" --grpc-port "${port[i + 1]}" --health-port "${port[i + 2]}" \
    --scheduler-host 127.0.0.1 --scheduler-port "$p_sched" --slots 1 --memory-limit 512MiB \
    --heartbeat-seconds 5 --work-dir "$run/executor-$n"
done

wait_until s3 30 listening "$p_s3"
wait_until statsd 30 log_has statsd "server is up"
wait_until ssm 60 answers_200 "$p_ssm" /moto-api/
say "s3 :$p_s3, ssm :$p_ssm, statsd udp :$p_statsd up; cluster starting (scheduler :$p_sched)"

# --- pipeline -----------------------------------------------------------------------------------
# generating needs only S3, so it overlaps the cluster's start
step generate "$bin/rtb-etl" generate --out "s3://$bucket/raw" --days 1 --bids-per-day "$bids" \
  --compression bzip2

# ready = both executors registered; an executor that died fails this at once
cluster_ready() {
  local n
  for n in 1 2; do
    kill -0 "$(pid_of "executor-$n")" 2>/dev/null ||
      { culprit=executor-$n; fail "executor-$n exited during start-up (logs/executor-$n.log)"; }
  done
  answers_200 "$p_sched" /readyz
}
wait_until scheduler 120 cluster_ready
say "cluster ready: scheduler :$p_sched with 2 executors"

step etl "$bin/rtb-etl" run --cluster "df://127.0.0.1:$p_sched" --input "s3://$bucket/raw" \
  --out "s3://$bucket/features" --parameter-store "$params" --memory-limit 512MiB
step train "$bin/rtb-trainer" train --parameter-store "$params" --out "s3://$bucket"

start scorer "$bin/rtb-scorer" serve --parameter-store "$params" --listen "127.0.0.1:$p_scorer" \
  --statsd "$statsd"
scorer_url="http://127.0.0.1:$p_scorer"
# the scorer's own probe when this build has it (no curl needed), else the same GET from bash
if "$bin/rtb-scorer" health --help >/dev/null 2>&1; then
  scorer_ready() { "$bin/rtb-scorer" health --url "$scorer_url/readyz" >/dev/null 2>&1; }
else
  say "this rtb-scorer has no health subcommand (older build); probing /readyz from bash"
  scorer_ready() { answers_200 "$p_scorer" /readyz; }
fi
wait_until scorer 60 scorer_ready
say "scorer ready at $scorer_url"

step adserver-sim "$bin/rtb-adserver-sim" replay --target "$scorer_url" \
  --parameter-store "$params" --load-model open --rate "$rate" --warmup 1 --duration "$duration" \
  --statsd "$statsd" --report-dir "$run/adserver-sim" --progress-interval 0 --ready-timeout 30

# --- results ------------------------------------------------------------------------------------
echo
echo "=== trainer (rtb-trainer train) ==="
cat "$logs/train.out"
echo
echo "=== simulator (rtb-adserver-sim replay, open loop, $rate calls/s for ${duration}s) ==="
cat "$logs/adserver-sim.out"
echo
culprit=adserver-sim
python3 - "$run/adserver-sim/summary.json" <<'PY' || fail "the simulator reported errors"
import json, sys
s = json.load(open(sys.argv[1]))
calls, errors = s["calls"], s["errors"]
print(f"simulator check: {calls['ok']} ok, {calls['failed']} failed, errors {errors or 'none'}")
sys.exit(0 if calls["ok"] > 0 and calls["failed"] == 0 and not errors else 1)
PY

# StatsD flushes every second: wait for the one after the simulator's last packet
echo "=== StatsD (npm statsd on udp $statsd, one flush a second) ==="
statsd_check() {
  python3 - "$run/statsd/flushes.jsonl" "$@" <<'PY'
import json, sys
path, required = sys.argv[1], sys.argv[2:]
counters, gauges, timers = {}, {}, {}
try:
    lines = open(path).read().splitlines()
except FileNotFoundError:
    lines = []
for line in lines:
    try:
        f = json.loads(line)
    except ValueError:  # the flush being written right now
        continue
    for k, v in f["counters"].items():
        counters[k] = counters.get(k, 0) + v
    gauges.update(f["gauges"])
    for k, t in f["timers"].items():
        agg = timers.setdefault(k, {"count": 0, "sum": 0.0, "upper": 0, "p99": 0})
        if t["count"]:
            agg["count"] += t["count"]
            agg["sum"] += t["mean"] * t["count"]
            agg["upper"] = max(agg["upper"], t["upper"])
            agg["p99"] = max(agg["p99"], t.get("upper_99", 0))
ours = lambda k: k.startswith(("filtering_server.", "adserver_client."))
missing = [k for k in required
           if not (counters.get(k, 0) > 0 or timers.get(k, {}).get("count", 0) > 0 or k in gauges)]
if missing:
    print("missing: " + ", ".join(missing))
    sys.exit(1)
print(f"{len(lines)} flushes, statsd.packets_received {counters.get('statsd.packets_received', 0):.0f}")
for k in sorted(filter(ours, counters)):
    print(f"  {k:40} counter  total {counters[k]:.0f}")
for k in sorted(filter(ours, timers)):
    t = timers[k]
    mean = t["sum"] / t["count"] if t["count"] else 0
    print(f"  {k:40} timer    {t['count']} samples, mean {mean:.2f} ms, worst 1-s p99 {t['p99']:.2f} ms, max {t['upper']:.2f} ms")
for k in sorted(filter(ours, gauges)):
    print(f"  {k:40} gauge    last {gauges[k]:.4f}")
PY
}
required=(filtering_server.filtering_count filtering_server.filtering_latency
  adserver_client.adserver_latency_ms adserver_client.likelihood_to_bid)
culprit=statsd
deadline=$((SECONDS + 10))
until statsd_check "${required[@]}" >"$run/statsd/check.txt"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    cat "$run/statsd/check.txt"
    fail "StatsD metrics missing after 10 s (statsd/flushes.jsonl)"
  fi
  sleep 0.5
done
# one more flush so the totals include the simulator's last second
sleep 1.2
statsd_check "${required[@]}"
echo
say "pipeline and checks passed"
