"""Read everything the report shows into plain dicts, data frames and file paths.

Only ``metrics/headline.json`` is required; every other input may be absent (the report then
says "not available"), so the report works on a partly run pipeline. A file that exists but is
not valid JSON/YAML is an error naming the file: corrupt is not the same as absent. The charts'
data (plots/<model>/*.csv) are read by DVC from dvc.yaml's ``plots:`` (busdx.report.figures).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

import busdx

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # a model name read from a file: no paths


class ReportInputError(ValueError):
    """A report input is missing (when required) or unreadable; the message names the file."""


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")  # the git worktree (commit, dirty)
    params: Path = Path("params.yaml")
    metrics: Path = Path("metrics")
    plots: Path = Path("plots")
    timings: Path = Path("data/timings")
    # download writes the archive's sha256 here (a file inside the data/raw output)
    archive_info: Path = Path("data/raw/archive.json")
    # its top-level `plots:` are the report's charts (busdx.report.figures.dvc_plots)
    dvcfile: Path = Path("dvc.yaml")


def read_json(path: Path, required: bool = False) -> dict | None:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ReportInputError(f"{path}: required report input not found "
                                   "(run the stage that writes it first)") from None
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportInputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def plotted_models(dvcfile: Path) -> set[str] | None:
    """Models whose files (``plots/<model>/...``) dvc.yaml's ``plots:`` draw; None without a
    dvc.yaml."""
    dvcfile = Path(dvcfile)
    try:
        doc = yaml.safe_load(dvcfile.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ReportInputError(f"{dvcfile}: not valid YAML ({e})") from None
    files: list[str] = []
    for item in (doc.get("plots") if isinstance(doc, dict) else None) or []:
        if not item:
            continue
        plot_id, props = next(iter(item.items())) if isinstance(item, dict) else (item, None)
        props = props if isinstance(props, dict) else {}
        if not isinstance(props.get("y"), dict):
            files.append(str(plot_id))  # as in DVC: without a {file: field} y, the id is the file
        for axis in (props.get("x"), props.get("y")):
            files += [str(f) for f in axis] if isinstance(axis, dict) else []
    parts = [Path(f).parts for f in files]
    return {p[1] for p in parts if len(p) > 2 and p[0] == "plots"}


def natural_sorted(paths) -> list[Path]:
    """duplicates_2.png before duplicates_10.png; ties broken by the plain name."""
    def key(p: Path):
        parts = re.split(r"(\d+)", p.name)
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in parts], p.name
    return sorted(paths, key=key)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_info(root: Path, ignore: list[str]) -> dict:
    """Short commit of HEAD and whether the worktree differs from it outside ``ignore``.

    Untracked (not ignored) files count as a difference. ``commit`` is None outside a git
    repository or without git.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args],
                              check=True, capture_output=True, text=True, timeout=60).stdout
    try:
        commit = git("rev-parse", "--short=12", "HEAD").strip()
        excludes = [f":(exclude){p}" for p in ignore]
        status = git("status", "--porcelain", "--", ".", *excludes)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"commit": commit, "dirty": bool(changed), "changed": changed}


def library_versions(names: list[str]) -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def data_version(download: dict | None, archive_info: dict | None) -> dict:
    """The BUSI archive's checksum: metrics/download.json when it records one, else
    data/raw/archive.json (download's own record)."""
    for source, d in (("metrics/download.json", download), ("data/raw/archive.json", archive_info)):
        for algo in ("sha256", "md5"):
            if d and d.get(algo):
                origin = (archive_info or {}).get("source") or (download or {}).get("source")
                return {"algorithm": algo, "hash": str(d[algo]), "from": source,
                        "source": origin}
    return {"algorithm": None, "hash": None, "from": None, "source": None}


def split_headline(flat: dict) -> dict[str, dict]:
    """{"seg.dice": x, "seg.model": "unet"} → {"seg": {"dice": x, "model": "unet"}}."""
    out: dict[str, dict] = {}
    for k in sorted(flat):
        key, _, metric = k.partition(".")
        out.setdefault(key, {})[metric or key] = flat[k]
    return out


