"""evaluate: every model's test predictions → metrics/<model>.json, plots/<model>/, headline."""
import time

from busdx.config import load_section
from busdx.evaluate.run import Paths, evaluate_all, table


def main() -> None:
    cfg = load_section("evaluate")
    t0 = time.perf_counter()
    results, flat, chosen = evaluate_all(cfg, Paths())
    print(table(results, chosen))
    print(f"evaluate: {len(results)} models, {len(flat)} headline values, "
          f"{time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
