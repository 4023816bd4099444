"""Turn the caller's arrays into training and validation sets in the spec's dtype."""
import numpy as np

from .datafit import check_data_fit, encode_targets
from .errors import SpecError


def prepare_data(spec, X, y, n_classes, X_val, y_val, dtype):
    """Validate shapes, encode targets and carve the validation rows.

    Returns ``(X, T, labels, Xv, Tv, labels_v, squeeze, init_seed, shuffle_seed)``:
    X (n, d) contiguous in ``dtype``; T the loss targets; labels (n,) class indices or
    None; the validation counterparts or None; whether regression targets were 1-D;
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
        X, T, labels = X[train], T[train], None if labels is None else labels[train]
    else:
        Xv = Tv = labels_v = None
    squeeze = n_classes is None and y.ndim == 1
    return X, T, labels, Xv, Tv, labels_v, squeeze, init_ss, shuffle_ss
