#!/usr/bin/env bash
# Installs what the ETL baselines (bench/pyspark_etl.py, bench/duckdb_etl.py) need; idempotent and
# quick when everything is there. Java 17+ must already be on PATH (PySpark 3.5 runs on it).
set -euo pipefail
say() { echo "bench/setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PY_PKGS=(pyspark==3.5.8 numpy==1.26.4 duckdb==1.4.4 woothee==1.10.1)  # pyspark.ml needs numpy

command -v java >/dev/null || { say "java not found: install a JDK 17 (openjdk-17-jre-headless)"; exit 1; }
java -version 2>&1 | head -n1 >&2

if [ ! -x /usr/bin/time ]; then   # GNU time, for wall time and peak RSS in compare_etl.sh
  say "installing GNU time"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
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
