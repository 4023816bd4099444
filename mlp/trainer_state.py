"""A Trainer's complete state as npz bytes: arrays plus JSON metadata, never pickle.

Arrays: ``params``, the optimizer's state (``opt_*``), the epoch's telemetry sums
(``tel_*``) and, with early stopping, ``best_params``. Metadata: the canonical spec
(a checkpoint only resumes the same spec), epoch and batch position, the RNG state
(from the start of the epoch when stopped mid-epoch, or of the current OrderBlock with
its first epoch in ``order_block``, so the same permutations are redrawn), the epoch's
loss/accuracy sums, early-stopping bookkeeping, the last record.
"""
import numpy as np

from . import checkpoint
from .optimizers import load_optimizer_state
from .records import EpochRecord, LayerRecord

# /2: the RNG state may be an OrderBlock's (``order_block``), which /1 readers would
# misread; /1 checkpoints hold an epoch-start state and are still read.
FORMAT = "gradtrace.trainer/2"
READABLE = ("gradtrace.trainer/1", FORMAT)
SCALARS = ("epoch", "pos", "loss_sum", "n_seen", "correct", "elapsed", "best_value", "best_epoch",
           "best_val_loss", "wait", "in_epoch", "finished", "early_stopped")


def _attr(name):
    return name if name in ("epoch", "pos") else f"_{name}"


def dump_state(trainer):
    """Return the trainer's complete state as bytes."""
    arrays = {"params": trainer.net.params, **trainer.telemetry.arrays()}
    arrays.update({f"opt_{k}": v for k, v in trainer.optimizer.state().items()})
    if trainer._best_params is not None:
        arrays["best_params"] = trainer._best_params
    meta = {name: getattr(trainer, _attr(name)) for name in SCALARS}
    orders, block = trainer._orders, None
    if orders is not None and orders.start is not None:
        rng, block = orders.rng_state, orders.start
    else:
        rng = trainer._epoch_rng_state if trainer._in_epoch else trainer.rng.bit_generator.state
    last = trainer._last_record
    meta.update({"format": FORMAT, "spec": trainer.spec, "rng": rng, "order_block": block,
                 "last_record": None if last is None else last.to_dict()})
    return checkpoint.pack(arrays, meta)


def load_state(trainer, data):
    """Restore ``trainer`` (built on the same spec and data) from ``dump_state`` bytes."""
    arrays, meta = checkpoint.unpack(data)
    if meta.get("format") not in READABLE:
        raise ValueError("not a gradtrace trainer checkpoint")
    if meta["spec"] != trainer.spec:
        raise ValueError("the checkpoint was written for a different spec")
    np.copyto(trainer.net.params, arrays["params"])
    load_optimizer_state(trainer.optimizer, {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")})
    trainer.telemetry.load(arrays)
    if trainer._best_params is not None:
        np.copyto(trainer._best_params, arrays["best_params"])
    for name in SCALARS:
        setattr(trainer, _attr(name), meta[name])
    trainer.rng.bit_generator.state = meta["rng"]
    _restore_order(trainer, meta)
    last = meta["last_record"]
    if last is not None:
        last["layers"] = [LayerRecord(**r) for r in last["layers"]]
        trainer._last_record = EpochRecord(**last)


def _restore_order(trainer, meta):
    """Redraw the rows of the epoch in progress (and of its OrderBlock) from the stored
    RNG state, which leaves the RNG where the uninterrupted run had it."""
    orders, start = trainer._orders, meta.get("order_block")
    if orders is None:
        if start is not None:  # written by an engine that drew this data in blocks
            for _ in range(trainer.epoch - start):
                trainer.rng.permutation(len(trainer.X))
        if trainer._in_epoch:
            trainer._epoch_rng_state = trainer.rng.bit_generator.state
            trainer._draw_order()
        return
    if start is None and trainer._in_epoch:
        start = trainer.epoch  # a checkpoint from before blocks: its epoch-start state
    if start is not None:
        orders.draw(trainer.rng, start)
    if trainer._in_epoch:
        trainer._Xp, trainer._Tp, trainer._Lp = orders.views(trainer.rng, trainer.epoch)
