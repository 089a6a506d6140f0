"""The reference network on a GPU through CuPy (train.device: gpu).

Every test runs twice: on CuPy's CPU stand-in (tests/cupy_standin.py, which
refuses implicit copies to the host and NumPy arrays mixed into device
computations, as CuPy does), everywhere; and on the real CuPy where it sees
a GPU, skipped elsewhere with the reason (tests/expected_skips.txt).  The
messages without CuPy or without a GPU are tested in test_device.py.
"""

import sys

import cupy_standin
import numpy as np
import pytest

from nnexp.nn import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    build_model,
    forward_backward,
)
from nnexp.nn.arrays import gpu_module, to_numpy
from nnexp.nn.gradcheck import check_layer_gradients, check_loss_gradients
from nnexp.nn.optim import SGD, Adam

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["standin", "cuda"])
def cupy(request):
    """CuPy's CPU stand-in (tests/cupy_standin.py), then the real CuPy where a GPU is present."""
    if request.param == "standin":
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(sys.modules, "cupy", cupy_standin)
            yield gpu_module()
        return
    try:
        yield gpu_module()
    except ValueError as exc:
        pytest.skip(f"no GPU for CuPy here: {exc}")


def on_device(layer, cupy):
    for arrays in (layer.params, layer.grads, layer.buffers):
        for name, a in arrays.items():
            arrays[name] = cupy.asarray(a)
    return layer


LAYERS = [
    ("dense", lambda: Dense(5, 4, rng=np.random.default_rng(0), dtype=np.float64), (3, 5)),
    ("relu", ReLU, (4, 6)), ("leaky_relu", lambda: LeakyReLU(0.1), (4, 6)), ("sigmoid", Sigmoid, (4, 6)),
    ("tanh", Tanh, (4, 6)), ("flatten", Flatten, (2, 3, 4, 2)),
    ("conv", lambda: Conv2D(3, 4, 3, padding=1, rng=np.random.default_rng(0), dtype=np.float64), (2, 3, 5, 6)),
    ("conv_stride", lambda: Conv2D(2, 3, 3, stride=2, rng=np.random.default_rng(0), dtype=np.float64),
     (2, 2, 7, 7)),
    ("maxpool", lambda: MaxPool2D(2), (2, 3, 4, 6)), ("avgpool", lambda: AvgPool2D(3, 2), (2, 2, 7, 6)),
    ("global_avgpool", GlobalAvgPool2D, (3, 4, 5, 2)),
    ("batchnorm_2d", lambda: BatchNorm(4, dtype=np.float64), (6, 4)),
    ("batchnorm_4d", lambda: BatchNorm(4, dtype=np.float64), (3, 4, 3, 5)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[name for name, _, _ in LAYERS])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_every_layer_gradient_in_float64_on_the_gpu(cupy, name, make, shape, training):
    rng = np.random.default_rng(1)
    layer = on_device(make(), cupy)
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 0.1, x + np.sign(x) * 0.1, x)   # away from the ReLU's kink
    errors = check_layer_gradients(layer, cupy.asarray(x), rng, training=training)
    assert errors and all(err < 1e-6 for err in errors.values()), errors


def test_dropout_and_loss_gradients_on_the_gpu(cupy):
    rng = np.random.default_rng(2)
    layer = Dropout(0.4)

    def same_mask():
        layer.rng = np.random.default_rng(7)

    errors = check_layer_gradients(layer, cupy.asarray(rng.standard_normal((5, 8))), rng, before_forward=same_mask)
    assert errors["x"] < 1e-6
    for smoothing in (0.0, 0.1):
        logits = cupy.asarray(rng.standard_normal((4, 5)) * 3)
        assert check_loss_gradients(SoftmaxCrossEntropy(smoothing), logits, cupy.asarray([0, 3, 4, 3]))["logits"] < 1e-6


