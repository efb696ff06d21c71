"""Where the gate keeps what outlives a clone: the default DVC remote and the record of
what passed on this machine, both outside the repo (by default under ~/.cache/busdx).

    BUSDX_DVC_REMOTE   the default remote (a directory, or any DVC URL: s3://, ssh://, gs://)
    BUSDX_GATE_STATE   the record file (default: gate-state.json beside a directory remote,
                       else ~/.cache/busdx/gate-state.json)

The record holds, per project (its root commit) and pipeline (dvc.yaml path), the lock and
the headline metrics of the last commit that passed the gate here, and the measured
duration of every stage the gate executed (for the time budget). A missing or unreadable
record is a cold start, never an error: CI must not depend on it.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

HOME = Path.home() / ".cache" / "busdx"


def remote_url() -> str:
    return os.environ.get("BUSDX_DVC_REMOTE") or str(HOME / "dvc-remote")


def state_path() -> Path:
    if os.environ.get("BUSDX_GATE_STATE"):
        return Path(os.environ["BUSDX_GATE_STATE"])
    url = remote_url()
    if "://" not in url:
        return Path(url).expanduser().resolve().parent / "gate-state.json"
    return HOME / "gate-state.json"


def load(path: Path | None = None) -> dict:
    path = path or state_path()
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(state: dict, path: Path | None = None) -> None:
    """Atomic: a gate killed mid-write leaves the previous record intact."""
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".gate-state.")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


def _project(state: dict, project: str) -> dict:
    return state.setdefault("projects", {}).setdefault(project, {})


def last_pass(state: dict, project: str, pipeline: str) -> dict | None:
    """``{"commit", "lock", "metrics", "at"}`` of the last pass of this pipeline, or None."""
    rec = state.get("projects", {}).get(project, {}).get("passed", {}).get(pipeline)
    return rec if isinstance(rec, dict) and isinstance(rec.get("lock"), dict) else None


def record_pass(state: dict, project: str, pipeline: str, commit: str, lock: dict,
                metrics: dict) -> None:
    _project(state, project).setdefault("passed", {})[pipeline] = {
        "commit": commit, "lock": lock, "metrics": metrics,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def durations(state: dict, project: str, pipeline: str) -> dict[str, float]:
    return dict(state.get("projects", {}).get(project, {}).get("durations", {}).get(pipeline, {}))


def record_durations(state: dict, project: str, pipeline: str, times: dict[str, float]) -> None:
    _project(state, project).setdefault("durations", {}).setdefault(pipeline, {}).update(times)
