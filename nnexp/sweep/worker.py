"""A sweep worker: a process that trains the trials the driver sends it.

Protocol over one duplex pipe (tuples):

    driver -> worker   ("trial", payload)           train this trial
                       ("decision", reason|None)    answer to a rung report
                       ("stop",)                    exit
    worker -> driver   ("rung", index, epoch, value)   reached a halving rung; waits for a decision
                       ("done", index, status, value, reason)

Workers ignore Ctrl-C (the driver decides what stops) and turn SIGTERM into
KeyboardInterrupt, so a stopped trial is recorded as ``interrupted`` by the
trainer itself. A worker whose driver disappears (killed with SIGKILL) stops
its trial the same way within a second, instead of training on unobserved.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from ..config import DATASET_KEYS, describe_layers, dump_yaml
from ..tracking import RunStore
from ..tracking.run import FAILED, INTERRUPTED
from ..train import load_data, train
from .script_trial import run_script_trial


def worker_main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    _watch_parent(os.getppid())
    datasets: dict[str, object] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message[0] != "trial":
            return
        try:
            conn.send(("done", *run_trial(message[1], conn, datasets)))
        except (OSError, EOFError):  # the driver is gone
            return
        except KeyboardInterrupt:
            return


def run_trial(payload: dict, conn, datasets: dict) -> tuple:
    """Train one trial into its run folder in the store (prepared by the
    driver), asking the driver over ``conn`` at halving rungs."""
    lock = threading.Lock()  # a script trial asks from a thread of its own
    path = Path(payload["run_path"])
    store = RunStore(path.parent)
    run = store.open(path.name) if payload["resume"] else store.attach(path.name)

    def decide(epoch: int, value: float):
        with lock:
            conn.send(("rung", payload["index"], epoch, value))
            return conn.recv()[1]

    return train_trial(payload, run, lambda: _dataset(payload["config"], datasets), decide)


def train_trial(payload: dict, run, get_data, decide) -> tuple:
    """Train one trial into ``run`` (resuming it from its checkpoint when
    ``payload["resume"]``); returns ``(index, status, value, reason)``.

    ``get_data()`` gives the dataset; ``decide(epoch, value)`` is asked at
    each halving rung and answers the reason to prune, or None. Both
    executors (local worker processes, Ray tasks) come through here.
    """
    if payload.get("script"):  # a sweep of your own code: no config to train
        return run_script_trial(payload, decide, lambda: _STOP_REASON[0])
    index, metric, rungs = payload["index"], payload["metric"], set(payload["rungs"])
    cfg = payload["config"]

    def on_epoch(epoch: int, row: dict):
        return decide(epoch, row[metric]) if epoch in rungs else None

    try:
        run = train(cfg, log=_quiet, progress=False, run=run, data=get_data(), resume=payload["resume"],
                    extra_summary=payload["extra_summary"], on_epoch=on_epoch if rungs else None)
    except KeyboardInterrupt as exc:
        _record_unstarted(run, payload, exc, INTERRUPTED, str(exc))
        return index, INTERRUPTED, None, str(exc)
    except Exception as exc:  # one trial's failure is recorded in its run; the sweep goes on
        reason = f"{type(exc).__name__}: {exc}" if not hasattr(exc, "exit_code") else str(exc)
        _record_unstarted(run, payload, exc, FAILED, reason)
        return index, FAILED, None, reason
    summary = run.summary
    return index, summary["status"], summary.get(f"final_{metric}"), summary.get("reason")


def data_key(cfg: dict) -> str:
    """What decides a trial's arrays: trials with the same key share one dataset."""
    return json.dumps({k: cfg["data"][k] for k in DATASET_KEYS}, sort_keys=True, default=str)


def _dataset(cfg: dict, datasets: dict):
    """Load a trial's dataset once per worker: trials that share a data
    section (nearly always) share the arrays."""
    key = data_key(cfg)
    if key not in datasets:
        datasets.clear()  # keep one: a sweep over datasets should not hold them all
        datasets[key] = load_data(cfg, log=_quiet)
    return datasets[key]


def _record_unstarted(run, payload: dict, exc: BaseException, status: str, reason: str) -> None:
    """The trainer records its own end once it has started the run; this covers
    a trial that ended before (its dataset did not load), so that no trial
    folder is left bare. Called in an ``except`` block."""
    if run.status is not None:
        return
    cfg = payload["config"]
    if not run.config_path.exists():
        run.write_config(dump_yaml(cfg))
    run.start(cfg["tracking"]["name"], seed=cfg["train"]["seed"], epochs_planned=cfg["train"]["epochs"],
              epochs_completed=0, layers=describe_layers(cfg["model"]["layers"]), **payload["extra_summary"])
    if status == FAILED:
        run.record_crash(exc, reason)
    else:
        run.finish(status, reason)


_STOP_REASON = ["interrupted: the sweep was stopped"]


def _interrupt(signum, frame):
    raise KeyboardInterrupt(_STOP_REASON[0])


def _watch_parent(parent: int) -> None:
    """SIGTERM ourselves when the driver goes away (we are re-parented)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        _STOP_REASON[0] = "interrupted: the sweep's driver process died"
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _quiet(*args, **kwargs) -> None:
    pass