CNN = [{"type": "conv2d", "out_channels": 8, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
       {"type": "maxpool2d"}, {"type": "conv2d", "out_channels": 8}, {"type": "relu"}, {"type": "global_avgpool"},
       {"type": "dropout", "p": 0.2}, {"type": "dense", "units": 10}]


@pytest.mark.parametrize("optimizer", [Adam, lambda p: SGD(p, momentum=0.9, nesterov=True)], ids=["adam", "nesterov"])
def test_gpu_training_steps_follow_the_cpu(cupy, optimizer):
    """The same model, batches and dropout masks on both devices: float32 apart, the same steps."""
    cpu = build_model(CNN, (1, 12, 12), np.random.default_rng(0))
    gpu = build_model(CNN, (1, 12, 12), np.random.default_rng(0))
    gpu.to_device(cupy)
    opts = [optimizer(m.parameters()) for m in (cpu, gpu)]
    loss = SoftmaxCrossEntropy(0.1)
    data = np.random.default_rng(3)
    for step in range(5):
        x, y = data.random((16, 1, 12, 12), dtype=np.float32), data.integers(0, 10, 16)
        for model, opt in zip((cpu, gpu), opts):
            model.layers[7].rng = np.random.default_rng(step)   # the same masks, drawn on the host
            forward_backward(model, loss, model.xp.asarray(x), model.xp.asarray(y))
            opt.step(0.01)
    for (name, p1, _), (_, p2, _) in zip(cpu.parameters(), gpu.parameters()):
        assert isinstance(p2, cupy.ndarray)
        np.testing.assert_allclose(to_numpy(p2), p1, rtol=2e-4, atol=2e-5, err_msg=name)
    x = data.random((40, 1, 12, 12), dtype=np.float32)
    np.testing.assert_allclose(gpu.predict_proba(x, 16), cpu.predict_proba(x, 16), rtol=1e-4, atol=1e-5)
    state = gpu.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())   # weights leave the GPU as NumPy arrays
    cpu.load_state_dict(state)
    np.testing.assert_allclose(cpu.predict_proba(x), gpu.predict_proba(x), rtol=1e-4, atol=1e-5)


def test_a_gpu_run_records_its_gpu_evaluates_and_resumes_on_the_cpu(cupy, nnexp, tiny_config, store, ctrl_c_at_epoch):
    import json

    ctrl_c_at_epoch(2)
    assert nnexp("run", tiny_config, "-q", "train.device=gpu", "train.epochs=3")[0] == 130
    [run] = [p for p in store.iterdir() if p.is_dir()]
    s = json.loads((run / "summary.json").read_text())
    assert s["device"] == "gpu" and s["gpu"] and s["cupy"] and s["cuda_runtime"]
    assert "engine: reference" in (run / "config.yaml").read_text()
    ctrl_c_at_epoch(None)
    code, _, err = nnexp("resume", run.name, "--store", store, "--device", "cpu")
    assert code == 0, err
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["device"] == "cpu" and s["epochs_completed"] == 3
    code, out, err = nnexp("evaluate", run.name, "--store", store, "--json")
    assert code == 0, err
    assert abs(json.loads(out)["test_accuracy"] - s["test_accuracy"]) < 1e-9   # evaluated on the CPU both times


CNN_CONFIG = """\
data:
  dataset: mnist
  val_size: 500
  batch_size: 64
  train_subset: 1500
  augment: {{rotate: 12, scale: 0.1, shift: 2, shear: 5, elastic_alpha: 16, elastic_sigma: 4}}
model:
  deskew: true
  layers:
    - {{type: conv2d, out_channels: 8, kernel_size: 3}}
    - {{type: batchnorm}}
    - {{type: relu}}
    - {{type: maxpool2d, kernel_size: 2}}
    - {{type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}}
    - {{type: leaky_relu}}
    - {{type: avgpool2d, kernel_size: 2}}
    - {{type: dropout, p: 0.2}}
    - {{type: dense, units: 10}}
optimizer: {{name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0005}}
schedule: {{name: onecycle}}
train: {{epochs: 2, seed: 3, label_smoothing: 0.1, ema: 0.9, eval_batch_size: 200}}
tracking: {{store: {store}, name: cnn}}
"""


