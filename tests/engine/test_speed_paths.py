"""The engine's fast paths give the same results as the plain ones: side-by-side norms,
dead units tracked over all hidden layers at once, the one-thread BLAS limit for small
networks, and Adam's scalar handling in float32."""
import json

import numpy as np
import pytest

import mlp
from mlp import blas_threads
from tests.engine.factories import make_spec


def small_classifier(dtype="float32", optimizer=None, epochs=3):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 5))
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int)
    spec = make_spec(network={"layers": [{"units": 12, "activation": "relu"}, {"units": 6, "activation": "tanh"},
                                         {"units": 2, "activation": "softmax"}]},
                     loss="cross_entropy", optimizer=optimizer or {"name": "adam", "learning_rate": 0.01},
                     training={"epochs": epochs, "batch_size": 32, "seed": 3, "dtype": dtype})
    return spec, X, y


def fit_records(trainer):
    records = []
    trainer.fit(on_epoch=records.append)
    return [r.to_dict() for r in records]


@pytest.mark.parametrize("optimizer", [{"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
                                       {"name": "adam", "learning_rate": 0.01}])
def test_side_by_side_norms_match_the_per_tensor_path(optimizer):
    spec, X, y = small_classifier("float64", optimizer)
    fast = mlp.Trainer(spec, X, y, n_classes=2)
    plain = mlp.Trainer(spec, X, y, n_classes=2)
    plain._scratch = None  # the large-network path: one dot per tensor
    a, b = fit_records(fast), fit_records(plain)
    assert fast._sides and not plain._sides
    np.testing.assert_array_equal(fast.net.params, plain.net.params)  # norms never feed back into training
    for ra, rb in zip(a, b):
        for la, lb in zip(ra["layers"], rb["layers"]):
            for key in ("weight_grad_norm", "bias_grad_norm", "delta_norm", "weight_norm", "update_ratio"):
                assert la[key] == pytest.approx(lb[key], rel=1e-12), key


def test_small_network_trains_on_one_blas_thread_and_restores_the_count():
    if blas_threads._OPENBLAS is None:
        pytest.skip("numpy is not linked to OpenBLAS here")
    setter, getter = blas_threads._OPENBLAS
    before = getter()
    setter(2)
    try:
        spec, X, y = small_classifier()
        seen = []
        mlp.Trainer(spec, X, y, n_classes=2).fit(on_epoch=lambda r: seen.append(getter()))
        assert seen == [1, 1, 1]
        assert getter() == 2
    finally:
        setter(before)


def test_one_thread_results_equal_many_thread_results():
    spec, X, y = small_classifier()
    one = mlp.Trainer(spec, X, y, n_classes=2)
    many = mlp.Trainer(spec, X, y, n_classes=2)
    many._one_thread = False
    assert one._one_thread
    assert fit_records(one)[-1]["train_loss"] == pytest.approx(fit_records(many)[-1]["train_loss"], rel=1e-5)


def test_thread_choice_follows_layer_size():
    assert blas_threads.wants_single_thread([64, 128, 64, 10], 64)
    assert not blas_threads.wants_single_thread([784, 1024, 1024, 10], 256)


def test_float32_adam_stays_float32_and_tracks_float64():
    runs = {}
    for dtype in ("float32", "float64"):
        spec, X, y = small_classifier(dtype, epochs=5)
        trainer = mlp.Trainer(spec, X, y, n_classes=2)
        trainer.fit()
        assert trainer.optimizer.m.dtype == trainer.net.params.dtype == np.dtype(dtype)
        runs[dtype] = trainer.net.params.astype(np.float64)
    np.testing.assert_allclose(runs["float32"], runs["float64"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dot_gives_matmuls_bits_on_the_passes_shapes(dtype):
    # forward/backward use np.dot for its lower call cost; it must hand BLAS the same call.
    rng = np.random.default_rng(0)
    for m, k, p in [(1, 3, 4), (4, 2, 16), (4, 16, 1), (26, 12, 6), (64, 64, 128), (64, 128, 10), (256, 784, 64)]:
        x, W, d = (rng.normal(size=s).astype(dtype) for s in ((m, k), (k, p), (m, p)))
        # Row-major forms and the transposed ones the passes use (network.py): zᵀ = Wᵀxᵀ,
        # ∂W = xᵀδ with δ given transposed, δ_prevᵀ = W δᵀ.
        for a, b in [(x, W), (x.T, d), (np.ones(m, dtype), d), (d, W.T), (W.T, x.T),
                     (x.T, np.ascontiguousarray(d.T).T), (W, d.T)]:
            assert np.array_equal(np.dot(a, b), np.matmul(a, b))


def test_joint_buffer_norms_equal_the_copying_path():
    spec, X, y = small_classifier("float32", {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9})
    joint, copying = mlp.Trainer(spec, X, y, n_classes=2), mlp.Trainer(spec, X, y, n_classes=2)
    copying._joint = None  # every batch size through the concatenating path
    assert joint._joint is not None and joint.net.params.base is joint._joint[0]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(fit_records(joint)) == strip(fit_records(copying))
    np.testing.assert_array_equal(joint.net.params, copying.net.params)


def test_dead_units_tracked_at_once_equal_the_per_layer_path(monkeypatch):
    # Two relu layers around a tanh one, a smaller last batch (90 = 2·32 + 26) and a
    # checkpoint in mid-epoch: the one-call elementwise maximum over the hidden block,
    # reduced over samples when read, gives the per-layer peaks exactly.
    spec = make_spec(network={"layers": [{"units": 12, "activation": "relu"}, {"units": 6, "activation": "tanh"},
                                         {"units": 5, "activation": "relu"}, {"units": 2, "activation": "softmax"}]},
                     loss="cross_entropy", optimizer={"name": "sgd", "learning_rate": 0.5},
                     training={"epochs": 4, "batch_size": 32, "seed": 3})
    _, X, y = small_classifier()

    def trainer():  # negative biases leave some units dead (fractions 1/12 and 1/5 after epoch 1)
        t = mlp.Trainer(spec, X, y, n_classes=2)
        t.net.b[0][:6], t.net.b[2][:3] = np.linspace(-4, -1, 6), np.linspace(-1.5, -0.3, 3)
        return t

    block = trainer()
    calls = iter(range(10 ** 6))
    stopped = block.fit(should_stop=lambda: next(calls) == 5)  # stop in epoch 2, then resume
    assert stopped.stopped and block._in_epoch
    resumed = mlp.Trainer.from_state(spec, X, y, block.state_bytes(), n_classes=2)
    a = fit_records(resumed)
    monkeypatch.setattr(mlp.telemetry, "SMALL_BLOCK", 0)
    plain = trainer()
    b = fit_records(plain)[1:]
    assert resumed.telemetry._pending is not None and plain.telemetry._pending is None
    dead = [[l["dead_fraction"] for l in r["layers"]] for r in a]
    assert dead == [[l["dead_fraction"] for l in r["layers"]] for r in b]
    assert dead[-1][0] > 0 and dead[-1][2] > 0
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)


def test_relu_zeros_are_full_shape_only_for_small_arrays():
    from mlp.activations import _zeros_for
    assert _zeros_for(np.ones((4, 16), np.float32)).shape == (4, 16)
    assert _zeros_for(np.ones((256, 1024), np.float32)).shape == (1024,)
    assert not _zeros_for(np.ones((4, 16))).flags.writeable


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("centre,width", [(0.5, 0.49), (0.0, 0.99)])
def test_saturation_bounds_count_exactly_what_the_expression_counts(dtype, centre, width):
    from mlp.telemetry import count_saturated, saturation_bounds
    lo, hi = saturation_bounds(centre, width, dtype)
    edges = []
    for b in (lo, hi):  # every value within 40 ulps of each bound
        v = np.array([b], dtype)
        for direction in (np.inf, -np.inf):
            w = v.copy()
            for _ in range(40):
                w = np.nextafter(w, dtype(direction))
                edges.append(w)
    a = np.concatenate([np.random.default_rng(0).uniform(-1.1, 1.1, 5000).astype(dtype), *edges,
                        np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, centre], dtype)])
    np.testing.assert_array_equal((a <= lo) | (a >= hi), np.abs(a - centre) > width)
    for part in (a[:20], a[20:5000]):  # the Python and the numpy counting paths
        assert count_saturated(part, lo, hi) == np.count_nonzero(np.abs(part - centre) > width)


