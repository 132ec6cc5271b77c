"""benchmarks/training.py counts what it claims: FLOPs of a hand-computable convolution, and equal work on both paths."""
import pytest
import torch
from torch import nn

from benchmarks.training import PASSES_PER_STEP, Worker, count_flops, paper_config


def test_flops_of_a_convolution_forward_and_backward():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    forward = 2 * 2 * 6 * 8 * 8 * 4 * 3 * 3   # 2 x batch x out channels x output pixels x (in channels x k x k)
    assert count_flops(lambda: conv(x)) == forward
    # backward: the weight gradient costs one forward; the input gradient another, when the input needs one
    assert count_flops(lambda: conv(x).sum().backward()) == 2 * forward
    x.requires_grad_()
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


@pytest.mark.slow
def test_the_fast_path_does_the_same_counted_work_per_step(tmp_path):
    """Paper widths at 32²: stacking passes changes how the work is batched, not how much there is."""
    counted = {}
    for fast in (False, True):
        worker = Worker(paper_config(fast, "fp32", 1, image_size=32), tmp_path / str(fast))
        assert worker.step()["wall"] > 0
        passes = worker.passes(repeats=1)
        assert set(passes) == set(PASSES_PER_STEP) and all(p["flops"] > 0 for p in passes.values())
        counted[fast] = worker.flops()["step"]
    # The one difference: a stacked pass back-propagates zeros through the segmentation head for the identity
    # half, whose logits no loss uses (a 1x1 convolution of the maps: 4 x 2 x 2 x 8 x 5 x 32² FLOPs).
    assert counted[True] - counted[False] == 4 * 2 * 2 * 8 * 5 * 32 * 32
