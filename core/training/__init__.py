"""Training the tutorial's spiking CNN as a background job with live metrics.

    config.py     TrainConfig (frozen), PRESETS, the settings the CLI and the Training page are made from,
                  and the checks made before any work (check_data: classes, frame size, memory of a batch)
    records.py    IterationRecord, EvalRecord, PrepareProgress, Outcome, JobSnapshot
    loop.py       the training loop as plain functions, in the tutorial's order (run_training); its time bound,
                  the final test, the end in words (diverged, time limit); StorageError where a run cannot write
    job.py        TrainingJob: the loop in a thread, a stop flag, a locked history, snapshot()
    registry.py   JobRegistry: one training at a time on the machine
    estimate.py   estimate_iteration_seconds: the time per iteration, measured before launch
    __main__.py   the command line, ``python -m core.train`` (or ``python -m core.training``)

Everything other modules use is importable from ``core.training`` itself.
"""

from __future__ import annotations

from core.training.config import (
    DATA_KINDS,
    LOSSES,
    PRESETS,
    SPLITS,
    TUTORIAL_TRANSFORM,
    ConfigError,
    FormHint,
    Setting,
    TrainConfig,
    check_data,
    form_settings,
    preset,
    resolve_data_root,
    resolve_device,
    settings,
    time_window,
    transform_steps,
    with_settings,
)
from core.training.estimate import estimate_iteration_seconds
from core.training.job import TrainingJob
from core.training.loop import RandomRotation, StorageError, run_training
from core.training.records import (
    ACTIVE_STATES,
    FINAL_STATES,
    EvalRecord,
    IterationRecord,
    JobSnapshot,
    Outcome,
    PrepareProgress,
    describe_ending,
)
from core.training.registry import JobBusyError, JobRegistry

__all__ = [
    "ACTIVE_STATES",
    "DATA_KINDS",
    "FINAL_STATES",
    "LOSSES",
    "PRESETS",
    "SPLITS",
    "TUTORIAL_TRANSFORM",
    "ConfigError",
    "EvalRecord",
    "FormHint",
    "IterationRecord",
    "JobBusyError",
    "JobRegistry",
    "JobSnapshot",
    "Outcome",
    "PrepareProgress",
    "RandomRotation",
    "Setting",
    "StorageError",
    "TrainConfig",
    "TrainingJob",
    "check_data",
    "describe_ending",
    "estimate_iteration_seconds",
    "form_settings",
    "preset",
    "resolve_data_root",
    "resolve_device",
    "run_training",
    "settings",
    "time_window",
    "transform_steps",
    "with_settings",
]
