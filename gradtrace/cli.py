"""`gradtrace`: the command line of the gradtrace API (typer + rich), on the Python client.

Exit codes (documented in docs/cli.md): 0 ok, 1 the watched job failed or was cancelled
(or another refusal, such as cancelling a finished job), 2 usage error, 3 authentication
error, 4 not found, 5 server unreachable, 6 validation error (details printed).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gradtrace.cli_config import (
    EXIT_INVALID,
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    CliContext,
    describe,
    exit_code_for,
)
from gradtrace.client import ClientError, Dataset, Job
from gradtrace.compare import compare_png, compare_table
from gradtrace.watch import epoch_line, fmt, watch

app = typer.Typer(help="Train MLPs on a gradtrace server and watch their gradients.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
datasets_app = typer.Typer(help="Create, upload, list and delete datasets.",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

BUILTINS = ("xor", "moons", "circles", "spirals", "blobs")
JobId = Annotated[str, typer.Argument(help="job id")]


class UsageProblem(Exception):
    """A problem with the command line or a local file (exit 2, or 6 for bad JSON)."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


@app.callback()
def _configure(ctx: typer.Context,
               url: Annotated[str | None, typer.Option(
                   envvar="GRADTRACE_URL", help="server URL [default: http://127.0.0.1:8000]")] = None,
               token: Annotated[str | None, typer.Option(
                   envvar="GRADTRACE_TOKEN", help="API token [default: .gradtrace/token]")] = None
               ) -> None:
    tty = sys.stdout.isatty()
    # A pipe gets wide, uncoloured output so ids are never wrapped or cut.
    out = Console(width=None if tty else 200, highlight=False)
    ctx.obj = CliContext(url, token, out)
    ctx.call_on_close(ctx.obj.close)


def _ctx(ctx: typer.Context) -> CliContext:
    return ctx.obj


# --- datasets ------------------------------------------------------------------------------

def _print_dataset(cli: CliContext, verb: str, ds: Dataset, quiet: bool) -> None:
    if quiet:
        cli.out.print(ds.id)
        return
    classes = f", {len(ds.classes)} classes" if ds.classes else ""
    cli.out.print(f"{verb} dataset {ds.id} '{ds.name}': {ds.n_samples} samples x "
                  f"{ds.n_features} features, {ds.task}{classes}")


@datasets_app.command("create")
def datasets_create(ctx: typer.Context,
                    builtin: Annotated[str, typer.Option(help=f"one of {', '.join(BUILTINS)}")],
                    name: Annotated[str | None, typer.Option()] = None,
                    n_samples: Annotated[int, typer.Option()] = 200,
                    noise: Annotated[float, typer.Option()] = 0.1,
                    seed: Annotated[int, typer.Option()] = 0,
                    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                                        help="print only the id")] = False):
    """Create a built-in toy dataset (xor, moons, circles, spirals, blobs)."""
    cli = _ctx(ctx)
    ds = cli.client().create_builtin_dataset(builtin, name=name, n_samples=n_samples,
                                             noise=noise, seed=seed)
    _print_dataset(cli, "created", ds, quiet)


@datasets_app.command("upload")
def datasets_upload(ctx: typer.Context,
                    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                         help="a .csv or .npz file")],
                    target: Annotated[str | None, typer.Option(
                        help="the CSV column holding the labels")] = None,
                    name: Annotated[str | None, typer.Option()] = None,
                    task: Annotated[str | None, typer.Option(
                        help="classification or regression (default: inferred)")] = None,
                    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False):
    """Upload a CSV (with --target) or an .npz holding arrays X and y."""
    if file.suffix.lower() != ".npz" and not target:
        raise UsageProblem("a CSV upload needs --target (the label column)")
    cli = _ctx(ctx)
    ds = cli.client().upload_dataset(file, name=name, target=target, task=task)
    _print_dataset(cli, "uploaded", ds, quiet)


