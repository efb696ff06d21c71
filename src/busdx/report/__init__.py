"""The report stage: one self-contained HTML model card from the pipeline's outputs.

- collect: read metrics/, plots/, data/timings/, versions into plain dicts (nothing rendered).
- figures: matplotlib charts and embedded PNGs as base64 data URIs (deterministic bytes).
- html: the page (inline CSS, no external resources; every string from a file escaped).
- run: collect → render → write atomically (used by stages/report.py).
"""
