"""train.device on machines without a GPU: the messages, the config rules, what a run records.

(The GPU itself is exercised by test_gpu.py where CuPy sees one.)
"""

import json
import sys
import types

import pytest

from nnexp import checkpoint
from nnexp.config import validate

LAYERS = [{"type": "dense", "units": 10}]


def files(store):
    return sorted(p.relative_to(store) for p in store.rglob("*")) if store.exists() else []


def test_without_cupy_a_gpu_run_is_refused_before_anything_is_written(nnexp, tiny_config, store, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)   # as if CuPy were not installed
    code, out, err = nnexp("run", tiny_config, "train.device=gpu")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert "CuPy is not installed" in line and 'pip install "nnexp[gpu]"' in line and "cupy-cuda11x" in line
    assert files(store) == []


def fake_cupy(error):
    """A CuPy that imports but cannot reach a GPU (no driver, driver too old, no device)."""
    def count():
        if error:
            raise RuntimeError(error)
        return 0
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
    return types.SimpleNamespace(__version__="13.6.0", cuda=cuda, ndarray=type("ndarray", (), {}))


@pytest.mark.parametrize("error,message", [
    ("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version",
     "cannot use a GPU here (cudaErrorInsufficientDriver"),
    (None, "CuPy sees no GPU"),
])
def test_cupy_without_a_gpu_is_named(nnexp, tiny_config, store, monkeypatch, error, message):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(error))
    code, _, err = nnexp("run", tiny_config, "train.device=gpu")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert files(store) == []


def test_the_gpu_runs_the_reference_network():
    cfg = validate({"model": {"layers": LAYERS}, "train": {"device": "gpu"}})
    assert cfg["model"]["engine"] == "reference"
    assert validate({"model": {"layers": LAYERS}})["model"]["engine"] == "fast"   # the CPU's default
    with pytest.raises(Exception) as caught:
        validate({"model": {"layers": LAYERS, "engine": "fast"}, "train": {"device": "gpu"}})
    assert getattr(caught.value, "exit_code", None) == 2 and "runs on the CPU only" in str(caught.value)
    with pytest.raises(Exception) as caught:
        validate({"model": {"layers": LAYERS}, "train": {"device": "gpu", "data_parallel": 2}})
    assert "fast engine only" in str(caught.value)
    with pytest.raises(Exception) as caught:
        validate({"model": {"layers": LAYERS}, "train": {"device": "tpu"}})
    assert "train.device" in str(caught.value) and "gpu" in str(caught.value)


def test_the_device_is_not_part_of_what_a_checkpoint_must_match():
    cpu = validate({"model": {"layers": LAYERS, "engine": "reference"}})
    gpu = validate({"model": {"layers": LAYERS}, "train": {"device": "gpu"}})
    assert checkpoint.config_digest(cpu) == checkpoint.config_digest(gpu)
    other = validate({"model": {"layers": LAYERS, "engine": "reference"}, "train": {"seed": 1}})
    assert checkpoint.config_digest(other) != checkpoint.config_digest(cpu)


def test_a_run_records_its_device(nnexp, tiny_config, store):
    code, _, err = nnexp("run", tiny_config, "-q", "train.epochs=1")
    assert code == 0, err
    [run] = [p for p in store.iterdir() if p.is_dir()]
    s = json.loads((run / "summary.json").read_text())
    assert s["device"] == "cpu" and s["cpu"] and s["cpu_count"] >= 1 and "gpu" not in s
    assert "device: cpu" in (run / "config.yaml").read_text()


def test_resume_on_a_gpu_without_one_changes_nothing(nnexp, tiny_config, store, monkeypatch, ctrl_c_at_epoch):
    ctrl_c_at_epoch(2)
    runs = {}
    for engine in ("fast", "reference"):
        assert nnexp("run", tiny_config, "-q", f"model.engine={engine}", f"tracking.name={engine}")[0] == 130
        [runs[engine]] = [p for p in store.iterdir() if p.is_dir() and p.name not in
                          {r.name for r in runs.values()}]
    ctrl_c_at_epoch(None)
    # the fast engine is CPU-only: going on on a GPU is a config error
    code, _, err = nnexp("resume", runs["fast"].name, "--store", store, "--device", "gpu")
    assert code == 2 and "runs on the CPU only" in err
    run = runs["reference"]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    monkeypatch.setitem(sys.modules, "cupy", None)
    code, _, err = nnexp("resume", run.name, "--store", store, "--device", "gpu")
    assert code == 2 and "CuPy is not installed" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before
    code, _, err = nnexp("resume", run.name, "--store", store, "--device", "cpu")   # the device it ran on
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def write_gpu_sweep(tmp_path, store):
    (tmp_path / "base.yaml").write_text(
        "data: {dataset: mnist, val_size: 200, train_subset: 400}\n"
        "model: {layers: [{type: dense, units: 10}]}\n"
        f"train: {{epochs: 1, device: gpu}}\ntracking: {{store: {store}, plots: false}}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: base.yaml\nparameters: {optimizer.lr: [0.001, 0.01]}\n")
    return spec


def test_a_gpu_sweep_without_cupy_is_refused_before_the_store_is_touched(nnexp, tmp_path, store, monkeypatch):
    spec = write_gpu_sweep(tmp_path, store)
    monkeypatch.setitem(sys.modules, "cupy", None)
    code, _, err = nnexp("sweep", spec, "--store", store)
    assert code == 2 and "CuPy is not installed" in err
    assert files(store) == []
    code, _, err = nnexp("sweep", spec, "--store", store, "--gpus-per-trial", "1")
    assert code == 2 and "--executor ray" in err


def test_local_sweep_workers_take_the_gpus_in_turn():
    """Four workers on two GPUs: each sees one GPU as its only one, 0 1 0 1."""
    from nnexp.sweep.executor import LocalExecutor

    executor = LocalExecutor(workers=4, threads=1, gpus=2)
    events = executor.run(iter(()), 4, None)   # starts the pool; nothing to hand out
    assert list(events) == []
    try:
        seen = []
        for proc in executor.pool.procs:
            environ = open(f"/proc/{proc.pid}/environ", "rb").read().split(b"\0")
            seen += [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"CUDA_VISIBLE_DEVICES=")]
        assert seen == ["0", "1", "0", "1"]
    finally:
        executor.close()
