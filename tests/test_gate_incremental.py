"""The incremental gate: which stages a commit re-executes (on the real locks and on a tiny
real DVC project), the cold-cache budget fallback, the record of passes and the report."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from busdx.ci import incremental, report, selection, state
from busdx.gate import Rule
from gate_fixtures import (budget, commit, env, init_repo, metric, runs, set_param, sh)
from pipeline_helpers import REPO

LOCK = yaml.safe_load((REPO / "dvc.lock").read_text())
MIAS_LOCK = yaml.safe_load((REPO / "pipelines/mias/dvc.lock").read_text())


# --- selection on the committed locks ------------------------------------------------------

@pytest.mark.parametrize("lock", [LOCK, MIAS_LOCK], ids=["busi", "mias"])
def test_cold_start_selects_every_stage_producers_first(lock):
    order = selection.changed_stages(None, lock)
    assert sorted(order) == sorted(lock["stages"])
    pos = {s: i for i, s in enumerate(order)}
    g = selection.graph(lock)
    assert g.number_of_edges() > len(order)  # a real graph, not a list
    assert all(pos[u] < pos[v] for u, v in g.edges), "a consumer came before its producer"
    assert order[0] == "download" and order[-1] == "report"


def test_identical_locks_select_nothing():
    assert selection.changed_stages(copy.deepcopy(LOCK), LOCK) == []


@pytest.mark.parametrize("module", ["src/busdx/evaluate/run.py", "src/busdx/data/crop.py",
                                    "src/busdx/train/runner.py"])
def test_library_edit_selects_exactly_the_stages_that_import_it(module):
    base = copy.deepcopy(LOCK)
    importers = set()
    for name, entry in base["stages"].items():
        for dep in entry["deps"]:
            if dep["path"] == module:
                dep["md5"] = "0" * 32  # the module as it was before the edit
                importers.add(name)
    assert importers, f"no stage lists {module}"
    assert set(selection.changed_stages(base, LOCK)) == importers


def test_param_edit_selects_its_stage_and_reports_the_param():
    base = copy.deepcopy(LOCK)
    base["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]["n_boot"] = 7
    assert selection.changed_stages(base, LOCK) == ["evaluate"]
    changed = selection.changed_params(base, LOCK)
    assert set(changed) == {"evaluate.n_boot"} and changed["evaluate.n_boot"][0] == 7


def test_producers_of_an_evaluate_change_are_the_training_stages():
    producers = selection.upstream_of(LOCK, ["evaluate"])
    assert "train_cls@grouped" in producers and "evaluate" not in producers
    assert "download" not in producers  # only direct producers are restored


# --- a tiny real DVC project ---------------------------------------------------------------

@pytest.fixture
def project(tmp_path, monkeypatch):
    root, marker = tmp_path / "proj", tmp_path / "ran.txt"
    e = env(marker, BUSDX_GATE_STATE=tmp_path / "state.json")
    monkeypatch.setenv("BUSDX_GATE_STATE", str(tmp_path / "state.json"))
    monkeypatch.delenv("BUSDX_BASELINE", raising=False)
    init_repo(root, e, tmp_path / "remote", sub=Path("pipelines/x"))
    marker.unlink()
    return root, marker, e


def selected(root: Path, base_rev: str) -> dict[str, list[str]]:
    out = {}
    for f in ("dvc.yaml", "pipelines/x/dvc.yaml"):
        lock = f.replace(".yaml", ".lock")
        base = yaml.safe_load(subprocess.run(["git", "show", f"{base_rev}:{lock}"], cwd=root,
                                             capture_output=True, text=True).stdout)
        out[f] = selection.changed_stages(base, yaml.safe_load((root / lock).read_text()))
    return out


def test_real_commits_select_what_they_touched(project):
    root, marker, e = project
    base = sh(["git", "rev-parse", "HEAD"], root, e).stdout.strip()
    # docs only: nothing
    (root / "README.md").write_text("tiny, documented\n")
    commit(root, e, "docs")
    assert selected(root, base) == {"dvc.yaml": [], "pipelines/x/dvc.yaml": []}
    # a param of b: b and its descendant c, not a nor d, in the BUSI-like pipeline only
    base = sh(["git", "rev-parse", "HEAD"], root, e).stdout.strip()
    set_param(root, "b", "k", 3)
    sh(["dvc", "repro", "--all-pipelines"], root, e)
    commit(root, e, "b.k")
    assert selected(root, base) == {"dvc.yaml": ["b", "c"], "pipelines/x/dvc.yaml": []}
    # a library module only b imports, rewritten with the same result: b only
    base = sh(["git", "rev-parse", "HEAD"], root, e).stdout.strip()
    for where in (root, root / "pipelines/x"):
        (where / "lib.py").write_text("def scale(n, k):\n    return n * k * 10  # same\n")
    sh(["dvc", "repro", "--all-pipelines"], root, e)
    commit(root, e, "lib")
    assert selected(root, base) == {"dvc.yaml": ["b"], "pipelines/x/dvc.yaml": ["b"]}


def gate(root: Path, e: dict, *args: str) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "busdx.gate", "run", *args], root, e, check=False)


def test_gate_reexecutes_exactly_the_changed_stages_and_records(project, tmp_path):
    root, marker, e = project
    budget(root, 30, {"dvc.yaml": 1, "pipelines/x/dvc.yaml": 1})
    commit(root, e, "budget")
    # no record yet: a cold start re-executes every stage of both pipelines
    r = gate(root, e)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(runs(marker)) == sorted(f"{p}:{s}" for p in ("proj", "x") for s in "abcd")
    rec = state.load(tmp_path / "state.json")
    (passed,) = rec["projects"].values()
    assert set(passed["passed"]) == {"dvc.yaml", "pipelines/x/dvc.yaml"}
    assert set(passed["durations"]["dvc.yaml"]) == set("abcd")
    # docs-only commit: nothing re-executed, the report says so
    marker.unlink()
    sh(["git", "checkout", "-q", "--", "."], root, e)  # drop the re-run's lock edits
    (root / "README.md").write_text("more docs\n")
    commit(root, e, "docs")
    r = gate(root, e)
    assert r.returncode == 0, r.stdout + r.stderr
    assert runs(marker) == []
    text = (root / "build/gate/report.md").read_text()
    assert "PASSED" in text and "None: no stage's lock entry changed" in text
    # a param of d: d only (forced, though its output is in the cache)
    set_param(root, "d", "z", 5)
    sh(["dvc", "repro", "dvc.yaml"], root, e)
    commit(root, e, "d.z")
    marker.unlink(missing_ok=True)
    r = gate(root, e)
    assert r.returncode == 0, r.stdout + r.stderr
    assert runs(marker) == ["proj:d"]
    text = (root / "build/gate/report.md").read_text()
    assert "| dvc.yaml | `d.z` | `0` | `5` |" in text and "| dvc.yaml | d |" in text


def test_gate_fails_when_committed_metrics_do_not_come_from_the_code(project):
    root, marker, e = project
    budget(root, 30, {"dvc.yaml": 1, "pipelines/x/dvc.yaml": 1})
    commit(root, e, "budget")
    assert gate(root, e).returncode == 0
    sh(["git", "checkout", "-q", "--", "."], root, e)
    # change the code of c and commit a lock that claims it ran, with the old metric
    for where in (root,):
        c = (where / "c.py").read_text().replace("v / 100,", "v / 50,")
        (where / "c.py").write_text(c)
    old = metric(root)
    sh(["dvc", "commit", "-f", "c"], root, e)  # lock updated, stage not run
    assert metric(root) == old
    commit(root, e, "c without a re-run")
    r = gate(root, e)
    assert r.returncode == 1
    assert "do not come from this code" in r.stdout
    assert "FAILED" in (root / "build/gate/report.md").read_text()


def test_cold_start_budget_runs_the_first_pipeline_and_checks_the_rest_later(project, tmp_path):
    root, marker, e = project
    # the second pipeline is estimated far past the budget: lock checked, not re-executed
    budget(root, 5, {"dvc.yaml": 1, "pipelines/x/dvc.yaml": 500})
    commit(root, e, "budget")
    r = gate(root, e)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(runs(marker)) == sorted(f"proj:{s}" for s in "abcd")
    text = (root / "build/gate/report.md").read_text()
    assert "| pipelines/x/dvc.yaml |" in text and "not re-executed: time budget" in text
    (passed,) = state.load(tmp_path / "state.json")["projects"].values()
    assert set(passed["passed"]) == {"dvc.yaml"}, "a skipped pipeline must stay unverified"
    # next gate on this machine, with time: only the unverified pipeline runs
    sh(["git", "checkout", "-q", "--", "."], root, e)
    budget(root, 5, {"dvc.yaml": 1, "pipelines/x/dvc.yaml": 1})
    commit(root, e, "more budget")
    marker.unlink()
    assert gate(root, e).returncode == 0
    assert sorted(runs(marker)) == sorted(f"x:{s}" for s in "abcd")


def test_producers_missing_from_the_cache_are_pulled_from_the_remote(project, tmp_path):
    root, marker, e = project
    budget(root, 30, {"dvc.yaml": 1, "pipelines/x/dvc.yaml": 1})
    commit(root, e, "budget")
    assert gate(root, e).returncode == 0           # pushes to the remote, records a pass
    # the developer changes c and re-runs it; CI checks the commit in a fresh clone whose
    # own cache is empty: c needs b's output, which must come from the remote
    sh(["git", "checkout", "-q", "--", "."], root, e)
    (root / "c.py").write_text((root / "c.py").read_text() + "\n# touched\n")
    sh(["dvc", "repro", "dvc.yaml"], root, e)
    commit(root, e, "c touched")
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(root), str(clone)], tmp_path, e)
    sh(["dvc", "remote", "add", "-d", "--local", "-f", "default", str(tmp_path / "remote")],
       clone, e)
    assert not (clone / "data/b.txt").exists()
    marker.unlink(missing_ok=True)
    r = gate(clone, e)
    assert r.returncode == 0, r.stdout + r.stderr
    assert runs(marker) == ["proj:c"], "b's output should come from the remote, not a re-run"
    assert (clone / "data/b.txt").exists()


# --- report --------------------------------------------------------------------------------

def test_report_tables_cis_and_plot_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/effnet.json").write_text(json.dumps(
        {"ci": {"auc_malignant": {"lo": 0.81, "hi": 0.95}}}))
    rules = [Rule("metrics/headline.json", "cls.auc_malignant"),
             Rule("metrics/headline.json", "seg.dice")]
    new = {"metrics/headline.json": {"cls.auc_malignant": 0.9, "cls.model": "effnet",
                                     "seg.dice": 0.7}}
    old = {"metrics/headline.json": {"cls.auc_malignant": 0.88, "seg.dice": 0.7}}
    p = incremental.Plan("dvc.yaml", "origin/main", None, {}, ["evaluate"],
                         executed={"evaluate": 12.3})
    skipped = incremental.Plan("pipelines/mias/dvc.yaml", "none: cold start", None, {},
                               ["download"], skipped="time budget: needs ~16 min")
    png = tmp_path / "build/gate/plots/roc.svg"
    png.parent.mkdir(parents=True)
    png.write_text("<svg/>")
    text = report.render(passed=True, commit="abcdef1234567890", plans=[p, skipped],
                         rules=rules, old=old, new=new, failures=[],
                         params={"dvc.yaml": {"evaluate.n_boot": (1000, 500)}},
                         gate_seconds=75, plot_files=[png], out=tmp_path / "build/gate/report.md")
    assert "| metrics/headline.json | cls.auc_malignant | 0.8800 | 0.9000 | +0.0200 | " \
           "[0.810, 0.950] |" in text
    assert "| metrics/headline.json | seg.dice | 0.7000 | 0.7000 | +0.0000 | – |" in text
    assert "| dvc.yaml | `evaluate.n_boot` | `1000` | `500` |" in text
    assert "| dvc.yaml | evaluate | 12.3 |" in text
    assert "not re-executed: time budget" in text
    assert "![roc](plots/roc.svg)" in text
    assert (tmp_path / "build/gate/report.md").read_text() == text


def test_state_record_is_atomic_and_tolerates_garbage(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert state.load(path) == {}
    st = {}
    state.record_pass(st, "p", "dvc.yaml", "abc", {"stages": {}}, {"m": {"k": 1}})
    state.record_durations(st, "p", "dvc.yaml", {"a": 1.5})
    state.save(st, path)
    back = state.load(path)
    assert state.last_pass(back, "p", "dvc.yaml")["commit"] == "abc"
    assert state.durations(back, "p", "dvc.yaml") == {"a": 1.5}
    assert state.last_pass(back, "p", "other.yaml") is None
    assert not list(tmp_path.glob(".gate-state.*")), "temporary file left behind"
