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


def stages():
    d = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, st in d.items():
        body = st.get("do", st)
        out[name] = body
    return out


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
