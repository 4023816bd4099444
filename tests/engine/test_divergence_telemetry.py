"""Divergence is an error naming epoch and layer; telemetry follows its definitions."""
import numpy as np
import pytest

import mlp
from tests.engine.factories import make_spec


def regression_data(n=64, scale=1.0):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)) * scale
    return X, X.sum(axis=1, keepdims=True) * 10


def test_divergence_raises_with_epoch_and_layer():
    X, y = regression_data()
    spec = make_spec(network={"layers": [{"units": 16, "activation": "relu"}, {"units": 16, "activation": "identity"},
                                         {"units": 1, "activation": "identity"}]},
                     loss="mse", optimizer={"name": "sgd", "learning_rate": 5.0},
                     training={"epochs": 50, "batch_size": 16, "seed": 0})
    with pytest.raises(mlp.DivergenceError) as info:
        mlp.Trainer(spec, X, y).fit()
    err = info.value
    assert err.epoch >= 1 and err.quantity in ("loss", "gradient")
    assert str(err).startswith(f"diverged at epoch {err.epoch}: {err.quantity} is ")
    if err.layer is not None:
        assert f"first non-finite gradient in layer {err.layer}" in str(err)


def test_divergence_message_format():
    err = mlp.DivergenceError(37, "loss", "nan", 2)
    assert str(err) == "diverged at epoch 37: loss is nan; first non-finite gradient in layer 2"
    assert (err.epoch, err.layer, err.quantity) == (37, 2, "loss")


def test_non_finite_input_is_caught_in_the_first_layer_gradient():
    # tanh(inf) = 1 keeps the loss finite; only ∂L/∂W¹ = a⁰ᵀδ¹ sees the inf (inf·δ = nan).
    X, y = regression_data()
    X[5, 0] = np.inf
    spec = make_spec(network={"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "identity"}]},
                     loss="mse", training={"epochs": 3, "batch_size": 64, "seed": 0, "shuffle": False})
    with pytest.raises(mlp.DivergenceError) as info:
        mlp.Trainer(spec, X, y).fit()
    err = info.value
    assert (err.epoch, err.quantity, err.layer) == (1, "gradient", 1)
    assert str(err) == "diverged at epoch 1: gradient is nan; first non-finite gradient in layer 1"


def test_telemetry_matches_its_definitions_on_one_full_batch_step():
    X, y, _ = mlp.datasets.make("moons", n_samples=32, seed=0)
    spec = make_spec(network={"layers": [{"units": 5, "activation": "relu"}, {"units": 3, "activation": "sigmoid"},
                                         {"units": 1, "activation": "sigmoid"}]},
                     optimizer={"name": "sgd", "learning_rate": 0.1},
                     training={"epochs": 1, "batch_size": 32, "seed": 0, "shuffle": False})
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    before = trainer.model()
    t = mlp.trace(before, X, y, loss="binary_cross_entropy", n_classes=2, max_full=10 ** 6)
    record = trainer.fit().final
    after = trainer.model()
    assert record.train_loss == pytest.approx(t["loss"], rel=1e-12)
    for rec, layer, (W0, _), (W1, _) in zip(record.layers, t["layers"], before.layers, after.layers):
        dW, db, delta = (np.array(layer[k]["values"]) for k in ("dW", "db", "delta"))
        assert rec.weight_grad_norm == pytest.approx(np.linalg.norm(dW), rel=1e-10)
        assert rec.bias_grad_norm == pytest.approx(np.linalg.norm(db), rel=1e-10)
        # δ in the trace is ∂(mean loss)/∂z; the per-sample error is 32 times that.
        per_sample = delta * 32
        assert rec.delta_norm == pytest.approx(np.sqrt(np.mean(np.sum(per_sample ** 2, axis=1))), rel=1e-10)
        assert rec.weight_norm == pytest.approx(np.linalg.norm(W1), rel=1e-12)
        assert rec.update_ratio == pytest.approx(np.linalg.norm(W1 - W0) / np.linalg.norm(W0), rel=1e-8)
    a1 = np.array(t["layers"][0]["a"]["values"])
    assert record.layers[0].dead_fraction == np.mean(a1.max(axis=0) <= 0)
    a2 = np.array(t["layers"][1]["a"]["values"])
    assert record.layers[1].saturated_fraction == pytest.approx(np.mean((a2 < 0.01) | (a2 > 0.99)))
    assert record.layers[0].saturated_fraction is None and record.layers[1].dead_fraction is None
    assert record.to_dict()["layers"][0]["layer"] == 1


def test_dead_relu_layer_is_reported_dead():
    X, y, _ = mlp.datasets.make("xor")
    spec = make_spec(network={"layers": [{"units": 4, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}]},
                     training={"epochs": 1, "seed": 0})
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    trainer.net.b[0][...] = -100.0
    assert trainer.fit().final.layers[0].dead_fraction == 1.0


def test_fit_continues_on_the_same_trainer_after_a_stop():
    X, y, _ = mlp.datasets.make("moons", n_samples=40, seed=0)
    spec = make_spec(training={"epochs": 4, "batch_size": 8, "seed": 0})
    ref = mlp.Trainer(spec, X, y, n_classes=2)
    ref.fit()
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    calls = iter(range(3))
    assert trainer.fit(should_stop=lambda: next(calls, None) is None).stopped
    assert trainer.epoch == 0 and trainer.pos == 24
    result = trainer.fit()
    assert not result.stopped and result.epochs_run == 4
    assert np.array_equal(trainer.net.params, ref.net.params)
