"""Benchmark gradtrace's engine against scikit-learn's MLPClassifier and PyTorch eager.

Same networks, data, batch size, epochs, dtype and thread count for every library, in
one run, so the ratios are comparable even on a noisy machine. Prints the BLAS kernel
(threadpoolctl), numpy's matmul peak measured in the same run, samples/s per library
and the ratios against the targets of issue 2. Needs the ``bench`` extra plus
``torch==2.13.0``. Usage::

    .venv/bin/python bench/engine.py            # full run
    .venv/bin/python bench/engine.py --quick    # a short smoke run
"""
import argparse
import contextlib
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import mlp

CONFIGS = {  # name: (n_in, hidden, n_out, samples, batch, epochs (full, quick))
    "tiny": (2, (16, 16), 1, 4, 4, (3000, 500)),
    "medium": (64, (128, 64), 10, 20000, 64, (3, 1)),
    "wide": (784, (1024, 1024), 10, 20000, 256, (1, 1)),
}
LR = {"sgd": 0.05, "adam": 0.001}
# The clock every run is timed with: wall time (default) or this process's CPU time, which a
# busy machine's other processes disturb far less (meaningful with 1 thread only).
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def blas_kernel():
    """Return a one-line description of the BLAS libraries loaded, numpy's first (threadpoolctl)."""
    infos = sorted((i for i in threadpool_info() if i["user_api"] == "blas"),
                   key=lambda i: "numpy" not in i["filepath"])
    return "; ".join(f"{'numpy' if 'numpy' in i['filepath'] else i['filepath'].split('/')[-1]}: "
                     f"{i['internal_api']} {i.get('version')} kernel={i.get('architecture')} "
                     f"threads={i['num_threads']}" for i in infos)


def matmul_peak(dtype, sizes=(256, 512, 1024, 2048), repeats=5):
    """Return numpy's best matmul rate (FLOP/s) over square sizes, best of ``repeats``."""
    best = 0.0
    rng = np.random.default_rng(0)
    for n in sizes:
        a, b = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
        c = np.empty_like(a)
        np.matmul(a, b, out=c)
        for _ in range(repeats):
            t = clock()
            np.matmul(a, b, out=c)
            best = max(best, 2 * n ** 3 / max(clock() - t, 1e-9))
    return best


def make_data(config, dtype):
    """Return X (n, n_in) and integer labels; XOR for tiny, a random teacher otherwise."""
    n_in, hidden, n_out, n, _, _ = CONFIGS[config]
    if config == "tiny":
        X, y, _ = mlp.datasets.make("xor")
        return X.astype(dtype), y
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, n_in)).astype(dtype)
    y = np.argmax(X @ rng.normal(size=(n_in, n_out)), axis=1)
    return X, y


def gradtrace_run(config, opt, dtype, epochs, X, y, telemetry=True):
    """Train with gradtrace's Trainer (telemetry recorded every epoch); return seconds."""
    _, hidden, n_out, _, batch, _ = CONFIGS[config]
    out = ({"units": 1, "activation": "sigmoid"} if n_out == 1 else {"units": n_out, "activation": "softmax"})
    spec = {"network": {"layers": [{"units": u, "activation": "relu"} for u in hidden] + [out]},
            "loss": "binary_cross_entropy" if n_out == 1 else "cross_entropy",
            "optimizer": {"name": opt, "learning_rate": LR[opt]},
            "training": {"epochs": epochs, "batch_size": batch, "seed": 0, "dtype": dtype},
            "record": {"every_epochs": 1}}
    trainer = mlp.Trainer(spec, X, y, n_classes=max(n_out, 2))
    if not telemetry:
        trainer._telemetry_on = lambda: False  # benchmark-only switch, to measure the overhead
    t = clock()
    trainer.fit(on_epoch=lambda record: None)
    return clock() - t


def torch_run(config, opt, dtype, epochs, X, y, fused=False):
    """Train the same network in PyTorch eager mode; return seconds."""
    import torch
    n_in, hidden, n_out, n, batch, _ = CONFIGS[config]
    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    sizes = (n_in,) + hidden
    layers = []
    for fi, fo in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fi, fo, dtype=tdtype), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], n_out, dtype=tdtype))
    Xt = torch.from_numpy(X)
    if n_out == 1:
        yt, loss_fn = torch.from_numpy(y.reshape(-1, 1).astype(dtype)), torch.nn.BCEWithLogitsLoss()
    else:
        yt, loss_fn = torch.from_numpy(y.astype(np.int64)), torch.nn.CrossEntropyLoss()
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=LR[opt])
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=LR[opt], fused=fused)
    t = clock()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        Xp, yp = Xt[perm], yt[perm]
        for lo in range(0, len(Xt), batch):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xp[lo:lo + batch]), yp[lo:lo + batch])
            loss.backward()
            optimizer.step()
    return clock() - t


