"""busdx: reproducible breast-ultrasound pipeline (BUSI). Research use only."""
import os
import sys

__version__ = "0.1.0"

# In logs (CI, `dvc repro` piped to a file) a progress bar redrawn 10x a second floods the
# output; tqdm reads TQDM_* overrides when first imported, so set a calm default here.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "10")
