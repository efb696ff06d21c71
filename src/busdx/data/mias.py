"""mini-MIAS: parse Info.txt, verify the archive, extract it into the canonical raw layout.

The mini-MIAS archive (``all-mias-png.zip``) holds ``all-mias/mdb001.png`` ... ``mdb322.png``
(1024 x 1024 grey), ``all-mias/Info.txt`` and ``all-mias/Licence.txt``. Info.txt has a text
header, then one row per abnormality::

    mdb005 F CIRC B 477 133 30     reference, tissue F/G/D, class, severity B/M, x, y, radius
    mdb003 D NORM                  normal film: class only
    mdb216 D CALC M *NOTE 3*       widely distributed calcifications: no centre, no radius

An image has one row per abnormality (mdb226 has three). Coordinates have their origin at
the bottom-left corner, so the pixel row is ``height - y``. Films come in pairs: mdb(2i-1)
(odd, right breast) and mdb(2i) (even, left breast) are one patient, ``(n + 1) // 2``.

Per image: ``label`` = normal (only NORM rows), malignant (any row with severity M), else
benign; one filled-circle mask per abnormality with coordinates (clipped to the image);
abnormalities without coordinates get no mask (``roi_known`` False).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from busdx.data.archive import ArchiveError, sha256_file

ROOT = "all-mias"
INFO = f"{ROOT}/Info.txt"
LICENCE = f"{ROOT}/Licence.txt"
IMAGE_RE = re.compile(rf"^{ROOT}/(?P<id>mdb\d{{3}})\.png$")
MASK_DIR = f"{ROOT}/masks"
CLASSES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM")
MASS_CLASSES = ("CIRC", "SPIC", "MISC")
TISSUES = ("F", "G", "D")
LABELS = ("benign", "malignant", "normal")
ROW_RE = re.compile(
    r"^(?P<id>mdb\d{3})\s+(?P<tissue>\S+)\s+(?P<cls>\S+)"
    r"(?:\s+(?P<sev>[BM]))?"
    r"(?:\s+(?P<x>\d+)\s+(?P<y>\d+)\s+(?P<r>\d+))?"
    r"(?:\s+\*NOTE\s*\d+\*)?\s*$"
)
MANIFEST_COLUMNS = ["id", "label", "image", "masks", "width", "height", "sha256",
                    "abnormalities", "tissue", "patient", "side", "mass", "roi_known"]
# Counted once from the published archive (sha256 5eec15ad...25fb6), see tests/test_mias.py.
# mdb144 has a benign and a malignant mass (→ malignant); mdb059 is a CIRC without
# coordinates, mdb216/233/245 are widely distributed calcifications (*NOTE 3*).
MIAS_COUNTS = {
    "images": 322,
    "masks": 119,
    "per_class": {"benign": 63, "malignant": 52, "normal": 207},
    "multi_mask_images": 7,
    "abnormalities": 123,
    "per_abnormality": {"ARCH": 19, "ASYM": 15, "CALC": 30, "CIRC": 25, "MISC": 15, "SPIC": 19},
    "masses": 55,
    "patients": 161,
    "abnormal_without_coordinates": 4,
}

HOW_TO_PROVIDE = (
    "Provide the mini-MIAS archive (all-mias-png.zip: all-mias/mdb001.png ... mdb322.png, "
    "Info.txt, Licence.txt) in one of these ways:\n"
    "  * put it at data/external/all-mias-png.zip (relative to the pipeline folder), or\n"
    "  * add its path to download.sources in params.yaml"
)


@dataclass(frozen=True)
class Abnormality:
    id: str
    tissue: str
    cls: str  # one of CLASSES
    severity: str  # "B", "M" or "" (NORM)
    x: int | None  # centre, origin bottom-left (None: no coordinates)
    y: int | None
    radius: int | None
    line: int  # 1-based line in Info.txt

    @property
    def has_roi(self) -> bool:
        return self.x is not None


def parse_info(text: str, source: str = "Info.txt") -> list[Abnormality]:
    """Every ``mdbNNN`` row of Info.txt; header lines are skipped.

    Raises ValueError naming ``source`` and the line for a row that does not parse.
    """
    rows = []
    for k, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line.lower().startswith("mdb"):
            continue

        def bad(why: str) -> ValueError:
            return ValueError(f"{source}, line {k}: {why}: {raw.rstrip()!r}")

        m = ROW_RE.match(line)
        if not m:
            raise bad("not a row 'mdbNNN tissue class [severity [x y radius]]'")
        tissue, cls, sev = m["tissue"], m["cls"], m["sev"] or ""
        if tissue not in TISSUES:
            raise bad(f"tissue {tissue!r} is not one of {TISSUES}")
        if cls not in CLASSES:
            raise bad(f"class {cls!r} is not one of {CLASSES}")
        if cls == "NORM" and (sev or m["x"]):
            raise bad("a NORM row has a severity or coordinates")
        if cls != "NORM" and not sev:
            raise bad(f"a {cls} row has no severity B/M")
        x, y, r = (None, None, None) if m["x"] is None else (int(m["x"]), int(m["y"]), int(m["r"]))
        if r is not None and r <= 0:
            raise bad("radius must be > 0")
        rows.append(Abnormality(m["id"], tissue, cls, sev, x, y, r, k))
    return rows


def image_label(rows: list[Abnormality]) -> str:
    """normal (only NORM), malignant (any severity M), else benign."""
    if all(r.cls == "NORM" for r in rows):
        return "normal"
    return "malignant" if any(r.severity == "M" for r in rows) else "benign"


def patient_of(id_: str) -> tuple[int, str]:
    """(patient number, side): mdb(2i-1) is the right and mdb(2i) the left film of patient i."""
    n = int(id_[3:])
    return (n + 1) // 2, "R" if n % 2 else "L"


def by_image(rows: list[Abnormality], source: str = "Info.txt") -> dict[str, list[Abnormality]]:
    """Rows grouped per image id (sorted); checks that an image's rows agree."""
    out: dict[str, list[Abnormality]] = {}
    for r in rows:
        out.setdefault(r.id, []).append(r)
    for id_, rs in out.items():
        if len({r.tissue for r in rs}) > 1:
            raise ValueError(f"{source}, lines {[r.line for r in rs]}: {id_} has several "
                             f"background tissues")
        if len(rs) > 1 and any(r.cls == "NORM" for r in rs):
            raise ValueError(f"{source}, lines {[r.line for r in rs]}: {id_} is NORM and has "
                             f"other rows")
    return dict(sorted(out.items()))


