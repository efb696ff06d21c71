"""Integration: a parameter sweep through DVC's experiment queue (docs/sweeps.md).

In a throwaway git copy of the repo on the synthetic set: queue a two-value grid and one
experiment with an invalid param value, run them with `dvc queue start -j 2`, compare with
`dvc exp show --only-changed --sort-by`, `dvc exp apply` / `dvc exp branch` the best one, and
check that the failed one is reported with our config's error and that no worker is left.
The target is the cheap `split` stage, whose metrics change with `split.seed`.
"""
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import copy_repo, dvc, env, run

METRIC = "metrics/split.json:grouped.max_class_ratio_gap"
SEEDS = (1, 2)
STAGES = ("download", "audit", "split")  # the target and what it needs
TIMEOUT_S = 300


def queue_env(repo: Path) -> dict:
    # Relative on purpose (docs/sweeps.md): each stage's python starts in its experiment's
    # own workspace (.dvc/tmp/exps/tmp*/), so it imports that copy of src/busdx and not the
    # editable install's checkout.
    e = env(repo)
    e["PYTHONPATH"] = "src"
    return e


def qdvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args],
                       cwd=repo, env=queue_env(repo), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(
            f"dvc {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def queue_status(repo: Path) -> tuple[dict[str, str], str]:
    """{experiment name: Queued|Running|Success|Failed|...}, and the worker status line."""
    out = qdvc(repo, "queue", "status").stdout
    tasks = {}
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]{7}\s+(\S+)\s+.*\s(\w+)\s*$", line)
        if m:
            tasks[m.group(1)] = m.group(2)
    worker = next((ln for ln in out.splitlines() if ln.startswith("Worker status")), "")
    return tasks, worker


def repo_processes(repo: Path) -> list[int]:
    """Live processes working inside this copy: DVC's queue workers, its experiment runs
    (in .dvc/tmp/exps/) and their stage commands."""
    root, pids = str(repo), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(d / "cwd")
            zombie = re.search(r"^State:\s+Z", (d / "status").read_text(), re.M)
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + os.sep)) and not zombie:
            pids.append(int(d.name))
    return pids


