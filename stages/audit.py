"""audit: duplicate groups, label conflicts and burned-in marks → data/interim/audit.csv."""
from __future__ import annotations

import time
from pathlib import Path

from busdx.config import load_section
from busdx.data.audit import read_manifest, run_audit
from busdx.io import atomic_path, write_csv, write_json

RAW = Path("data/raw")
AUDIT = Path("data/interim/audit.csv")
METRICS = Path("metrics/audit.json")
PLOTS = Path("plots/audit")


def run(cfg, raw: Path = RAW, audit: Path = AUDIT, metrics: Path = METRICS, plots: Path = PLOTS,
        progress: bool = True) -> dict:
    manifest = read_manifest(raw / "manifest.csv")
    result = run_audit(manifest, raw, cfg, progress=progress)
    with atomic_path(plots, is_dir=True) as out:
        for k, sheet in enumerate(result.sheets, start=1):
            sheet.save(out / f"duplicates_{k}.png", format="PNG", optimize=True)
    write_csv(audit, result.table)
    write_json(metrics, result.metrics)  # counts only (no timings): byte-identical reruns
    return result.metrics


def main() -> None:
    t0 = time.perf_counter()
    cfg = load_section("audit")
    m = run(cfg)
    print(f"audit: {m['images']} images, {m['duplicate_groups']} duplicate groups "
          f"({m['images_in_groups']} images; {m['exact_pairs']} exact, "
          f"{m['near_pairs']} near pairs), "
          f"{m['conflict_groups']} conflict groups ({m['excluded_images']} images excluded), "
          f"{m['colour_marks']} colour-marked, {m['annotations']} annotated, "
          f"{time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
