"""CI regression gate: rule checks, stale-lock detection, and both on a tiny real DVC repo."""
import sys
import textwrap
from pathlib import Path

import pytest

from busdx import gate
from pipeline_helpers import REPO, dvc, run

H = "metrics/headline.json"


def rules(**kw):
    return [gate.Rule(H, "seg.dice", **kw)]


def m(v):
    return {H: {"seg.dice": v}}


def test_committed_rules_file_is_valid():
    rs = gate.load_rules(REPO / "ci" / "gate.yaml")
    keys = {(r.file, r.key) for r in rs}
    assert (H, "seg.dice") in keys and (H, "cls.auc_malignant") in keys
    assert all(r.tolerance >= 0 for r in rs)


def test_unknown_rule_field_is_an_error(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("metrics/h.json:\n  a.b: {tolerence: 0.1}\n")
    with pytest.raises(ValueError, match="tolerence"):
        gate.load_rules(p)


@pytest.mark.parametrize("fresh,committed,n_fail,what", [
    (0.70, 0.70, 0, None),
    (0.69, 0.70, 0, None),                       # within tolerance
    (0.67, 0.70, 1, "worse than committed"),     # a drop beyond tolerance
    (0.73, 0.70, 1, "do not come from this code"),  # committed numbers are stale
    (0.55, 0.55, 1, "floor"),
])
def test_check_against_committed(fresh, committed, n_fail, what):
    f = gate.check(rules(tolerance=0.02, floor=0.6), m(fresh), m(committed))
    assert len(f) == n_fail and (what is None or what in f[0])


def test_lower_is_better_and_baseline():
    r = rules(higher_is_better=False, tolerance=1.0, floor=30.0)
    assert gate.check(r, m(20.0), m(19.5)) == []
    assert "worse than committed" in gate.check(r, m(22.0), m(20.0))[0]
    assert "floor" in gate.check(r, m(31.0), m(31.0))[0]
    # a branch whose committed metrics were honestly lowered still fails against main
    f = gate.check(rules(tolerance=0.02), m(0.60), m(0.60), baseline=m(0.70))
    assert len(f) == 1 and "worse than baseline" in f[0]


def test_missing_values_fail():
    assert "missing" in gate.check(rules(), {}, m(0.7))[0]
    assert "no committed value" in gate.check(rules(), m(0.7), {})[0]


def test_stale_stages_counts_only_tracked_deps():
    status = {
        "train": [{"changed deps": {"src/a.py": "modified", "data/x": "deleted",
                                    "params.yaml": {"train.lr": "modified"}}},
                  {"changed outs": {"data/model.pt": "deleted"}}],
        "fresh_clone": [{"changed deps": {"data/raw": "deleted", "data/y": "modified"}}],
        "cmd": [{"changed command": True}],
    }
    stale = gate.stale_stages(status, tracked={"src/a.py"})
    assert stale == {"train": ["src/a.py modified", "param train.lr modified"],
                     "cmd": ["command changed"]}


STAGE = """\
import json, pathlib
score = {score}
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("metrics/headline.json").write_text(json.dumps({{"seg.dice": score}}))
"""


def test_gate_on_a_real_dvc_repo(tmp_path):
    """Stale lock, a regression and a clean run, end to end with git and dvc."""
    repo = tmp_path / "r"
    (repo / "ci").mkdir(parents=True)
    (repo / "ci" / "gate.yaml").write_text(f"{H}:\n  seg.dice: {{tolerance: 0.02}}\n")
    (repo / "make.py").write_text(STAGE.format(score=0.8))
    (repo / "dvc.yaml").write_text(textwrap.dedent(f"""\
        stages:
          make:
            cmd: python make.py
            deps: [make.py]
            metrics:
              - {H}:
                  cache: false
        """))
    run(["git", "init", "-q"], repo)
    dvc(repo, "init", "-q")
    dvc(repo, "repro")
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], repo)

    def gate_cmd(*args):
        return run([sys.executable, "-m", "busdx.gate", *args], repo, check=False)

    ok = gate_cmd("lock")
    assert ok.returncode == 0 and "current" in ok.stdout
    assert gate_cmd("metrics").returncode == 0

    # code edited, lock not re-run: stale
    (repo / "make.py").write_text(STAGE.format(score=0.7))
    stale = gate_cmd("lock")
    assert stale.returncode == 1 and "STALE make: make.py modified" in stale.stdout
    # after the re-run the fresh metric is 0.1 below the committed one: regression
    dvc(repo, "repro")
    reg = gate_cmd("metrics")
    assert reg.returncode == 1 and "worse than committed 0.8000" in reg.stdout
    assert "seg.dice" in reg.stdout  # the dvc metrics diff table is printed either way
