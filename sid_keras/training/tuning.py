"""Hyperparameter search with keras-tuner over the same builders and recipe as `sid-keras train`.

A search job is a TOML file (the package ships some in ``tuning/jobs/``; ``--job NAME`` finds them)::

    [job]      tuner, objective budget, directory, project name
    [space]    hyperparameters: learning_rate, depth, width, model, adversarial_weight
    [base]     config = "<training config or experiment>" plus --set style overrides

Re-running a job continues its search (keras-tuner reloads the oracle from ``directory``):
finished trials are not repeated, and a larger ``max_trials`` runs only the new ones. For
distributed search, start one chief and several workers with keras-tuner's own environment
variables (``KERASTUNER_TUNER_ID=chief|tuner0|...``, ``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT``) and the same command.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib

from sid_keras.errors import SidError
from sid_keras.runtime.io import to_toml
from sid_keras.training.config import Config, apply_override, config_from_dict

TUNERS = ("hyperband", "bayesian", "random")
OBJECTIVE = "val_psnr"


@dataclasses.dataclass
class JobConfig:
    tuner: str = "hyperband"
    max_trials: int = 10  # bayesian / random
    max_epochs: int = 30  # hyperband: most epochs one model gets
    hyperband_factor: int = 3
    epochs: int = 10  # bayesian / random: epochs per trial
    executions_per_trial: int = 1
    directory: str = "runs/tuning"
    project_name: str = "search"
    seed: int = 0


@dataclasses.dataclass
class SearchJob:
    job: JobConfig
    space: dict
    base: dict  # raw training config (data/model/train tables)


def load_job(path: str | os.PathLike, overrides: list[str] = ()) -> SearchJob:
    """Read a job file; ``--set`` keys are ``job.*``, ``space.*`` or training keys (``data.root``)."""
    from sid_keras.runtime.io import read_toml, shipped_or_path
    from sid_keras.training.config import resolve_config_path

    path = shipped_or_path(path, "tuning")
    raw = read_toml(path, "search job")
    unknown = sorted(set(raw) - {"job", "space", "base"})
    if unknown:
        raise SidError(f"{path}: unknown sections {', '.join(unknown)} (known: job, space, base)")
    base_section = dict(raw.get("base", {}))
    base: dict = {}
    if "config" in base_section:
        name = base_section.pop("config")
        candidate = path.parent / name
        base = read_toml(candidate if candidate.is_file() else resolve_config_path(name), "config file")
    for table in ("data", "model", "train"):
        base.setdefault(table, {}).update(base_section.pop(table, {}))
    if base_section:
        raise SidError(f"{path}: unknown keys in [base]: {', '.join(sorted(base_section))}")
    job_raw, space = dict(raw.get("job", {})), dict(raw.get("space", {}))
    for assignment in overrides:
        key = assignment.split("=", 1)[0]
        target = {"job": job_raw, "space": space}.get(key.split(".")[0])
        if target is not None:
            apply_override(target, assignment.split(".", 1)[1])
        else:
            apply_override(base, assignment)
    fields = {f.name for f in dataclasses.fields(JobConfig)}
    bad = sorted(set(job_raw) - fields)
    if bad:
        raise SidError(f"unknown keys in [job]: {', '.join(bad)} (known: {', '.join(sorted(fields))})")
    job = JobConfig(**job_raw)
    if job.tuner not in TUNERS:
        raise SidError(f"[job] tuner = {job.tuner!r}: choose one of {', '.join(TUNERS)}")
    config_from_dict(copy.deepcopy(base))  # validate the base training config now
    return SearchJob(job, space, base)


def define_space(hp, space: dict) -> dict:
    """Register the job's hyperparameters on ``hp``; returns their current values.

    Each entry is ``{min, max, sampling}`` for a range, ``{values = [...]}`` for a choice, or a
    plain value (fixed). ``learning_rate`` defaults to a log range, as the paper searched it.
    """
    values = {}
    for name, spec in space.items():
        if isinstance(spec, dict) and "values" in spec:
            values[name] = hp.Choice(name, list(spec["values"]))
        elif isinstance(spec, dict) and "min" in spec:
            kind = hp.Float if isinstance(spec["min"], float) or isinstance(spec["max"], float) else hp.Int
            sampling = spec.get("sampling", "log" if name == "learning_rate" else "linear")
            values[name] = kind(name, spec["min"], spec["max"], sampling=sampling)
        elif isinstance(spec, dict):
            raise SidError(f"[space] {name}: give {{min, max}} or {{values = [...]}}, not {spec}")
        else:
            values[name] = hp.Fixed(name, spec)
    return values


MODEL_ARG_HYPERPARAMETERS = ("depth", "width", "adversarial_weight")


def trial_config(base: dict, values: dict) -> Config:
    """The training config of one trial: the base with the trial's hyperparameters applied."""
    from sid_keras.models import is_adversarial

    raw = copy.deepcopy(base)
    raw.setdefault("model", {}).setdefault("args", {})
    for name, value in values.items():
        if name == "learning_rate":
            raw.setdefault("train", {})["learning_rate"] = float(value)
        elif name == "model":
            raw["model"]["name"] = value
        elif name in MODEL_ARG_HYPERPARAMETERS:
            if name == "adversarial_weight" and not is_adversarial(raw["model"].get("name", "")):
                continue
            raw["model"]["args"][name] = value
        else:
            raise SidError(f"[space] {name}: not a searchable hyperparameter "
                           f"(learning_rate, model, {', '.join(MODEL_ARG_HYPERPARAMETERS)})")
    return config_from_dict(raw)


