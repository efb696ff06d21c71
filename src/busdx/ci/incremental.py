"""The incremental regression gate: re-execute exactly the stages this commit changed.

For every pipeline (dvc.yaml, then pipelines/*/dvc.yaml, as ci/gate_budget.yaml orders them):
1. baseline lock: ``origin/main``'s when it differs from HEAD (or $BUSDX_BASELINE), else the
   lock of the last commit that passed the gate on this machine (busdx.ci.state), else none
   (a cold start: every stage);
2. changed = the stages whose lock entry differs from the baseline's (busdx.ci.selection);
3. their direct producers' outputs are pulled from the DVC remote (rebuilt by `dvc repro
   --pull` when the remote lacks them), then the changed stages are re-executed, forced and
   without the run-cache, in topological order, within the time budget;
then fresh metrics are compared with the committed ones (ci/gate.yaml, busdx.gate.check),
the report is written, and on a pass outputs and run-cache are pushed and the pass recorded.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from busdx.ci import selection, state
from busdx.report.vega import dvc_executable

BUDGET = Path("ci/gate_budget.yaml")
RUNNING = re.compile(r"Running stage '(?:[^']*:)?([^']+)'")


@dataclass
class Plan:
    dvcfile: str                  # e.g. "dvc.yaml", "pipelines/mias/dvc.yaml"
    baseline: str                 # what the lock was compared with, in words
    base_lock: dict | None
    head_lock: dict
    changed: list[str]
    estimate_s: float = 0.0
    executed: dict[str, float] = field(default_factory=dict)  # stage → seconds
    restored: list[str] = field(default_factory=list)         # producers pulled/rebuilt
    skipped: str | None = None    # why the changed stages were not re-executed
    ok: bool = True

    @property
    def wdir(self) -> Path:
        return Path(self.dvcfile).parent

    def target(self, stage: str) -> str:
        return f"{self.dvcfile}:{stage}"


def git(*args: str, check: bool = True) -> str:
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip() if r.returncode == 0 else ""


def project_id() -> str:
    """The root commit: the same for every clone of this project, different across projects."""
    roots = git("rev-list", "--max-parents=0", "HEAD", check=False).split()
    return roots[-1] if roots else "unknown"


def baseline_ref() -> str | None:
    """$BUSDX_BASELINE, else origin/main when it exists and differs from HEAD."""
    if os.environ.get("BUSDX_BASELINE"):
        return os.environ["BUSDX_BASELINE"]
    main = git("rev-parse", "-q", "--verify", "origin/main", check=False)
    return "origin/main" if main and main != git("rev-parse", "HEAD") else None


def lock_at(ref: str, dvcfile: str) -> dict | None:
    text = git("show", f"{ref}:{Path(dvcfile).with_suffix('.lock').as_posix()}", check=False)
    return yaml.safe_load(text) if text else None


def load_budget() -> dict:
    return yaml.safe_load(BUDGET.read_text()) or {} if BUDGET.exists() else {}


def pipelines(budget: dict) -> list[str]:
    """The budget file's order first, then any other pipelines/*/dvc.yaml."""
    listed = [p for p in (budget.get("pipelines") or {}) if Path(p).exists()]
    extra = sorted(str(p) for p in Path("pipelines").glob("*/dvc.yaml") if str(p) not in listed)
    return listed + extra


def plan(dvcfile: str, ref: str | None, st: dict, project: str, budget: dict) -> Plan:
    head = yaml.safe_load(Path(dvcfile).with_suffix(".lock").read_text()) or {}
    if ref:
        base, label = lock_at(ref, dvcfile), ref
        label += "" if base is not None else " (no lock there: every stage)"
    else:
        rec = state.last_pass(st, project, dvcfile)
        base = rec["lock"] if rec else None
        label = (f"last pass on this machine ({rec['commit'][:10]}, {rec['at']})" if rec
                 else "none: cold start, every stage")
    p = Plan(dvcfile, label, base, head, selection.changed_stages(base, head))
    known = state.durations(st, project, dvcfile)
    n = max(1, len(selection.stage_entries(head)))
    default = 60.0 * float((budget.get("pipelines") or {}).get(dvcfile, 10)) / n
    p.estimate_s = sum(known.get(s, default) for s in p.changed)
    return p