def dig(d, path: list[str]):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def resolve_figure(spec: str, flat: dict | None, model_metrics) -> object:
    """"seg.dice" from the flat headline; else "<key>.<path>" inside the key's model's
    metrics (classification, then segmentation section). None when not found."""
    if not flat:
        return None
    if spec in flat:
        return flat[spec]
    key, _, rest = spec.partition(".")
    model = flat.get(f"{key}.model")
    m = model_metrics(model) if isinstance(model, str) and _NAME.match(model) else None
    if not m or not rest:
        return None
    for section in ("classification", "segmentation"):
        v = dig(m.get(section), rest.split("."))
        if v is not None:
            return v
    return None


def collect(cfg, models: list[str], paths: Paths = Paths()) -> dict:
    """Everything the report shows. Raises ReportInputError for a missing headline or any
    unreadable file."""
    metrics_dir, plots_dir = paths.metrics, paths.plots
    headline = read_json(metrics_dir / "headline.json", required=True)
    cache: dict[str, dict | None] = {}

    def model_metrics(name: str) -> dict | None:
        if name not in cache:
            cache[name] = read_json(metrics_dir / f"{name}.json")
        return cache[name]

    headline_models = read_json(metrics_dir / "headline_models.json")
    headline_peer = read_json(metrics_dir / "headline_peer.json")
    peer_models = {v.get("model") for v in ((headline_models or {}).get("peer") or {}).values()
                   if isinstance(v, dict)}
    peer_models |= {m for m in models if m.endswith("_peer")}

    download = read_json(metrics_dir / "download.json")
    archive_info = read_json(paths.archive_info)
    versions = {
        "busdx": busdx.__version__,
        "git": git_info(paths.root, cfg.dirty_ignore),
        "params_sha256": sha256_file(paths.params) if paths.params.exists() else None,
        "data": data_version(download, archive_info),
        "libraries": library_versions(cfg.libraries),
    }

    def headline_model(key: str) -> str | None:
        m = headline.get(f"{key}.model")
        return m if isinstance(m, str) and _NAME.match(m) else None

    curves = {}  # headline models whose curves the report should show: {model: key}
    for key in cfg.curve_keys:
        m = headline_model(key)
        if m and m not in curves:
            curves[m] = key
    seg = {}
    for key in cfg.seg_keys:
        m = headline_model(key)
        if m and m not in seg:
            png = plots_dir / m / "overlays.png"
            seg[m] = {"key": key, "overlays": png if png.exists() else None}

    references = []
    for r in cfg.references:
        references.append({
            **r.model_dump(),
            "ours_values": [resolve_figure(s, headline, model_metrics) for s in r.ours],
            "ours_peer_values": [resolve_figure(s, headline_peer, model_metrics)
                                 for s in r.ours_peer],
        })

    timings = {}
    if paths.timings.is_dir():
        for p in natural_sorted(paths.timings.glob("*.json")):
            timings[p.stem] = read_json(p)

    models_metrics = {m: model_metrics(m) for m in models}
    for flat in (headline, headline_peer or {}):  # CIs of the headline models
        for k, v in flat.items():
            if k.endswith(".model") and isinstance(v, str) and _NAME.match(v):
                model_metrics(v)
    return {
        "title": cfg.title,
        "dataset_name": cfg.dataset_name,
        "intended_use": cfg.intended_use,
        "test_description": cfg.test_description,
        "versions": versions,
        "download": download,
        "merge_masks": read_json(metrics_dir / "merge_masks.json"),
        "audit": read_json(metrics_dir / "audit.json"),
        "audit_sheets": natural_sorted((plots_dir / "audit").glob("*.png")),
        "split": read_json(metrics_dir / "split.json"),
        "headline": headline,
        "headline_models": headline_models,
        "headline_peer": headline_peer,
        "models": models_metrics,
        "all_metrics": dict(sorted(cache.items())),
        "peer_models": sorted(peer_models & set(models)),
        "curves": curves,
        "dvcfile": paths.dvcfile,
        "plotted_models": plotted_models(paths.dvcfile),
        "seg": seg,
        "references": references,
        "explain": read_json(metrics_dir / "explain.json"),
        "explain_galleries": natural_sorted((plots_dir / "explain").glob("*.png")),
        "timings": timings,
    }
