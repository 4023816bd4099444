"""Checks that a validated spec fits a dataset, and the encoding of targets for each loss."""
import numpy as np

from .errors import SpecError

REGRESSION_LOSSES = ("mse", "mae", "huber")


def check_data_fit(spec, *, n_features, task, n_outputs):
    """Raise SpecError (naming the field) unless ``spec`` can train on the described data.

    ``task`` is "classification" (``n_outputs`` = number of classes) or "regression"
    (``n_outputs`` = target columns).
    """
    errors = []
    layers = spec["network"]["layers"]
    k = len(layers) - 1
    units, act, loss = layers[-1]["units"], layers[-1]["activation"], spec["loss"]["name"]
    path = f"network.layers[{k}].units"
    if n_features < 1:
        errors.append(("network", "the dataset has no feature columns"))
    if task == "classification":
        _check_classification(errors, path, units, act, loss, n_outputs)
    elif task == "regression":
        if loss not in REGRESSION_LOSSES:
            errors.append(("loss", f"{loss} is for classification, but the dataset is a regression task; use mse, mae or huber"))
        elif units != n_outputs:
            errors.append((path, f"output layer has {units} units but the dataset has {n_outputs} target columns"))
    else:
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    if errors:
        raise SpecError(errors)


def _check_classification(errors, path, units, act, loss, n_classes):
    hint = "use 1 unit with sigmoid and binary_cross_entropy, or 2 with softmax and cross_entropy"
    if n_classes < 2:
        errors.append(("dataset", f"a classification dataset needs at least 2 classes, got {n_classes}"))
    elif loss == "binary_cross_entropy":
        if n_classes != 2:
            errors.append(("loss", f"binary_cross_entropy needs 2 classes but the dataset has {n_classes}; use cross_entropy with a softmax output of {n_classes} units"))
    elif loss == "cross_entropy":
        if units != n_classes:
            errors.append((path, f"output layer has {units} units but the dataset has {n_classes} classes; use {n_classes} units with softmax"))
    elif loss == "mse":
        if not (units == n_classes or (units == 1 and n_classes == 2)):
            msg = f"output layer has {units} units but the dataset has {n_classes} classes; "
            errors.append((path, msg + (hint if n_classes == 2 else f"use {n_classes} units (one-hot targets)")))
    else:
        errors.append(("loss", f"{loss} is for regression; for classification use cross_entropy, binary_cross_entropy or mse"))
    if not errors and loss == "binary_cross_entropy" and units != 1:
        errors.append((path, f"output layer has {units} units but the dataset has {n_classes} classes; {hint}"))


def infer_n_classes(loss, units, n_classes):
    """Return ``n_classes``, or for the classification-only losses the count their output implies."""
    if n_classes is None and loss == "cross_entropy":
        return units
    if n_classes is None and loss == "binary_cross_entropy":
        return 2
    return n_classes


def encode_targets(y, loss, n_classes, units, dtype):
    """Return ``(targets, labels)``: what the loss compares against, and class indices or None.

    Classification ``y`` is (n,) class indices (or (n, n_classes) one-hot); targets are
    (n,) indices for cross_entropy, (n, 1) 0/1 floats for one output unit, (n, C)
    one-hot floats otherwise. Regression ``y`` (n,) or (n, k) becomes (n, k) floats.
    """
    y = np.asarray(y)
    if n_classes is None:
        return np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype), None
    labels = np.argmax(y, axis=1) if y.ndim == 2 else y
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            raise ValueError("classification labels must be integers")
    labels = labels.astype(np.intp)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"class labels must lie in [0, {n_classes})")
    if loss == "cross_entropy":
        return labels, labels
    if units == 1:
        return labels.reshape(-1, 1).astype(dtype), labels
    return np.eye(n_classes, dtype=dtype)[labels], labels
