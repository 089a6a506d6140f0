"""nnexp reproduce: a run trained again from its folder, compared bit for bit; and what a run records for it
(its code's uncommitted changes, its BLAS kernel family and thread count, its dataset's digest)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from test_user_layers import EXAMPLE as EXAMPLE_LAYERS
from test_user_layers import SWISH, tiny_npz, write_config

from nnexp.tracking.provenance import blas_info, code_changes

REPO = Path(__file__).resolve().parent.parent


def only_run(store) -> Path:
    (run,) = [p for p in Path(store).iterdir() if p.is_dir()]
    return run


def files_of(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes: what a reader must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_summary(run: Path, **fields) -> None:
    summary = json.loads((run / "summary.json").read_text())
    for key, value in fields.items():
        if "." in key:
            outer, inner = key.split(".")
            summary[outer][inner] = value
        else:
            summary[key] = value
    (run / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The folder reproduce makes its temporary stores in."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def tiny_run(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "tracking.plots=false")
    assert code == 0, err
    return only_run(store)


def test_a_run_reproduces_bit_for_bit_and_its_store_is_only_read(nnexp, tiny_run, store, scratch):
    before = files_of(tiny_run)
    code, out, err = nnexp("reproduce", "latest", "--store", store, "-q")
    assert code == 0, err
    assert f"run {tiny_run.name}: reproduced bit for bit" in out
    weights = np.load(tiny_run / "model.npz").files
    for name in [f"model.npz {w}" for w in weights] + ["metrics.csv train_loss", "metrics.csv val_accuracy",
                                                        "diagnostics.csv", "summary test_loss"]:
        assert any(line.split() == [*name.split(), "identical"] for line in out.splitlines()), name
    code, out, _ = nnexp("reproduce", tiny_run.name, "--store", store, "--json")
    result = json.loads(out)
    assert code == 0 and result["identical"] is True and result["reproduction"] is None
    assert {c["what"] for c in result["compared"]} >= {f"model.npz {w}" for w in weights}
    assert not any(e["differs"] for e in result["environment"])
    assert [p.name for p in Path(store).iterdir() if p.is_dir()] == [tiny_run.name]   # nothing trained into it
    assert files_of(tiny_run) == before
    assert list(scratch.iterdir()) == []   # the reproduction's store is gone


def test_a_changed_model_and_environment_are_named(nnexp, tiny_run, store, scratch):
    first = sorted(np.load(tiny_run / "model.npz").files)[0]
    with np.load(tiny_run / "model.npz") as weights:
        arrays = {k: weights[k] for k in weights.files}
    arrays[first] = arrays[first] + np.float32(0.25)
    np.savez(tiny_run / "model.npz", **arrays)
    digest = json.loads((tiny_run / "summary.json").read_text())["dataset_sha256"]
    edit_summary(tiny_run, **{"blas.architecture": "Sandybridge", "dataset_sha256": "0" * 64,
                              "versions.numpy": "1.0.0"})
    code, out, err = nnexp("reproduce", "latest", "--store", store, "--json")
    assert code == 1, err
    result = json.loads(out)
    different = {c["what"]: c for c in result["compared"] if not c["identical"]}
    assert list(different) == [f"model.npz {first}"]
    assert different[f"model.npz {first}"]["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    changed = {e["what"]: (e["recorded"], e["now"]) for e in result["environment"] if e["differs"]}
    assert changed == {"BLAS kernel family": ("Sandybridge", blas_info()["architecture"]),
                       "dataset digest": ("0" * 64, digest), "NumPy": ("1.0.0", np.__version__)}
    code, out, _ = nnexp("reproduce", "latest", "--store", store)
    assert code == 1
    assert any(line.split()[:3] == ["model.npz", first, "DIFFERENT:"] for line in out.splitlines())
    lines = out.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("environment"))):]
    assert [line.split()[0] for line in table[1:]] == ["NumPy", "BLAS", "dataset"]
    assert "Sandybridge" in table[2] and "1.0.0" in table[1]


def test_the_recorded_blas_thread_count_is_the_one_trained_with(nnexp, tiny_config, store, scratch):
    threads = blas_info()["threads"]
    with threadpool_limits(limits=threads + 1, user_api="blas"):   # a count this process does not have
        code, _, err = nnexp("run", tiny_config, "-q", "tracking.plots=false")
    assert code == 0, err
    run = only_run(store)
    assert json.loads((run / "summary.json").read_text())["blas"]["threads"] == threads + 1
    code, out, err = nnexp("reproduce", "latest", "--store", store, "--json", "--keep")
    result = json.loads(out)
    assert code == 0 and result["identical"] and result["blas_threads_set"] == threads + 1, err
    kept = Path(result["reproduction"])
    assert kept.parent.parent == scratch
    assert json.loads((kept / "summary.json").read_text())["blas"]["threads"] == threads + 1
    assert blas_info()["threads"] == threads   # and this process's own count is back


def test_a_run_of_own_layers_and_data_is_retrained_with_them(nnexp, tmp_path, scratch):
    shutil.copy(EXAMPLE_LAYERS, tmp_path / "my_layers.py")
    config = write_config(tmp_path, SWISH)
    code, _, err = nnexp("run", config, "-q")
    assert code == 0, err
    store = tmp_path / "runs"
    code, out, err = nnexp("reproduce", "latest", "--store", store, "-q")
    assert code == 0 and "reproduced bit for bit" in out, err
    # other data under the same path: trained on, and named
    tiny_npz(tmp_path / "tiny.npz", seed=1)
    code, out, err = nnexp("reproduce", "latest", "--store", store, "--json")
    changed = [e["what"] for e in json.loads(out)["environment"] if e["differs"]]
    assert code == 1 and changed == ["dataset digest"], err
    # a layer file that changed is not the code the run was trained with
    layer_file = tmp_path / "my_layers.py"
    layer_file.write_text(layer_file.read_text() + "\n# edited\n")
    code, out, err = nnexp("reproduce", "latest", "--store", store)
    assert code == 2 and f"its layer file {layer_file.resolve()} has changed since the run started" in err
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("fields, says", [
    ({"kind": "script"}, "made by a script of its own (nnexp.init)"),
    ({"kind": "ensemble"}, "is an ensemble of other runs"),
    ({"resumes": 1}, "was resumed (1 time)"),
    ({"status": "pruned", "reason": "below the median"}, "was pruned by its sweep after epoch 2"),
    ({"status": "failed"}, "is failed, not completed"),
])
def test_what_the_folder_cannot_retrain_is_refused(nnexp, tiny_run, store, scratch, fields, says):
    edit_summary(tiny_run, **fields)
    before = files_of(tiny_run)
    code, out, err = nnexp("reproduce", "latest", "--store", store)
    assert code == 2 and says in err and out == "" and "Traceback" not in err
    assert files_of(tiny_run) == before and list(scratch.iterdir()) == []


def test_an_unknown_run_is_a_usage_error_not_a_difference(nnexp, tiny_run, store):
    code, out, err = nnexp("reproduce", "nosuchrun", "--store", store)
    assert code == 2 and out == "" and err == f"error: no run 'nosuchrun' in store {store} (see 'nnexp runs --store {store}')\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout


@pytest.fixture
def checkout(tmp_path):
    """nnexp's package in a git checkout of its own, committed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "checkout"
    shutil.copytree(REPO / "nnexp", repo / "nnexp", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "code")
    return repo


