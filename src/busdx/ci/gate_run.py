"""`python -m busdx.gate run` (what `scripts/run.sh gate` calls) and `record` (after
`gate --fresh`): lock check, incremental re-execution, metrics rules, report, push, record."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path


from busdx import gate
from busdx.ci import incremental, report, selection, state
from busdx.report.vega import dvc_executable


def _old_metrics(files: list[str], ref: str | None, plans, project: str) -> dict:
    """The baseline's values: the ref's committed metrics, else those recorded with the
    last pass on this machine, else HEAD's committed ones."""
    if ref:
        return gate.committed_metrics(files, ref)
    old = gate.committed_metrics(files, "HEAD")
    st = state.load()
    for p in plans:
        rec = state.last_pass(st, project, p.dvcfile)
        for f, values in ((rec or {}).get("metrics") or {}).items():
            if f in old:
                old[f] = values
    return old


def _plots(out_dir: Path, plans, log) -> tuple[list[Path], str]:
    """`dvc plots diff HEAD` (committed vs this run) rendered to SVG, when a stage ran."""
    if not any(p.executed for p in plans):
        return [], ""
    try:
        from busdx.report.vega import render_dvc_plots
        return render_dvc_plots(out_dir, revs=["HEAD"]), ""
    except Exception as e:  # the verdict never depends on drawing
        log(f"gate: plots not rendered: {e}")
        return [], f"Plots could not be rendered: {str(e).splitlines()[0][:300]}"


def push(log) -> None:
    """Outputs and run-cache to the default remote; a failed push is reported, not fatal."""
    dvc = dvc_executable()
    r = subprocess.run([dvc, "push", "-q", "--run-cache"], capture_output=True, text=True)
    if r.returncode:
        log(f"gate: `dvc push --run-cache` failed (the verdict stands):\n{r.stderr[-1500:]}")


def main(rules_path: Path, report_path: Path, budget_min: float | None, log=print) -> int:
    t0 = time.monotonic()
    rules = gate.load_rules(rules_path)
    files = sorted({r.file for r in rules})
    commit, project, ref = incremental.git("rev-parse", "HEAD"), incremental.project_id(), \
        incremental.baseline_ref()
    stale = gate.check_lock()
    plans, spent = ([], 0.0) if stale else incremental.run(
        budget_min * 60 if budget_min else None, log)
    failures = ["dvc.lock is stale: run `dvc repro` and commit dvc.lock"] if stale else []
    failures += [f"{p.dvcfile}: a re-executed stage failed (see the log above)"
                 for p in plans if not p.ok]
    metric_failures, fresh, _ = gate.check_metrics(rules, ref)
    failures += metric_failures
    passed = not failures
    params = {p.dvcfile: selection.changed_params(p.base_lock, p.head_lock) for p in plans}
    plot_files, note = _plots(report_path.parent / "plots", plans, log)
    text = report.render(
        passed=passed, commit=commit, plans=plans, rules=rules,
        old=_old_metrics(files, ref, plans, project), new=fresh, failures=failures,
        params=params, gate_seconds=spent, plot_files=plot_files, out=report_path, extra=note)
    log("\n".join(text.splitlines()[:2]))  # the verdict; .ci/run prints the whole report
    if passed:
        push(log)
        incremental.record(plans, fresh)
    log(f"gate: {'passed' if passed else 'FAILED'} in {(time.monotonic() - t0) / 60:.1f} min; "
        f"report: {report_path}")
    return 0 if passed else 1


def record_fresh(rules_path: Path, log=print) -> int:
    """Every pipeline was rebuilt from scratch and passed: push, and make this commit the
    machine's baseline (its committed locks, not the workspace's re-run ones)."""
    rules = gate.load_rules(rules_path)
    fresh = gate.workspace_metrics(sorted({r.file for r in rules}))
    plans = []
    for f in incremental.pipelines(incremental.load_budget()):
        lock = incremental.lock_at("HEAD", f) or {}
        plans.append(incremental.Plan(f, "fresh rebuild", None, lock, []))
    push(log)
    incremental.record(plans, fresh)
    log(f"gate: recorded {[p.dvcfile for p in plans]} as passed at this commit")
    return 0
