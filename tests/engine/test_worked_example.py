"""The hand-worked 2-2-1 sigmoid network of docs/backprop.md, number by number.

x = (1, 0), target y = 1, mse loss L = (a² − y)²; the weights are chosen by hand.
"""
import numpy as np
import pytest

import mlp

W1 = np.array([[0.5, -0.3], [0.2, 0.8]])
B1 = np.array([0.1, -0.1])
W2 = np.array([[1.0], [-1.5]])
B2 = np.array([0.2])
X = np.array([[1.0, 0.0]])
Y = np.array([1.0])
MODEL = mlp.Model([(W1, B1), (W2, B2)], ["sigmoid", "sigmoid"], [0.0, 0.0], {"name": "mse"})


def values(entry):
    return np.array(entry["values"])


def test_forward_pass_numbers():
    t = mlp.trace(MODEL, X, Y, loss="mse")
    first, second = t["layers"]
    assert values(first["z"]) == pytest.approx(np.array([[0.6, -0.4]]), abs=1e-12)
    assert values(first["a"]) == pytest.approx(np.array([[0.645656306226, 0.401312339888]]), abs=1e-12)
    assert values(second["z"]) == pytest.approx(np.array([[0.243687796394]]), abs=1e-12)
    assert values(second["a"]) == pytest.approx(np.array([[0.560622247603]]), abs=1e-12)
    assert t["loss"] == pytest.approx(0.193052809301, abs=1e-12)
    assert values(t["input"]).tolist() == [[1.0, 0.0]]


def test_backward_pass_numbers():
    first, second = mlp.trace(MODEL, X, Y, loss="mse")["layers"]
    # δ² = 2 (a² − y) a² (1 − a²)
    assert values(second["delta"]) == pytest.approx(np.array([[-0.216459399713]]), abs=1e-12)
    assert values(second["dW"]) == pytest.approx(np.array([[-0.139758376467], [-0.086867828190]]), abs=1e-12)
    assert values(second["db"]) == pytest.approx([-0.216459399713], abs=1e-12)
    # δ¹ = (δ² W²ᵀ) ⊙ a¹ (1 − a¹)
    assert values(first["delta"]) == pytest.approx(np.array([[-0.049522499353, 0.078010045197]]), abs=1e-12)
    assert values(first["dW"]) == pytest.approx(np.array([[-0.049522499353, 0.078010045197], [0.0, 0.0]]), abs=1e-12)
    assert values(first["db"]) == pytest.approx([-0.049522499353, 0.078010045197], abs=1e-12)


def test_one_sgd_step_moves_weights_against_the_gradient():
    spec = {"network": {"layers": [{"units": 2, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}]},
            "loss": "mse", "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "training": {"epochs": 1, "batch_size": 1, "seed": 0}}
    trainer = mlp.Trainer(spec, X, Y)
    for (W, b), (tW, tb) in zip(MODEL.layers, zip(trainer.net.W, trainer.net.b)):
        tW[...], tb[...] = W, b
    trainer.fit()
    (nW1, nb1), (nW2, nb2) = trainer.model().layers
    assert nW2[:, 0] == pytest.approx([1.0 + 0.5 * 0.139758376467, -1.5 + 0.5 * 0.086867828190], abs=1e-12)
    assert nb1 == pytest.approx([0.1 + 0.5 * 0.049522499353, -0.1 - 0.5 * 0.078010045197], abs=1e-12)
    assert nW1[1].tolist() == [0.2, 0.8]  # x₂ = 0, so row 2 of W¹ gets no gradient


def test_trace_summarises_large_arrays():
    X5 = np.random.default_rng(0).normal(size=(40, 2))
    t = mlp.trace(MODEL, X5, np.ones(40), loss="mse", max_full=10)
    z = t["layers"][0]["z"]
    assert z["shape"] == [40, 2] and "values" not in z and len(z["top"]) == 8
    top = [abs(e["value"]) for e in z["top"]]
    assert top == sorted(top, reverse=True)


def test_trace_of_a_softmax_classifier_takes_class_indices():
    rng = np.random.default_rng(1)
    model = mlp.Model([(rng.normal(size=(2, 3)), np.zeros(3)), (rng.normal(size=(3, 3)), np.zeros(3))],
                      ["tanh", "softmax"], [0.0, 0.0], {"name": "cross_entropy"}, n_classes=3)
    t = mlp.trace(model, rng.normal(size=(4, 2)), np.array([0, 2, 1, 2]), loss="cross_entropy")
    delta = np.array(t["layers"][1]["delta"]["values"])
    assert delta.shape == (4, 3) and np.allclose(delta.sum(axis=1), 0.0)  # rows of (p − onehot)/m
    assert t["loss"] > 0