def make_tuner(job: SearchJob, hypermodel):
    import keras_tuner as kt

    objective = kt.Objective(OBJECTIVE, direction="max")
    common = dict(objective=objective, directory=job.job.directory, project_name=job.job.project_name,
                  overwrite=False, seed=job.job.seed, executions_per_trial=job.job.executions_per_trial)
    if job.job.tuner == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=job.job.max_epochs, factor=job.job.hyperband_factor, **common)
    cls = kt.BayesianOptimization if job.job.tuner == "bayesian" else kt.RandomSearch
    return cls(hypermodel, max_trials=job.job.max_trials, **common)


def is_distributed_worker() -> bool:
    """A worker of a distributed search (keras-tuner's environment names a chief oracle)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"


def run_search(job: SearchJob, *, verbose: int = 1) -> dict:
    """Run (or continue) the search; write the trial table and the best training config.

    In a distributed search the chief holds the oracle and writes the results; workers return
    once the oracle has no trial left for them.
    """
    from sid_keras.training.task import Task

    try:
        from sid_keras.training.hypermodel import SidHyperModel
    except ImportError:
        raise SidError("hyperparameter search needs keras-tuner: pip install 'sid-keras[tuning]'") from None
    task = Task(config_from_dict(copy.deepcopy(job.base)))
    data = task.data()
    if verbose:
        print(task.precision.describe())
    hypermodel = SidHyperModel(lambda hp: trial_config(job.base, define_space(hp, job.space)), data.channels,
                               data.scale)
    tuner = make_tuner(job, hypermodel)
    fit_kwargs = dict(steps_per_epoch=task.steps_per_epoch(data), validation_data=data.val, verbose=verbose)
    if job.job.tuner != "hyperband":
        fit_kwargs["epochs"] = job.job.epochs
    tuner.search(task.train_dataset(data), **fit_kwargs)
    if is_distributed_worker():
        worker = os.environ["KERASTUNER_TUNER_ID"]
        return {"table": f"worker {worker}: no trials left", "best_config": "(written by the chief)"}
    return write_results(job, tuner)


def trial_rows(tuner) -> list[dict]:
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.status != "COMPLETED":
            continue
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        rows.append({"trial": trial.trial_id, **values, OBJECTIVE: trial.score})
    return sorted(rows, key=lambda r: -(r[OBJECTIVE] if r[OBJECTIVE] is not None else -1e9))


def write_results(job: SearchJob, tuner) -> dict:
    from sid_keras.runtime.io import atomic_path

    rows = trial_rows(tuner)
    if not rows:
        raise SidError("the search finished no trial")
    folder = pathlib.Path(job.job.directory) / job.job.project_name
    keys = [k for k in rows[0] if k not in ("trial", OBJECTIVE)]
    table = [f"{'trial':<8}" + "".join(f"{k:>16}" for k in keys) + f"{OBJECTIVE:>12}"]
    for r in rows:
        cells = "".join(f"{r.get(k, ''):>16.3g}" if isinstance(r.get(k), float) else f"{str(r.get(k, '')):>16}"
                        for k in keys)
        table.append(f"{r['trial']:<8}{cells}{(r[OBJECTIVE] or float('nan')):>12.3f}")
    best = trial_config(job.base, {k: rows[0][k] for k in keys}).to_dict()
    # What the trial measured, as it ran: its epochs (not the base recipe's), and a run folder
    # of its own beside the search's, which training into must not touch.
    best["train"]["epochs"] = job.job.max_epochs if job.job.tuner == "hyperband" else job.job.epochs
    best["train"]["out_dir"] = str(folder / "best_run")
    best_path = folder / "best_config.toml"
    with atomic_path(best_path) as tmp:
        pathlib.Path(tmp).write_text(
            f"# Best trial {rows[0]['trial']} ({OBJECTIVE} {rows[0][OBJECTIVE]:.3f}), as the search trained it "
            f"({best['train']['epochs']} epochs).\n"
            f"# Retrain it longer: sid-keras train --config {best_path} --set train.epochs=N\n" + to_toml(best))
    with atomic_path(folder / "trials.txt") as tmp:
        pathlib.Path(tmp).write_text("\n".join(table) + "\n")
    return {"table": "\n".join(table), "best_config": str(best_path), "best": rows[0], "trials": len(rows)}
