"""mini-MIAS adapter: Info.txt parsing, labels, patients, circle masks (y from the bottom),
archive checks, the download stage, and the audit's patient groups."""
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from busdx.config import AuditConfig
from busdx.data import mias
from busdx.data.archive import ArchiveError
from busdx.data.audit import run_audit
from busdx.data.masks import merge_masks
from pipeline_helpers import REPO, env

SIZE = 64
HEADER = """              MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY
5th,6th columns: x,y image-coordinates of centre of abnormality.
=================================================================

"""
# mdb001/002: patient 1, normal right + benign left with two masses (one at (10, 50), i.e.
# row 64 - 50 = 14). mdb003/004: patient 2, malignant calcifications without coordinates
# (*NOTE 3*) + a benign/malignant pair of abnormalities on one film.
ROWS = """mdb001 G NORM 
mdb002 F CIRC B 10 50 3
mdb002 F SPIC B 40 20 5 
mdb003 D CALC M *NOTE 3* 
mdb004 D MISC B 30 30 4
mdb004 D ARCH M 50 10 2
"""


def scan(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def make_zip(path, rows=ROWS, images=("mdb001", "mdb002", "mdb003", "mdb004"), same=()):
    """A tiny mini-MIAS-like archive; ``same`` ids get mdb001's pixels (exact duplicates)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(mias.INFO, HEADER + rows + "\n=====\n")
        z.writestr(mias.LICENCE, "licence\n")
        for k, id_ in enumerate(images):
            from io import BytesIO

            buf = BytesIO()
            Image.fromarray(scan(0 if id_ in same else k)).save(buf, format="PNG")
            z.writestr(f"{mias.ROOT}/{id_}.png", buf.getvalue())
    return path


def expected_counts():
    return {
        "images": 4, "masks": 4,
        "per_class": {"benign": 1, "malignant": 2, "normal": 1},
        "multi_mask_images": 2, "abnormalities": 5,
        "per_abnormality": {"ARCH": 1, "ASYM": 0, "CALC": 1, "CIRC": 1, "MISC": 1, "SPIC": 1},
        "masses": 2, "patients": 2, "abnormal_without_coordinates": 1,
    }


# --- Info.txt ----------------------------------------------------------------------------

def test_parse_rows_notes_and_trailing_spaces():
    rows = mias.parse_info(HEADER + ROWS)
    assert [r.id for r in rows] == ["mdb001", "mdb002", "mdb002", "mdb003", "mdb004", "mdb004"]
    assert rows[0].cls == "NORM" and rows[0].severity == "" and rows[0].x is None
    assert (rows[1].x, rows[1].y, rows[1].radius) == (10, 50, 3)
    assert rows[3].cls == "CALC" and rows[3].severity == "M" and not rows[3].has_roi
    assert rows[0].line == HEADER.count("\n") + 1


@pytest.mark.parametrize("bad,why", [
    ("mdb009 F CIRC B 10 20", "not a row"),  # radius missing
    ("mdb009 X CIRC B 10 20 3", "tissue"),
    ("mdb009 F BLOB B 10 20 3", "class"),
    ("mdb009 F CIRC 10 20 3", "no severity"),  # severity missing, coordinates present
    ("mdb009 F CIRC", "no severity"),
    ("mdb009 F NORM B", "NORM row"),
])
def test_bad_row_names_file_and_line(bad, why):
    with pytest.raises(ValueError, match=rf"Info\.txt, line 3: .*{why}") as e:
        mias.parse_info("header\n\n" + bad + "\n", "Info.txt")
    assert bad.split()[0] in str(e.value)


def test_labels_patients_and_flags():
    t = mias.image_table(mias.parse_info(ROWS)).set_index("id")
    assert t["label"].to_dict() == {"mdb001": "normal", "mdb002": "benign",
                                    "mdb003": "malignant", "mdb004": "malignant"}
    assert t["patient"].tolist() == [1, 1, 2, 2]
    assert t["side"].tolist() == ["R", "L", "R", "L"]  # odd = right, even = left
    assert t.loc["mdb002", "abnormalities"] == "CIRC;SPIC"
    assert t.loc["mdb001", "abnormalities"] == "NORM"
    assert t["mass"].tolist() == [False, True, False, True]
    assert t["roi_known"].tolist() == [True, True, False, True]
    assert t["n_masks"].tolist() == [0, 2, 0, 2]
    assert mias.patient_of("mdb321") == (161, "R") and mias.patient_of("mdb322") == (161, "L")


def test_image_with_norm_and_abnormality_is_an_error():
    with pytest.raises(ValueError, match="mdb001 is NORM and has other rows"):
        mias.image_table(mias.parse_info("mdb001 F NORM\nmdb001 F CIRC B 1 2 3\n"))


def test_circle_mask_y_is_from_the_bottom():
    m = mias.circle_mask((SIZE, SIZE), 10, 50, 3)
    rows, cols = np.nonzero(m)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (11, 17, 7, 13)
    assert m[14, 10] and m.sum() == 29  # lattice points in a radius-3 disc
    edge = mias.circle_mask((SIZE, SIZE), 1, 1, 5)  # clipped at the bottom-left corner
    assert edge[SIZE - 1, 1] and edge.shape == (SIZE, SIZE) and edge[:SIZE - 6].sum() == 0


# --- archive, extraction, manifest -------------------------------------------------------

def test_verify_extract_manifest(tmp_path):
    z = make_zip(tmp_path / "mias.zip")
    assert mias.verify_archive(z, expected_counts()) == expected_counts()
    raw = tmp_path / "raw"
    mias.extract(z, raw)
    assert (raw / mias.INFO).is_file() and (raw / mias.LICENCE).is_file()
    m = mias.build_manifest(raw)
    assert m.columns.tolist() == mias.MANIFEST_COLUMNS
    r = m.set_index("id")
    assert r.loc["mdb001", "masks"] == "" and r.loc["mdb003", "masks"] == ""
    assert r.loc["mdb002", "masks"] == ("all-mias/masks/mdb002_mask_1.png;"
                                         "all-mias/masks/mdb002_mask_2.png")
    first = np.asarray(Image.open(raw / "all-mias/masks/mdb002_mask_1.png"))
    assert first.dtype == np.uint8 and set(np.unique(first)) == {0, 255}
    assert first[14, 10] == 255 and first[50, 10] == 0  # y flipped
    merged = merge_masks([raw / p for p in r.loc["mdb002", "masks"].split(";")], (SIZE, SIZE), 127)
    assert merged.n_masks == 2 and merged.mask[14, 10] and merged.mask[SIZE - 20, 40]
    assert (r["width"] == SIZE).all() and r.loc["mdb004", "patient"] == 2


def test_verify_reports_count_and_layout_problems(tmp_path):
    z = make_zip(tmp_path / "a.zip")
    with pytest.raises(ArchiveError, match="counts .* differ from the expected"):
        mias.verify_archive(z, mias.MIAS_COUNTS)
    z = make_zip(tmp_path / "b.zip", images=("mdb001", "mdb002", "mdb003"))
    with pytest.raises(ArchiveError, match=r"Info.txt rows without an image \['mdb004'\]"):
        mias.verify_archive(z, expected_counts())
    z = make_zip(tmp_path / "c.zip", rows=ROWS + "mdb005 F CIRC B 1 2\n",
                 images=("mdb001", "mdb002", "mdb003", "mdb004", "mdb005"))
    with pytest.raises(ArchiveError, match=r"c\.zip:all-mias/Info\.txt, line \d+: not a row"):
        mias.verify_archive(z, expected_counts())
    (tmp_path / "d.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ArchiveError, match="corrupt zip"):
        mias.verify_archive(tmp_path / "d.zip", expected_counts())


def test_download_stage_mias_not_found_names_mias(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "download:\n  dataset: mias\n  sources: [nowhere/all-mias-png.zip]\n")
    p = subprocess.run([sys.executable, str(REPO / "stages/download.py")], cwd=tmp_path,
                       env=env(REPO), capture_output=True, text=True)
    assert p.returncode != 0
    assert "No mini-MIAS archive found" in p.stderr and "all-mias-png.zip" in p.stderr


# --- audit: patients ---------------------------------------------------------------------

def test_audit_joins_patients_without_conflicts(tmp_path):
    # mdb005 is an exact copy of mdb001 (patient 3 vs 1) filed under another label: a real
    # conflict, and its group joins patients 1 and 3. Patient 2 (malignant + malignant) and
    # patient 1 (normal + benign) are single groups without a conflict.
    rows = ROWS + "mdb005 F CIRC B 20 20 2\nmdb006 F NORM\n"
    ids = ("mdb001", "mdb002", "mdb003", "mdb004", "mdb005", "mdb006")
    z = make_zip(tmp_path / "m.zip", rows=rows, images=ids, same=("mdb005",))
    raw = tmp_path / "raw"
    mias.extract(z, raw)
    manifest = mias.build_manifest(raw)
    r = run_audit(manifest, raw, AuditConfig(), progress=False)
    t = r.table.set_index("id")
    assert t["patient"].tolist() == [1, 1, 2, 2, 3, 3]
    assert t.loc["mdb001", "group"] == t.loc["mdb002", "group"] == t.loc["mdb005", "group"] \
        == t.loc["mdb006", "group"]
    assert t.loc["mdb003", "group"] == t.loc["mdb004", "group"] != t.loc["mdb001", "group"]
    assert t["group_size"].tolist() == [4, 4, 2, 2, 4, 4]
    # Conflicts are duplicate-group only: normal mdb001 vs benign mdb005 (same pixels).
    assert t.index[t["conflict"]].tolist() == ["mdb001", "mdb005"]
    assert not t.loc["mdb002", "conflict"] and not t.loc["mdb006", "exclude"]
    assert t.loc["mdb001", "duplicate_group"] == t.loc["mdb005", "duplicate_group"]
    assert t.loc["mdb002", "duplicate_group_size"] == 1
    m = r.metrics
    assert (m["duplicate_groups"], m["images_in_groups"], m["conflict_groups"]) == (1, 2, 1)
    assert (m["patients"], m["split_groups"], m["excluded_images"]) == (3, 2, 2)


def test_audit_without_patient_column_is_unchanged(tmp_path):
    z = make_zip(tmp_path / "m.zip")
    raw = tmp_path / "raw"
    mias.extract(z, raw)
    manifest = mias.build_manifest(raw).drop(columns=["patient"])
    r = run_audit(manifest, raw, AuditConfig(), progress=False)
    from busdx.data.audit import COLUMNS, METRIC_KEYS

    assert r.table.columns.tolist() == COLUMNS and sorted(r.metrics) == sorted(METRIC_KEYS)
    assert r.table["group"].tolist() == [0, 1, 2, 3]


# --- real mini-MIAS ----------------------------------------------------------------------

@pytest.mark.mias
def test_real_mias(tmp_path, mias_zip):
    counts = mias.verify_archive(mias_zip, mias.MIAS_COUNTS)
    assert counts["per_class"] == {"benign": 63, "malignant": 52, "normal": 207}
    raw = tmp_path / "raw"
    mias.extract(mias_zip, raw)
    m = mias.build_manifest(raw).set_index("id")
    assert len(m) == 322 and m["patient"].nunique() == 161
    assert m.loc["mdb144", "label"] == "malignant"  # a benign and a malignant MISC
    assert m.loc["mdb059", "masks"] == "" and not m.loc["mdb059", "roi_known"]  # CIRC, no x y
    assert m.loc["mdb216", "masks"] == "" and m.loc["mdb216", "label"] == "malignant"
    assert len(m.loc["mdb226", "masks"].split(";")) == 3
    # mdb005: CIRC at (477, 133) r 30 → row 1024 - 133 = 891.
    k = np.asarray(Image.open(raw / m.loc["mdb005", "masks"].split(";")[0]))
    assert k[891, 477] == 255 and k[133, 477] == 0
    assert counts["masks"] == sum(len(s.split(";")) for s in m["masks"] if s)
    assert pd.Series(m["side"]).value_counts().to_dict() == {"R": 161, "L": 161}
