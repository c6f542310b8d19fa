#!/usr/bin/env bash
# The main job end to end on embedded defaults: local disk, no cloud, no cluster.
# Grows with the pipeline: today it generates a day of iPinYou logs and runs the feature ETL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --release --locked -p rtb-etl
bin="$CARGO_TARGET_DIR/release"
out="${RTB_DEMO_DIR:-data/demo}"
"$bin/rtb-etl" generate --out "$out/raw" --days 1 --bids-per-day "${RTB_DEMO_BIDS:-1000000}"
"$bin/rtb-etl" run --input "$out/raw" --out "$out/features" --parameter-store "$out/parameter-store.json"
echo "parameters published to $out/parameter-store.json:"
cat "$out/parameter-store.json"
