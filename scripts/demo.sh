#!/usr/bin/env bash
# The main job end to end on embedded defaults: local disk, no cloud, no cluster.
# Generates a day of iPinYou logs, runs the feature ETL, trains, evaluates and publishes the
# bid-filtering model, serves it and replays the ETL's inference requests at the scorer.
set -euo pipefail
cd "$(dirname "$0")/.."
# only what building needs: the test servers and tools come with scripts/test.sh
scripts/setup.sh build
source scripts/env.sh
# the dev profile (dependencies optimised) by default: the build scripts/test.sh reuses, cold in
# about 22 minutes on 2 cores; RTB_DEMO_PROFILE=release for the benchmarks' binaries (about 60)
profile="${RTB_DEMO_PROFILE:-dev}"
cold=$([ "$profile" = dev ] && echo 22 || echo 60)
echo "building the workspace ($profile profile); a first, cold build takes about $cold minutes on 2 cores" >&2
cargo build --profile "$profile" --locked --workspace --bins
bin="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
out="${RTB_DEMO_DIR:-data/demo}"
"$bin/rtb-etl" generate --out "$out/raw" --days 1 --bids-per-day "${RTB_DEMO_BIDS:-1000000}"
"$bin/rtb-etl" run --input "$out/raw" --out "$out/features" --parameter-store "$out/parameter-store.json"
# the trainer finds the run through the parameter store, as the original's training step did
"$bin/rtb-trainer" train --parameter-store "$out/parameter-store.json" --out "$out"
echo "parameters published to $out/parameter-store.json:"
cat "$out/parameter-store.json"

# serve the published model on loopback and replay the ETL's inference requests at it
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/rtb-scorer" serve --listen "127.0.0.1:$port" --parameter-store "$out/parameter-store.json" \
  --reload-interval 0 >"$out/scorer.log" 2>&1 &
scorer=$!
trap 'kill "$scorer" 2>/dev/null || true; wait "$scorer" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  "$bin/rtb-scorer" health --url "http://127.0.0.1:$port/readyz" 2>/dev/null && break
  kill -0 "$scorer" 2>/dev/null || { cat "$out/scorer.log" >&2; exit 1; }
  sleep 0.2
done
"$bin/rtb-scorer" health --url "http://127.0.0.1:$port/readyz"
"$bin/rtb-adserver-sim" replay --target "http://127.0.0.1:$port" \
  --parameter-store "$out/parameter-store.json" --load-model open \
  --rate "${RTB_DEMO_RATE:-1000}" --duration "${RTB_DEMO_SECONDS:-10}" --report-dir "$out/adserver-sim"
