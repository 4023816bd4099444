"""Determinism, and bit-identical resume from any stop or checkpoint, for every optimizer."""
import io

import numpy as np
import pytest

import mlp
from tests.engine.factories import make_spec

OPTIMIZERS = [
    ({"name": "sgd", "learning_rate": 0.3}, {"name": "step", "step_size": 3, "gamma": 0.5}),
    ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, {"name": "cosine"}),
    ({"name": "adam", "learning_rate": 0.01, "weight_decay": 1e-4}, {"name": "exponential", "gamma": 0.9}),
    ({"name": "adamw", "learning_rate": 0.01}, {"name": "constant"}),
    ({"name": "rmsprop", "learning_rate": 0.005, "momentum": 0.5}, {"name": "step", "step_size": 2}),
    ({"name": "adagrad", "learning_rate": 0.05}, {"name": "cosine", "t_max": 6, "min_lr": 0.001}),
]
IDS = ["sgd", "sgd-nesterov", "adam", "adamw", "rmsprop", "adagrad"]


def spec_for(optimizer, schedule, early_stopping=True, clip=None):
    es = {"monitor": "val_loss", "patience": 4, "restore_best": True} if early_stopping else None
    return make_spec(network={"layers": [{"units": 6, "activation": "relu"}, {"units": 5, "activation": "tanh"},
                                         {"units": 1, "activation": "sigmoid"}]},
                     optimizer={**optimizer, "schedule": schedule},
                     training={"epochs": 10, "batch_size": 8, "seed": 3, "validation_split": 0.2,
                               "early_stopping": es, "gradient_clip_norm": clip})


def data():
    X, y, _ = mlp.datasets.make("moons", n_samples=70, seed=5)
    return X, y


def strip(record):
    d = record.to_dict()
    d.pop("seconds")
    return d


def run_straight(spec):
    X, y = data()
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    records = []
    result = trainer.fit(on_epoch=lambda r: records.append(strip(r)))
    return trainer, records, result


def run_with_stops(spec, stop_after):
    """Stop every ``stop_after`` polls, checkpoint, rebuild from the bytes, continue."""
    X, y = data()
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    records, stops = [], 0
    while True:
        polls = iter(range(stop_after))
        result = trainer.fit(on_epoch=lambda r: records.append(strip(r)),
                             should_stop=lambda: next(polls, None) is None)
        if not result.stopped:
            return trainer, records, result, stops
        stops += 1
        trainer = mlp.Trainer.from_state(spec, X, y, trainer.state_bytes(), n_classes=2)


@pytest.mark.parametrize("optimizer,schedule", OPTIMIZERS, ids=IDS)
def test_stop_and_resume_mid_epoch_is_bit_identical(optimizer, schedule):
    spec = spec_for(optimizer, schedule)
    ref, ref_records, ref_result = run_straight(spec)
    # 7 batches per epoch: stopping every 5 polls lands mid-epoch and on boundaries.
    for stop_after in (5, 7):
        trainer, records, result, stops = run_with_stops(spec, stop_after)
        assert stops > 3
        assert records == ref_records
        assert np.array_equal(trainer.net.params, ref.net.params)
        assert (result.best_epoch, result.best_val_loss, result.early_stopped) == (
            ref_result.best_epoch, ref_result.best_val_loss, ref_result.early_stopped)


@pytest.mark.parametrize("optimizer,schedule", OPTIMIZERS, ids=IDS)
def test_resume_from_epoch_checkpoints_is_bit_identical(optimizer, schedule):
    spec = spec_for(optimizer, schedule, early_stopping=False, clip=0.5)
    X, y = data()
    ref, ref_records, _ = run_straight(spec)
    trainer, states = mlp.Trainer(spec, X, y, n_classes=2), {}
    trainer.fit(on_epoch=lambda r: states.__setitem__(r.epoch, trainer.state_bytes()))
    for epoch in (1, 4, 9):
        resumed = mlp.Trainer.from_state(spec, X, y, states[epoch], n_classes=2)
        assert resumed.epoch == epoch
        records = []
        resumed.fit(on_epoch=lambda r: records.append(strip(r)))
        assert records == ref_records[epoch:]
        assert np.array_equal(resumed.net.params, ref.net.params)


def test_same_seed_is_deterministic_and_other_seeds_differ():
    spec = spec_for(*OPTIMIZERS[2])
    a, ra, _ = run_straight(spec)
    b, rb, _ = run_straight(spec)
    assert ra == rb and np.array_equal(a.net.params, b.net.params)
    other = mlp.validate_spec({**spec, "training": {**spec["training"], "seed": 4}})
    c, rc, _ = run_straight(other)
    assert not np.array_equal(a.net.params, c.net.params)


def test_early_stopping_restores_best_weights_and_reports_the_epoch():
    spec = make_spec(network={"layers": [{"units": 32, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}]},
                     optimizer={"name": "adam", "learning_rate": 0.05},
                     training={"epochs": 300, "batch_size": 8, "seed": 0, "validation_split": 0.3,
                               "early_stopping": {"monitor": "val_loss", "patience": 5}})
    X, y, _ = mlp.datasets.make("moons", n_samples=60, noise=0.3, seed=0)
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    records = []
    result = trainer.fit(on_epoch=records.append)
    assert result.early_stopped and result.epochs_run < 300
    assert result.epochs_run == result.best_epoch + 5 == records[-1].epoch
    best = min(r.val_loss for r in records)
    assert result.best_val_loss == best
    val_loss, _ = trainer.evaluate(trainer.Xv, trainer.Tv, trainer.labels_v)
    assert val_loss == pytest.approx(best, rel=1e-12)
    assert trainer.fit().epochs_run == result.epochs_run  # a finished trainer stays finished


def test_should_stop_is_polled_before_every_minibatch():
    spec = spec_for(*OPTIMIZERS[0], early_stopping=False)
    X, y = data()
    polls = []
    mlp.Trainer(spec, X, y, n_classes=2).fit(should_stop=lambda: polls.append(1) and False)
    assert len(polls) == 10 * 7  # 56 training rows in batches of 8, 10 epochs


def test_records_follow_every_epochs_and_include_the_last():
    spec = make_spec(record={"every_epochs": 3}, training={"epochs": 10, "seed": 1})
    X, y, _ = mlp.datasets.make("xor")
    epochs = []
    mlp.Trainer(spec, X, y, n_classes=2).fit(on_epoch=lambda r: epochs.append(r.epoch))
    assert epochs == [3, 6, 9, 10]


def test_checkpoints_and_models_load_without_pickle():
    spec = spec_for(*OPTIMIZERS[2])
    trainer, _, _ = run_straight(spec)
    for blob in (trainer.state_bytes(), trainer.model().to_bytes()):
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            assert all(npz[name].dtype != object for name in npz.files)
    X, _ = data()
    model = mlp.Model.from_bytes(trainer.model().to_bytes())
    assert np.array_equal(model.predict_proba(X), trainer.model().predict_proba(X))


def test_resume_refuses_a_different_spec():
    spec = spec_for(*OPTIMIZERS[0])
    trainer, _, _ = run_straight(spec)
    X, y = data()
    other = mlp.validate_spec({**spec, "training": {**spec["training"], "epochs": 11}})
    with pytest.raises(ValueError, match="different spec"):
        mlp.Trainer.from_state(other, X, y, trainer.state_bytes(), n_classes=2)
