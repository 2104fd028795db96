"""Worker for tests/test_ddp.py, launched as ``torchrun --nproc_per_node=2 tests/_ddp_worker.py OUT``.

Trains the toy task with the generic loop under DDP (gloo on CPU) and writes, per rank, the final parameters
(``rank<r>.safetensors``) and the dataset indices each training step saw (``rank<r>.json``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _toy_task import ToyTask  # noqa: E402

from lgeclip.train import LoopCfg, fit  # noqa: E402
from lgeclip.train.dist import exit_now  # noqa: E402
from lgeclip.utils import atomic_write_json, save_tensors  # noqa: E402

# shared by the worker and the single-process reference run in tests/test_ddp.py
TASK_KW = dict(n_train=64, n_val=16, dropout=0.0, unused=True, record=True)
CFG_KW = dict(epochs=2, batch_size=16, lr=1e-2, weight_decay=0.01, warmup_steps=2, grad_clip=1.0, log_every=1,
              monitor="val_loss", monitor_mode="min", find_unused_parameters=None)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    task = ToyTask(**TASK_KW)
    summary = fit(task, LoopCfg(**CFG_KW), out / "run")
    save_tensors(out / f"rank{rank}.safetensors", task.model.state_dict())
    # the first training_step call is the loop's unused-parameter probe (find_unused_parameters=None)
    atomic_write_json(out / f"rank{rank}.json", {"seen": task.seen[1:], "probe": task.seen[0], "summary": summary,
                                                 "world_size": int(os.environ["WORLD_SIZE"])})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    exit_now(0)  # never destroy_process_group(): it aborts ~25 % of gloo runs here (ENVIRONMENT.md)
