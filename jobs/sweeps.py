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
from jobs.models import ACTIVE_STATUSES, FINISHED_STATUSES, Job, Sweep, utcnow
from jobs.settings import Settings
from jobs.submission import SEED_RANGE, new_job, request_cancel

MAX_TRIALS = 256
METRIC_GOALS = {
    "final_val_loss": "minimize", "best_val_loss": "minimize",
    "final_train_loss": "minimize", "best_train_loss": "minimize",
    "final_val_accuracy": "maximize", "final_train_accuracy": "maximize",
    "training_seconds": "minimize",
}


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
                [("metric", "set base training.validation_split > 0, or rank by a "
                            + "train metric")])


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
    workers at once: see `_lock`.
    """
    sweep_of_job = select(Job.sweep_id).where(Job.id == finished_job_id)
    if not _lock(session, Sweep.id == sweep_of_job.scalar_subquery()):
        return []
    return _fill(session, session.scalar(sweep_of_job))


def promote_stalled(session: Session, limit: int = 100) -> list[str]:
    """Fill the free slots of every sweep with waiting trials (the reaper's pass).

    Covers trials that ended without a worker to promote their successors: given up
    or cancelled by the reaper after their worker died.
    """
    trials = select(func.count()).select_from(Job).where(Job.sweep_id == Sweep.id)
    active = trials.where(Job.status.in_(ACTIVE_STATUSES)).scalar_subquery()
    waiting = trials.where(Job.status == "waiting").scalar_subquery()
    # Read first, so a pass locks only the sweeps that do have a free slot.
    sweep_ids = session.scalars(select(Sweep.id).where(waiting > 0,
                                                       active < Sweep.parallel_trials)
                                .limit(limit)).all()
    return [job_id for sweep_id in sweep_ids if _lock(session, Sweep.id == sweep_id)
            for job_id in _fill(session, sweep_id)]


def _lock(session: Session, which) -> bool:
    """A no-op write on the sweep row, so promoters run one at a time: a row lock on
    PostgreSQL, the write lock on SQLite. Two of them never both see the same free slots."""
    locked = session.execute(update(Sweep).where(which)
                             .values(parallel_trials=Sweep.parallel_trials)
                             .execution_options(synchronize_session=False))
    return locked.rowcount == 1


def _fill(session: Session, sweep_id: str) -> list[str]:
    sweep = session.get(Sweep, sweep_id, populate_existing=True)
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