def run_streamed(cmd: list[str], log) -> tuple[int, dict[str, float]]:
    """Run a `dvc repro`, echoing its output, timing each stage from DVC's
    "Running stage 'x'" lines (one call keeps DVC's start-up cost off every stage)."""
    times: dict[str, float] = {}
    current, t0 = None, time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    for line in proc.stdout:
        log(line.rstrip("\n"))
        m = RUNNING.search(line)
        if m:
            now = time.monotonic()
            if current:
                times[current] = round(now - t0, 1)
            current, t0 = m.group(1), now
    rc = proc.wait()
    if current:
        times[current] = round(time.monotonic() - t0, 1)
    return rc, times


def missing_producers(p: Plan) -> list[str]:
    """Producers of a dep of a changed stage that is still absent from the workspace."""
    entries, g = selection.stage_entries(p.head_lock), selection.graph(p.head_lock)
    missing = set()
    for s in p.changed:
        for dep in entries[s].get("deps", []):
            if (p.wdir / dep["path"]).exists():
                continue
            missing |= {u for u in g.predecessors(s) if u not in p.changed and any(
                selection.covers(o["path"], dep["path"]) for o in entries[u].get("outs", []))}
    return selection.topological(p.head_lock, missing)


def execute(p: Plan, log) -> None:
    """Restore the changed stages' producers, then re-execute the changed stages."""
    dvc = dvc_executable()
    producers = selection.upstream_of(p.head_lock, p.changed)
    if producers:
        subprocess.run([dvc, "pull", "--allow-missing", "-q", *map(p.target, producers)])
        missing = missing_producers(p)
        if missing:  # not on the remote: DVC restores from the run-cache or rebuilds them
            log(f"gate: rebuilding {missing} (outputs not on the remote)")
            rc, times = run_streamed([dvc, "repro", "--pull", *map(p.target, missing)], log)
            if rc:
                p.ok = False
                return
        p.restored = producers
    rc, p.executed = run_streamed(
        [dvc, "repro", "--force", "--single-item", "--no-run-cache", *map(p.target, p.changed)],
        log)
    p.ok = rc == 0


def run(budget_s: float | None = None, log=print) -> tuple[list[Plan], float]:
    """Plan and execute every pipeline; returns the plans and the wall time spent."""
    budget = load_budget()
    limit = budget_s or 60.0 * float(budget.get("budget_minutes", 32))
    st, project, ref = state.load(), project_id(), baseline_ref()
    plans = [plan(f, ref, st, project, budget) for f in pipelines(budget)]
    t_start = time.monotonic()
    for i, p in enumerate(plans):
        spent = time.monotonic() - t_start
        log(f"gate: {p.dvcfile}: baseline {p.baseline}; {len(p.changed)} stage(s) to re-execute "
            f"(estimated {p.estimate_s / 60:.1f} min, {spent / 60:.1f} of "
            f"{limit / 60:.0f} min spent)")
        if not p.changed:
            continue
        if i > 0 and spent + p.estimate_s > limit:
            p.skipped = (f"time budget: needs ~{p.estimate_s / 60:.0f} min, "
                         f"{max(0.0, limit - spent) / 60:.0f} min left; lock checked only")
            log(f"gate: {p.dvcfile}: not re-executed ({p.skipped})")
            continue
        execute(p, log)
        st = state.load()  # another gate may have written meanwhile: merge, do not clobber
        state.record_durations(st, project, p.dvcfile, p.executed)
        state.save(st)
    return plans, time.monotonic() - t_start


def record(plans: list[Plan], metrics: dict) -> None:
    """After a pass: every pipeline that was fully checked becomes this machine's baseline."""
    st, project, commit = state.load(), project_id(), git("rev-parse", "HEAD")
    for p in plans:
        if p.ok and not p.skipped:
            prefix = "" if p.wdir == Path(".") else f"{p.wdir.as_posix()}/"
            mine = {f: v for f, v in metrics.items()
                    if f.startswith(prefix) and (prefix or not f.startswith("pipelines/"))}
            state.record_pass(st, project, p.dvcfile, commit, p.head_lock, mine)
    state.save(st)
