"""The download stage fails cleanly: one clear error, no partial data/raw, old output kept."""
import subprocess
import sys

from pipeline_helpers import REPO, env


def test_failed_download_leaves_previous_raw_untouched(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "download:\n  sources: [nowhere/busi.zip, 'http://127.0.0.1:9/Dataset_BUSI.zip']\n  timeout_s: 2\n"
    )
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "manifest.csv").write_text("previous run\n")
    p = subprocess.run([sys.executable, str(REPO / "stages/download.py")], cwd=tmp_path,
                       env=env(REPO), capture_output=True, text=True)
    assert p.returncode != 0
    assert "DataNotFoundError" in p.stderr and "nowhere/busi.zip: not found" in p.stderr
    assert (raw / "manifest.csv").read_text() == "previous run\n"
    assert sorted(x.name for x in (tmp_path / "data").iterdir()) == ["raw"]  # no temp leftovers
