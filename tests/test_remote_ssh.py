"""A DVC remote over real SSH: push from one clone, pull into a fresh one, nothing re-runs.

The test starts Debian's OpenSSH server (`openssh-server`) on 127.0.0.1 with its own host
key, client key and config, and talks to it through dvc-ssh exactly as a team would.
The tiny two-stage project below is shared with test_exp_share.py.
"""
import getpass
import json
import os
import shutil
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from pipeline_helpers import dvc, run

pytestmark = pytest.mark.slow

PARAMS = "prepare:\n  n: 5\ntrain:\n  scale: 2\n"

# Each stage appends its name to $BUSDX_TEST_MARKER (a file outside the repos): the number of
# lines is the number of stage executions, across every clone.
PREPARE = """\
import os, pathlib, yaml
n = yaml.safe_load(open("params.yaml"))["prepare"]["n"]
pathlib.Path("data").mkdir(exist_ok=True)
pathlib.Path("data/numbers.txt").write_text("".join(f"{i}\\n" for i in range(1, n + 1)))
with open(os.environ["BUSDX_TEST_MARKER"], "a") as f:
    f.write("prepare\\n")
"""
TRAIN = """\
import json, os, pathlib, yaml
scale = yaml.safe_load(open("params.yaml"))["train"]["scale"]
nums = [int(x) for x in pathlib.Path("data/numbers.txt").read_text().split()]
pathlib.Path("model.txt").write_text(f"weights={[scale * x for x in nums]}\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"total": scale * sum(nums), "n": len(nums)}))
with open(os.environ["BUSDX_TEST_MARKER"], "a") as f:
    f.write("train\\n")
"""
DVC_YAML = """\
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py]
    params: [prepare.n]
    outs: [data/numbers.txt]
  train:
    cmd: python train.py
    deps: [train.py, data/numbers.txt]
    params: [train.scale]
    outs: [model.txt]
    metrics: [metrics.json]
"""
OUTPUTS = ("data/numbers.txt", "model.txt", "metrics.json")


def write_project(repo: Path) -> Path:
    """The two-stage project (prepare -> train, params, a metrics file) in a new git+DVC repo."""
    repo.mkdir(parents=True)
    for name, text in {"params.yaml": PARAMS, "prepare.py": PREPARE, "train.py": TRAIN,
                       "dvc.yaml": DVC_YAML}.items():
        (repo / name).write_text(text)
    run(["git", "init", "-q", "-b", "main"], repo)
    dvc(repo, "init", "-q")
    return repo


def use_marker_and_git_identity(tmp_path: Path, monkeypatch) -> Path:
    """Stage runs are counted in a file outside the repos; commits need an author."""
    marker = tmp_path / "stage_runs.log"
    monkeypatch.setenv("BUSDX_TEST_MARKER", str(marker))
    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(k, v)
    return marker


