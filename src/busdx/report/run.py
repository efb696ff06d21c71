"""Build the report: collect inputs, draw figures, render, write atomically.

Same inputs (files, versions, git state) → byte-identical HTML: no timestamps, sorted keys,
PNGs as stored or deterministically downscaled, DVC's plots drawn by vl-convert
(busdx.report.figures).
"""
from __future__ import annotations

from pathlib import Path

from busdx.io import atomic_path
from busdx.report import figures
from busdx.report.collect import Paths, collect
from busdx.report.html import render


def build_figures(d: dict, max_width: int) -> dict:
    def embed(path: Path):
        png, size = figures.image_png(path, max_width)
        return figures.data_uri(png), size

    plots = figures.dvc_plots(d["dvcfile"])
    return {
        "audit_sheets": [(p.name, *embed(p)) for p in d["audit_sheets"]],
        "dvc_plots": plots[0] if plots else None,  # None: no dvc.yaml
        "dvc_plots_missing": plots[1] if plots else [],
        "overlays": {m: embed(v["overlays"]) for m, v in d["seg"].items() if v["overlays"]},
        "explain": [(p.name, *embed(p)) for p in d["explain_galleries"]],
    }


def build_report(cfg, models: list[str], paths: Paths = Paths(), output: Path | str | None = None
                 ) -> Path:
    """Write the report to ``output`` (default ``cfg.output``); returns its path.

    Everything is read and rendered before the file is touched: a missing or unreadable input
    raises (naming the file) and leaves any previous report as it was.
    """
    out = Path(output if output is not None else cfg.output)
    d = collect(cfg, models, paths)
    text = render(d, build_figures(d, cfg.max_image_width))
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return out
