"""Loading a trained run's network back from its folder (``nnexp evaluate``,
``predict`` and ``ensemble``).

A training run is rebuilt from its config.yaml and model.npz. An ensemble run
has no weights of its own: its members are loaded and combined into an
:class:`~nnexp.ensemble.EnsembleModel`, so that evaluating and predicting
work on it unchanged.
"""

from __future__ import annotations

from .engines import ENGINES
from .ensemble import KIND, EnsembleModel
from .errors import NnexpError
from .layer_code import load_run_config
from .nn import load_weights
from .tracking import RunInfo, RunNotFound, RunStore
from .tracking.run import MODEL


def load_trained(info: RunInfo) -> tuple[dict, object]:
    """(config, model) of the run ``info``: its network with its trained weights."""
    if info.summary.get("kind") == KIND:
        return _load_ensemble(info)
    if not (info.path / MODEL).exists():
        raise NnexpError(f"run {info.id} has no {MODEL} (status: {info.summary.get('status')})")
    cfg = load_run_config(info.path, info.id)   # user layers from the run's own copies
    shape = tuple(info.summary.get("input_shape") or (1, 28, 28))
    model = ENGINES[cfg["model"]["engine"]].build_model(cfg["model"]["layers"], shape, None,
                                                        cfg["model"]["dtype"], cfg["model"]["deskew"])
    try:
        load_weights(info.path / MODEL, model)
    except (ValueError, OSError) as exc:
        raise NnexpError(f"run {info.id}: cannot load {MODEL}: {exc}") from None
    return cfg, model


def _load_ensemble(info: RunInfo) -> tuple[dict, EnsembleModel]:
    """(config, EnsembleModel) of an ensemble run, from its members' weights; the
    config is the first member's (the dataset and the evaluation batch size
    are what its callers read)."""
    store = RunStore(info.path.parent)
    ids = info.summary.get("members") or []
    if len(ids) < 2:
        raise NnexpError(f"ensemble run {info.id} lists {len(ids)} members in its summary.json")
    loaded = []
    for member_id in ids:
        try:
            member = store.resolve(member_id)
        except RunNotFound:
            raise NnexpError(f"ensemble run {info.id}: its member {member_id} is no longer in {store.root}") from None
        if member.id != member_id or member.summary.get("kind") == KIND:
            raise NnexpError(f"ensemble run {info.id}: member {member_id} is not a trained run")
        loaded.append(load_trained(member))
    return loaded[0][0], EnsembleModel([model for _, model in loaded])
