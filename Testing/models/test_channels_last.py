"""The channels-last training rewrites compute what the stock modules compute: outputs and every gradient."""
import copy

import pytest
import torch
from torch import nn

from sasan.models import AttentionModule, Generator, PatchDiscriminator
from sasan.models.channels_last import (
    ChannelsLastAttentionModule,
    ChannelsLastInstanceNorm,
    SplitAttentionNorm,
    softmax_over_channels,
    use_channels_last,
)
from sasan.models.spade import AttentionNorm

CL = torch.channels_last


def outputs_and_gradients(module: nn.Module, inputs: list[torch.Tensor], layout=torch.contiguous_format):
    """The module's output and the gradients of a fixed random projection of it, wrt parameters and inputs."""
    module.zero_grad(set_to_none=True)
    inputs = [x.detach().clone().contiguous(memory_format=layout).requires_grad_() for x in inputs]
    output = module(*inputs)
    output = output[0] if isinstance(output, tuple) else output
    projection = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
    (output * projection).sum().backward()
    gradients = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    gradients.update({f"input{i}": x.grad.clone() for i, x in enumerate(inputs)})
    return output.detach(), gradients


def assert_close_to_reference(reference, fast, rtol=1e-4):
    (y_ref, g_ref), (y_fast, g_fast) = reference, fast
    torch.testing.assert_close(y_fast, y_ref, rtol=rtol, atol=rtol * y_ref.abs().max().item())
    assert g_ref.keys() == g_fast.keys()
    # Relative to the largest gradient of the whole module: biases in front of an instance norm have
    # gradients that are zero up to rounding noise, which no two summation orders share.
    scale = max(g.abs().max().item() for g in g_ref.values())
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=rtol, atol=rtol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_equals_the_stock_one_on_both_layouts(affine):
    torch.manual_seed(0)
    stock = nn.InstanceNorm2d(6, affine=affine)
    if affine:
        with torch.no_grad():
            stock.weight.uniform_(0.5, 1.5)
            stock.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 6, 9, 7) * 3 + 1
    fast = ChannelsLastInstanceNorm.from_module(copy.deepcopy(stock))
    reference = outputs_and_gradients(stock, [x])
    for layout in (torch.contiguous_format, CL):
        result = outputs_and_gradients(fast, [x], layout)
        assert_close_to_reference(reference, result, rtol=1e-5)
        assert result[0].is_contiguous(memory_format=layout)


def test_the_rewrite_keeps_the_same_parameters_and_state_dict_keys():
    norm = AttentionNorm(8, num_maps=3, hidden=5)
    keys, parameters = list(norm.state_dict()), [id(p) for p in norm.parameters()]
    holder = nn.Sequential(norm)
    use_channels_last(holder)
    assert isinstance(holder[0], SplitAttentionNorm) and isinstance(holder[0].norm, ChannelsLastInstanceNorm)
    assert list(holder[0].state_dict()) == keys and [id(p) for p in holder[0].parameters()] == parameters
    assert holder[0].gamma_beta.weight.is_contiguous(memory_format=CL)


def test_split_attention_norm_equals_the_stock_one():
    torch.manual_seed(0)
    stock = AttentionNorm(8, num_maps=3, hidden=5)
    fast = SplitAttentionNorm.from_module(copy.deepcopy(stock))
    x, maps = torch.randn(2, 8, 8, 8), torch.rand(2, 3, 16, 16)
    assert_close_to_reference(outputs_and_gradients(stock, [x, maps]), outputs_and_gradients(fast, [x, maps], CL))


@pytest.mark.parametrize("build, inputs", [
    (lambda: Generator(3, 3, num_maps=4, encoder_widths=(8, 16, 16, 16), decoder_widths=(16, 8, 8), head_width=4,
                       spade_hidden=8), lambda: [torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 4, 32, 32)]),
    (lambda: AttentionModule(3, 4, 3, widths=(8, 16, 32)), lambda: [torch.rand(2, 3, 32, 32) * 2 - 1]),
    (lambda: PatchDiscriminator(3, (8, 16)), lambda: [torch.rand(2, 3, 32, 32) * 2 - 1]),
], ids=["generator", "attention", "discriminator"])
def test_whole_networks_compute_the_same_outputs_and_gradients(build, inputs):
    torch.manual_seed(0)
    stock = build()
    fast = use_channels_last(nn.ModuleList([copy.deepcopy(stock)]))[0]  # rewrites apply below the root
    x = inputs()
    fast_result = outputs_and_gradients(fast, x, CL)
    assert_close_to_reference(outputs_and_gradients(stock, x), fast_result)
    assert fast_result[0].is_contiguous(memory_format=CL)  # the layout survives to the output (maps too)


def test_an_instance_norm_with_running_statistics_is_left_alone():
    norm = nn.InstanceNorm2d(4, track_running_stats=True)
    holder = use_channels_last(nn.Sequential(norm))
    assert holder[0] is norm
    with pytest.raises(ValueError, match="running statistics"):
        ChannelsLastInstanceNorm.from_module(norm)


def test_the_attention_module_is_rewritten_with_its_parameters():
    holder = nn.ModuleList([AttentionModule(3, 4, 3, widths=(8, 16))])
    keys, parameters = list(holder.state_dict()), [id(p) for p in holder.parameters()]
    use_channels_last(holder)
    assert isinstance(holder[0], ChannelsLastAttentionModule)
    assert list(holder.state_dict()) == keys and [id(p) for p in holder.parameters()] == parameters


def test_softmax_over_channels_keeps_the_layout_and_the_values():
    x = torch.randn(2, 5, 6, 7)
    for layout in (torch.contiguous_format, CL):
        y = softmax_over_channels(x.contiguous(memory_format=layout))
        assert y.is_contiguous(memory_format=layout)
        torch.testing.assert_close(y, torch.softmax(x, 1))
