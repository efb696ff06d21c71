"""explain: CAMs of the deep networks on the test lesion images → metrics/explain.json and
plots/explain/ (galleries, per-image CSVs). Reads only params section explain; see
busdx.explain.run for inputs and outputs."""
import time

from busdx.config import load_section
from busdx.explain.run import run


def main() -> None:
    t0 = time.perf_counter()
    m = run(load_section("explain"))
    print(f"explain: {len(m['models'])} models, headline {m['model']}: energy in lesion "
          f"{m['cam_energy_in_lesion']}, pointing game {m['pointing_game']} "
          f"({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
