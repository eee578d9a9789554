"""Search listeners and Lightning callbacks."""

from lightning_nas.callbacks.wandb_logger import WandbSearchLogger, candidate_rows

__all__ = ["WandbSearchLogger", "candidate_rows"]
