"""Turn the caller's arrays into training and validation sets in the spec's dtype.

Big feature matrices are not converted or copied: above ``PER_BATCH_GATHER_BYTES`` the
training rows stay where the caller has them (typically a read-only memory map of the
stored dataset) behind a ``BatchRows``, and the trainer gathers each minibatch's rows
into one reused buffer, converting the dtype there. The values are exactly those of the
converted, per-epoch gathered copy (same permutation, same rows, elementwise casts), so
training is bit-identical either way; only the peak memory differs (about one copy of
the data instead of three).
"""
import numpy as np

from .datafit import check_data_fit, encode_targets
from .errors import SpecError


# Training features bigger than this (in the training dtype) are gathered per minibatch.
PER_BATCH_GATHER_BYTES = 16 * 1024 * 1024


class BatchRows:
    """The training rows of a big ``source`` (n, d) array, read one minibatch at a time.

    ``rows`` maps training row i to source row ``rows[i]`` (None: the identity, i.e. no
    validation rows were carved out). ``batches()`` gives the object the trainer slices.
    """

    def __init__(self, source, rows, dtype):
        self.source, self.rows, self.dtype = source, rows, np.dtype(dtype)
        self.shape = (len(source) if rows is None else len(rows), source.shape[1])

    def __len__(self):
        return self.shape[0]

    def batches(self, batch_size):
        return EpochBatches(self, batch_size)


class EpochBatches:
    """``self[lo:hi]`` is rows ``order[lo:hi]`` of the training rows (rows ``lo:hi`` when
    ``order`` is None), in the training dtype, in a buffer reused by the next call."""

    def __init__(self, data, batch_size):
        self.data, self.order = data, None
        self._buf = np.empty((min(batch_size, len(data)), data.shape[1]), data.dtype)

    def __getitem__(self, batch):
        data = self.data
        out = self._buf[:len(range(*batch.indices(len(data))))]
        idx = None if self.order is None else self.order[batch]
        if data.rows is not None:
            idx = data.rows[batch] if idx is None else data.rows[idx]
        source = data.source
        if idx is None:
            np.copyto(out, source[batch])
        elif not source.flags.aligned and source.flags.c_contiguous:
            # numpy's take copies a whole unaligned array first; a byte view is always
            # aligned, so only the batch's rows are copied.
            rows = source.view(np.uint8).take(idx, axis=0, mode="clip")
            np.copyto(out, rows.view(source.dtype))
        elif source.dtype == data.dtype:
            # mode="clip" skips the bounds-check pass; the indices are in range by construction.
            source.take(idx, axis=0, out=out, mode="clip")
        else:
            np.copyto(out, source.take(idx, axis=0, mode="clip"))
        return out


def prepare_data(spec, X, y, n_classes, X_val, y_val, dtype):
    """Validate shapes, encode targets and carve the validation rows.

    Returns ``(X, T, labels, Xv, Tv, labels_v, squeeze, init_seed, shuffle_seed)``:
    X (n, d) contiguous in ``dtype`` (a ``BatchRows`` over the caller's X when big);
    T the loss targets; labels (n,) class indices or None; the validation counterparts
    or None; whether regression targets were 1-D;
    and the SeedSequences for weight initialisation and shuffling. The three streams
    (init, validation split, shuffle) are spawned from ``training.seed``, so each is
    reproducible on its own.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X must be (n, d) and y must have n rows; got {X.shape} and {y.shape}")
    units = spec["network"]["layers"][-1]["units"]
    loss = spec["loss"]["name"]
    task = "regression" if n_classes is None else "classification"
    n_out = n_classes if n_classes is not None else (1 if y.ndim == 1 else y.shape[1])
    check_data_fit(spec, n_features=X.shape[1], task=task, n_outputs=n_out)
    init_ss, split_ss, shuffle_ss = np.random.SeedSequence(spec["training"]["seed"]).spawn(3)
    T, labels = encode_targets(y, loss, n_classes, units, dtype)
    per_batch = X.size * np.dtype(dtype).itemsize > PER_BATCH_GATHER_BYTES
    if not per_batch:
        X = np.ascontiguousarray(X, dtype=dtype)
    split = spec["training"]["validation_split"]
    if X_val is not None:
        if split > 0:
            raise SpecError([("training.validation_split", "give either a validation_split or a separate validation set, not both")])
        Tv, labels_v = encode_targets(y_val, loss, n_classes, units, dtype)
        Xv = np.ascontiguousarray(X_val, dtype=dtype)
    elif split > 0:
        n_val = max(1, int(len(X) * split))
        if n_val >= len(X):
            raise SpecError([("training.validation_split", f"leaves no training rows out of {len(X)}")])
        order = np.random.Generator(np.random.PCG64(split_ss)).permutation(len(X))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        Xv, Tv, labels_v = X[val], T[val], None if labels is None else labels[val]
        X = BatchRows(X, train, dtype) if per_batch else X[train]
        T, labels = T[train], None if labels is None else labels[train]
        Xv = np.ascontiguousarray(Xv, dtype=dtype)  # a no-op unless X was kept as given
    else:
        Xv = Tv = labels_v = None
    if per_batch and not isinstance(X, BatchRows):
        X = BatchRows(X, None, dtype)
    squeeze = n_classes is None and y.ndim == 1
    return X, T, labels, Xv, Tv, labels_v, squeeze, init_ss, shuffle_ss
