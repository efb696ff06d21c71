#!/usr/bin/env bash
# One entry point for a fresh machine: installs what is needed into .venv, then
#   bash scripts/run.sh pipeline [dvc repro args]   rebuilds everything from the raw archive
#   bash scripts/run.sh test [pytest args]          runs the test suite
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

bootstrap() {
  # Reinstall only when requirements or the package metadata changed.
  local want
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then return; fi
  echo "== installing into $VENV (first run takes a few minutes) =="
  [[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$STAMP"
}

cmd=${1:-}
shift || true
case "$cmd" in
  pipeline)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    dvc repro "$@"
    dvc metrics show
    ;;
  test)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    python -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh pipeline|test [args]" >&2
    exit 2
    ;;
esac
