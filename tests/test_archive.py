import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from busdx.data import archive


def _png(arr, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def tiny_zip(path, n_benign=2, extra_mask=True, drop_mask=False):
    """A BUSI-layout zip: benign (1..n), malignant (1), normal (1)."""
    img = _png(np.full((20, 30, 3), 90, np.uint8))
    mask = _png(np.zeros((20, 30), np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        for label, n in [("benign", n_benign), ("malignant", 1), ("normal", 1)]:
            for i in range(1, n + 1):
                base = f"{archive.ROOT}/{label}/{label} ({i})"
                z.writestr(base + ".png", img)
                if not (drop_mask and label == "normal"):
                    z.writestr(base + "_mask.png", mask)
        if extra_mask:
            z.writestr(f"{archive.ROOT}/benign/benign (1)_mask_1.png", mask)
        z.writestr("__MACOSX/._junk", b"junk")
    return path


def test_counts_and_manifest(tmp_path):
    z = tiny_zip(tmp_path / "a.zip")
    expected = {"images": 4, "masks": 5, "per_class": {"benign": 2, "malignant": 1, "normal": 1},
                "multi_mask_images": 1}
    assert archive.verify_archive(z, expected) == expected
    raw = tmp_path / "raw"
    archive.extract(z, raw)
    assert not (raw / "__MACOSX").exists()
    m = archive.build_manifest(raw)
    assert list(m.columns) == ["id", "label", "image", "masks", "width", "height", "sha256"]
    assert list(m["id"]) == ["benign_001", "benign_002", "malignant_001", "normal_001"]
    row = m.iloc[0]
    assert row["masks"].split(";") == [
        "Dataset_BUSI_with_GT/benign/benign (1)_mask.png",
        "Dataset_BUSI_with_GT/benign/benign (1)_mask_1.png",
    ]
    assert (row["width"], row["height"]) == (30, 20)
    assert row["sha256"] == archive.sha256_file(raw / row["image"])


def test_verify_rejects_wrong_counts_and_missing_masks(tmp_path):
    z = tiny_zip(tmp_path / "a.zip")
    with pytest.raises(archive.ArchiveError, match="differ from the expected"):
        archive.verify_archive(z, archive.BUSI_COUNTS)
    z2 = tiny_zip(tmp_path / "b.zip", drop_mask=True)
    with pytest.raises(archive.ArchiveError, match="images without a mask"):
        archive.verify_archive(z2, archive.BUSI_COUNTS)


def test_verify_rejects_truncated_zip(tmp_path):
    z = tiny_zip(tmp_path / "a.zip")
    data = z.read_bytes()
    bad = tmp_path / "truncated.zip"
    bad.write_bytes(data[: len(data) // 2])
    assert not zipfile.is_zipfile(bad)
    with pytest.raises(archive.DataNotFoundError, match="truncated.zip: not a zip archive"):
        archive.find_archive([str(bad)], tmp_path, tmp_path, timeout=1)


def test_find_archive_lists_every_source(tmp_path):
    (tmp_path / "notzip.zip").write_text("hello")
    sources = ["missing/a.zip", "notzip.zip", "http://127.0.0.1:9/Dataset_BUSI.zip"]
    with pytest.raises(archive.DataNotFoundError) as e:
        archive.find_archive(sources, tmp_path, tmp_path, timeout=2)
    msg = str(e.value)
    assert "missing/a.zip: not found" in msg
    assert "notzip.zip: not a zip archive" in msg
    assert "127.0.0.1:9/Dataset_BUSI.zip: download failed" in msg
    assert "data/external/Dataset_BUSI_with_GT.zip" in msg  # how to provide the data


def test_find_archive_takes_first_valid(tmp_path):
    tiny_zip(tmp_path / "second.zip")
    found = archive.find_archive(["first.zip", "second.zip"], tmp_path, tmp_path, timeout=1)
    assert found.path == tmp_path / "second.zip" and not found.downloaded


@pytest.mark.busi
def test_real_busi_archive(busi_zip):
    assert archive.verify_archive(busi_zip, archive.BUSI_COUNTS) == archive.BUSI_COUNTS
