"""Batch samplers: random batches of similar-length rows for training, length-sorted batches for evaluation.

Padding every batch to its longest row wastes compute on pad tokens; shuffled SST-2 batches of 32 carry 3x
more tokens than the rows hold. Grouping by length removes most of that while the order of batches stays
random. The order depends only on (seed, epoch), never on the global RNG, so a resumed run sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

# Rows are sorted by length inside windows of this many batches: big enough to find neighbours of similar
# length, small enough that each window is still a random draw from the whole set.
MEGABATCH_BATCHES = 50

# Text batches are padded to a multiple of this many tokens. Each new batch shape costs the CPU kernels a newly
# cached primitive and the allocator blocks it keeps, so with exact lengths peak memory grew with the data
# (SST-2, 2k -> 67k rows: +80%, 44 shapes in 20k rows). Rounded up to 8 there are 10 shapes and it levels off
# from 20k rows on (+18% over 2k), for 23% more padded tokens (figures: README, "Speed on a CPU").
PAD_TO_MULTIPLE_OF = 8


class TrainBatchSampler:
    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0
        self.skip_once = 0

    def set_epoch(self, epoch: int) -> None:
        # Accelerate's DataLoaderShard calls this with its iteration count at every `iter()`.
        self.epoch = epoch

    def skip_next(self, batches: int) -> None:
        """Resume mid-epoch: the next pass leaves out the batches already trained on.

        Skipping here (not by wrapping the DataLoader) keeps the global RNG untouched, so dropout masks after a
        resume are the ones an uninterrupted run draws."""
        self.skip_once = batches

    def batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if not self.group_by_length:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        window = self.batch_size * MEGABATCH_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: -self.lengths[i])
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        # Windows hold whole batches, so only the last batch can be short. It stays last: every process
        # of a multi-process run sees full batches for as long as possible.
        tail = batches[-1:] if len(batches[-1]) < self.batch_size else []
        full = batches[: len(batches) - len(tail)]
        return [full[i] for i in torch.randperm(len(full), generator=generator).tolist()] + tail

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip_once = self.skip_once, 0
        return iter(self.batches()[skip:])

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class EvalBatchSampler:
    """Longest rows first, each batch of similar lengths: least padding, and memory peaks show up at once."""

    def __init__(self, lengths: Sequence[int], batch_size: int):
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(0, len(self.order), self.batch_size):
            yield self.order[i : i + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)
