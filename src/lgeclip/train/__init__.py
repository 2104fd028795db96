"""lgeclip.train layer (see docs/ARCHITECTURE.md §10): the generic loop, the Task protocol, checkpoints."""

from lgeclip.train.checkpoint import load_model_weights
from lgeclip.train.loop import LoopCfg, fit
from lgeclip.train.task import Task, to_device, unwrap_model

__all__ = ["LoopCfg", "Task", "fit", "load_model_weights", "to_device", "unwrap_model"]
