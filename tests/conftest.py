import os
from pathlib import Path

# Before anything loads torch's libgomp: idle OpenMP threads sleep instead of spinning. On a
# shared 2-core machine spinning threads made small torch ops 3-30x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo next to shared/, exactly as in the developers' checkout.
BUSI_ZIP = REPO.parent / "shared" / "datasets" / "busi" / "Dataset_BUSI_with_GT.zip"
MIAS_ZIP = REPO.parent / "shared" / "datasets" / "mias" / "all-mias-png.zip"


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def busi_zip() -> Path:
    if not BUSI_ZIP.exists():
        pytest.skip(f"BUSI mirror not present at {BUSI_ZIP}")
    return BUSI_ZIP


@pytest.fixture(scope="session")
def mias_zip() -> Path:
    if not MIAS_ZIP.exists():
        pytest.skip(f"mini-MIAS mirror not present at {MIAS_ZIP}")
    return MIAS_ZIP
