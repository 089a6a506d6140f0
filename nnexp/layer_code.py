"""The user's layer files in a run folder: copies, their sha256, and the checks on them.

A run whose config names layers of the user's own (``type: my_layers.py:Swish``,
see nnexp/nn/user_layers.py) keeps, in ``code/``, a copy of every file those
classes come from, and ``code/manifest.json``::

    {"files": [{"ref": "/home/me/exp/my_layers.py", "source": "/home/me/exp/my_layers.py",
                "copy": "my_layers.py", "sha256": "..."}]}

``ref`` is the part of the resolved ``type`` before the class name (a file's
absolute path, or a module's name), ``source`` the file it was read from.
``nnexp resume`` refuses a run whose layer file has changed since it started,
as it refuses an edited config.yaml; ``evaluate``, ``predict`` and
``ensemble`` build the network from the copies, so that editing the file
later changes no trained run.  Nothing here imports a layer file except
:func:`load_run_config`, which the commands that run a network call.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import atomic_write_bytes, atomic_write_text
from .checkpoint import ConfigChanged
from .config import load_yaml, validate
from .errors import NnexpError
from .nn.user_layers import is_user_type, source_file
from .tracking.run import CONFIG

CODE = "code"
MANIFEST = "manifest.json"


def user_types(layers) -> list[str]:
    """The resolved user ``type``s of a layer list, composite layers' inner ones included, in order."""
    found = []
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            continue
        if is_user_type(layer.get("type")):
            found.append(layer["type"])
        for value in layer.values():
            if isinstance(value, list):
                found += user_types(value)
    return list(dict.fromkeys(found))


def _ref(kind: str) -> str:
    return kind.rpartition(":")[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_copies(run_dir, cfg: dict) -> list[str]:
    """Copy the files of ``cfg``'s user layers into ``run_dir/code`` with the manifest (nothing
    when it has none); the names written, relative to ``run_dir``."""
    refs = list(dict.fromkeys(_ref(kind) for kind in user_types(cfg["model"]["layers"])))
    if not refs:
        return []
    folder = Path(run_dir) / CODE
    folder.mkdir(exist_ok=True)
    files, names = [], set()
    for ref in refs:
        source = source_file(f"{ref}:_")
        name = source.name if ref.endswith(".py") else f"{ref}.py"
        while name in names:   # two files of one name from different folders
            name = f"_{name}"
        names.add(name)
        data = source.read_bytes()
        atomic_write_bytes(folder / name, data)
        files.append({"ref": ref, "source": str(source), "copy": name, "sha256": hashlib.sha256(data).hexdigest()})
    atomic_write_text(folder / MANIFEST, json.dumps({"files": files}, indent=2) + "\n")
    return [f"{CODE}/{f['copy']}" for f in files] + [f"{CODE}/{MANIFEST}"]


def manifest(run_dir) -> list[dict]:
    """The manifest's entries ([] for a run without layer files of its own)."""
    path = Path(run_dir) / CODE / MANIFEST
    if not path.exists():
        return []
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not all(isinstance(f, dict) and {"ref", "source", "copy", "sha256"} <= set(f) for f in files):
            raise ValueError("an entry lacks ref, source, copy or sha256")
        return files
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NnexpError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None


def check_unchanged(run_dir, run_id: str) -> None:
    """ConfigChanged (exit 2) if a layer file of the run differs from the copy taken when it started."""
    for entry in manifest(run_dir):
        source = Path(entry["source"])
        if not source.is_file():
            raise ConfigChanged(f"run {run_id}: its layer file {source} no longer exists (the run's copy is "
                                f"{Path(run_dir) / CODE / entry['copy']})")
        if sha256(source) != entry["sha256"]:
            raise ConfigChanged(f"run {run_id}: its layer file {source} has changed since the run started "
                                f"(sha256 {entry['sha256'][:12]}... then, {sha256(source)[:12]}... now); a run "
                                "goes on only with the code it started with, as with its config.yaml")


def load_run_config(run_dir, run_id: str) -> dict:
    """The run's resolved config with its user layers taken from the run's own copies
    (which must still match their sha256): what evaluate, predict and ensemble build."""
    run_dir = Path(run_dir)
    raw = load_yaml(run_dir / CONFIG)
    copies = {}
    for entry in manifest(run_dir):
        copy = (run_dir / CODE / entry["copy"]).resolve()
        if not copy.is_file() or sha256(copy) != entry["sha256"]:
            raise NnexpError(f"run {run_id}: {copy} is missing or no longer matches the sha256 recorded "
                             f"in {CODE}/{MANIFEST}")
        copies[entry["ref"]] = str(copy)
    if copies:
        _to_copies(raw.get("model", {}).get("layers"), copies)
    return validate(raw, source=str(run_dir / CONFIG), base_dir=run_dir / CODE)


def _to_copies(layers, copies: dict) -> None:
    """Point every user ``type`` of ``layers`` at its copy, in place."""
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict):
            continue
        kind = layer.get("type")
        if is_user_type(kind) and _ref(kind) in copies:
            layer["type"] = f"{copies[_ref(kind)]}:{kind.rpartition(':')[2]}"
        for value in layer.values():
            if isinstance(value, list):
                _to_copies(value, copies)


__all__ = ["CODE", "MANIFEST", "check_unchanged", "load_run_config", "manifest", "save_copies",
           "user_types"]
