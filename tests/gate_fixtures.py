"""A tiny real DVC project for the incremental gate's tests: two pipelines, a chain
a → b → c (c writes the headline metric) and an independent d, a library module that only
b imports, and stage commands that count their executions in a marker file outside the repo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

STAGE = """\
import json, os, pathlib, sys
name = {name!r}
with open(os.environ["GATE_MARKER"], "a") as f:
    f.write(name + "\\n")
params = __import__("yaml").safe_load(open("params.yaml"))
{body}
"""

BODIES = {
    "a": 'pathlib.Path("data").mkdir(exist_ok=True)\n'
         'pathlib.Path("data/a.txt").write_text(str(params["a"]["n"]))',
    "b": 'sys.path.insert(0, "."); import lib\n'
         'n = int(pathlib.Path("data/a.txt").read_text())\n'
         'pathlib.Path("data/b.txt").write_text(str(lib.scale(n, params["b"]["k"])))',
    "c": 'v = int(pathlib.Path("data/b.txt").read_text())\n'
         'pathlib.Path("metrics").mkdir(exist_ok=True)\n'
         'pathlib.Path("metrics/headline.json").write_text('
         'json.dumps({"cls": {"score": v / 100, "model": "m"}}))\n'
         'pathlib.Path("metrics/m.json").write_text('
         'json.dumps({"ci": {"score": {"lo": v / 100 - 0.05, "hi": v / 100 + 0.05}}}))',
    "d": 'pathlib.Path("data").mkdir(exist_ok=True)\n'
         'pathlib.Path("data/d.txt").write_text(str(params["d"]["z"]))',
}

DVC_YAML = {"stages": {
    "a": {"cmd": "python a.py", "deps": ["a.py"], "params": ["a"], "outs": ["data/a.txt"]},
    "b": {"cmd": "python b.py", "deps": ["b.py", "lib.py", "data/a.txt"], "params": ["b"],
          "outs": ["data/b.txt"]},
    "c": {"cmd": "python c.py", "deps": ["c.py", "data/b.txt"],
          "metrics": [{"metrics/headline.json": {"cache": False}},
                      {"metrics/m.json": {"cache": False}}]},
    "d": {"cmd": "python d.py", "deps": ["d.py"], "params": ["d"], "outs": ["data/d.txt"]},
}}


def env(marker: Path, **extra) -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.update(GATE_MARKER=str(marker), DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t",
             GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    e.update({k: str(v) for k, v in extra.items()})
    return e


def sh(cmd: list[str], cwd: Path, e: dict, check: bool = True) -> subprocess.CompletedProcess:
    if cmd[0] == "dvc":
        cmd = [str(Path(sys.executable).parent / "dvc"), *cmd[1:]]
    p = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def write_project(root: Path, sub: Path | None = None) -> None:
    """The chain in ``root`` (and, when ``sub`` is given, a copy as a second pipeline)."""
    for where in [root] + ([root / sub] if sub else []):
        where.mkdir(parents=True, exist_ok=True)
        for name, body in BODIES.items():
            (where / f"{name}.py").write_text(STAGE.format(name=f"{where.name}:{name}",
                                                           body=body))
        (where / "lib.py").write_text("def scale(n, k):\n    return 10 * n * k\n")
        (where / "params.yaml").write_text(yaml.safe_dump(
            {"a": {"n": 2}, "b": {"k": 2}, "d": {"z": 0}}))
        (where / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (root / "ci").mkdir(exist_ok=True)
    rules = {"metrics/headline.json": {"cls.score": {"tolerance": 0.01}}}
    if sub:
        rules[f"{sub.as_posix()}/metrics/headline.json"] = {"cls.score": {"tolerance": 0.01}}
    (root / "ci" / "gate.yaml").write_text(yaml.safe_dump(rules))
    (root / "README.md").write_text("tiny\n")


def init_repo(root: Path, e: dict, remote: Path, sub: Path | None = None) -> None:
    write_project(root, sub)
    sh(["git", "init", "-q", "-b", "main"], root, e)
    sh(["dvc", "init", "-q"], root, e)
    sh(["dvc", "remote", "add", "-d", "default", str(remote)], root, e)
    sh(["dvc", "repro", "--all-pipelines"], root, e)
    commit(root, e, "init")


def commit(root: Path, e: dict, msg: str) -> str:
    sh(["git", "add", "-A"], root, e)
    sh(["git", "commit", "-qm", msg], root, e)
    return sh(["git", "rev-parse", "HEAD"], root, e).stdout.strip()


def set_param(where: Path, section: str, key: str, value) -> None:
    p = yaml.safe_load((where / "params.yaml").read_text())
    p[section][key] = value
    (where / "params.yaml").write_text(yaml.safe_dump(p))


def runs(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def metric(root: Path) -> float:
    return json.loads((root / "metrics" / "headline.json").read_text())["cls"]["score"]


def budget(root: Path, minutes: float, pipelines: dict) -> None:
    (root / "ci" / "gate_budget.yaml").write_text(textwrap.dedent(yaml.safe_dump(
        {"budget_minutes": minutes, "pipelines": pipelines})))
