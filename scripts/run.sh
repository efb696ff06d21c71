#!/usr/bin/env bash
# One entry point for a fresh machine: installs what is needed into .venv, then
#   bash scripts/run.sh pipeline [dvc repro args]   rebuilds everything from the raw archives
#                                                   (all pipelines: BUSI and mini-MIAS)
#   bash scripts/run.sh test [pytest args]          runs the test suite
#   bash scripts/run.sh gate [--fresh]              CI regression gate: stale-lock check,
#                                                   re-executes the stages this commit changed
#                                                   (--fresh: every stage, from scratch), fresh
#                                                   vs committed metrics, report, push
#   bash scripts/run.sh push|pull [dvc args]        outputs and run-cache to/from the DVC remote
#
# Every clone on a machine shares one DVC cache and one default remote outside the repo
# (so CI on the machine where a change was made reuses its outputs; a new machine starts
# cold): $BUSDX_DVC_CACHE (default ~/.cache/busdx/dvc-cache) and $BUSDX_DVC_REMOTE (default
# ~/.cache/busdx/dvc-remote; any DVC URL: s3://, ssh://, gs://), set in .dvc/config.local.
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

storage() {
  # The shared cache and the default remote, in this clone's .dvc/config.local (untracked).
  local cache=${BUSDX_DVC_CACHE:-$HOME/.cache/busdx/dvc-cache}
  local remote=${BUSDX_DVC_REMOTE:-$HOME/.cache/busdx/dvc-remote}
  [[ $remote == *://* ]] || mkdir -p "$remote"
  mkdir -p "$cache"
  dvc cache dir --local "$cache"
  # Update the URL only, so options set with `dvc remote modify --local default ...`
  # (keyfile, credentials) survive.
  if dvc remote list --local | grep -q '^default[[:space:]]'; then
    dvc remote modify --local default url "$remote"
  else
    dvc remote add --local default "$remote"
  fi
  dvc remote default --local default
}

cmd=${1:-}
shift || true
case "$cmd" in
  pipeline)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    storage
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
    storage
    if [[ ${1:-} != --fresh ]]; then
      # Incremental (busdx.ci): stale-lock check, re-execute the stages whose lock entry
      # differs from the baseline's, metrics rules, build/gate/report.md, push, record.
      exec python -m busdx.gate run "$@"
    fi
    # --fresh: every pipeline rebuilt from scratch (forced, no run-cache), as CI did before.
    python -m busdx.gate lock          # fail fast: code or params changed without a re-run
    dvc repro --all-pipelines --force --no-run-cache
    # On a branch, also compare with main's committed metrics (a regression stays one even
    # when the branch committed its lower numbers honestly).
    base=${BUSDX_BASELINE:-}
    if [[ -z $base ]] && git rev-parse -q --verify origin/main >/dev/null \
        && [[ $(git rev-parse HEAD) != $(git rev-parse origin/main) ]]; then
      base=origin/main
    fi
    python -m busdx.gate metrics ${base:+--baseline "$base"}
    python -m busdx.gate record        # push; this commit becomes the machine's baseline
    ;;
  push)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    storage
    dvc push --run-cache "$@"          # outputs and the run history of every stage
    ;;
  pull)
    bootstrap
    export PATH="$PWD/$VENV/bin:$PATH"
    storage
    dvc pull --run-cache "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh pipeline|test|gate|push|pull [args]" >&2
    exit 2
    ;;
esac
