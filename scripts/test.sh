#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, builds once, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# reference data lives beside the repository (../shared/data); tests fail loudly without it
export RTB_SHARED_DATA="${RTB_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
# the end-to-end tests start the real binaries (rtb-etl, rtb-scheduler, rtb-executor)
cargo build --workspace --bins --locked
# benches (cargo bench) and examples are built by clippy --all-targets, not run here
cargo test --workspace --lib --bins --tests --locked "$@"
# the whole system on one machine (S3, SSM, StatsD, cluster, pipeline, scorer, simulator), with
# the debug binaries just built
RTB_ONEBOX_CLEAN=1 deploy/local/run.sh
