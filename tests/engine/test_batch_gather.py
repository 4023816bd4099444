"""Per-minibatch gathering of a big X (data_split.BatchRows) is bit-identical to the
per-epoch gather of a converted copy, resumes bit-identically, and copies nothing whole."""
import numpy as np
import pytest

import mlp
from mlp import data_split
from mlp.data_split import BatchRows, EpochBatches
from tests.engine.factories import make_spec
from tests.engine.test_resume import IDS, OPTIMIZERS, spec_for, strip


@pytest.fixture
def per_batch(monkeypatch):
    """Make every X count as big, so the trainer gathers per minibatch."""
    monkeypatch.setattr(data_split, "PER_BATCH_GATHER_BYTES", -1)


def moons(dtype=np.float64, n=70):
    X, y, _ = mlp.datasets.make("moons", n_samples=n, seed=5)
    return np.asarray(X, dtype=dtype), y


def train(spec, X, y, stop_after=None):
    """Run to the end; with ``stop_after``, checkpoint and rebuild every that many polls."""
    trainer, records = mlp.Trainer(spec, X, y, n_classes=2), []
    while True:
        polls = iter(range(stop_after or 10**9))
        result = trainer.fit(on_epoch=lambda r: records.append(strip(r)),
                             should_stop=lambda: next(polls, None) is None)
        if not result.stopped:
            return trainer, records
        trainer = mlp.Trainer.from_state(spec, X, y, trainer.state_bytes(), n_classes=2)


def both_ways(monkeypatch, spec, X, y, stop_after=None):
    eager = train(spec, X, y)
    monkeypatch.setattr(data_split, "PER_BATCH_GATHER_BYTES", -1)
    lazy = train(spec, X, y, stop_after)
    monkeypatch.undo()
    assert isinstance(eager[0].X, np.ndarray) and isinstance(lazy[0].X, BatchRows)
    return eager, lazy


@pytest.mark.parametrize("optimizer,schedule", OPTIMIZERS, ids=IDS)
def test_per_batch_gather_is_bit_identical_to_per_epoch(monkeypatch, optimizer, schedule):
    spec = spec_for(optimizer, schedule)  # shuffled, with a validation split
    X, y = moons()
    (ref, ref_records), (got, records) = both_ways(monkeypatch, spec, X, y)
    assert records == ref_records
    assert np.array_equal(got.net.params, ref.net.params)


@pytest.mark.parametrize("split", [0.0, 0.2])
@pytest.mark.parametrize("shuffle", [True, False])
def test_without_shuffle_or_split_too(monkeypatch, shuffle, split):
    spec = make_spec(training={"epochs": 4, "batch_size": 16, "seed": 2, "shuffle": shuffle,
                               "validation_split": split})
    X, y = moons(n=90)  # the last batch is partial
    (ref, ref_records), (got, records) = both_ways(monkeypatch, spec, X, y)
    assert records == ref_records and np.array_equal(got.net.params, ref.net.params)


@pytest.mark.parametrize("source, train_dtype", [(np.float32, "float64"),
                                                 (np.float64, "float32")])
def test_dtype_conversion_happens_per_batch_with_the_same_values(monkeypatch, tmp_path,
                                                                 source, train_dtype):
    spec = make_spec(training={"epochs": 3, "batch_size": 8, "seed": 4, "dtype": train_dtype,
                               "validation_split": 0.25})
    X, y = moons(source)
    mapped = np.memmap(tmp_path / "X.raw", dtype=X.dtype, mode="w+", shape=X.shape)
    mapped[:] = X
    mapped.flush()
    readonly = np.memmap(tmp_path / "X.raw", dtype=X.dtype, mode="r", shape=X.shape)
    (ref, ref_records), (got, records) = both_ways(monkeypatch, spec, readonly, y)
    assert records == ref_records and np.array_equal(got.net.params, ref.net.params)


@pytest.mark.parametrize("stop_after", [3, 7])
def test_resume_mid_epoch_with_per_batch_gather_is_bit_identical(monkeypatch, stop_after):
    spec = spec_for(*OPTIMIZERS[2])
    X, y = moons()
    (ref, ref_records), (got, records) = both_ways(monkeypatch, spec, X, y, stop_after)
    assert records == ref_records and np.array_equal(got.net.params, ref.net.params)


def test_a_big_x_is_neither_converted_nor_copied(per_batch):
    spec = make_spec(training={"epochs": 1, "batch_size": 8, "seed": 0, "dtype": "float32"})
    X, y = moons(np.float64)
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    assert trainer.X.source is X and trainer.X.rows is None
    assert isinstance(trainer._Xp, EpochBatches)
    assert trainer._Xp._buf.shape == (8, 2) and trainer._Xp._buf.dtype == np.float32
    trainer.fit()


def test_a_small_x_keeps_the_per_epoch_gather():
    X, y = moons()
    trainer = mlp.Trainer(make_spec(training={"epochs": 1, "seed": 0}), X, y, n_classes=2)
    # The epoch's gathered copy carries the ones column the network's folded bias reads.
    n, d = trainer.X.shape
    assert isinstance(trainer.X, np.ndarray) and trainer._Xp.shape == (n, d + 1)


def test_an_unaligned_memory_map_gathers_the_same_rows(monkeypatch, tmp_path):
    spec = make_spec(training={"epochs": 2, "batch_size": 8, "seed": 4, "dtype": "float32"})
    X, y = moons(np.float32)
    (tmp_path / "X.raw").write_bytes(b"\0" + X.tobytes())
    unaligned = np.memmap(tmp_path / "X.raw", dtype=np.float32, mode="r", offset=1,
                          shape=X.shape)
    assert not unaligned.flags.aligned
    (ref, ref_records), (got, records) = both_ways(monkeypatch, spec, unaligned, y)
    assert records == ref_records and np.array_equal(got.net.params, ref.net.params)
