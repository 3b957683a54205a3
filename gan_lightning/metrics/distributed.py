"""Splitting an evaluation across processes and putting the pieces back together in order.

Every rank draws the same N latents from the same seed, works on its own contiguous slice (N / world_size
samples), and all ranks all-gather the results back into the original order. Each rank then computes the
same score from the same full feature set, so the score equals the single-process one and no rank-0-only code
ever calls a collective. Works with any initialised ``torch.distributed`` group (Lightning's ``ddp``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def shard(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """The contiguous slice of ``range(n)`` this rank handles (the first ranks get one more when n % world != 0)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return slice(start, start + base + (1 if rank_ < extra else 0))


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_shards(local: Tensor, n: int) -> Tensor:
    """Concatenate every rank's ``shard(n)`` part of a tensor, in rank order (the original sample order)."""
    if not is_distributed():
        return local
    world = world_size()
    longest = shard(n, 0, world).stop - shard(n, 0, world).start
    device = _comm_device()
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = [p[: shard(n, r, world).stop - shard(n, r, world).start] for r, p in enumerate(parts)]
    return torch.cat(out).to(local.device)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value on every rank (a collective: call it on all ranks)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step every rank holds the
    statistics of its own last batch; an eval-mode generator would then produce different samples on each rank.
    """
    if not is_distributed():
        return
    device = _comm_device()
    for buffer in module.buffers():
        synced = buffer.detach().to(device)
        dist.broadcast(synced, src=0)
        buffer.data.copy_(synced.to(buffer.device))