def sklearn_run(config, opt, dtype, epochs, X, y):
    """Train scikit-learn's MLPClassifier for exactly ``epochs`` epochs; return seconds."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    _, hidden, _, _, batch, _ = CONFIGS[config]
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", solver=opt, alpha=0.0,
                        batch_size=batch, learning_rate_init=LR[opt], max_iter=epochs, shuffle=True,
                        tol=0.0, n_iter_no_change=epochs + 1, momentum=0.0, nesterovs_momentum=False,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = clock()
        clf.fit(X, y)
        return clock() - t


@contextlib.contextmanager
def threads(n):
    """Limit BLAS (numpy, scikit-learn) and PyTorch to ``n`` threads."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    with threadpool_limits(n):
        yield
    torch.set_num_threads(before)


def best_times(runs, repeats):
    """Return name -> fastest of ``repeats`` runs, interleaving the libraries round by round
    so that a burst of load from elsewhere on a noisy machine hits all of them alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], fn())
    return best


def bench_one(config, opt, dtype, n_threads, quick, repeats):
    """Measure every library on one configuration; return a result row (samples/s per library)."""
    X, y = make_data(config, dtype)
    epochs = CONFIGS[config][5][1 if quick else 0]
    samples = epochs * len(X)
    runs = {"gradtrace": lambda: gradtrace_run(config, opt, dtype, epochs, X, y),
            "sklearn": lambda: sklearn_run(config, opt, dtype, epochs, X, y),
            "torch": lambda: torch_run(config, opt, dtype, epochs, X, y)}
    if opt == "adam":
        runs["torch_fused"] = lambda: torch_run(config, opt, dtype, epochs, X, y, fused=True)
    runs["gradtrace_no_telemetry"] = lambda: gradtrace_run(config, opt, dtype, epochs, X, y, telemetry=False)
    with threads(n_threads):
        peak = matmul_peak(dtype) if config == "wide" else None
        rates = {name: samples / seconds for name, seconds in best_times(runs, repeats).items()}
        if peak:  # measured before and after, best of both, like every other figure
            peak = max(peak, matmul_peak(dtype))
    row = {"config": config, "opt": opt, "dtype": dtype, "threads": n_threads, **rates}
    if peak:
        n_in, hidden, n_out = CONFIGS[config][:3]
        sizes = (n_in,) + hidden + (n_out,)
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        row["peak_gflops"] = peak / 1e9
        row["gradtrace_gflops"] = 6 * weights * rates["gradtrace"] / 1e9
        row["peak_fraction"] = row["gradtrace_gflops"] * 1e9 / peak
    row["telemetry_overhead"] = rates["gradtrace_no_telemetry"] / rates["gradtrace"] - 1
    return row


def format_row(r):
    """Return one table line: samples/s and the ratios the targets are stated in."""
    torch_ref = r["torch"]
    cells = [r["config"], r["opt"], r["dtype"], str(r["threads"]), f"{r['gradtrace']:,.0f}",
             f"{r['torch']:,.0f}", f"{r['torch_fused']:,.0f}" if "torch_fused" in r else "-",
             f"{r['sklearn']:,.0f}", f"{r['gradtrace'] / torch_ref:.2f}",
             f"{r['gradtrace'] / r['torch_fused']:.2f}" if "torch_fused" in r else "-",
             f"{r['gradtrace'] / r['sklearn']:.2f}"]
    cells.append(f"{r['gradtrace_gflops']:.0f}/{r['peak_gflops']:.0f} ({r['peak_fraction']:.0%})"
                 if "peak_fraction" in r else "-")
    cells += [f"{r['telemetry_overhead']:+.1%}", f"{r['gradtrace_no_telemetry'] / torch_ref:.2f}"]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| config | opt | dtype | thr | gradtrace/s | torch/s | torch fused/s | sklearn/s | vs torch "
          "| vs fused | vs sklearn | GFLOP/s / peak | telemetry | vs torch, no telemetry |\n|" + "---|" * 14)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and one repeat")
    parser.add_argument("--configs", default="tiny,medium,wide")
    parser.add_argument("--opts", default="sgd,adam")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="time runs by wall clock or by this process's CPU time (use with --threads 1)")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    import sklearn
    import torch
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"torch {torch.__version__}")
    print(f"BLAS: {blas_kernel()}")
    print(f"clock: {args.clock}; best of {repeats} interleaved repeats")
    print(f"command: {' '.join(sys.argv)}\n")
    print(HEADER)
    for config in args.configs.split(","):
        for opt in args.opts.split(","):
            for dtype in args.dtypes.split(","):
                for n in (int(t) for t in args.threads.split(",")):
                    print(format_row(bench_one(config, opt, dtype, n, args.quick, repeats)), flush=True)


if __name__ == "__main__":
    main()