@datasets_app.command("list")
def datasets_list(ctx: typer.Context):
    """List your datasets."""
    cli = _ctx(ctx)
    table = Table("id", "name", "samples", "features", "outputs", "task", "source", "created")
    for ds in cli.client().iter_datasets():
        table.add_row(ds.id, ds.name, str(ds.n_samples), str(ds.n_features),
                      str(ds.n_outputs), ds.task, ds.source, ds.created_at or "-")
    cli.out.print(table)


@datasets_app.command("delete")
def datasets_delete(ctx: typer.Context, dataset_id: Annotated[str, typer.Argument()]):
    """Delete a dataset (refused while a job uses it)."""
    cli = _ctx(ctx)
    cli.client().delete_dataset(dataset_id)
    cli.out.print(f"deleted dataset {dataset_id}")


# --- jobs ----------------------------------------------------------------------------------

def _read_spec(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"{path} is not valid JSON: {exc}", EXIT_INVALID) from None
    if not isinstance(spec, dict):
        raise UsageProblem(f"{path} must hold a JSON object (the job spec)", EXIT_INVALID)
    return spec


def _finish_watch(cli: CliContext, job_id: str, interval: float) -> None:
    job = watch(cli.client(), job_id, cli.out, interval=interval)
    if job.status != "succeeded":
        raise typer.Exit(EXIT_JOB_FAILED)


@app.command()
def submit(ctx: typer.Context,
           spec_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                     help="JSON job spec")],
           dataset: Annotated[str | None, typer.Option(
               help="dataset id (default: dataset_id in the spec file)")] = None,
           name: Annotated[str | None, typer.Option()] = None,
           watch_job: Annotated[bool, typer.Option("--watch", "-w",
                                                   help="follow the job live")] = False,
           idempotency_key: Annotated[str | None, typer.Option(
               help="resubmitting with the same key returns the first job")] = None,
           interval: Annotated[float, typer.Option(
               help="seconds between plain progress lines (non-terminal)")] = 1.0,
           quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False):
    """Submit a training job from a JSON spec; --watch follows it to the end."""
    spec = _read_spec(spec_file)
    dataset_id = dataset or spec.get("dataset_id")
    spec.pop("dataset_id", None)
    if not dataset_id:
        raise UsageProblem("which dataset? pass --dataset ID")
    cli = _ctx(ctx)
    job = cli.client().submit(spec, dataset_id, name=name, idempotency_key=idempotency_key)
    cli.out.print(job.id if quiet else f"submitted job {job.id} ({job.status}, "
                                       f"{job.epochs} epochs)")
    if watch_job:
        _finish_watch(cli, job.id, interval)


@app.command("watch")
def watch_command(ctx: typer.Context, job_id: JobId,
                  interval: Annotated[float, typer.Option()] = 1.0):
    """Follow a job live until it finishes (exit 1 if it fails or is cancelled)."""
    _finish_watch(_ctx(ctx), job_id, interval)


def _job_rows(job: Job) -> list[tuple[str, str]]:
    summary = job.summary or {}
    rows = [("id", job.id), ("name", job.name or "-"), ("status", job.status),
            ("progress", f"{job.epoch}/{job.epochs}"), ("dataset", job.dataset_id or "-"),
            ("created", job.created_at or "-"), ("started", job.started_at or "-"),
            ("finished", job.finished_at or "-"), ("attempts", str(job.attempts)),
            ("worker", job.worker or "-")]
    if job.error:
        rows.append(("error", job.error))
    rows += [(key.replace("_", " "), fmt(value) if isinstance(value, float) else str(value))
             for key, value in summary.items()]
    return rows


