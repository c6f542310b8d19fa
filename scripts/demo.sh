#!/usr/bin/env bash
# The main job end to end on embedded defaults: local disk, no cloud, no cluster.
# Grows with the pipeline: today it generates a day of iPinYou logs, runs the feature ETL and trains,
# evaluates and publishes the bid-filtering model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --workspace --bins
bin="$CARGO_TARGET_DIR/release"
out="${RTB_DEMO_DIR:-data/demo}"
"$bin/rtb-etl" generate --out "$out/raw" --days 1 --bids-per-day "${RTB_DEMO_BIDS:-1000000}"
"$bin/rtb-etl" run --input "$out/raw" --out "$out/features" --parameter-store "$out/parameter-store.json"
# the trainer finds the run through the parameter store, as the original's training step did
"$bin/rtb-trainer" train --parameter-store "$out/parameter-store.json" --out "$out"
echo "parameters published to $out/parameter-store.json:"
cat "$out/parameter-store.json"
