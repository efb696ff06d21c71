#!/usr/bin/env bash
# CI wall time of the incremental gate for three kinds of commit, on this machine:
#   bash benchmarks/ci_times.sh docs|evaluate|train [--gate-only]
# A developer clone of HEAD makes the commit (docs: a README line; evaluate: a line in
# src/busdx/evaluate/run.py, then `dvc repro --all-pipelines`; train: params.yaml
# train_cls.channels_last toggled, then `dvc repro dvc.yaml`), then a fresh clone of it runs
# .ci/run (or only `scripts/run.sh gate` with --gate-only, reusing this checkout's .venv)
# and the wall time is printed. HEAD must have passed the gate here (its locks are the
# baseline); the gate record is restored afterwards, so runs do not become each other's
# baseline. Clones sit beside this checkout (../shared must be there) and are removed.
set -euo pipefail
kind=${1:?usage: bash benchmarks/ci_times.sh docs|evaluate|train [--gate-only]}
mode=${2:-}
src=$(cd "$(dirname "$0")/.." && pwd)
parent=$(dirname "$src")
dev=$parent/busdx-ci-$kind-dev
ci=$parent/busdx-ci-$kind-ci
state=$("$src/.venv/bin/python" -c "from busdx.ci import state; print(state.state_path())")
backup=$(mktemp)
cp "$state" "$backup" 2>/dev/null || : > "$backup"
cleanup() {
  if [[ -s $backup ]]; then cp "$backup" "$state"; fi
  rm -rf "$dev" "$ci" "$backup"
}
trap cleanup EXIT
rm -rf "$dev" "$ci"

git clone -q "$src" "$dev"
ln -s "$src/.venv" "$dev/.venv"          # the developer's environment, with this clone's code
export PYTHONPATH=$dev/src
cd "$dev"
git config user.email bench@busdx.invalid
git config user.name "ci benchmark"
bash scripts/run.sh pull --allow-missing >/dev/null 2>&1 || true   # storage + outputs
case $kind in
  docs)
    echo "Benchmark line." >> README.md ;;
  evaluate)
    echo "# benchmark: an evaluate-only change" >> src/busdx/evaluate/run.py
    bash scripts/run.sh pipeline >/dev/null ;;
  train)
    .venv/bin/python - <<'EOF'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["train_cls"]["channels_last"] = not p["train_cls"]["channels_last"]
text = open("params.yaml").read()
old = f"channels_last: {str(not p['train_cls']['channels_last']).lower()}"
new = f"channels_last: {str(p['train_cls']['channels_last']).lower()}"
start = text.index("train_cls:")
i = text.index(old, start)
open("params.yaml", "w").write(text[:i] + new + text[i + len(old):])
EOF
    bash scripts/run.sh pipeline dvc.yaml >/dev/null ;;
  *) echo "unknown kind $kind" >&2; exit 2 ;;
esac
git add -u && git commit -qm "benchmark: $kind change"   # tracked files only (.venv is a link here)
unset PYTHONPATH
git clone -q "$dev" "$ci"
cd "$ci"
start=$SECONDS
if [[ $mode == --gate-only ]]; then
  ln -s "$src/.venv" .venv
  PYTHONPATH=$ci/src bash scripts/run.sh gate
else
  bash .ci/run
fi
echo "ci_times: $kind ${mode:-full .ci/run}: $(( SECONDS - start )) s"
cat build/gate/report.md > "$parent/busdx-ci-$kind-report.md" 2>/dev/null || true