@app.command()
def status(ctx: typer.Context,
           job_id: Annotated[str | None, typer.Argument(help="one job's details")] = None,
           state: Annotated[str | None, typer.Option(
               "--status", help="only jobs in this state")] = None,
           limit: Annotated[int, typer.Option(min=1)] = 20):
    """A table of your jobs (newest first), or one job in detail."""
    cli = _ctx(ctx)
    client = cli.client()
    if job_id:
        table = Table("field", "value", show_header=False, box=None)
        for key, value in _job_rows(client.get_job(job_id)):
            table.add_row(key, value)
        cli.out.print(table)
        return
    table = Table("id", "name", "status", "epoch", "final loss", "created")
    for index, job in enumerate(client.iter_jobs(status=state, page_size=min(limit, 200))):
        if index >= limit:
            break
        table.add_row(job.id, job.name or "-", job.status, f"{job.epoch}/{job.epochs}",
                      fmt((job.summary or {}).get("final_train_loss")), job.created_at or "-")
    cli.out.print(table)


@app.command()
def logs(ctx: typer.Context, job_id: JobId,
         since_epoch: Annotated[int, typer.Option(min=0)] = 0):
    """The recorded epochs as lines: losses, accuracy and per-layer norms."""
    cli = _ctx(ctx)
    for event in cli.client().metrics(job_id, since_epoch=since_epoch).epoch_events():
        cli.out.print(epoch_line(event), soft_wrap=True)


@app.command()
def metrics(ctx: typer.Context, job_id: JobId,
            csv: Annotated[bool, typer.Option("--csv", help="CSV instead of JSON")] = False,
            since_epoch: Annotated[int, typer.Option(min=0)] = 0,
            max_points: Annotated[int | None, typer.Option(min=2)] = None):
    """The metrics as JSON columns, or --csv with one row per epoch."""
    client = _ctx(ctx).client()
    if csv:
        sys.stdout.write(client.metrics_csv(job_id, since_epoch=since_epoch,
                                            max_points=max_points))
    else:
        m = client.metrics(job_id, since_epoch=since_epoch, max_points=max_points)
        sys.stdout.write(json.dumps(m.__dict__, indent=1) + "\n")


@app.command()
def cancel(ctx: typer.Context, job_id: JobId):
    """Cancel a queued or running job."""
    cli = _ctx(ctx)
    job = cli.client().cancel(job_id)
    cli.out.print(f"job {job.id} {job.status}")


@app.command()
def plot(ctx: typer.Context, job_id: JobId,
         output: Annotated[Path, typer.Option("--output", "-o")] = Path("curves.png"),
         kind: Annotated[str, typer.Option(help="all, loss or gradients")] = "all",
         width: Annotated[int, typer.Option()] = 1000,
         height: Annotated[int, typer.Option()] = 800,
         max_points: Annotated[int, typer.Option(min=2)] = 1000):
    """Save the job's loss curves and per-layer norms as a PNG."""
    cli = _ctx(ctx)
    png = cli.client().plot_png(job_id, kind=kind, width=width, height=height,
                                max_points=max_points)
    output.write_bytes(png)
    cli.out.print(f"wrote {output} ({width}x{height})")


@app.command()
def compare(ctx: typer.Context,
            job_ids: Annotated[list[str], typer.Argument(help="two or more job ids")],
            output: Annotated[Path | None, typer.Option(
                "--output", "-o", help="also save the overlaid loss curves as a PNG")] = None):
    """Final and best losses, accuracy, epochs and time of several jobs, side by side."""
    cli = _ctx(ctx)
    client = cli.client()
    jobs = [client.get_job(job_id) for job_id in job_ids]
    cli.out.print(compare_table(jobs))
    if output is not None:
        series = [client.metrics(job.id, max_points=1000) for job in jobs]
        output.write_bytes(compare_png(jobs, series))
        cli.out.print(f"wrote {output}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: typer exits itself on success and usage errors; client errors become
    one line on stderr and their exit code."""
    try:
        app(args=argv, prog_name="gradtrace")
    except UsageProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ClientError as exc:
        for line in describe(exc):
            print(line, file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("interrupted (a watched job keeps running; `gradtrace cancel ID` stops it)",
              file=sys.stderr)
        return 130
    return 0
