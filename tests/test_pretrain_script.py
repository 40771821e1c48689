"""`examples/pretrain.py` end to end: accelerate launch on generated jsonl data, and exact resumption after SIGKILL."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from accelerate import PartialState
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

from cclm_hf.demo.jsonl_data import write_shapes_jsonl
from cclm_hf.training import CHECKPOINT_COMPLETE_MARKER


REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "pretrain.py"
CONFIG = REPO / "examples" / "configs" / "tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = write_shapes_jsonl(tmp_path_factory.mktemp("data"), num_images=24, num_pairs=48)
    # an unreadable image and a malformed line first: counted and skipped (skip_bad_samples: true in tiny.yaml)
    images = folder / "images.jsonl"
    broken = '{"binary": "bm90IGFuIGltYWdl", "caption": {"en": "a broken image"}}\n{"caption": \n'
    images.write_text(broken + images.read_text())
    return folder


def overrides(data: Path, output_dir: Path, **extra) -> list[str]:
    values = {"data.root": str(data), "output_dir": str(output_dir), "training.report_to": "[]"}
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


def test_accelerate_launch_pretrains_on_generated_jsonl(tiny_data, tmp_path):
    output_dir = tmp_path / "run"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1"]
    launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    settings = overrides(tiny_data, output_dir, **{"training.report_to": "[tensorboard]"})
    command = [*launcher, str(SCRIPT), "--config", str(CONFIG), *settings]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]

    records = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    losses = [record for record in records if "loss" in record]
    assert losses and {"parallel/ttc_loss", "parallel/ttm_loss", "parallel/mlm_loss"} <= set(losses[-1])
    assert any(key.startswith(("image/", "region/")) for key in losses[-1])
    assert "Skipping bad image-caption sample (unreadable_image)" in result.stderr
    assert "Skipping bad image-caption sample (malformed_record)" in result.stderr
    assert (output_dir / "checkpoint-6" / CHECKPOINT_COMPLETE_MARKER).is_file()
    assert list(output_dir.glob("runs/*/events.out.tfevents.*")), "no TensorBoard event file"
    final = output_dir / "final"
    assert type(AutoModel.from_pretrained(final)).__name__ == "CCLMModel"
    assert type(AutoProcessor.from_pretrained(final)).__name__ == "CCLMProcessor"


def run_pretraining(data: Path, output_dir: Path, env: dict[str, str] = ENV, **extra) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), "--config", str(CONFIG), *overrides(data, output_dir, **extra)]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_killed_run_resumes_to_the_same_weights(tiny_data, tmp_path):
    # deterministic data (no random augmentation), checkpoints every 4 of 20 steps: killed after the first one. One
    # thread: with two, CPU reductions are not bit-reproducible from run to run, and AdamW scales the rounding noise
    # of gradient-free parameters (attention key biases) up to ~1e-4, so an uninterrupted run differs from itself.
    settings = {"data.augment": "false", "training.max_steps": 20, "training.save_steps": 4}
    settings["env"] = {**ENV, "OMP_NUM_THREADS": "1"}
    reference = run_pretraining(tiny_data, tmp_path / "reference", **settings)
    _, stderr = reference.communicate(timeout=900)
    assert reference.returncode == 0, stderr[-4000:]

    interrupted_dir = tmp_path / "interrupted"
    interrupted = run_pretraining(tiny_data, interrupted_dir, **settings)
    marker = interrupted_dir / "checkpoint-4" / CHECKPOINT_COMPLETE_MARKER
    deadline = time.monotonic() + 600
    while not marker.exists() and interrupted.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert interrupted.poll() is None, "the run ended before it could be killed"
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert not (interrupted_dir / "final").exists()

    resumed = run_pretraining(tiny_data, interrupted_dir, **settings)
    _, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr[-4000:]
    assert "Resuming from" in stderr and "checkpoint-" in stderr

    expected = load_file(tmp_path / "reference" / "final" / "model.safetensors")
    got = load_file(interrupted_dir / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:  # bit for bit
        torch.testing.assert_close(got[key], expected[key], atol=0, rtol=0, msg=lambda m, key=key: f"{key}: {m}")


def test_torchrun_two_processes(tiny_data, tmp_path):
    output_dir = tmp_path / "ddp"
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    settings = overrides(tiny_data, output_dir, **{"training.max_steps": 4, "training.save_steps": 2})
    command = [*launcher, str(SCRIPT), "--config", str(CONFIG), *settings]
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (output_dir / "checkpoint-4" / CHECKPOINT_COMPLETE_MARKER).is_file()
    assert (output_dir / "final" / "model.safetensors").is_file()
    losses = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    assert any("parallel/ttc_loss" in record for record in losses)


def load_pretrain_module():
    spec = importlib.util.spec_from_file_location("pretrain_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_reads_webdataset_shards(tmp_path, tiny_tokenizer):
    pretrain = load_pretrain_module()
    shapes_data = write_shapes_jsonl(tmp_path / "jsonl", num_images=12, num_pairs=8)
    shard = tmp_path / "images-0000.tar"
    with tarfile.open(shard, "w") as tar:
        for index, line in enumerate((shapes_data / "images.jsonl").read_text().splitlines()):
            record = json.loads(line)
            members = {"png": base64.b64decode(record["binary"]), "json": json.dumps({"caption": record["caption"]})}
            for extension, payload in members.items():
                payload = payload if isinstance(payload, bytes) else payload.encode()
                info = tarfile.TarInfo(f"sample{index:04d}.{extension}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    config = pretrain.load_config(str(CONFIG), [])
    config["data"] = {
        "images": {
            "dataset": {"path": "webdataset", "data_files": [str(shard)], "split": "train", "streaming": True},
            "batch_size": 4,
        },
        "augment": False,
    }
    config["model"]["config"]["text_config"]["vocab_size"] = len(tiny_tokenizer)
    model = pretrain.build_model(config, tiny_tokenizer)
    schedule = pretrain.build_schedule(config, model, tiny_tokenizer, PartialState())
    batches = [next(iter(schedule)) for _ in range(2)]
    assert [batch["step_type"] for batch in batches] == ["image", "image"]
    assert batches[0]["pixel_values"].shape == (4, 3, 64, 64)
    batch = {key: value for key, value in batches[0].items() if key != "step_type"}
    assert torch.isfinite(model(**batch).loss)
