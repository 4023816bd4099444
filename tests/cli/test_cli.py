"""The `gradtrace` command, run as a subprocess against a live server and worker."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess

import numpy as np
import pytest

from tests.cli.conftest import GRADTRACE
from tests.client.live_server import EMBEDDED_ONLY
from tests.factories import xor_job

pytestmark = [pytest.mark.integration, EMBEDDED_ONLY]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def finished_jobs(live, xor_id):
    """Two finished jobs with different settings, for status/logs/plot/compare."""
    from gradtrace.client import Client

    with Client(live.url, live.token) as client:
        jobs = [client.submit(xor_job(xor_id, epochs=epochs, seed=seed), xor_id,
                              name=f"run{seed}") for epochs, seed in ((120, 1), (60, 2))]
        return [client.wait(job.id, timeout=120).id for job in jobs]


def test_datasets_create_upload_list_and_delete(cli, tmp_path):
    made = cli("datasets", "create", "--builtin", "moons", "--n-samples", "80", "--noise",
               "0.2", "--seed", "4", "--name", "my moons")
    assert made.code == 0, made.err
    assert re.search(rf"created dataset {UUID} 'my moons': 80 samples x 2 features, "
                     r"classification, 2 classes", made.out)
    quiet = cli("datasets", "create", "--builtin", "circles", "-q")
    assert re.fullmatch(UUID + r"\n", quiet.out)
    (tmp_path / "data.csv").write_text("x1,x2,label\n0,0,a\n0,1,b\n1,0,b\n1,1,a\n")
    up = cli("datasets", "upload", "data.csv", "--target", "label")
    assert up.code == 0 and "uploaded dataset" in up.out and "'data'" in up.out, up.err
    buf = io.BytesIO()
    np.savez(buf, X=np.eye(4), y=np.array([0.0, 1.0, 2.0, 3.0]))
    (tmp_path / "reg.npz").write_bytes(buf.getvalue())
    npz = cli("datasets", "upload", "reg.npz", "--task", "regression", "-q")
    assert npz.code == 0, npz.err
    listing = cli("datasets", "list")
    assert listing.code == 0 and "my moons" in listing.out and npz.out.strip() in listing.out
    gone = cli("datasets", "delete", npz.out.strip())
    assert gone.code == 0 and npz.out.strip() not in cli("datasets", "list").out


def test_submit_watch_prints_plain_progress_and_exits_0(cli, spec_file, xor_id):
    run = cli("submit", str(spec_file(epochs=400)), "--dataset", xor_id, "--name", "watched",
              "--watch", "--interval", "0")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert re.fullmatch(rf"submitted job {UUID} \(queued, 400 epochs\)", lines[0])
    assert re.fullmatch(r"status (queued|running) \(epoch \d+/400\)", lines[1])
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert epochs[-1].startswith("epoch 400/400  loss ")
    assert re.search(r"\| grad L1=\d\.\d\de[-+]\d\d L2=\S+  \| delta L1=\S+ L2=\S+", epochs[-1])
    assert any("| eta " in line for line in epochs)
    assert re.fullmatch(rf"job {UUID} succeeded at epoch 400/400: final train loss \S+, "
                        r"train accuracy 1\.000, \S+ s", lines[-1])


def test_watch_of_a_cancelled_job_exits_1(cli, live, xor_id, tmp_path):
    job_id = live.queued_job(xor_id)
    env = {"GRADTRACE_URL": live.url, "GRADTRACE_TOKEN": live.token, "PATH": "/usr/bin:/bin"}
    watcher = subprocess.Popen([str(GRADTRACE), "watch", job_id], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().startswith("status queued (epoch 0/300)")
    cancelled = cli("cancel", job_id)
    assert cancelled.code == 0 and cancelled.out.strip() == f"job {job_id} cancelled"
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 1, err
    assert f"job {job_id} cancelled at epoch 0/300" in out


def test_status_table_and_detail(cli, finished_jobs):
    table = cli("status")
    assert table.code == 0 and all(job_id in table.out for job_id in finished_jobs)
    assert "succeeded" in table.out and "120/120" in table.out
    detail = cli("status", finished_jobs[0])
    assert detail.code == 0
    assert re.search(r"status\s+succeeded", detail.out) and re.search(r"progress\s+120/120",
                                                                      detail.out)
    assert "final train accuracy" in detail.out
    only = cli("status", "--status", "failed")
    assert finished_jobs[0] not in only.out


def test_logs_and_metrics(cli, finished_jobs):
    logs = cli("logs", finished_jobs[1])
    lines = logs.out.splitlines()
    assert logs.code == 0 and len(lines) == 60
    assert lines[0].startswith("epoch 1  loss ") and "| grad L1=" in lines[0]
    tail = cli("logs", finished_jobs[1], "--since-epoch", "58")
    assert [line.split()[1] for line in tail.out.splitlines()] == ["59", "60"]
    as_json = json.loads(cli("metrics", finished_jobs[1]).out)
    assert as_json["epoch"] == list(range(1, 61)) and len(as_json["layers"]) == 2
    rows = list(csv.reader(io.StringIO(cli("metrics", finished_jobs[1], "--csv",
                                           "--max-points", "10").out)))
    assert rows[0][:2] == ["epoch", "train_loss"] and 2 <= len(rows) - 1 <= 10


def test_plot_and_compare_write_pngs(cli, finished_jobs, tmp_path):
    plot = cli("plot", finished_jobs[0], "-o", "curves.png", "--width", "640", "--height",
               "480")
    assert plot.code == 0 and plot.out.strip() == "wrote curves.png (640x480)", plot.err
    data = (tmp_path / "curves.png").read_bytes()
    assert data.startswith(b"\x89PNG") and data[16:24] == bytes.fromhex("00000280000001e0")
    compared = cli("compare", *finished_jobs, "-o", "compare.png")
    assert compared.code == 0, compared.err
    for needle in (*finished_jobs, "final train loss", "best train loss", "120/120", "60/60",
                   "training time (s)"):
        assert needle in compared.out
    assert (tmp_path / "compare.png").read_bytes().startswith(b"\x89PNG")


def test_token_from_dot_gradtrace_file(cli, live, tmp_path):
    (tmp_path / ".gradtrace").mkdir()
    (tmp_path / ".gradtrace" / "token").write_text(live.token + "\n")
    run = cli("datasets", "list", env={"GRADTRACE_TOKEN": None})
    assert run.code == 0, run.err


@pytest.mark.parametrize("args, env, code, message", [
    (["status"], {"GRADTRACE_URL": "http://127.0.0.1:9"}, 5, "server unreachable"),
    (["status"], {"GRADTRACE_TOKEN": "wrong"}, 3, "authentication failed"),
    (["status"], {"GRADTRACE_TOKEN": None}, 3, "no API token"),
    (["status", "00000000-0000-0000-0000-000000000000"], {}, 4, "does not exist"),
    (["cancel", "nope"], {}, 4, "does not exist"),
    (["frobnicate"], {}, 2, "No such command"),
    (["submit", "missing.json", "--dataset", "x"], {}, 2, "does not exist"),
    (["datasets", "upload", "data.csv"], {}, 2, "needs --target"),
    (["datasets", "create", "--builtin", "nope"], {}, 6, "builtin"),
])
def test_error_paths_exit_codes(cli, tmp_path, args, env, code, message):
    (tmp_path / "data.csv").write_text("a,label\n1,0\n")
    run = cli(*args, env=env)
    assert run.code == code, (run.out, run.err)
    assert message in run.err
    assert "Traceback" not in run.err


def test_invalid_spec_prints_details_and_exits_6(cli, spec_file, xor_id, tmp_path):
    path = spec_file()
    body = json.loads(path.read_text())
    body["network"]["layers"][0]["activation"] = "sigmoidd"
    path.write_text(json.dumps(body))
    run = cli("submit", str(path), "--dataset", xor_id)
    assert run.code == 6
    assert run.err.startswith("error: invalid job spec (422 invalid)")
    assert "  network.layers[0].activation: " in run.err
    (tmp_path / "broken.json").write_text("{not json")
    broken = cli("submit", "broken.json", "--dataset", xor_id)
    assert broken.code == 6 and "is not valid JSON" in broken.err


def test_cancel_of_a_finished_job_exits_1(cli, finished_jobs):
    run = cli("cancel", finished_jobs[0])
    assert run.code == 1 and "409 conflict" in run.err


def test_submit_idempotency_key_and_quiet(cli, spec_file, xor_id):
    path = str(spec_file(epochs=5))
    first = cli("submit", path, "--dataset", xor_id, "--idempotency-key", "k1", "-q")
    again = cli("submit", path, "--dataset", xor_id, "--idempotency-key", "k1", "-q")
    assert first.code == again.code == 0 and first.out == again.out
    assert re.fullmatch(UUID + r"\n", first.out)


def test_watch_on_a_terminal_draws_the_live_bar_and_layer_table(live, xor_id, tmp_path):
    import os
    import pty

    from gradtrace.client import Client

    with Client(live.url, live.token) as client:
        job = client.submit(xor_job(xor_id, epochs=600, seed=5), xor_id, name="tty")
    master, slave = pty.openpty()
    env = {"GRADTRACE_URL": live.url, "GRADTRACE_TOKEN": live.token, "PATH": "/usr/bin:/bin",
           "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([str(GRADTRACE), "watch", job.id], cwd=tmp_path, env=env,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(60) == 0
    os.close(master)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # drawn with terminal control sequences, not plain lines
    assert "600/600" in text and "‖∂L/∂W‖" in text and "‖δ‖" in text
    assert any(ch in text for ch in "▁▂▃▄▅▆▇█")
    assert f"job {job.id} succeeded at epoch 600/600" in text
