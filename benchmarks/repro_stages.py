"""Fresh `dvc repro` wall time and peak memory per stage, and the no-op `dvc repro` time.

    python benchmarks/repro_stages.py [--workdir ../busdx-bench] [--stages crop split ...]
    python benchmarks/repro_stages.py --pipeline pipelines/mias      # the mini-MIAS pipeline
    python benchmarks/repro_stages.py --timings-only    # just print data/timings/*.json

Clones the committed HEAD next to this repo (so ../shared is found as in CI), shares this
repo's DVC cache (no data copied), then runs every stage in pipeline order with
`dvc repro --single-item --force` under /usr/bin/time: wall seconds and the peak RSS of the
largest process the stage started. Then a no-op `dvc repro`, and the deep models' training
images/s and inference ms/image that their stages recorded in data/timings/. The whole run
takes as long as a full pipeline rebuild (about half an hour on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(args, cwd, **kw):
    return subprocess.run(args, cwd=cwd, check=True, text=True, **kw)


def clone(workdir: Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    sh(["git", "clone", "-q", str(REPO), str(workdir)], REPO)
    cache = sh(["dvc", "cache", "dir"], REPO, capture_output=True).stdout.strip()
    (workdir / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {cache}\n")
    # Outputs already in the cache are checked out, so a subset (--stages) finds its inputs;
    # every listed stage is still re-run with --force.
    subprocess.run(["dvc", "checkout", "-q"], cwd=workdir)


def stage_names(workdir: Path, pipeline: str = "") -> list[str]:
    """Stage targets in pipeline order: ``name`` (root) or ``<pipeline>/dvc.yaml:name``."""
    target = [f"{pipeline}/dvc.yaml"] if pipeline else []
    out = sh(["dvc", "stage", "list", "--name-only", *target], workdir,
             capture_output=True).stdout
    names = [s.split(":")[-1] for s in out.split() if s]
    return [f"{pipeline}/dvc.yaml:{n}" if pipeline else n for n in names]


def timed_repro(workdir: Path, stage: str) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of `dvc repro --single-item --force <stage>`."""
    r = subprocess.run(["/usr/bin/time", "-f", "__time__ %e %M", "dvc", "repro", "-q",
                        "--single-item", "--force", stage], cwd=workdir, text=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("__time__")]
    if r.returncode or not line:
        sys.exit(f"stage {stage} failed:\n{r.stderr[-3000:]}")
    _, wall, kb = line[-1].split()
    return float(wall), int(kb) / 1024


def deep_timings(root: Path) -> list[dict]:
    rows = []
    for p in sorted((root / "data" / "timings").glob("*.json")):
        d = json.loads(p.read_text())
        if "train_images_per_s" in d:
            rows.append({"model": d["model"], "device": d["device"],
                         "train_s": d["train_time_s"],
                         "train_img_per_s": d["train_images_per_s"],
                         "infer_ms_per_img": d["inference_ms_per_image"]})
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    cells = [keys] + [[str(r[k]) for k in keys] for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    return "\n".join("  ".join(c[i].ljust(w[i]) for i in range(len(keys))) for c in cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=REPO.parent / "busdx-bench")
    ap.add_argument("--stages", nargs="*", help="only these (default: every stage, in order)")
    ap.add_argument("--pipeline", default="", help="a dataset pipeline folder, e.g. "
                    "pipelines/mias (default: the root BUSI dvc.yaml)")
    ap.add_argument("--timings-only", action="store_true",
                    help="print the deep timings recorded in this repo's data/timings")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    a = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if a.timings_only:
        print(table(deep_timings(REPO / a.pipeline)))
        return
    print(f"machine: {os.cpu_count()} CPUs; cloning HEAD into {a.workdir}", flush=True)
    clone(a.workdir)
    rows = []
    names = stage_names(a.workdir, a.pipeline)
    if a.stages:
        names = [n for n in names if n.split(":")[-1] in a.stages]
    for s in names:
        wall, mib = timed_repro(a.workdir, s)
        rows.append({"stage": s, "wall_s": round(wall, 1), "peak_rss_mib": round(mib)})
        print(f"  {s:45s} {wall:8.1f} s  {mib:7.0f} MiB", flush=True)
    t0 = time.perf_counter()
    sh(["dvc", "repro", "-q", *([f"{a.pipeline}/dvc.yaml"] if a.pipeline else [])], a.workdir,
       stdout=subprocess.DEVNULL)
    noop = time.perf_counter() - t0
    total = sum(r["wall_s"] for r in rows)
    heaviest = max(rows, key=lambda r: r["peak_rss_mib"])
    print(f"\nper stage:\n{table(rows)}\n\ntotal {total:.0f} s ({total / 60:.1f} min); "
          f"no-op dvc repro {noop:.1f} s; heaviest stage {heaviest['stage']} "
          f"{heaviest['peak_rss_mib']} MiB peak RSS")
    deep = deep_timings(a.workdir / a.pipeline)
    print(f"\ndeep models (data/timings):\n{table(deep)}")
    if a.out:
        a.out.write_text(json.dumps({"stages": rows, "total_s": total, "noop_s": noop,
                                     "deep": deep}, indent=2))


if __name__ == "__main__":
    main()