def image_table(rows: list[Abnormality], source: str = "Info.txt") -> pd.DataFrame:
    """One row per image: id, label, abnormalities, tissue, patient, side, mass, roi_known,
    n_masks (abnormalities with coordinates)."""
    recs = []
    for id_, rs in by_image(rows, source).items():
        abn = [r for r in rs if r.cls != "NORM"]
        patient, side = patient_of(id_)
        recs.append({
            "id": id_,
            "label": image_label(rs),
            "abnormalities": ";".join(dict.fromkeys(r.cls for r in rs)),
            "tissue": rs[0].tissue,
            "patient": patient,
            "side": side,
            "mass": any(r.cls in MASS_CLASSES and r.has_roi for r in abn),
            "roi_known": all(r.has_roi for r in abn),
            "n_masks": sum(r.has_roi for r in abn),
        })
    return pd.DataFrame(recs)


def counts_of(rows: list[Abnormality], source: str = "Info.txt") -> dict:
    """The download counts (compared with MIAS_COUNTS) from the parsed Info.txt rows."""
    t = image_table(rows, source)
    abn = [r for r in rows if r.cls != "NORM"]
    return {
        "images": int(len(t)),
        "masks": int(t["n_masks"].sum()),
        "per_class": {lab: int((t["label"] == lab).sum()) for lab in LABELS},
        "multi_mask_images": int((t["n_masks"] > 1).sum()),
        "abnormalities": len(abn),
        "per_abnormality": {c: sum(r.cls == c for r in abn)
                            for c in sorted(set(CLASSES) - {"NORM"})},
        "masses": int(t["mass"].sum()),
        "patients": int(t["patient"].nunique()),
        "abnormal_without_coordinates": int(((t["label"] != "normal") & ~t["roi_known"]).sum()),
    }


