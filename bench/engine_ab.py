"""Time XOR epochs of two copies of the engine alternately, in fresh processes.

For a change to the engine's per-epoch cost, measured against the engine before it on
the same machine in the same minutes (a noisy machine's speed drifts by 10 % and more)::

    mkdir -p /tmp/before && git archive HEAD mlp | tar -x -C /tmp/before
    python bench/engine_ab.py /tmp/before . --opt sgd --rounds 3

Each round runs each engine once: 2-16-16-1 relu, sigmoid + binary cross-entropy on XOR,
float32, 3000 epochs recorded every epoch, best of 5 fits by process CPU time; it prints
µs per epoch. ``path`` is a folder holding an ``mlp`` package.
"""
import argparse
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, time
sys.path.insert(0, {path!r})
import mlp
assert mlp.__file__.startswith({path!r}), mlp.__file__
X, y, _ = mlp.datasets.make("xor")
X = X.astype("float32")
spec = {{"network": {{"layers": [{{"units": 16, "activation": "relu"}}, {{"units": 16, "activation": "relu"}},
                                {{"units": 1, "activation": "sigmoid"}}]}},
        "loss": "binary_cross_entropy", "optimizer": {{"name": {opt!r}, "learning_rate": {lr}}},
        "training": {{"epochs": 3000, "batch_size": 4, "seed": 0, "dtype": "float32"}},
        "record": {{"every_epochs": 1}}}}
best = float("inf")
for _ in range(5):
    trainer = mlp.Trainer(spec, X, y, n_classes=2)
    start = time.process_time()
    trainer.fit(on_epoch=lambda record: None)
    best = min(best, time.process_time() - start)
print(best / 3000 * 1e6)
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--opt", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    lr = {"sgd": 0.05, "adam": 0.001}[args.opt]
    paths = [str(Path(p).resolve()) for p in (args.before, args.after)]
    times = {p: [] for p in paths}
    for _ in range(args.rounds):
        for path in paths:
            code = CHILD.format(path=path, opt=args.opt, lr=lr)
            # cwd=/ so that the current folder's mlp does not shadow ``path``.
            out = subprocess.run([sys.executable, "-c", code], cwd="/", check=True,
                                 capture_output=True, text=True).stdout
            times[path].append(float(out))
    for label, path in zip(("before", "after"), paths):
        print(f"{label:6s} {path}: " + ", ".join(f"{t:.1f}" for t in times[path]) + " µs/epoch")


if __name__ == "__main__":
    main()
