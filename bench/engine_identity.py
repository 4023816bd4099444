"""Check that an engine gives bit-identical results to a reference copy of ``mlp/``.

Runs 78 training cases (tiny, medium-like and deep networks; every optimizer; float32
and float64; validation split, early stopping, clipping, schedules, regression losses;
checkpoint/resume every three minibatches) in one subprocess per engine and compares
final weights, every EpochRecord field but ``seconds`` and the FitResult with ``==``::

    cp -r mlp /tmp/mlp_ref/          # before changing the engine
    python bench/engine_identity.py /tmp/mlp_ref .   # exit status 1 on any difference

It is for changes meant to keep every bit. The third speed pass (engine-perf3, see
docs/performance.md) changed the order of floating-point operations on purpose (bias
folded into the weight product, transposed layers, fused Adam moments), so an engine
from before it differs from one after it in the last bits, and chaotic runs diverge;
compare only against a reference copied from the same engine generation.
"""
import json
import math
import subprocess
import sys
import tempfile

import numpy as np

mlp = None  # the engine under test, imported by run_all in each child process


def data(kind, n=200, d=5, k=3, seed=0):
    """Return (X, y, n_classes or None) for a case's dataset kind."""
    if kind == "xor":
        X, y, _ = mlp.datasets.make("xor")
        return X, y, 2
    if kind == "moons":
        X, y, _ = mlp.datasets.make("moons", n_samples=n, seed=5)
        return X, y, 2
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if kind == "reg":
        return X, X @ rng.normal(size=(d, 2)) + 0.1 * rng.normal(size=(n, 2)), None
    return X, np.argmax(X @ rng.normal(size=(d, k)), axis=1), k


OPTS = {
    "sgd": {"name": "sgd", "learning_rate": 0.1},
    "sgdm": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    "nesterov": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    "sgdwd": {"name": "sgd", "learning_rate": 0.05, "weight_decay": 1e-2},
    "adam": {"name": "adam", "learning_rate": 0.01},
    "adamwd": {"name": "adam", "learning_rate": 0.01, "weight_decay": 1e-4},
    "adamw": {"name": "adamw", "learning_rate": 0.01},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.005, "momentum": 0.5},
    "rmsprop0": {"name": "rmsprop", "learning_rate": 0.005},
    "adagrad": {"name": "adagrad", "learning_rate": 0.05},
}


def cases():
    """Return [(name, dataset kind, raw spec)] for every case."""
    out = []
    for dtype in ("float32", "float64"):
        for opt in OPTS:
            # tiny (bench) config, one step per epoch
            out.append((f"tiny-{opt}-{dtype}", "xor", {
                "network": {"layers": [{"units": 16, "activation": "relu"}, {"units": 16, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}]},
                "loss": "binary_cross_entropy", "optimizer": OPTS[opt],
                "training": {"epochs": 60, "batch_size": 4, "seed": 0, "dtype": dtype}, "record": {"every_epochs": 1}}))
            # medium-like multi-class softmax, partial last batch, every 2nd epoch recorded
            out.append((f"med-{opt}-{dtype}", "cls", {
                "network": {"layers": [{"units": 32, "activation": "relu"}, {"units": 16, "activation": "relu"}, {"units": 3, "activation": "softmax"}]},
                "loss": "cross_entropy", "optimizer": {**OPTS[opt], "schedule": {"name": "step", "step_size": 2, "gamma": 0.7}},
                "training": {"epochs": 7, "batch_size": 24, "seed": 1, "dtype": dtype}, "record": {"every_epochs": 2}}))
            # deep tanh/sigmoid, validation split, early stopping, clipping
            out.append((f"deep-{opt}-{dtype}", "moons", {
                "network": {"layers": [{"units": 12, "activation": "tanh"}, {"units": 10, "activation": "sigmoid"},
                                       {"units": 8, "activation": "tanh"}, {"units": 6, "activation": "leaky_relu"},
                                       {"units": 1, "activation": "sigmoid"}]},
                "loss": "binary_cross_entropy", "optimizer": {**OPTS[opt], "schedule": {"name": "cosine"}},
                "training": {"epochs": 25, "batch_size": 16, "seed": 3, "dtype": dtype, "validation_split": 0.2,
                             "gradient_clip_norm": 0.5,
                             "early_stopping": {"monitor": "val_loss", "patience": 3, "restore_best": True}}}))
        # regression, elu/gelu/softplus, mse/huber, no shuffle, val accuracy etc.
        out.append((f"reg-mse-{dtype}", "reg", {
            "network": {"layers": [{"units": 10, "activation": "elu"}, {"units": 9, "activation": "gelu"}, {"units": 7, "activation": "softplus"}, {"units": 2, "activation": "identity"}]},
            "loss": "mse", "optimizer": OPTS["adam"],
            "training": {"epochs": 8, "batch_size": 32, "seed": 4, "dtype": dtype, "validation_split": 0.25, "shuffle": False}}))
        out.append((f"reg-huber-{dtype}", "reg", {
            "network": {"layers": [{"units": 10, "activation": "relu"}, {"units": 2, "activation": "identity"}]},
            "loss": {"name": "huber", "delta": 0.5}, "optimizer": {**OPTS["sgdm"], "schedule": {"name": "exponential"}},
            "training": {"epochs": 8, "batch_size": 30, "seed": 4, "dtype": dtype, "gradient_clip_norm": 0.1}, "record": {"every_epochs": 3}}))
        out.append((f"cls-valacc-{dtype}", "cls", {
            "network": {"layers": [{"units": 20, "activation": "relu"}, {"units": 3, "activation": "softmax"}]},
            "loss": "cross_entropy", "optimizer": OPTS["adamw"],
            "training": {"epochs": 30, "batch_size": 50, "seed": 9, "dtype": dtype, "validation_split": 0.3,
                         "early_stopping": {"monitor": "val_accuracy", "patience": 2, "restore_best": False}}}))
        out.append((f"cls-trainloss-{dtype}", "cls", {
            "network": {"layers": [{"units": 20, "activation": "relu"}, {"units": 3, "activation": "softmax"}]},
            "loss": "cross_entropy", "optimizer": OPTS["sgd"],
            "training": {"epochs": 12, "batch_size": 16, "seed": 9, "dtype": dtype,
                         "early_stopping": {"monitor": "train_loss", "patience": 2, "min_delta": 0.01}}, "record": {"every_epochs": 5}}))
    return out


