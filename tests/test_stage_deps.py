"""dvc.yaml lists, for every stage, each busdx module the stage imports (so editing code
re-runs exactly the stages it affects) and no module it never imports."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from busdx.config import SECTIONS

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: import the stage module, load its params sections (config
# models are imported lazily, by section), list the busdx source files that got loaded.
PROBE = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("stage", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from busdx.config import section_model
for name in sys.argv[2:]:
    section_model(name)
files = sorted({m.__file__ for n, m in list(sys.modules.items())
                if (n == "busdx" or n.startswith("busdx.")) and getattr(m, "__file__", None)})
print(json.dumps(files))
"""


# The root (BUSI) pipeline and every dataset pipeline (pipelines/<name>/dvc.yaml, wdir its
# folder, so repo paths there start with ../../).
PIPELINES = [REPO / "dvc.yaml", *sorted((REPO / "pipelines").glob("*/dvc.yaml"))]


def _to_repo(path: str, wdir: Path) -> str:
    return str((wdir / path).resolve().relative_to(REPO)) if path.startswith("..") else path


def stages():
    out = {}
    for file in PIPELINES:
        prefix = "" if file.parent == REPO else f"{file.parent.relative_to(REPO)}:"
        for name, st in yaml.safe_load(file.read_text())["stages"].items():
            body = dict(st.get("do", st))
            body["cmd"] = " ".join(_to_repo(w, file.parent) for w in body["cmd"].split())
            body["deps"] = [_to_repo(d, file.parent) for d in body["deps"]]
            out[prefix + name] = body
    return out


def test_dataset_pipelines_found():
    assert any("pipelines/mias" in str(p) for p in PIPELINES)


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_match_imports(name):
    st = stages()[name]
    script = st["cmd"].split()[1]
    sections = sorted({p.split(".")[0] for p in st.get("params", []) if isinstance(p, str)}
                      & set(SECTIONS))
    r = subprocess.run([sys.executable, "-c", PROBE, str(REPO / script), *sections],
                       cwd=REPO, capture_output=True, text=True, check=True)
    imported = {str(Path(f).resolve().relative_to(REPO)) for f in json.loads(r.stdout)}
    deps = {d.split()[0] for d in st["deps"] if d.startswith("src/")}
    assert imported - deps == set(), f"{name}: imported but not in deps"
    # Extra deps must be imported lazily somewhere in the stage's code (e.g. the synthetic
    # set, the CNN embeddings): named as busdx.<module> in a file the stage loads.
    texts = "\n".join((REPO / f).read_text() for f in imported | deps | {script})
    for extra in deps - imported:
        dotted = extra.removeprefix("src/").removesuffix(".py").removesuffix("/__init__")
        assert dotted.replace("/", ".") in texts, f"{name}: {extra} in deps, never imported"
