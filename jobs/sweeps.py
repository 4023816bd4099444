"""Sweeps: creating the trials of a search, ranking them, releasing waiting trials.

Every trial is an ordinary job with `sweep_id` set. The first `parallel_trials` trials are
queued, the rest `waiting`; each time a trial ends, `promote_waiting` queues the next ones.
Functions take a session and never commit: callers publish the returned job ids only after
their commit, so a worker that gets the message finds the row.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jobs import sweep_search
from jobs.datasets import get_dataset
from jobs.errors import Conflict, DomainError, InvalidInput, LimitExceeded, NotFound
from jobs.job_views import iso, job_to_dict
from jobs.models import ACTIVE_STATUSES, FINISHED_STATUSES, Job, Sweep, utcnow
from jobs.submission import SEED_RANGE, new_job, request_cancel
from jobs.settings import Settings

MAX_TRIALS = 256
METRIC_GOALS = {
    "final_val_loss": "minimize", "best_val_loss": "minimize",
    "final_train_loss": "minimize", "best_train_loss": "minimize",
    "final_val_accuracy": "maximize", "final_train_accuracy": "maximize",
    "training_seconds": "minimize",
}
TRIAL_FIELDS = ("id", "name", "status", "progress", "worker", "summary", "error",
                "started_at", "finished_at")


@dataclass(frozen=True)
class SweepRequest:
    """What POST /v1/sweeps carries, as plain data."""

    name: str
    dataset_id: str
    base: dict[str, Any]
    method: str
    parameters: dict[str, Any]
    seed: int = 0
    max_trials: int | None = None
    parallel_trials: int = 2
    metric: str = "final_val_loss"
    goal: str | None = None


def create_sweep(session: Session, settings: Settings, owner_id: str, request: SweepRequest
                 ) -> tuple[Sweep, list[str]]:
    """Validate every trial, then insert the sweep and its jobs; returns the queued ids.

    Nothing is added to the session unless every trial passes the engine's validation and
    the job limits, so a bad trial leaves no half-created sweep.
    """
    _check_request(session, owner_id, request)
    parameters = sweep_search.parse_parameters(request.parameters, request.method)
    cap = request.max_trials if request.max_trials is not None else (
        MAX_TRIALS if request.method == "grid" else None)
    trial_values = sweep_search.expand(parameters, request.method, cap, request.seed)
    base = _seeded(request.base, request.seed, parameters)
    jobs = [_trial(session, settings, owner_id, request, index,
                   sweep_search.apply(base, parameters, values))
            for index, values in enumerate(trial_values)]
    _check_metric(jobs, request.metric)
    _check_quota(session, settings, owner_id, min(request.parallel_trials, len(jobs)))
    sweep = Sweep(owner_id=owner_id, dataset_id=request.dataset_id, name=request.name,
                  base=request.base, metric=request.metric,
                  goal=request.goal or METRIC_GOALS[request.metric],
                  search={"method": request.method, "parameters": request.parameters,
                          "seed": request.seed},
                  max_trials=len(jobs), parallel_trials=request.parallel_trials)
    session.add(sweep)
    session.flush()
    for index, job in enumerate(jobs):
        job.sweep_id, job.sweep_trial = sweep.id, index
        if index >= request.parallel_trials:
            job.status, job.enqueued_at = "waiting", None
        session.add(job)
    session.flush()
    return sweep, [job.id for job in jobs[:request.parallel_trials]]


def _check_request(session: Session, owner_id: str, request: SweepRequest) -> None:
    unknown = sorted(set(request.base) - set(sweep_search.SPEC_SECTIONS))
    if unknown:
        raise InvalidInput(f"unknown base spec sections: {', '.join(unknown)}",
                           [(f"base.{key}", "unknown field") for key in unknown])
    if request.metric not in METRIC_GOALS:
        raise InvalidInput(f"unknown metric {request.metric!r}",
                           [("metric", f"expected one of {', '.join(METRIC_GOALS)}")])
    try:
        get_dataset(session, owner_id, request.dataset_id)
    except NotFound:
        raise InvalidInput(f"dataset {request.dataset_id} does not exist",
                           [("dataset_id", "no such dataset")]) from None


def _seeded(base: dict, seed: int, parameters: list[sweep_search.Parameter]) -> dict:
    """Give every trial the same training seed unless the base or the search sets it.

    The same initial weights and batch order in every trial make their differences the
    effect of the searched parameters alone (and the sweep reproducible).
    """
    base = copy.deepcopy(base)
    training = base.setdefault("training", {})
    searched = any(p.steps[:2] == ("training", "seed") for p in parameters)
    if isinstance(training, dict) and training.get("seed") is None and not searched:
        training["seed"] = random.Random(seed).randrange(SEED_RANGE)
    return base


def _trial(session: Session, settings: Settings, owner_id: str, request: SweepRequest,
           index: int, spec: dict) -> Job:
    """One trial's job, or the trial's validation error with its fields prefixed."""
    try:
        return new_job(session, settings, owner_id=owner_id, dataset_id=request.dataset_id,
                       name=f"{request.name[:170]} · trial {index + 1}", raw_spec=spec)
    except (InvalidInput, LimitExceeded) as exc:
        _relabel(exc, index)
        raise


def _relabel(exc: DomainError, index: int) -> None:
    exc.message = f"trial {index}: {exc.message}"
    exc.details = [(f"trials[{index}].{field}", message) for field, message in exc.details]
    exc.args = (exc.message,)


def _check_metric(jobs: list[Job], metric: str) -> None:
    if "_val_" not in metric:
        return
    for index, job in enumerate(jobs):
        if not job.spec["training"]["validation_split"]:
            raise InvalidInput(
                f"metric {metric} needs a validation split, but trial {index} has none",
                [("metric", "set base training.validation_split > 0, or rank by a train "
                            "metric")])


def _check_quota(session: Session, settings: Settings, owner_id: str, queued: int) -> None:
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.owner_id == owner_id, Job.status.in_(ACTIVE_STATUSES)))
    limit = settings.max_active_jobs_per_user
    if active + queued > limit:
        raise LimitExceeded(
            "max_active_jobs_per_user", limit,
            f"you have {active} queued or running jobs and the sweep would queue {queued} "
            f"more; the limit max_active_jobs_per_user is {limit}", kind="quota")


def promote_waiting(session: Session, finished_job_id: str) -> list[str]:
    """Queue waiting trials of the finished job's sweep while it has free slots.

    Returns the ids now queued (publish them after the commit). Safe with several
    workers at once: the first statement is a no-op write on the sweep row, which
    serialises promoters (a row lock on PostgreSQL, the write lock on SQLite) so two of
    them never both see the same free slots.
    """
    sweep_of_job = select(Job.sweep_id).where(Job.id == finished_job_id)
    locked = session.execute(update(Sweep).where(Sweep.id == sweep_of_job.scalar_subquery())
                             .values(parallel_trials=Sweep.parallel_trials)
                             .execution_options(synchronize_session=False))
    if locked.rowcount != 1:
        return []
    sweep = session.get(Sweep, session.scalar(sweep_of_job), populate_existing=True)
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.sweep_id == sweep.id, Job.status.in_(ACTIVE_STATUSES)))
    slots = sweep.parallel_trials - active
    if slots <= 0:
        return []
    waiting = session.scalars(select(Job.id).where(Job.sweep_id == sweep.id,
                                                   Job.status == "waiting")
                              .order_by(Job.sweep_trial).limit(slots)).all()
    return [job_id for job_id in waiting if _queue(session, job_id)]


def _queue(session: Session, job_id: str) -> bool:
    result = session.execute(update(Job).where(Job.id == job_id, Job.status == "waiting")
                             .values(status="queued", enqueued_at=utcnow())
                             .execution_options(synchronize_session=False))
    return result.rowcount == 1


def get_sweep(session: Session, owner_id: str, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.owner_id != owner_id:
        raise NotFound(f"sweep {sweep_id} does not exist")
    return sweep


def trials_of(session: Session, sweep: Sweep) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep.id)
                                .order_by(Job.sweep_trial)))


def rank(trials: list[Job], metric: str, goal: str) -> list[tuple[int | None, Job]]:
    """Trials with a value of `metric` in their summary, best first; the rest after, in
    trial order, with rank None."""
    def value(job: Job) -> float | None:
        return (job.summary or {}).get(metric)

    scored = [job for job in trials if value(job) is not None]
    sign = 1.0 if goal == "minimize" else -1.0
    scored.sort(key=lambda job: (sign * value(job), job.sweep_trial))
    rest = [job for job in trials if value(job) is None]
    return [(i + 1, job) for i, job in enumerate(scored)] + [(None, job) for job in rest]


def sweep_to_dict(sweep: Sweep, trials: list[Job] | None = None) -> dict:
    """The sweep; with `trials`, also each trial ranked, with its parameter values."""
    out = {"id": sweep.id, "name": sweep.name, "dataset_id": sweep.dataset_id,
           "base": sweep.base, "search": sweep.search, "metric": sweep.metric,
           "goal": sweep.goal, "max_trials": sweep.max_trials,
           "parallel_trials": sweep.parallel_trials, "created_at": iso(sweep.created_at)}
    if trials is None:
        return out
    paths = [(path, sweep_search.parse_path(path, path)) for path in sweep.search["parameters"]]
    ranked = rank(trials, sweep.metric, sweep.goal)
    out["counts"] = status_counts(trials)
    out["status"] = "active" if any(j.status not in FINISHED_STATUSES for j in trials) \
        else "finished"
    out["trials"] = [{
        "trial": job.sweep_trial, "rank": position,
        "metric_value": (job.summary or {}).get(sweep.metric),
        "params": {path: sweep_search.read(job.spec, steps) for path, steps in paths},
        **{key: value for key, value in job_to_dict(job).items() if key in TRIAL_FIELDS},
    } for position, job in ranked]
    return out


def status_counts(trials: list[Job]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in trials:
        counts[job.status] = counts.get(job.status, 0) + 1
    return counts


def list_sweeps(session: Session, owner_id: str, *, limit: int = 50, offset: int = 0
                ) -> list[dict]:
    """Newest first, each with its trials' status counts."""
    sweeps = list(session.scalars(select(Sweep).where(Sweep.owner_id == owner_id)
                                  .order_by(Sweep.created_at.desc(), Sweep.id.desc())
                                  .offset(offset).limit(limit)))
    counts: dict[str, dict[str, int]] = {s.id: {} for s in sweeps}
    rows = session.execute(select(Job.sweep_id, Job.status, func.count())
                           .where(Job.sweep_id.in_(list(counts)))
                           .group_by(Job.sweep_id, Job.status))
    for sweep_id, status, n in rows:
        counts[sweep_id][status] = n
    return [{**sweep_to_dict(s), "counts": counts[s.id]} for s in sweeps]


def cancel_sweep(session: Session, owner_id: str, sweep_id: str) -> Sweep:
    """Cancel every unfinished trial (409 if none is left)."""
    sweep = get_sweep(session, owner_id, sweep_id)
    unfinished = [j for j in trials_of(session, sweep) if j.status not in FINISHED_STATUSES]
    if not unfinished:
        raise Conflict(f"sweep {sweep_id} has no unfinished trials")
    for job in unfinished:
        request_cancel(session, owner_id, job.id)
    return sweep


def delete_sweep(session: Session, owner_id: str, sweep_id: str) -> None:
    """Forget a finished sweep; its trials stay, as ordinary jobs."""
    sweep = get_sweep(session, owner_id, sweep_id)
    trials = trials_of(session, sweep)
    if any(j.status not in FINISHED_STATUSES for j in trials):
        raise Conflict(f"sweep {sweep_id} still has unfinished trials; cancel it first")
    for job in trials:
        job.sweep_id = None
    session.delete(sweep)