def strip(r):
    d = r.to_dict()
    d.pop("seconds")  # wall clock, excluded from determinism
    return d


def run(name, kind, spec, stop_every=None):
    """Train one case (checkpointing and resuming every ``stop_every`` polls); return its results."""
    X, y, k = data(kind)
    tr = mlp.Trainer(spec, X, y, n_classes=k)
    recs = []
    if stop_every is None:
        res = tr.fit(on_epoch=lambda r: recs.append(strip(r)))
    else:
        while True:
            polls = iter(range(stop_every))
            res = tr.fit(on_epoch=lambda r: recs.append(strip(r)), should_stop=lambda: next(polls, None) is None)
            if not res.stopped:
                break
            st = tr.state_bytes()
            tr = mlp.Trainer.from_state(spec, X, y, st, n_classes=k)
    r = res.__dict__.copy()
    r["final"] = None if res.final is None else strip(res.final)
    # The weights' bytes as hex: JSON carries them exactly (floats round-trip through repr too).
    return {"params": tr.net.params.tobytes().hex(), "dtype": str(tr.net.params.dtype), "records": recs,
            "result": r}


def run_all(path, out):
    """Child process: import ``mlp`` from ``path``, run every case, write the results to ``out`` as JSON."""
    sys.path.insert(0, path)
    global mlp
    import mlp
    assert mlp.__file__.startswith(path), mlp.__file__
    results = {}
    for name, kind, spec in cases():
        results[name] = run(name, kind, spec)
        if name.startswith(RESUMED):
            results[name + "-resume"] = run(name, kind, spec, stop_every=3)
    with open(out, "w") as f:
        json.dump(results, f)


RESUMED = ("deep-adam-", "med-nesterov", "tiny-sgd-", "tiny-adam-", "cls-trainloss")


def finite(x):
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, (dict, list)):
        return all(finite(v) for v in (x.values() if isinstance(x, dict) else x))
    return True


def compare(reference, candidate):
    """Run both engines; return the names of the cases that differ (or are not finite)."""
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for tag, path in (("ref", reference), ("cand", candidate)):
            # cwd=tmp so that the current folder's mlp does not shadow ``path``.
            subprocess.run([sys.executable, __file__, "--child", path, f"{tmp}/{tag}.json"], cwd=tmp,
                           check=True)
        ref, cand = (json.loads(open(f"{tmp}/{t}.json").read()) for t in ("ref", "cand"))
    for name in ref:
        if cand.get(name) != ref[name] or not finite(ref[name]["records"]):
            found.append(name)
    return found, len(ref)


if __name__ == "__main__":
    import os
    if sys.argv[1] == "--child":
        run_all(sys.argv[2], sys.argv[3])
    else:
        paths = [os.path.abspath(p) for p in sys.argv[1:3]] + [os.getcwd()] * (2 - len(sys.argv[1:3]))
        bad, n = compare(*paths)
        print(f"{n} cases, {len(bad)} differ" + (": " + ", ".join(bad) if bad else ""))
        sys.exit(1 if bad else 0)
