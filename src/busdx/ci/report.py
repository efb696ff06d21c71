"""The gate's markdown report for a reviewer: headline metrics old → new with the new 95 %
CIs, the params that changed, the stages re-executed with their times, and the plots."""
from __future__ import annotations

import json
from pathlib import Path

from busdx.gate import Rule


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def ci_of(file: str, key: str, fresh_headline: dict) -> tuple[float, float] | None:
    """The 95 % CI of a headline key ``<role>.<metric>``: the role's model file beside the
    headline (``metrics/<model>.json``) holds ``ci.<metric>.{lo,hi}``."""
    role, _, metric = key.partition(".")
    model = fresh_headline.get(f"{role}.model")
    if not isinstance(model, str):
        return None
    try:
        ci = json.loads((Path(file).parent / f"{model}.json").read_text())["ci"][metric]
        return float(ci["lo"]), float(ci["hi"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def metrics_table(rules: list[Rule], old: dict, new: dict) -> list[str]:
    lines = ["| file | metric | old | new | change | new 95 % CI |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rules:
        o, n = old.get(r.file, {}).get(r.key), new.get(r.file, {}).get(r.key)
        change = (f"{n - o:+.4f}" if isinstance(o, (int, float)) and isinstance(n, (int, float))
                  else "–")
        ci = ci_of(r.file, r.key, new.get(r.file, {}))
        lines.append(f"| {r.file} | {r.key} | {_num(o)} | {_num(n)} | {change} | "
                     + (f"[{ci[0]:.3f}, {ci[1]:.3f}] |" if ci else "– |"))
    return lines


def render(*, passed: bool, commit: str, plans, rules: list[Rule], old: dict, new: dict,
           failures: list[str], params: dict[str, dict], gate_seconds: float,
           plot_files: list[Path], out: Path, extra: str = "") -> str:
    """The report text (also written to ``out``); image links are relative to it."""
    verdict = "PASSED" if passed else "FAILED"
    lines = [f"# busdx regression gate: {verdict}", "",
             f"Commit `{commit[:12]}`; re-execution took {gate_seconds / 60:.1f} min.", ""]
    if failures:
        lines += ["## Failures", "", *[f"- {f}" for f in failures], ""]
    lines += ["## Pipelines", "", "| pipeline | baseline | re-executed | status |",
              "| --- | --- | --- | --- |"]
    for p in plans:
        status = ("not re-executed: " + p.skipped if p.skipped
                  else "ok" if p.ok else "a stage failed")
        lines.append(f"| {p.dvcfile} | {p.baseline} | {len(p.executed)} of {len(p.changed)} "
                     f"changed | {status} |")
    lines += ["", "## Headline metrics", "",
              "Old: the baseline's committed values; new: this run's (fresh where a stage "
              "was re-executed, else committed).", "", *metrics_table(rules, old, new), ""]
    lines += ["## Params changed", ""]
    changed = [(f, k, o, n) for f, d in params.items() for k, (o, n) in d.items()]
    if changed:
        lines += ["| pipeline | param | old | new |", "| --- | --- | --- | --- |"]
        lines += [f"| {f} | `{k}` | `{o}` | `{n}` |" for f, k, o, n in changed]
    else:
        lines.append("None.")
    lines += ["", "## Stages re-executed", ""]
    runs = [(p.dvcfile, s, t) for p in plans for s, t in p.executed.items()]
    if runs:
        lines += ["| pipeline | stage | seconds |", "| --- | --- | --- |"]
        lines += [f"| {f} | {s} | {t:.1f} |" for f, s, t in runs]
    else:
        lines.append("None: no stage's lock entry changed against its baseline.")
    lines += ["", "## Plots (`dvc plots diff`)", ""]
    if plot_files:
        lines += [f"![{f.stem}]({f.relative_to(out.parent).as_posix()})" for f in plot_files]
    else:
        lines.append("No plot was re-computed.")
    if extra:
        lines += ["", extra]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return text
