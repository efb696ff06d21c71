"""Find, verify and extract the BUSI archive; build the image manifest.

Sources are tried in order (local paths first, then URLs); the first archive that
passes verification wins. Nothing found → one error listing every source tried.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

ROOT = "Dataset_BUSI_with_GT"
LABELS = ("benign", "malignant", "normal")
MEMBER_RE = re.compile(
    rf"^{ROOT}/(?P<folder>benign|malignant|normal)/(?P<label>benign|malignant|normal) "
    r"\((?P<n>\d+)\)(?P<mask>_mask(?:_(?P<k>\d+))?)?\.png$"
)
# Published BUSI (Al-Dhabyani et al. 2020).
BUSI_COUNTS = {
    "images": 780,
    "masks": 798,
    "per_class": {"benign": 437, "malignant": 210, "normal": 133},
    "multi_mask_images": 17,
}

HOW_TO_PROVIDE = (
    "Provide the BUSI archive in one of these ways:\n"
    "  * put Dataset_BUSI_with_GT.zip at data/external/Dataset_BUSI_with_GT.zip, or\n"
    "  * add its path to download.sources in params.yaml, or\n"
    "  * download it from Kaggle (aryashah2k/breast-ultrasound-images-dataset, see README), or\n"
    "  * run on the synthetic set: dvc repro -S download.dataset=synthetic"
)


class DataNotFoundError(RuntimeError):
    pass


class ArchiveError(ValueError):
    pass


@dataclass(frozen=True)
class Found:
    path: Path
    source: str
    downloaded: bool


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path, timeout: float) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def find_archive(sources: list[str], root: Path, workdir: Path, timeout: float,
                 name: str = "BUSI", how_to_provide: str = HOW_TO_PROVIDE) -> Found:
    """Return the first source that yields a zip file; URLs are fetched into ``workdir``.

    ``name`` and ``how_to_provide`` word the error when nothing is found (other datasets).
    """
    tried = []
    for src in sources:
        if re.match(r"^https?://", src):
            dest = workdir / "download.zip"
            try:
                _fetch(src, dest, timeout)
            except Exception as e:  # noqa: BLE001 - any network failure means "try the next"
                tried.append(f"{src}: download failed ({type(e).__name__}: {e})")
                continue
            if zipfile.is_zipfile(dest):
                return Found(dest, src, True)
            tried.append(f"{src}: downloaded file is not a zip archive")
            continue
        path = Path(src) if Path(src).is_absolute() else root / src
        if not path.exists():
            tried.append(f"{path}: not found")
        elif not zipfile.is_zipfile(path):
            tried.append(f"{path}: not a zip archive")
        else:
            return Found(path, src, False)
    raise DataNotFoundError(
        f"No {name} archive found. Sources tried, in order:\n  - "
        + "\n  - ".join(tried or ["(download.sources is empty)"])
        + "\n"
        + how_to_provide
    )


def count_members(names: list[str]) -> dict:
    """Counts of images, masks, per class and multi-mask images from zip member names."""
    images: dict[tuple[str, int], int] = {}
    masks: dict[tuple[str, int], int] = {}
    for name in names:
        m = MEMBER_RE.match(name)
        if not m:
            continue
        if m["folder"] != m["label"]:
            raise ArchiveError(f"{name}: file named {m['label']} inside folder {m['folder']}")
        key = (m["label"], int(m["n"]))
        bucket = masks if m["mask"] else images
        bucket[key] = bucket.get(key, 0) + 1
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise ArchiveError(f"masks without an image: {orphans[:5]}")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise ArchiveError(f"images without a mask: {missing[:5]}")
    return {
        "images": len(images),
        "masks": sum(masks.values()),
        "per_class": {lab: sum(1 for k in images if k[0] == lab) for lab in LABELS},
        "multi_mask_images": sum(1 for v in masks.values() if v > 1),
    }


def verify_archive(path: Path, expected: dict) -> dict:
    """Check layout and counts against ``expected``; raise ArchiveError naming what differs."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            bad = z.testzip()
    except zipfile.BadZipFile as e:
        raise ArchiveError(f"{path}: corrupt zip ({e})") from None
    if bad is not None:
        raise ArchiveError(f"{path}: member {bad!r} fails its CRC check (truncated or corrupt)")
    folders = {n.split("/")[1] for n in names if n.startswith(ROOT + "/") and n.count("/") >= 2}
    if not set(LABELS) <= folders:
        raise ArchiveError(
            f"{path}: expected folders {ROOT}/{{benign,malignant,normal}}/, found {sorted(folders)}"
        )
    counts = count_members(names)
    if counts != expected:
        raise ArchiveError(f"{path}: counts {counts} differ from the expected {expected}")
    return counts


def extract(path: Path, dest: Path) -> None:
    """Extract only the BUSI image/mask members (ignores OS junk such as __MACOSX)."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if MEMBER_RE.match(info.filename):
                z.extract(info, dest)


def build_manifest(raw_dir: Path) -> pd.DataFrame:
    """One row per image: id, label, image, masks (';'-joined), width, height, sha256."""
    images: dict[tuple[str, int], str] = {}
    masks: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for p in sorted((raw_dir / ROOT).glob("*/*.png")):
        rel = p.relative_to(raw_dir).as_posix()
        m = MEMBER_RE.match(rel)
        if not m:
            continue
        key = (m["label"], int(m["n"]))
        if m["mask"]:
            masks.setdefault(key, []).append((int(m["k"] or 0), rel))
        else:
            images[key] = rel
    rows = []
    for (label, n), rel in sorted(images.items()):
        with Image.open(raw_dir / rel) as im:
            width, height = im.size
        rows.append(
            {
                "id": f"{label}_{n:03d}",
                "label": label,
                "image": rel,
                "masks": ";".join(r for _, r in sorted(masks.get((label, n), []))),
                "width": width,
                "height": height,
                "sha256": sha256_file(raw_dir / rel),
            }
        )
    return pd.DataFrame(rows, columns=["id", "label", "image", "masks", "width", "height", "sha256"])
