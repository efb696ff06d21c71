"""Beyond one machine: clone A runs an experiment and pushes it; clone B pulls it and gets its
metrics and outputs without executing a stage. A bare git repo and a local-directory DVC remote
stand in for the team's git server and storage."""
import json

import pytest

from pipeline_helpers import dvc, run
from test_remote_ssh import OUTPUTS, stage_runs, use_marker_and_git_identity, write_project

pytestmark = pytest.mark.slow


def _experiment(show: list[dict], name: str) -> dict:
    """The `data` of experiment `name` in `dvc exp show --json` output."""
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                if rev["name"] == name:
                    return rev["data"]
    raise AssertionError(f"experiment {name!r} not in dvc exp show --json: {show}")


def test_experiment_pushed_from_one_clone_is_pulled_into_another(tmp_path, monkeypatch):
    marker = use_marker_and_git_identity(tmp_path, monkeypatch)
    origin = tmp_path / "origin.git"
    storage = tmp_path / "dvc-remote"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)

    # Clone A: the baseline, committed and pushed (outputs to the DVC remote, code to git).
    a = write_project(tmp_path / "a")
    dvc(a, "remote", "add", "-d", "--local", "storage", str(storage))  # as scripts/run.sh does
    dvc(a, "repro")
    dvc(a, "push")
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "baseline"], a)
    run(["git", "remote", "add", "origin", str(origin)], a)
    run(["git", "push", "-q", "origin", "main"], a)
    assert stage_runs(marker) == ["prepare", "train"]

    exp = dvc(a, "exp", "run", "-S", "train.scale=3", "-n", "triple")
    assert "Stage 'prepare' didn't change, skipping" in exp.stdout, exp.stdout
    assert stage_runs(marker) == ["prepare", "train", "train"]
    want = {o: (a / o).read_bytes() for o in OUTPUTS}  # the experiment's results, in A's workspace
    assert json.loads(want["metrics.json"]) == {"total": 45, "n": 5}
    pushed = dvc(a, "exp", "push", "--run-cache", "origin", "triple")
    assert "Pushed experiment triple to Git remote 'origin'" in pushed.stdout, pushed.stdout
    refs = run(["git", "ls-remote", str(origin), "refs/exps/*"], a).stdout
    assert "triple" in refs, f"no experiment ref in the git remote: {refs!r}"

    # Clone B: another machine. Nothing pulled yet, then only the experiment.
    b = tmp_path / "b"
    run(["git", "clone", "-q", str(origin), str(b)], tmp_path)
    dvc(b, "remote", "add", "-d", "--local", "storage", str(storage))
    assert not any((b / o).exists() for o in OUTPUTS)
    pulled = dvc(b, "exp", "pull", "--run-cache", "origin", "triple")
    assert "Pulled experiment" in pulled.stdout and "triple" in pulled.stdout, pulled.stdout

    show = json.loads(dvc(b, "exp", "show", "--json").stdout)
    data = _experiment(show, "triple")
    assert data["metrics"]["metrics.json"]["data"] == {"total": 45, "n": 5}
    assert data["params"]["params.yaml"]["data"]["train"]["scale"] == 3
    main = next(r for r in show if r["name"] == "main")
    assert main["data"]["metrics"]["metrics.json"]["data"] == {"total": 30, "n": 5}

    dvc(b, "exp", "apply", "triple")
    dvc(b, "checkout")
    for o in OUTPUTS:
        assert (b / o).read_bytes() == want[o], f"{o} in clone B differs from clone A's experiment"
    status = json.loads(dvc(b, "status", "--json").stdout)
    assert status == {}, f"clone B is not clean after exp apply: {status}"
    repro = dvc(b, "repro")
    assert "Data and pipelines are up to date." in repro.stdout, repro.stdout
    assert stage_runs(marker) == ["prepare", "train", "train"], "clone B executed a stage"
    assert (b / ".dvc" / "cache" / "runs").is_dir(), "exp pull --run-cache brought no run-cache"
