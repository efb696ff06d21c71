"""Run `dvc repro` in a throwaway copy of the working tree (tests never touch the real data/)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def copy_repo(dest: Path) -> Path:
    """The BUSI project (tracked and untracked files, no outputs) in a new git repo; the
    dataset pipelines (pipelines/) are left out: their data is not in this copy's cache."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "metrics/", "plots/", "pipelines/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for d in ("data", "metrics", "plots"):
        (dest / d).mkdir(exist_ok=True)
    run(["git", "init", "-q"], dest)
    return dest


def set_params(repo: Path, **sections) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        params[name].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def env(repo: Path) -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = str(repo / "src")  # the copy's code, not the installed checkout's
    e["DVC_NO_ANALYTICS"] = "1"
    return e


def run(cmd: list[str], repo: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=repo, env=env(repo), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).parent / "dvc"), *args], repo, check)
