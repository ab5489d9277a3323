"""What a run shows while it runs: TensorBoard scalars (the learning rate included) and the
resolved config, plots redrawn at every evaluation, and W&B as an optional extra whose run a
resume continues."""

import os
import struct
import sys
import types

import pytest

from purejax import config as config_lib
from purejax import metrics_log, report, tasks
from purejax import trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _events(directory):
    """(scalar tags, text tags) of the TensorBoard event files under `directory`, read record by
    record (TFRecord framing: length, CRC, payload, CRC) with tensorboardX's Event proto."""
    from tensorboardX.proto.event_pb2 import Event

    scalars, texts = set(), set()
    for root, _, files in os.walk(directory):
        for name in files:
            data = open(os.path.join(root, name), "rb").read()
            at = 0
            while at + 12 <= len(data):
                (length,) = struct.unpack("<Q", data[at : at + 8])
                event = Event.FromString(data[at + 12 : at + 12 + length])
                at += 12 + length + 4
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        scalars.add(value.tag)
                    elif value.metadata.plugin_data.plugin_name == "text":
                        texts.add(value.tag)
    return scalars, texts


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    config = config_lib.load(os.path.join(ROOT, "configs", "smoke.py"))
    workdir = tmp_path_factory.mktemp("tracked")
    trainer_lib.Trainer(config, tasks.build_task(config), str(workdir), show_progress=False).run(stop_after=2)
    return config, workdir


def test_tensorboard_holds_the_learning_rate_metrics_and_the_config(smoke_run):
    config, workdir = smoke_run
    assert config.logging.tensorboard  # on by default, the main job included
    scalars, texts = _events(workdir / "tensorboard")
    print(f"\n{len(scalars)} scalar tags: {sorted(scalars)}")
    assert {"train/lr", "train/loss", "train/grad_norm", "train/entropy", "eval/accuracy"} <= scalars
    assert any(tag.startswith("config") for tag in texts)


def test_plots_are_redrawn_at_every_evaluation(smoke_run):
    _, workdir = smoke_run  # stopped at step 2 of 4, an evaluation step: not the end of the run
    assert (workdir / "plots" / "curves.png").stat().st_size > 0


def test_live_plots_draw_off_the_training_thread_and_a_failed_figure_never_stops_the_run(tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    writer = metrics_log.MetricsWriter(str(good), tensorboard=False)
    writer.write(1, {"eval/accuracy": 0.5, "train/entropy": 1.0})
    writer.close()
    os.makedirs(bad / "metrics.jsonl")  # a directory where the file should be: open() fails
    plots = report.LivePlots()
    plots.redraw([str(good), str(bad)])
    plots.close()  # waits for both; the failure is reported, not raised
    assert (good / "plots" / "curves.png").stat().st_size > 10_000
    assert not (bad / "plots").exists()
    assert "curves.png not redrawn" in capsys.readouterr().err


def test_wandb_missing_warns_and_a_resume_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.warns(UserWarning, match=r"pip install 'purejax\[wandb\]'"):
        metrics_log.MetricsWriter(str(tmp_path / "a"), tensorboard=False, wandb_project="p").close()
    calls = []

    class Run:
        def log(self, *a, **k):
            pass

        def finish(self):
            pass

    fake = types.SimpleNamespace(
        init=lambda **kwargs: calls.append(kwargs) or Run(),
        util=types.SimpleNamespace(generate_id=lambda: f"id{len(calls)}"),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    for resume_step in (-1, 3):
        metrics_log.MetricsWriter(
            str(tmp_path / "b"), resume_step=resume_step, tensorboard=False, wandb_project="p", config={"x": 1}
        ).close()
    assert [c["id"] for c in calls] == ["id0", "id0"] and all(c["resume"] == "allow" for c in calls)
