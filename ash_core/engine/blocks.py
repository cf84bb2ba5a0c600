"""Row blocks: how an evaluation goes through a split without holding it whole.

A split is shaped, run through the head and scored ``BLOCK_VALUES`` values at a time
(``Shaper.blocks`` shapes the blocks with the numbers of one whole call); the pieces that
know nothing of bundles or methods live here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from ash_core.errors import FeatureError

#: Feature values shaped, run through the head and scored at a time (8 MB of float32):
#: 1024 rows at D = 2048 (~30 MB of temporaries per thread while shaping), a whole demo
#: split at D = 64 (no per-block overhead where memory is no concern). At ImageNet shapes
#: blocks of 4096 rows were no faster and an exact evaluation with two split threads
#: peaked ~450 MB above its start, against ~100 MB with 1024 rows.
BLOCK_VALUES = 2**21


def block_rows(width: int) -> int:
    """Rows per block for rows of ``width`` values (``BLOCK_VALUES``, at least one row)."""
    return max(1, BLOCK_VALUES // max(1, width))


def row_blocks(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """``x`` in successive blocks of ``block_rows`` rows (views, no copies)."""
    rows = block_rows(math.prod(x.shape[1:]))
    return (x[i:i + rows] for i in range(0, x.shape[0], rows))


def head_blocks(blocks: Iterable[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor
                ) -> Iterator[torch.Tensor]:
    """The linear head on each block of features."""
    for x in blocks:
        yield torch.addmm(bias, x, weight.T)


def gather_rows(blocks: Iterable[torch.Tensor], rows: int, cols: int,
                device: torch.device) -> torch.Tensor:
    """Row blocks written into one [rows, cols] tensor (no second copy, unlike ``cat``)."""
    out = torch.empty(rows, cols, device=device)
    at = 0
    for block in blocks:
        out[at:at + block.shape[0]] = block
        at += block.shape[0]
    if at != rows:
        raise FeatureError(f"expected {rows} rows of logits, got {at}; the split changed "
                           "while it was read (reload the bundle).")
    return out



def score_blocks(blocks: Iterable[torch.Tensor],
                 score_fn: Callable[[torch.Tensor], torch.Tensor]
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """(top-1 predictions, scores) over logit blocks, on the CPU (scores on logits are
    per row, so block by block they are the same numbers)."""
    preds, scores = [], []
    for logits in blocks:
        preds.append(logits.argmax(dim=1).cpu())
        scores.append(score_fn(logits).cpu().numpy())
    return torch.cat(preds), np.concatenate(scores)
