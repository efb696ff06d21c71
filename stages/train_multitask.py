"""train_multitask: one network for the lesion mask and the class (smp + class head).

Reads only params section train_multitask; see busdx.train.runner for inputs and outputs.
"""
import os

# Before torch loads libgomp: idle OpenMP threads sleep instead of spinning (3-30x faster
# steps measured when the 2 cores are shared with other processes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from busdx.config import load_section  # noqa: E402
from busdx.train.runner import run  # noqa: E402


def main() -> None:
    run("multitask", load_section("train_multitask"))


if __name__ == "__main__":
    main()
