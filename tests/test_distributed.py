"""Two gloo processes with local batch b reproduce one process with batch 2b: ITC/TTC losses and gradients (1e-5),
and the choice of step types agrees across processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from distributed_worker import contrastive_gradients, equal_width_config, global_batches

from cclm_hf import CCLMForPreTraining


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process_with_the_whole_batch(tmp_path):
    output = tmp_path / "distributed.pt"
    worker = Path(__file__).with_name("distributed_worker.py")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    rendezvous = ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    command = [*launcher, *rendezvous, str(worker), str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    distributed = torch.load(output)
    assert bool(distributed.pop("step_types_in_sync"))

    torch.manual_seed(0)
    model = CCLMForPreTraining(equal_width_config()).eval()
    single = contrastive_gradients(model, *global_batches(model.config))
    assert set(single) == set(distributed)
    for key, expected in single.items():
        got = distributed[key]
        if key.endswith("/cclm.temperature"):
            # every process computes the whole loss, so its temperature gradient is the whole gradient; the
            # gathered features only pass back their local slice, so the other gradients add up across processes
            got = got / 2
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4, msg=lambda m, key=key: f"{key}: {m}")
