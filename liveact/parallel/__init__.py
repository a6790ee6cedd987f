"""Tensor parallelism for the DiT (DeepSpeed is imported only by the distributed paths)."""

from liveact.parallel.tp import DeepSpeedComm, LocalComm, ShardedRMSNorm, check_tp, shard_dit

__all__ = ["DeepSpeedComm", "LocalComm", "ShardedRMSNorm", "check_tp", "shard_dit"]
