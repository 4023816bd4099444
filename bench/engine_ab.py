"""Time XOR epochs of two copies of the engine alternately, in fresh processes.

For a change to the engine's per-epoch cost, measured against the engine before it on
the same machine in the same minutes (a noisy machine's speed drifts by 10 % and more)::

    mkdir -p /tmp/before && git archive HEAD mlp | tar -x -C /tmp/before
    python bench/engine_ab.py /tmp/before . --opt sgd --rounds 3

Each round runs each engine once on bench/engine.py's tiny configuration (2-16-16-1
relu, sigmoid + binary cross-entropy on XOR, float32, 3000 epochs recorded every epoch,
trained by its ``gradtrace_run``), best of 5 fits by process CPU time; it prints µs per
epoch. ``path`` is a folder holding an ``mlp`` package.
"""
import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# The engine under ``path`` comes first on sys.path, so bench/engine.py's ``import mlp``
# (and its tiny configuration, data and spec) trains with it.
CHILD = """
import sys, time
sys.path[:0] = [{path!r}, {bench!r}]
import engine
assert engine.mlp.__file__.startswith({path!r}), engine.mlp.__file__
engine.clock = time.process_time
epochs = engine.CONFIGS["tiny"][5][0]
X, y = engine.make_data("tiny", "float32")
best = min(engine.gradtrace_run("tiny", {opt!r}, "float32", epochs, X, y) for _ in range(5))
print(best / epochs * 1e6)
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--opt", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    paths = [str(Path(p).resolve()) for p in (args.before, args.after)]
    times = {p: [] for p in paths}
    for _ in range(args.rounds):
        for path in paths:
            code = CHILD.format(path=path, bench=str(BENCH), opt=args.opt)
            # cwd=/ so that the current folder's mlp does not shadow ``path``.
            out = subprocess.run([sys.executable, "-c", code], cwd="/", check=True,
                                 capture_output=True, text=True).stdout
            times[path].append(float(out))
    for label, path in zip(("before", "after"), paths):
        print(f"{label:6s} {path}: " + ", ".join(f"{t:.1f}" for t in times[path]) + " µs/epoch")


if __name__ == "__main__":
    main()