def test_small_batch_count_correct_matches_numpy():
    from mlp.model import count_correct
    rng = np.random.default_rng(0)
    out, labels = rng.random((20, 1)).astype(np.float32), rng.integers(0, 2, 20)
    out[:3, 0] = [0.5, np.nan, np.nextafter(np.float32(0.5), np.float32(1))]
    assert count_correct(out, labels) == np.count_nonzero((out[:, 0] > 0.5) == labels)


def test_order_blocks_draw_exactly_the_per_epoch_permutations(monkeypatch):
    """A small dataset's epochs are shuffled a block at a time (mlp/epoch_order.py); the
    rows, and so every result, are those of one permutation drawn per epoch."""
    spec, X, y = small_classifier("float64", epochs=7)
    blocked = mlp.Trainer(spec, X, y, n_classes=2)
    monkeypatch.setattr(mlp.trainer, "epochs_per_block", lambda n, width: 1)
    plain = mlp.Trainer(spec, X, y, n_classes=2)
    assert blocked._orders is not None and blocked._orders.epochs > 7 and plain._orders is None
    assert untimed(fit_records(blocked)) == untimed(fit_records(plain))
    np.testing.assert_array_equal(blocked.net.params, plain.net.params)
    assert blocked.rng.bit_generator.state != plain.rng.bit_generator.state  # the block drew ahead


def untimed(records):
    return [dict(r, seconds=None) for r in records]