def test_a_cnn_run_with_every_device_feature_on_the_gpu(cupy, nnexp, tmp_path, store):
    """Augmentation and deskewing on the device, batch-norm, dropout, EMA, a schedule: the run completes,
    and on CuPy's CPU stand-in (the same NumPy arithmetic) it gives the CPU reference engine's numbers."""
    import json

    config = tmp_path / "cnn.yaml"
    config.write_text(CNN_CONFIG.format(store=store))
    summaries = {}
    for device in ("gpu", "cpu"):
        code, _, err = nnexp("run", config, "-q", f"train.device={device}", "model.engine=reference",
                             f"tracking.name=cnn-{device}")
        assert code == 0, err
        [run] = [p for p in store.iterdir() if p.is_dir() and f"-cnn-{device}-" in p.name]
        summaries[device] = json.loads((run / "summary.json").read_text())
        rows = (run / "metrics.csv").read_text().splitlines()
        summaries[device]["metrics"] = [row.rsplit(",", 1)[0] for row in rows]   # all but the seconds
    gpu, cpu = summaries["gpu"], summaries["cpu"]
    assert gpu["status"] == "completed" and gpu["device"] == "gpu" and gpu["test_accuracy"] > 0.5
    if cupy.__version__ == cupy_standin.__version__:   # the stand-in makes the CPU run's NumPy calls: exact
        assert gpu["metrics"] == cpu["metrics"]
        assert gpu["test_accuracy"] == cpu["test_accuracy"] and gpu["test_loss"] == cpu["test_loss"]
    else:
        assert abs(gpu["test_accuracy"] - cpu["test_accuracy"]) < 0.02


def test_a_cpu_run_interrupted_goes_on_on_the_gpu(cupy, nnexp, tmp_path, store, ctrl_c_at_epoch):
    """nnexp resume --device gpu: the checkpoint goes up to the device and training continues; on the
    stand-in the result is the uninterrupted CPU run's, bit for bit."""
    import json

    config = tmp_path / "cnn.yaml"
    config.write_text(CNN_CONFIG.format(store=store))
    ctrl_c_at_epoch(2)
    assert nnexp("run", config, "-q", "model.engine=reference", "tracking.name=moved")[0] == 130
    ctrl_c_at_epoch(None)
    [moved] = [p for p in store.iterdir() if p.is_dir()]
    code, _, err = nnexp("resume", moved.name, "--store", store, "--device", "gpu")
    assert code == 0, err
    assert nnexp("run", config, "-q", "model.engine=reference", "tracking.name=whole")[0] == 0
    [whole] = [p for p in store.iterdir() if p.is_dir() and "-whole-" in p.name]
    s, w = (json.loads((run / "summary.json").read_text()) for run in (moved, whole))
    assert s["status"] == "completed" and s["device"] == "gpu" and s["epochs_completed"] == 2
    assert "device: gpu" in (moved / "config.yaml").read_text()
    if cupy.__version__ == cupy_standin.__version__:   # the stand-in makes the CPU run's NumPy calls: exact
        assert (moved / "model.npz").read_bytes() == (whole / "model.npz").read_bytes()
        assert (s["test_accuracy"], s["test_loss"]) == (w["test_accuracy"], w["test_loss"])
    else:
        assert abs(s["test_accuracy"] - w["test_accuracy"]) < 0.02


def test_the_operation_count_benchmark_runs_on_the_stand_in():
    """benchmarks/device_ops.py runs, its phases add up to the whole, and an MLP has no augmentation."""
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script, config = root / "benchmarks" / "device_ops.py", root / "configs" / "mlp.yaml"
    done = subprocess.run([sys.executable, str(script), str(config), "--batches", "2"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^(augmentation|forward \+ loss \+ backward|optimizer|rest of the loop|all)\s+([\d.]+)$",
                           done.stdout, re.M))
    assert len(rows) == 5, done.stdout
    values = {k: float(v) for k, v in rows.items()}
    assert values["all"] == sum(v for k, v in values.items() if k != "all")
    assert values["augmentation"] == 0 and values["optimizer"] > 0 and values["forward + loss + backward"] > 0