def stage_runs(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


class Sshd(NamedTuple):
    port: int
    user: str
    keyfile: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _banner(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64)
    except OSError:
        return b""


@pytest.fixture
def sshd(tmp_path_factory):
    """An OpenSSH server on 127.0.0.1:<free port> that accepts one generated client key."""
    exe = next((p for p in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd")
                if p and os.access(p, os.X_OK)), None)
    if exe is None:
        pytest.skip("sshd not installed: apt-get install openssh-server")
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("ssh-keygen not installed: apt-get install openssh-client")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True, capture_output=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    try:  # privilege separation directory, required even for a foreground sshd
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    except OSError as e:
        pytest.skip(f"sshd cannot start: no privilege separation directory /run/sshd ({e})")
    user = getpass.getuser()
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {d / 'host_key'}
        PidFile {d / 'sshd.pid'}
        AuthorizedKeysFile {d / 'authorized_keys'}
        AllowUsers {user}
        PermitRootLogin prohibit-password
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        Subsystem sftp internal-sftp
        """))
    log = d / "sshd.log"
    check = subprocess.run([exe, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"sshd cannot start here: {exe} -t: {check.stderr.strip()}")
    with open(log, "w") as out:
        proc = subprocess.Popen([exe, "-D", "-e", "-f", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not _banner(port).startswith(b"SSH-2.0"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"sshd did not start on 127.0.0.1:{port}: {log.read_text().strip()}")
            time.sleep(0.2)
        yield Sshd(port, user, d / "client_key", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _dvc(repo: Path, sshd: Sshd, *args: str) -> subprocess.CompletedProcess:
    """dvc, with the sshd log in the message when it fails (auth problems show up there)."""
    p = dvc(repo, *args, check=False)
    assert p.returncode == 0, (f"dvc {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n"
                               f"{p.stderr}\n--- sshd log ---\n{sshd.log.read_text()}")
    return p


def test_push_and_pull_through_a_real_ssh_remote(sshd, tmp_path, monkeypatch):
    marker = use_marker_and_git_identity(tmp_path, monkeypatch)
    storage = tmp_path / "remote"
    url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{storage}"

    a = write_project(tmp_path / "a")
    # The URL is shared (committed); the credentials stay in each clone's .dvc/config.local.
    # dvc-ssh does not check host keys (sshfs connects with known_hosts=None): nothing to set.
    dvc(a, "remote", "add", "-d", "storage", url)
    dvc(a, "remote", "modify", "--local", "storage", "keyfile", str(sshd.keyfile))

    _dvc(a, sshd, "repro")
    assert stage_runs(marker) == ["prepare", "train"]
    pushed = _dvc(a, sshd, "push", "--run-cache")
    assert "pushed" in pushed.stdout, pushed.stdout
    assert (storage / "files" / "md5").is_dir(), "nothing arrived in the remote over SSH"
    assert (storage / "runs").is_dir(), "the run-cache was not pushed"
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "pipeline"], a)
    assert set(run(["git", "ls-files"], a).stdout.split()).isdisjoint(OUTPUTS), \
        "outputs must travel through the DVC remote, not git"

    b = tmp_path / "b"
    run(["git", "clone", "-q", str(a), str(b)], tmp_path)
    assert not any((b / o).exists() for o in OUTPUTS)
    dvc(b, "remote", "modify", "--local", "storage", "keyfile", str(sshd.keyfile))
    _dvc(b, sshd, "pull")
    for o in OUTPUTS:
        assert (b / o).read_bytes() == (a / o).read_bytes(), f"{o} differs after dvc pull"
    status = json.loads(_dvc(b, sshd, "status", "--json").stdout)
    assert status == {}, f"fresh clone is not clean after dvc pull: {status}"
    repro = _dvc(b, sshd, "repro")
    for stage in ("prepare", "train"):
        assert f"Stage '{stage}' didn't change, skipping" in repro.stdout, repro.stdout
    assert "Data and pipelines are up to date." in repro.stdout, repro.stdout
    assert stage_runs(marker) == ["prepare", "train"], "dvc repro in the clone executed a stage"

    # The run-cache over SSH: without dvc.lock and without any local cache, the stages' outputs
    # come from the pulled run history instead of running the stages. `dvc pull --run-cache`
    # (and `dvc fetch --run-cache`) download the run entries only; `dvc repro --pull` then
    # downloads the outputs they name.
    pulled = _dvc(b, sshd, "pull", "--run-cache")
    assert "Everything is up to date." in pulled.stdout, pulled.stdout
    (b / "dvc.lock").unlink()
    for o in OUTPUTS:
        (b / o).unlink()
    shutil.rmtree(b / ".dvc" / "cache")
    _dvc(b, sshd, "fetch", "--run-cache")
    assert (b / ".dvc" / "cache" / "runs").is_dir(), "the run-cache was not fetched"
    repro = _dvc(b, sshd, "repro", "--pull")
    for stage in ("prepare", "train"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" \
            in repro.stdout, repro.stdout
    assert stage_runs(marker) == ["prepare", "train"], "a stage ran although the run-cache had it"
    for o in OUTPUTS:
        assert (b / o).read_bytes() == (a / o).read_bytes(), f"{o} differs via the run-cache"
    assert (b / "dvc.lock").read_text() == (a / "dvc.lock").read_text()
