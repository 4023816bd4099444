"""The summary stored on a finished job: final and best losses, speed."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.metric_writer import finite_or_none
from jobs.models import EpochMetric


def build_summary(session: Session, job_id: str, result, seconds: float, samples: int) -> dict:
    """Summarise a finished run from the engine's result and the stored epochs."""
    final = result.final.to_dict() if result.final is not None else {}
    best_train, best_val = session.execute(
        select(func.min(EpochMetric.train_loss), func.min(EpochMetric.val_loss))
        .where(EpochMetric.job_id == job_id)).one()
    return {
        "epochs_run": result.epochs_run,
        "early_stopped": result.early_stopped,
        "best_epoch": result.best_epoch,
        "final_train_loss": finite_or_none(final.get("train_loss")),
        "final_val_loss": finite_or_none(final.get("val_loss")),
        "final_train_accuracy": finite_or_none(final.get("train_accuracy")),
        "final_val_accuracy": finite_or_none(final.get("val_accuracy")),
        "best_train_loss": finite_or_none(best_train),
        "best_val_loss": finite_or_none(best_val),
        "training_seconds": round(seconds, 6),
        "samples_per_second": round(samples * result.epochs_run / seconds, 3) if seconds else None,
    }
