"""Images as data URIs: the pipeline's PNGs, and its DVC plots drawn to SVG.

Charts are DVC's plots (the ``plots:`` of the pipeline's dvc.yaml, as ``dvc plots show`` draws
them), rendered offline by vl-convert (busdx.report.vega): same definitions as the DVC page,
no second drawing of the same curves. Bytes are deterministic for the same inputs and package
versions. PNGs wider than ``max_width`` are downscaled (Lanczos).
"""
from __future__ import annotations

import base64
import io
import re
import tempfile
from pathlib import Path

from PIL import Image

from busdx.report import vega
from busdx.report.collect import ReportInputError


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def image_png(path: Path, max_width: int) -> tuple[bytes, tuple[int, int]]:
    """A PNG's bytes (as stored, or downscaled when wider than max_width) and its size."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
            if w <= max_width and im.format == "PNG":
                return path.read_bytes(), (w, h)
            if w > max_width:
                im = im.convert("RGB").resize((max_width, max(1, round(h * max_width / w))),
                                              Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
            return buf.getvalue(), im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise ReportInputError(f"{path}: not a readable image ({e})") from None


def svg_size(svg: str) -> tuple[int, int]:
    """Width and height (px) of the outer <svg> element (0 when not given)."""
    tag = re.search(r"<svg\b[^>]*>", svg)
    size = [re.search(rf'\s{a}="([0-9.]+)', tag.group(0)) if tag else None
            for a in ("width", "height")]
    return tuple(round(float(m.group(1))) if m else 0 for m in size)  # type: ignore[return-value]


def dvc_plots(dvcfile: Path) -> tuple[list[tuple[str, str, tuple[int, int]]], list[str]] | None:
    """The vega plots defined in ``dvcfile`` (``plots:``, the workspace's data) as
    ``(name, SVG data URI, (w, h))`` in definition order, and what is missing ("<plot>:
    <file> not found"); None when there is no such dvc.yaml.

    A missing data file is a gap (a partly run pipeline), any other DVC error (unreadable
    file, field not in the data) or a failing dvc is a ReportInputError naming the plot.
    """
    dvcfile = Path(dvcfile)
    if not dvcfile.is_file():
        return None
    missing: list[str] = []
    broken: list[str] = []

    def on_error(err: dict) -> None:
        what = f"{err.get('name')}: {err.get('source') or err.get('rev')}"
        if err.get("type") == "FileNotFoundError":
            missing.append(f"{what} not found")
        else:
            broken.append(f"{what}: {err.get('type')}: {err.get('msg')}")

    with tempfile.TemporaryDirectory(prefix="report_plots_") as tmp:
        try:
            # "<dvc.yaml>::" selects that file's top-level plots only (DVC matches targets
            # against "<file>::<id>"; a bare path would also read dvc.yaml as a data file).
            paths = vega.render_dvc_plots(Path(tmp), targets=[f"{dvcfile.name}::"],
                                          cwd=dvcfile.parent, on_error=on_error)
        except vega.DvcPlotsError as e:
            raise ReportInputError(f"{dvcfile}: plots: {e}") from None
        if broken:
            raise ReportInputError(f"{dvcfile}: plots: " + "; ".join(broken))
        out = []
        for p in paths:
            svg = p.read_text(encoding="utf-8")
            out.append((p.stem, data_uri(svg.encode("utf-8"), "image/svg+xml"), svg_size(svg)))
    return out, missing
