"""train_seg: lesion segmentation network (smp architecture, EfficientNet-Lite0 encoder).

Reads only params section train_seg; see busdx.train.runner for inputs and outputs.
"""
import os

# Before torch loads libgomp: idle OpenMP threads sleep instead of spinning (3-30x faster
# steps measured when the 2 cores are shared with other processes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from busdx.config import load_section  # noqa: E402
from busdx.train.runner import run  # noqa: E402


def main() -> None:
    run("seg", load_section("train_seg"))


if __name__ == "__main__":
    main()
