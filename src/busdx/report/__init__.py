"""The report stage: one self-contained HTML model card from the pipeline's outputs.

- collect: read metrics/, plots/, data/timings/, versions into plain dicts (nothing rendered).
- figures: embedded PNGs, and dvc.yaml's plots drawn to SVG offline (vega), as data URIs.
- vega: `dvc plots show|diff` → SVG files (vl-convert); the offline `dvc plots` page template.
- html: the page (inline CSS, no external resources; every string from a file escaped).
- run: collect → render → write atomically (used by stages/report.py).
"""
