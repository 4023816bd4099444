"""JSON-ready views of sweeps: trials ranked by the sweep's metric, with the value of each
searched parameter; shared by the API and the dashboard's data."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs import sweep_search
from jobs.job_views import iso, job_to_dict
from jobs.models import FINISHED_STATUSES, Job, Sweep

TRIAL_FIELDS = ("id", "name", "status", "progress", "worker", "summary", "error",
                "started_at", "finished_at")


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