def verify_archive(path: Path, expected: dict) -> dict:
    """Check the archive's files, Info.txt and counts; raise ArchiveError naming what differs."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = z.testzip()
            info = z.read(INFO).decode("latin-1") if INFO in names else None
    except zipfile.BadZipFile as e:
        raise ArchiveError(f"{path}: corrupt zip ({e})") from None
    if bad is not None:
        raise ArchiveError(f"{path}: member {bad!r} fails its CRC check (truncated or corrupt)")
    if info is None or LICENCE not in names:
        raise ArchiveError(f"{path}: expected {INFO} and {LICENCE} (is this mini-MIAS?)")
    images = sorted(m["id"] for n in names if (m := IMAGE_RE.match(n)))
    try:
        rows = parse_info(info, f"{path}:{INFO}")
    except ValueError as e:
        raise ArchiveError(str(e)) from None
    listed = sorted({r.id for r in rows})
    if images != listed:
        raise ArchiveError(f"{path}: images without an Info.txt row "
                           f"{sorted(set(images) - set(listed))[:5]}, Info.txt rows without an "
                           f"image {sorted(set(listed) - set(images))[:5]}")
    counts = counts_of(rows, f"{path}:{INFO}")
    if counts != expected:
        raise ArchiveError(f"{path}: counts {counts} differ from the expected {expected}")
    return counts


def circle_mask(shape: tuple[int, int], x: int, y: int, radius: int) -> np.ndarray:
    """bool (H, W): the filled circle of an Info.txt row; ``y`` from the bottom (row H - y)."""
    h, w = shape
    cy = h - y
    rr, cc = np.ogrid[:h, :w]
    return (cc - x) ** 2 + (rr - cy) ** 2 <= radius ** 2


def mask_paths(id_: str, n: int) -> list[str]:
    """Mask files of an image with ``n`` located abnormalities, relative to data/raw."""
    return [f"{MASK_DIR}/{id_}_mask_{k}.png" for k in range(1, n + 1)]


def extract(path: Path, dest: Path) -> None:
    """Extract the images, Info.txt and Licence.txt; render one 0/255 circle mask per
    abnormality with coordinates into ``all-mias/masks/<id>_mask_<k>.png``."""
    dest = Path(dest)
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if IMAGE_RE.match(info.filename) or info.filename in (INFO, LICENCE):
                z.extract(info, dest)
    rows = parse_info((dest / INFO).read_text(encoding="latin-1"), str(dest / INFO))
    (dest / MASK_DIR).mkdir(parents=True, exist_ok=True)
    for id_, rs in by_image(rows, str(dest / INFO)).items():
        located = [r for r in rs if r.has_roi]
        if not located:
            continue
        with Image.open(dest / ROOT / f"{id_}.png") as im:
            w, h = im.size
        for r, rel in zip(located, mask_paths(id_, len(located))):
            m = circle_mask((h, w), r.x, r.y, r.radius)
            if not m.any():
                raise ArchiveError(f"{dest / INFO}, line {r.line}: circle ({r.x}, {r.y}, "
                                   f"r={r.radius}) lies outside the {w}x{h} image")
            Image.fromarray(np.where(m, np.uint8(255), np.uint8(0))).save(dest / rel)


def build_manifest(raw_dir: Path) -> pd.DataFrame:
    """The canonical manifest (id, label, image, masks, width, height, sha256) plus the MIAS
    columns abnormalities, tissue, patient, side, mass, roi_known."""
    raw_dir = Path(raw_dir)
    rows = parse_info((raw_dir / INFO).read_text(encoding="latin-1"), str(raw_dir / INFO))
    t = image_table(rows, str(raw_dir / INFO))
    recs = []
    for r in t.itertuples(index=False):
        rel = f"{ROOT}/{r.id}.png"
        with Image.open(raw_dir / rel) as im:
            width, height = im.size
        masks = mask_paths(r.id, r.n_masks)
        missing = [m for m in masks if not (raw_dir / m).is_file()]
        if missing:
            raise ArchiveError(f"{raw_dir}: mask(s) {missing} missing (run extract first)")
        recs.append({
            "id": r.id, "label": r.label, "image": rel, "masks": ";".join(masks),
            "width": width, "height": height, "sha256": sha256_file(raw_dir / rel),
            "abnormalities": r.abnormalities, "tissue": r.tissue, "patient": int(r.patient),
            "side": r.side, "mass": bool(r.mass), "roi_known": bool(r.roi_known),
        })
    return pd.DataFrame(recs, columns=MANIFEST_COLUMNS)
