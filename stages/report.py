"""report: metrics, plots, audit and timings → one self-contained HTML model card
(reports/index.html). Reads params section report (and evaluate.models when report.models is
null); see busdx.report."""
import argparse
import time

from busdx.config import load_section
from busdx.report.collect import Paths
from busdx.report.run import build_report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", help="write here instead of report.output (ad-hoc checks)")
    args = ap.parse_args(argv)
    cfg = load_section("report")
    models = cfg.models if cfg.models is not None else load_section("evaluate").models
    t0 = time.perf_counter()
    out = build_report(cfg, models, Paths(), args.output)
    print(f"report: {out} ({out.stat().st_size / 1e6:.2f} MB, {len(models)} models, "
          f"{time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