def test_a_run_from_a_dirty_checkout_records_its_patch(checkout, tiny_config, store, tmp_path):
    train_py = checkout / "nnexp" / "train.py"
    train_py.write_text(train_py.read_text() + "\n# a local change\n")
    (checkout / "nnexp" / "extra.py").write_text("X = 1\n")
    (checkout / "README.md").write_text("outside the package\n")   # untracked, but not the package's
    done = subprocess.run([sys.executable, "-m", "nnexp", "run", str(tiny_config), "-q", "tracking.plots=false"],
                          env={**os.environ, "PYTHONPATH": str(checkout)}, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run = only_run(store)
    patch = (run / "code.patch").read_bytes()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["code_changes"] == {"patch_sha256": hashlib.sha256(patch).hexdigest(), "patch_bytes": len(patch),
                                       "changed": ["nnexp/train.py"], "untracked": ["nnexp/extra.py"],
                                       "patch_cut": None}
    assert summary["git_commit"] == git(checkout, "rev-parse", "HEAD").strip() + "-dirty"
    # the patch gives back the code that ran
    git(checkout, "stash", "-q")
    assert "# a local change" not in train_py.read_text()
    subprocess.run(["git", "-C", str(checkout), "apply", str(run / "code.patch")], check=True)
    assert train_py.read_text().endswith("\n# a local change\n")


def test_the_patch_is_cut_at_the_cap_and_says_so(checkout):
    package = checkout / "nnexp"
    assert code_changes(package) is None   # committed: nothing recorded
    (package / "train.py").write_text((package / "train.py").read_text() + "".join(f"# line {i}\n" for i in range(500)))
    whole = code_changes(package)
    cut = code_changes(package, cap=1000)
    assert len(whole.patch) > 1000 and whole.record["patch_cut"] is None
    assert len(cut.patch) <= 1000 and cut.patch.endswith(b"\n") and whole.patch.startswith(cut.patch)
    assert cut.record["patch_cut"] == f"code.patch holds the first {len(cut.patch):,} of {len(whole.patch):,} " \
                                      "bytes (cap 1,000)"
    assert cut.record["patch_sha256"] == hashlib.sha256(whole.patch).hexdigest()


def test_nothing_is_recorded_outside_a_checkout_or_without_git(checkout, tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    assert code_changes(outside) is None
    (checkout / "nnexp" / "extra.py").write_text("X = 1\n")
    assert code_changes(checkout / "nnexp").record["untracked"] == ["nnexp/extra.py"]
    monkeypatch.setenv("PATH", str(outside))
    assert code_changes(checkout / "nnexp") is None


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OPENBLAS_CORETYPE picks x86 kernels")
def test_another_kernel_family_is_named(nnexp, tiny_run, store, tmp_path):
    recorded = json.loads((tiny_run / "summary.json").read_text())["blas"]
    if recorded is None or recorded["library"] != "openblas" or recorded["architecture"] == "Sandybridge":
        pytest.skip(f"NumPy's BLAS here is {recorded}: no other OpenBLAS kernel family to load")
    done = subprocess.run([sys.executable, "-m", "nnexp", "reproduce", "latest", "--store", str(store), "--json"],
                          env={**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_CORETYPE": "Sandybridge"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    result = json.loads(done.stdout)
    assert done.returncode == (0 if result["identical"] else 1), done.stderr
    changed = {e["what"]: (e["recorded"], e["now"]) for e in result["environment"] if e["differs"]}
    assert changed == {"BLAS kernel family": (recorded["architecture"], "Sandybridge")}
