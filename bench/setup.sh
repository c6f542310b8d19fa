#!/usr/bin/env bash
# Installs what the baselines need: the ETL ones (bench/pyspark_etl.py, bench/duckdb_etl.py) and the
# trainer ones (bench/train_baselines.py); idempotent and quick when everything is there. Java 17+
# must already be on PATH (PySpark 3.5 runs on it).
set -euo pipefail
say() { echo "bench/setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PY_PKGS=(pyspark==3.5.9 numpy==1.26.4 duckdb==1.4.4 woothee==1.10.1)  # pyspark.ml needs numpy; the pyspark scripts/setup.sh installs for the tests
# trainer baselines: xgboost-cpu is the CPU build of xgboost (no CUDA/NCCL wheels), imported as
# xgboost; lightgbm 4.7.0 is the LightGBM core that lightgbm3-sys 1.0.11 builds
PY_PKGS+=(xgboost-cpu==3.2.0 lightgbm==4.7.0 pyarrow==18.1.0)

command -v java >/dev/null || { say "java not found: install a JDK 17 (openjdk-17-jre-headless)"; exit 1; }
java -version 2>&1 | head -n1 >&2

# GNU time: wall time and peak RSS in compare_etl.sh; wrk: the scorer's throughput (scorer_bench.sh)
apt_missing=()
[ -x /usr/bin/time ] || apt_missing+=(time)
command -v wrk >/dev/null || apt_missing+=(wrk)
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "installing ${apt_missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if ! python3 - "${PY_PKGS[@]}" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  say "installing ${PY_PKGS[*]}"
  python3 -m pip install -q "${PY_PKGS[@]}"
fi
say "ready"
