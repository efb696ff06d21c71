"""CI regression gate: the committed dvc.lock must match the code, and fresh metrics must
match the committed ones within per-metric tolerances (ci/gate.yaml).

    python -m busdx.gate lock                      # stale-lock check (before `dvc repro`)
    python -m busdx.gate metrics [--baseline REF]  # after `dvc repro`: fresh vs committed
    python -m busdx.gate run                       # the incremental gate (busdx.ci)
    python -m busdx.gate record                    # after a passing `gate --fresh`

``lock``: a stage is stale when `dvc status` reports one of its git-tracked deps (code,
params.yaml) as changed, or a changed command: someone edited code or params without
re-running. Missing data deps (a fresh clone has no cache) are not staleness.

``metrics``: `dvc metrics diff HEAD` gives committed (old) and fresh (new) values. A rule
fails when the fresh value moved against its direction by more than its tolerance from
the committed value, or from the baseline ref's value (e.g. ``main`` for a branch), or when
it is below (above) its floor. A fresh value better than committed by more than the
tolerance also fails: the committed numbers do not come from the committed code.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

RULES = Path("ci/gate.yaml")


@dataclass(frozen=True)
class Rule:
    file: str
    key: str
    higher_is_better: bool = True
    tolerance: float = 0.02
    floor: float | None = None  # the worst acceptable value (a ceiling when lower is better)


def load_rules(path: Path | str = RULES) -> list[Rule]:
    """``{file: {key: {higher_is_better, tolerance, floor}}}`` → rules (clear errors)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    rules = []
    for file, keys in raw.items():
        if not isinstance(keys, dict) or not keys:
            raise ValueError(f"{path}: {file!r} must map metric keys to rules")
        for key, spec in keys.items():
            spec = spec or {}
            unknown = set(spec) - {"higher_is_better", "tolerance", "floor"}
            if unknown:
                raise ValueError(f"{path}: {file}:{key}: unknown fields {sorted(unknown)}")
            rules.append(Rule(file, key, **spec))
    return rules


def _run(args: list[str]) -> str:
    if args[0] == "dvc":  # the dvc of this interpreter's environment, even when not on PATH
        from busdx.report.vega import dvc_executable
        args = [dvc_executable(), *args[1:]]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def tracked_files() -> set[str]:
    return set(_run(["git", "ls-files"]).split("\n"))


def stale_stages(status: dict, tracked: set[str]) -> dict[str, list[str]]:
    """Stage → reasons, from `dvc status --json`, counting only git-tracked deps."""
    stale: dict[str, list[str]] = {}
    for stage, entries in status.items():
        reasons = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            if entry.get("changed command"):
                reasons.append("command changed")
            for path, change in (entry.get("changed deps") or {}).items():
                if isinstance(change, dict):  # params file: {param: change}
                    reasons += [f"param {p} {c}" for p, c in sorted(change.items())]
                elif path in tracked and change != "deleted":
                    reasons.append(f"{path} {change}")
        if reasons:
            stale[stage] = reasons
    return stale


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check(rules: list[Rule], fresh: dict, committed: dict,
          baseline: dict | None = None) -> list[str]:
    """Failure messages. Each dict: {file: {flat key: value}}."""
    failures = []
    for r in rules:
        new = fresh.get(r.file, {}).get(r.key)
        if not isinstance(new, (int, float)):
            failures.append(f"{r.file}:{r.key}: missing from the fresh metrics")
            continue
        sign = 1.0 if r.higher_is_better else -1.0
        for what, ref in (("committed", committed), ("baseline", baseline)):
            old = (ref or {}).get(r.file, {}).get(r.key)
            if not isinstance(old, (int, float)):
                if what == "committed":
                    failures.append(f"{r.file}:{r.key}: no committed value to compare with")
                continue
            delta = sign * (new - old)
            if delta < -r.tolerance:
                failures.append(f"{r.file}:{r.key}: {new:.4f} is worse than {what} {old:.4f} "
                                f"by {abs(new - old):.4f} (tolerance {r.tolerance})")
            elif what == "committed" and delta > r.tolerance:
                failures.append(f"{r.file}:{r.key}: fresh {new:.4f} differs from committed "
                                f"{old:.4f} by {abs(new - old):.4f} (tolerance {r.tolerance}): "
                                "the committed metrics do not come from this code")
        if r.floor is not None and sign * (new - r.floor) < 0:
            failures.append(f"{r.file}:{r.key}: {new:.4f} is past its floor {r.floor}")
    return failures


def workspace_metrics(files: list[str]) -> dict:
    return {f: flatten(json.loads(Path(f).read_text())) for f in files if Path(f).exists()}


def committed_metrics(files: list[str], rev: str) -> dict:
    out = {}
    for f in files:
        r = subprocess.run(["git", "show", f"{rev}:{f}"], capture_output=True, text=True)
        if r.returncode == 0:
            out[f] = flatten(json.loads(r.stdout))
    return out


def check_lock() -> int:
    stale = stale_stages(json.loads(_run(["dvc", "status", "--json"]) or "{}"), tracked_files())
    for stage, reasons in stale.items():
        print(f"STALE {stage}: {', '.join(reasons[:6])}" + (" ..." if len(reasons) > 6 else ""))
    print(f"gate lock: {len(stale)} stale stages" if stale else "gate lock: dvc.lock is current")
    return 1 if stale else 0


def check_metrics(rules: list[Rule], baseline: str | None) -> tuple[list[str], dict, dict]:
    """Print the metrics diffs; return (failures, fresh, committed) for the rule files."""
    files = sorted({r.file for r in rules})
    # The rule files in full, then whatever else changed.
    print(_run(["dvc", "metrics", "diff", "HEAD", "--md", "--all", "--targets", *files]))
    print(_run(["dvc", "metrics", "diff", "HEAD", "--md"]) or "no other metric changed")
    fresh, committed = workspace_metrics(files), committed_metrics(files, "HEAD")
    failures = check(rules, fresh, committed,
                     committed_metrics(files, baseline) if baseline else None)
    for f in failures:
        print(f"FAIL {f}")
    print(f"gate metrics: {len(rules)} rules, {len(failures)} failures")
    return failures, fresh, committed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m busdx.gate", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lock", help="fail when dvc.lock does not match the code and params")
    m = sub.add_parser("metrics", help="fail when fresh metrics regress (run after dvc repro)")
    m.add_argument("--rules", type=Path, default=RULES)
    m.add_argument("--baseline", default=None,
                   help="also compare with this git ref's committed metrics (e.g. main)")
    g = sub.add_parser("run", help="the incremental gate: re-execute the stages whose lock "
                       "entry changed, check metrics, write the report, push and record")
    g.add_argument("--rules", type=Path, default=RULES)
    g.add_argument("--report", type=Path, default=Path("build/gate/report.md"))
    g.add_argument("--budget-min", type=float, default=None,
                   help="re-execution budget in minutes (default: ci/gate_budget.yaml)")
    r = sub.add_parser("record", help="after a passing full rebuild (gate --fresh): push "
                       "outputs and run-cache, record every pipeline as passed here")
    r.add_argument("--rules", type=Path, default=RULES)
    a = ap.parse_args(argv)
    if a.cmd == "lock":
        return check_lock()
    if a.cmd == "metrics":
        failures, _, _ = check_metrics(load_rules(a.rules), a.baseline)
        return 1 if failures else 0
    from busdx.ci import gate_run
    if a.cmd == "run":
        return gate_run.main(a.rules, a.report, a.budget_min)
    return gate_run.record_fresh(a.rules)


if __name__ == "__main__":
    sys.exit(main())
