"""busdx: reproducible breast-ultrasound pipeline (BUSI). Research use only."""
import os
import sys

__version__ = "0.1.0"

# In logs (CI, `dvc repro` piped to a file) a progress bar redrawn 10x a second floods the
# output; tqdm reads TQDM_* overrides when first imported, so set a calm default here.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "10")

# Idle OpenMP threads spin by default; on a 2-core laptop that starves the working thread
# (measured 3-30x slower small ops under load). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