def stop_queue(repo: Path) -> list[int]:
    """Stop the queue without leaving processes; returns those that had to be SIGKILLed.

    `dvc queue kill <task>` sends SIGINT to the run's process group (the stage command
    stops too); `dvc queue stop --kill` would SIGKILL the run's dvc process only and orphan a
    running stage command (dvc 3.67). Workers exit once their task ends.
    """
    qdvc(repo, "queue", "stop", check=False)  # workers take no new task
    try:
        running = [n for n, st in queue_status(repo)[0].items() if st == "Running"]
    except AssertionError:
        running = []
    if running:
        qdvc(repo, "queue", "kill", *running, check=False)
    deadline = time.monotonic() + 30
    while (left := repo_processes(repo)) and time.monotonic() < deadline:
        time.sleep(1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def exp_show_json(repo: Path) -> dict[str, dict]:
    """{experiment name: {state, seed, protocol, split metrics}} from `dvc exp show --json`."""
    exps = {}
    for base in json.loads(qdvc(repo, "exp", "show", "--json").stdout):
        for e in base.get("experiments") or []:
            data = e["revs"][0].get("data") or {}
            params = data.get("params", {}).get("params.yaml", {}).get("data", {})
            metrics = data.get("metrics", {}).get("metrics/split.json", {}).get("data")
            exps[e["name"]] = {"state": (e.get("executor") or {}).get("state"),
                               "rev": e["revs"][0]["rev"], "split": params.get("split", {}),
                               "metrics": metrics}
    return exps


@pytest.mark.slow
def test_queued_sweep_show_apply_and_failure(tmp_path):
    t0 = time.perf_counter()
    repo = copy_repo(tmp_path / "repo")
    # `dvc exp apply` ends with a full `dvc checkout --force`, which fails on any output not in
    # the cache: keep only the stages this copy runs, and drop the committed (real-BUSI) lock.
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {k: pipeline["stages"][k] for k in STAGES}
    pipeline.pop("plots", None)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"].update(dataset="synthetic", synthetic={
        "seed": 0, "n_benign": 10, "n_malignant": 8, "n_normal": 6, "size": 160})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro", "split")
    # queued experiments are stashed on top of HEAD: commit the baseline (and its dvc.lock)
    for key, value in (("user.name", "busdx-test"), ("user.email", "busdx-test@example.invalid")):
        run(["git", "config", key, value], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    baseline_metrics = json.loads((repo / "metrics/split.json").read_text())

    # a 2-point grid in one command (Hydra sweep syntax: one experiment per value) + one bad
    grid = f"split.seed={','.join(map(str, SEEDS))}"
    out = qdvc(repo, "exp", "run", "--queue", "-S", grid, "split")
    assert out.stdout.count("Queued experiment") == len(SEEDS), out.stdout
    qdvc(repo, "exp", "run", "--queue", "-S", "split.protocol=bogus", "-n", "bad-protocol", "split")
    tasks, _ = queue_status(repo)
    assert len(tasks) == len(SEEDS) + 1 and set(tasks.values()) == {"Queued"}, tasks

    try:
        # Not through a pipe: the detached workers inherit the launcher's stdout, so a
        # captured `dvc queue start` would only return when the last worker exits (and a
        # worker can hang in celery's shutdown after "empty queue"; stop_queue reaps it).
        log_path = tmp_path / "queue_start.log"
        with open(log_path, "w") as log_file:
            subprocess.run([str(Path(sys.executable).parent / "dvc"), "queue", "start", "-j", "2"],
                           cwd=repo, env=queue_env(repo), stdout=log_file,
                           stderr=subprocess.STDOUT, check=True)
        assert "Started '2' new" in log_path.read_text()
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            tasks, _ = queue_status(repo)
            if not set(tasks.values()) & {"Queued", "Running"}:
                break
            assert time.monotonic() < deadline, f"queue not done after {TIMEOUT_S}s: {tasks}"
            time.sleep(3)
    finally:
        leaked = stop_queue(repo)
    assert not leaked, f"processes left in the copy after `dvc queue stop`: {leaked}"

    # the failed one: Failed in the queue, our config's message in its log
    assert tasks.pop("bad-protocol") == "Failed"
    assert set(tasks.values()) == {"Success"}, tasks
    log = qdvc(repo, "queue", "logs", "bad-protocol").stdout
    assert "params section 'split' is invalid" in log, log
    assert "Input should be 'grouped' or 'random'" in log, log
    # ...raised by the experiment's own copy of the code (PYTHONPATH=src, relative)
    assert re.search(r"\.dvc/tmp/exps/tmp\w+/src/busdx/config", log), log

    exps = exp_show_json(repo)
    assert exps["bad-protocol"]["state"] == "failed"
    done = {name: e for name, e in exps.items() if name in tasks}
    assert {e["state"] for e in done.values()} == {"success"}
    assert sorted(e["split"]["seed"] for e in done.values()) == list(SEEDS)
    gaps = {name: e["metrics"]["grouped"]["max_class_ratio_gap"] for name, e in done.items()}
    for name, e in done.items():
        m = e["metrics"]
        assert m["grouped"]["images"] == baseline_metrics["grouped"]["images"]
        assert m["grouped"]["train"] + m["grouped"]["test"] == m["grouped"]["images"]
        assert 0.0 <= gaps[name] <= 1.0
    assert len(set(gaps.values())) == len(SEEDS), gaps  # the seeds give different splits

    # compare: only the changed columns, sorted by the metric, best (lowest gap) first
    table = qdvc(repo, "exp", "show", "--only-changed", "--sort-by", METRIC,
                 "--sort-order", "asc", "--csv").stdout
    # With several params/metrics files (pipelines/mias has its own) dvc names a column
    # "<file>:<key>" when the key alone is ambiguous; compare by key.
    rows = [{c.split(":", 1)[-1]: v for c, v in r.items()}
            for r in csv.DictReader(io.StringIO(table))]
    cols = set(rows[0])
    assert {"split.seed", "split.protocol", "grouped.max_class_ratio_gap"} <= cols, cols
    assert not {"split.test_size", "split.n_folds", "grouped.images"} & cols, cols  # unchanged
    ranked = [r for r in rows if r["Experiment"] in done]
    assert [float(r["grouped.max_class_ratio_gap"]) for r in ranked] == sorted(gaps.values())
    assert {r["Experiment"]: int(r["split.seed"]) for r in ranked} == {
        n: e["split"]["seed"] for n, e in done.items()}
    best = ranked[0]["Experiment"]

    # apply the best one: params, metrics and the stage's outputs land in the workspace
    qdvc(repo, "exp", "apply", best)
    applied = yaml.safe_load((repo / "params.yaml").read_text())
    assert applied["split"]["seed"] == done[best]["split"]["seed"]
    assert json.loads((repo / "metrics/split.json").read_text()) == done[best]["metrics"]
    assert "up to date" in qdvc(repo, "status", "split").stdout
    # ...and promote it to a git branch
    qdvc(repo, "exp", "branch", best, "sweep-best")
    on_branch = yaml.safe_load(run(["git", "show", "sweep-best:params.yaml"], repo).stdout)
    assert on_branch["split"]["seed"] == done[best]["split"]["seed"]
    print(f"queued sweep: {time.perf_counter() - t0:.0f}s")
