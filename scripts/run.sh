#!/usr/bin/env bash
# One entry point for a fresh machine: installs what is needed into .venv, then
#   bash scripts/run.sh pipeline [dvc repro args]   rebuilds everything from the raw archives
#                                                   (all pipelines: BUSI and mini-MIAS)
#   bash scripts/run.sh test [pytest args]          runs the test suite
#   bash scripts/run.sh gate                        CI regression gate: stale-lock check,
#                                                   dvc repro, fresh vs committed metrics
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
    # No arguments: every pipeline (BUSI in dvc.yaml, then pipelines/*/dvc.yaml, e.g. mini-MIAS).
    if [[ $# -eq 0 ]]; then dvc repro --all-pipelines; else dvc repro "$@"; fi
    dvc metrics show
    ;;
  test)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    python -m pytest "$@"
    ;;
  gate)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    python -m busdx.gate lock          # fail fast: code or params changed without a re-run
    dvc repro --all-pipelines          # BUSI and pipelines/*/dvc.yaml (mini-MIAS)
    # On a branch, also compare with main's committed metrics (a regression stays one even
    # when the branch committed its lower numbers honestly).
    base=${BUSDX_BASELINE:-}
    if [[ -z $base ]] && git rev-parse -q --verify origin/main >/dev/null \
        && [[ $(git rev-parse HEAD) != $(git rev-parse origin/main) ]]; then
      base=origin/main
    fi
    python -m busdx.gate metrics ${base:+--baseline "$base"}
    ;;
  *)
    echo "usage: bash scripts/run.sh pipeline|test|gate [args]" >&2
    exit 2
    ;;
esac
