"""Data-parallel training across processes started by ``torchrun`` (gloo on CPUs, NCCL on GPUs).

Each rank draws its batches from its own shard of the slices; after every backward pass the gradients
are averaged over the ranks before the optimiser steps, so all ranks keep identical weights. This is
what ``DistributedDataParallel`` does, done explicitly: a GAN step freezes and unfreezes networks and
runs several backward passes per step, which DDP's bucketed reducer does not allow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def single(cls, device: torch.device) -> "DistributedContext":
        return cls(0, 1, device)

    @classmethod
    def from_environment(cls, device: torch.device) -> "DistributedContext":
        """Join the process group ``torchrun`` describes in the environment (or run alone)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls.single(device)
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world_size, device)

    def wrap(self, nets: nn.Module) -> nn.Module:
        """Make every rank start from rank 0's weights; returns the networks to train."""
        if self.active:
            for tensor in nets.state_dict().values():
                torch_dist.broadcast(tensor, src=0)
        return nets

    def average_gradients(self, optimiser: torch.optim.Optimizer) -> None:
        if not self.active:
            return
        # Every rank reduces the same tensors in the same order (a missing gradient counts as zero),
        # so a term absent on one rank, e.g. no labels in its batch, cannot deadlock the others.
        parameters = [p for group in optimiser.param_groups for p in group["params"] if p.requires_grad]
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        flat = torch.cat([p.grad.reshape(-1) for p in parameters])
        torch_dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for parameter in parameters:
            count = parameter.numel()
            parameter.grad.copy_(flat[offset:offset + count].view_as(parameter.grad))
            offset += count

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any (a collective call: every rank makes it)."""
        if not self.active:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def close(self) -> None:
        if self.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
