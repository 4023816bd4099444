"""Training reaches the accuracies a correct engine must: XOR, moons, circles; float32 too."""
import numpy as np
import pytest

import mlp
from tests.engine.factories import make_spec, train_test_split


def test_xor_2_4_1_plain_sgd_reaches_full_accuracy():
    X, y, _ = mlp.datasets.make("xor")
    spec = make_spec(network={"layers": [{"units": 4, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}]},
                     loss="mse", optimizer={"name": "sgd", "learning_rate": 2.0},
                     training={"epochs": 3000, "batch_size": 4, "seed": 0})
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    result = trainer.fit()
    assert (trainer.model().predict(X) == y).all()
    assert result.final.train_accuracy == 1.0


@pytest.mark.parametrize("name,noise", [("moons", 0.1), ("circles", 0.05)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_class_toys_reach_97_percent_test_accuracy(name, noise, dtype):
    X, y, _ = mlp.datasets.make(name, n_samples=600, noise=noise, seed=7)
    Xtr, ytr, Xte, yte = train_test_split(X, y)
    spec = make_spec(network={"layers": [{"units": 16, "activation": "tanh"}, {"units": 16, "activation": "tanh"},
                                         {"units": 1, "activation": "sigmoid"}]},
                     optimizer={"name": "adam", "learning_rate": 0.01},
                     training={"epochs": 150, "batch_size": 32, "seed": 0, "dtype": dtype})
    trainer = mlp.Trainer(spec, Xtr, ytr, n_classes=2)
    trainer.fit()
    model = trainer.model()
    assert model.layers[0][0].dtype == np.dtype(dtype)
    assert (model.predict(Xte) == yte).mean() >= 0.97


def test_softmax_cross_entropy_on_blobs_with_validation_split():
    X, y, _ = mlp.datasets.make("blobs", n_samples=300, seed=2)
    spec = make_spec(network={"layers": [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "softmax"}]},
                     loss="cross_entropy", optimizer={"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
                     training={"epochs": 30, "batch_size": 16, "seed": 0, "validation_split": 0.2})
    trainer = mlp.Trainer(spec, X, y, n_classes=3)
    result = trainer.fit()
    assert result.final.val_accuracy >= 0.95
    proba = trainer.model().predict_proba(X)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1.0)


def test_regression_with_huber_and_one_dimensional_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    spec = make_spec(network={"layers": [{"units": 16, "activation": "gelu"}, {"units": 1, "activation": "identity"}]},
                     loss={"name": "huber", "delta": 1.0}, optimizer={"name": "adam", "learning_rate": 0.01},
                     training={"epochs": 200, "batch_size": 32, "seed": 0})
    trainer = mlp.Trainer(spec, X, y)
    result = trainer.fit()
    pred = trainer.model().predict(X)
    assert pred.shape == (256,)
    assert result.final.train_accuracy is None
    assert np.mean((pred - y) ** 2) < 0.05


def test_separate_validation_set_is_used_and_excludes_a_split():
    X, y, _ = mlp.datasets.make("moons", n_samples=200, seed=3)
    Xtr, ytr, Xva, yva = train_test_split(X, y, test_fraction=0.25)
    spec = make_spec(training={"epochs": 3, "batch_size": 16, "seed": 0})
    result = mlp.Trainer(spec, Xtr, ytr, n_classes=2, X_val=Xva, y_val=yva).fit()
    assert result.final.val_loss is not None and result.final.val_accuracy is not None
    with pytest.raises(mlp.SpecError, match="training.validation_split"):
        split = make_spec(training={"validation_split": 0.2})
        mlp.Trainer(split, Xtr, ytr, n_classes=2, X_val=Xva, y_val=yva)


@pytest.mark.parametrize("name", ["xor", "moons", "circles", "spirals", "blobs"])
def test_datasets_are_seeded_and_shaped(name):
    X, y, classes = mlp.datasets.make(name, n_samples=90, seed=4)
    X2, y2, _ = mlp.datasets.make(name, n_samples=90, seed=4)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert X.dtype == np.float64 and X.shape == (len(y), 2) and y.dtype.kind == "i"
    assert classes == [str(c) for c in range(y.max() + 1)]
    assert len(y) == (4 if name == "xor" else 90)
