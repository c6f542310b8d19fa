#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine; quick when all is there.
# `scripts/setup.sh build` installs only what building needs (the demo's set-up); without an
# argument, also every server and tool the tests start.
set -euo pipefail
scope="${1:-test}"
case "$scope" in build | test) ;; *) echo "usage: scripts/setup.sh [build|test]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
source scripts/env.sh

say() { echo "setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# apt_install WHY PKG...: installs the Debian packages not yet installed
apt_install() {
  local why=$1 missing=() pkg; shift
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  say "installing ${missing[*]} ($why)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# clang + libclang: bindgen for lightgbm3-sys; pkg-config for native crates
apt_install "to build" clang libclang-dev pkg-config

# LightGBM 4.7 needs CMake >= 3.28; Debian 12 ships 3.25
cmake_ok() {
  command -v cmake >/dev/null 2>&1 || return 1
  python3 - "$(cmake --version | head -n1 | awk '{print $3}')" <<'PY'
import sys
v = tuple(int(x) for x in sys.argv[1].split(".")[:2])
sys.exit(0 if v >= (3, 28) else 1)
PY
}
if ! cmake_ok; then
  say "installing cmake>=3.28 from pypi"
  python3 -m pip install -q 'cmake>=3.28,<4'
  hash -r
  cmake_ok || { say "cmake >= 3.28 still not on PATH ($(command -v cmake || echo none))"; exit 1; }
fi

[ "$scope" = build ] && exit 0

# pbzip2 (one stream per block group) and lbzip2 write the parallel-compressed .bz2 files, and
# tabix's bgzip the many-member .gz files, the range-split reading is tested on: written by tools
# other than our own encoders
apt_install "for the compressed range tests" pbzip2 lbzip2 tabix

# moto's server stands in for AWS SSM Parameter Store in the tests
if ! command -v moto_server >/dev/null 2>&1; then
  say "installing moto[server] (SSM emulator for tests)"
  python3 -m pip install -q 'moto[server]==5.2.1'
  hash -r
fi

# Python woothee 1.10.1 (the original kit's user-agent classifier) is what the device-type
# parity test compares ours with
if ! python3 -c 'import woothee, sys; sys.exit(woothee.__version__ != "1.10.1")' 2>/dev/null; then
  say "installing woothee 1.10.1 (the original's device-type classifier, for the parity test)"
  python3 -m pip install -q 'woothee==1.10.1'
fi

# PySpark 3.5 (on Java 17) is the original kit's feature engine: the Spark-exact mode's tests
# run it on the same files as ours
if ! command -v java >/dev/null 2>&1; then
  say "installing openjdk-17-jre-headless (for PySpark)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
if ! python3 -c 'import numpy, pyspark, sys; sys.exit(pyspark.__version__ != "3.5.9")' 2>/dev/null; then
  say "installing pyspark 3.5.9 (the original's feature engine, for the Spark-exact tests)"
  python3 -m pip install -q 'pyspark==3.5.9' 'numpy<3'
fi

# s3s-fs is the S3-compatible server the S3 tests start on loopback
if ! command -v s3s-fs >/dev/null 2>&1; then
  say "installing s3s-fs 0.14.1 (S3-compatible test server; a few minutes on a cold machine)"
  cargo install s3s-fs@0.14.1 --features binary --locked --quiet
fi

# npm statsd is the StatsD daemon deploy/local/run.sh starts (the stand-in for the CloudWatch
# agent), installed under a cache folder outside the clone; the version deploy/docker pins too
STATSD_VERSION=0.9.0
statsd_home="${RTB_STATSD_HOME:-$HOME/.cache/rtb-statsd}"
if ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs and npm (for the StatsD daemon)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
statsd_found=$(node -p 'require(process.argv[1]).version' "$statsd_home/node_modules/statsd/package.json" 2>/dev/null || true)
if [ "$statsd_found" != "$STATSD_VERSION" ]; then
  say "installing npm statsd $STATSD_VERSION under $statsd_home"
  npm install --prefix "$statsd_home" --no-audit --no-fund --omit=dev --save-exact --loglevel=error \
    "statsd@$STATSD_VERSION"
fi