@pytest.mark.parametrize("mid_epoch", [False, True])
def test_a_checkpoint_without_an_order_block_resumes_bit_identically(mid_epoch):
    """A checkpoint written before order blocks holds the RNG state after the completed
    epochs' permutations (the start of the epoch in progress, if any) and no block."""
    spec, X, y = small_classifier("float64", epochs=5)
    straight = mlp.Trainer(spec, X, y, n_classes=2)
    expected = fit_records(straight)
    trainer, records, states = mlp.Trainer(spec, X, y, n_classes=2), [], []
    polls = iter(range(4 if mid_epoch else 99))  # 3 batches an epoch: the 5th poll is in epoch 2
    trainer.fit(on_epoch=lambda r: (records.append(r.to_dict()), states.append(trainer.state_bytes())),
                should_stop=lambda: next(polls, None) is None)
    arrays, meta = mlp.checkpoint.unpack(trainer.state_bytes() if mid_epoch else states[1])
    assert meta.pop("order_block") == 0 and meta["in_epoch"] == mid_epoch and meta["epoch"] in (1, 2)
    assert meta["format"] == "gradtrace.trainer/2"
    meta["format"] = "gradtrace.trainer/1"
    old = mlp.Trainer(spec, X, y, n_classes=2).rng
    for _ in range(meta["epoch"]):
        old.permutation(len(trainer.X))
    meta["rng"] = old.bit_generator.state
    resumed = mlp.Trainer.from_state(spec, X, y, mlp.checkpoint.pack(arrays, meta), n_classes=2)
    assert untimed(records[:meta["epoch"]] + fit_records(resumed)) == untimed(expected)
    np.testing.assert_array_equal(resumed.net.params, straight.net.params)


def test_layer_sums_read_as_the_records_and_as_one_table():
    spec, X, y = small_classifier("float32", epochs=3)
    records = []
    mlp.Trainer(spec, X, y, n_classes=2).fit(on_epoch=records.append)
    sums = records[-1].layers
    assert isinstance(sums, mlp.records.LayerSums) and len(sums) == 3
    materialised = [mlp.LayerRecord(**vars(layer)) for layer in sums]
    assert sums == materialised and materialised == sums
    assert [la.dead_fraction is None for la in sums] == [False, True, True]
    assert [la.saturated_fraction is None for la in sums] == [True, False, True]
    assert json.loads(json.dumps(records[-1].to_dict()))["layers"][0]["layer"] == 1
    as_lists = [mlp.EpochRecord(**{**vars(r), "layers": list(r.layers)}) for r in records]
    table = mlp.records.layer_table(records)
    np.testing.assert_array_equal(table, mlp.records.layer_table(as_lists))  # NaN where None
    assert table.shape == (9, 8) and table[:, 0].tolist() == [1, 2, 3] * 3
    last = table[6:]  # the last epoch's three layers
    assert last[:, 1:6].tolist() == [[getattr(la, f) for f in mlp.records.LAYER_FIELDS[:5]] for la in sums]
    assert last[0, 6] == sums[0].dead_fraction and last[1, 7] == sums[1].saturated_fraction


@pytest.mark.parametrize("written_k,read_k", [(None, 3), (3, None), (None, 1), (3, 1), (1, 3)])
def test_a_checkpoint_resumes_bit_identically_under_another_block_size(monkeypatch, written_k, read_k):
    """An engine with other block bounds (K: epochs per block; 1 is per-epoch drawing)
    draws the same permutations in turn, from any stop, mid-epoch or between epochs."""
    spec, X, y = small_classifier("float64", epochs=7)
    default = mlp.trainer.epochs_per_block
    expected = untimed(fit_records(mlp.Trainer(spec, X, y, n_classes=2)))

    def block_size(k):
        monkeypatch.setattr(mlp.trainer, "epochs_per_block", default if k is None else (lambda n, width: k))

    for stop_after in (2, 3, 7, 10, 14):  # 3 batches an epoch
        block_size(written_k)
        trainer, records, polls = mlp.Trainer(spec, X, y, n_classes=2), [], iter(range(stop_after))
        trainer.fit(on_epoch=lambda r: records.append(r.to_dict()), should_stop=lambda: next(polls, None) is None)
        block_size(read_k)
        resumed = mlp.Trainer.from_state(spec, X, y, trainer.state_bytes(), n_classes=2)
        assert (resumed._orders is None) == (read_k == 1)
        assert untimed(records + fit_records(resumed)) == expected, stop_after
    block_size(written_k)  # and from a checkpoint between epochs 4 and 5
    trainer, states = mlp.Trainer(spec, X, y, n_classes=2), {}
    trainer.fit(on_epoch=lambda r: states.__setitem__(r.epoch, trainer.state_bytes()))
    block_size(read_k)
    resumed = mlp.Trainer.from_state(spec, X, y, states[4], n_classes=2)
    assert not resumed._in_epoch and untimed(fit_records(resumed)) == expected[4:]
