from __future__ import annotations

import socket
import time

import pytest
import torch
import torch.nn as nn

import segzoo
from segzoo.models.padding import PadToMultiple, pad_to_multiple
from segzoo.models.segnet import SegNet
from segzoo.registry import count_parameters

SEMANTIC = segzoo.model_names(task="semantic")
EXPECTED = {
    "unet",
    "unet_vgg16",
    "unet_resnet34",
    "unet_resnet50",
    "unet_efficientnet_b0",
    "segnet",
    "fcn8s",
    "pspnet_resnet50",
    "deeplabv3plus_resnet50",
}


def test_registry_lists_every_required_model() -> None:
    rows = segzoo.list_models()
    assert EXPECTED <= {r["name"] for r in rows}
    for r in rows:
        assert r["family"] and r["description"] and r["paper"] and r["params"] > 0
    # The Compare tab's classics-against-encoder-models map groups by this flag.
    assert {r["name"] for r in rows if r["classic"]} == {"unet", "unet_vgg16", "segnet", "fcn8s"}


def test_unknown_model_error_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'unet_resnet9'.*segnet"):
        segzoo.create_model("unet_resnet9", num_classes=3)


@pytest.mark.parametrize("name", SEMANTIC)
def test_odd_input_forward_backward_and_params(name: str) -> None:
    model = segzoo.create_model(name, num_classes=12)
    assert count_parameters(model) == segzoo.get_spec(name).params
    x = torch.randn(2, 3, 97, 131)
    logits = model(x)
    assert logits.shape == (2, 12, 97, 131)
    logits.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("num_classes,in_channels", [(2, 1), (21, 4)])
def test_class_and_channel_counts(num_classes: int, in_channels: int) -> None:
    model = segzoo.create_model("unet", num_classes, in_channels=in_channels, base_channels=8)
    assert model(torch.randn(2, in_channels, 33, 40)).shape == (2, num_classes, 33, 40)


def test_pad_to_multiple_crops_back_exactly() -> None:
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == (8, 8) and size == (5, 7)
    assert torch.equal(padded[..., :5, :7], x)
    # Identity net: the wrapper must hand back the input unchanged.
    assert torch.equal(PadToMultiple(nn.Identity(), 32)(x), x)
    # Inputs smaller than the pad fall back from reflect to replicate padding.
    assert pad_to_multiple(torch.randn(1, 1, 2, 2), 32)[0].shape[-2:] == (32, 32)


def test_pspnet_output_stride_16_shares_the_weights_on_coarser_features() -> None:
    paper = segzoo.create_model("pspnet_resnet50", num_classes=5)
    coarse = segzoo.create_model("pspnet_resnet50", num_classes=5, output_stride=16)
    # The same parameters, so a checkpoint loads at either stride.
    coarse.load_state_dict(paper.state_dict())
    x = torch.randn(1, 3, 65, 97)
    strides = []
    for model in (paper, coarse):
        padded, _ = pad_to_multiple(x, model.multiple)
        features = model.eval().net.encoder(padded)
        strides.append(padded.shape[-2] // features[-1].shape[-2])
        assert model(x).shape == (1, 5, 65, 97)
    assert strides == [8, 16]
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        segzoo.create_model("pspnet_resnet50", num_classes=5, output_stride=32)


def test_segnet_decoder_has_no_other_upsampling() -> None:
    net = SegNet(num_classes=5)
    kinds = {type(m) for m in net.modules()}
    assert nn.ConvTranspose2d not in kinds and nn.Upsample not in kinds
    assert sum(isinstance(m, nn.MaxUnpool2d) for m in net.modules()) == 5
    assert all(p.return_indices for p in net.pools)


def test_segnet_width_scales_every_stage_and_is_checked() -> None:
    narrow = segzoo.create_model("segnet", num_classes=3, base_channels=32)
    convs = [m for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs[:13]] == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256]
    assert convs[-1].out_channels == 3 and narrow(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    # A quarter of the parameters, as the conv widths halve.
    assert count_parameters(narrow) < 0.3 * count_parameters(segzoo.create_model("segnet", num_classes=3))
    with pytest.raises(ValueError, match="multiple of 8"):
        segzoo.create_model("segnet", num_classes=3, base_channels=12)
    with pytest.raises(ValueError, match="base_channels 64"):
        segzoo.create_model("segnet", num_classes=3, base_channels=32, encoder_weights="imagenet")


def test_segnet_unpools_to_the_encoder_argmax_positions() -> None:
    """Each decoder stage puts its input values exactly where the matching encoder
    pool found its maxima, and zeros everywhere else."""
    net = SegNet(num_classes=5).eval()
    pool_indices: list[torch.Tensor] = []
    checked = []
    for pool in net.pools:
        pool.register_forward_hook(lambda m, i, out: pool_indices.append(out[1]))

    def check(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        values, indices = inputs[0], inputs[1]
        assert torch.equal(indices, pool_indices[len(pool_indices) - 1 - len(checked)])
        flat = output.flatten(2)
        assert torch.equal(flat.gather(2, indices.flatten(2)), values.flatten(2))
        mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(2, indices.flatten(2), True)
        assert (flat[~mask] == 0).all()
        checked.append(True)

    for unpool in net.unpools:
        unpool.register_forward_hook(check)
    with torch.no_grad():
        net(torch.randn(1, 3, 64, 96))
    assert len(checked) == 5


def test_segnet_output_depends_on_pooling_indices() -> None:
    """Shifting the recorded indices must change the output: the decoder uses them."""
    torch.manual_seed(0)
    # Training mode: batch statistics keep activations at unit scale through 26 random
    # convolutions, so a change in the indices shows in the output.
    net = SegNet(num_classes=5).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = net(x)
        for pool in net.pools:
            # Point every index at the neighbouring column of its 2x2 window.
            pool.register_forward_hook(lambda m, i, out: (out[0], out[1] ^ 1))
        shifted = net(x)
    assert (reference - shifted).abs().mean() > 0.1 * reference.std()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["unet_resnet34", "fcn8s"])
def test_pretrained_weights_fail_fast_offline(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="encoder_weights=None"):
        segzoo.create_model(name, num_classes=3, encoder_weights="imagenet")
    assert time.monotonic() - start < 10


def test_hf_offline_flag_fails_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        segzoo.create_model("deeplabv3plus_resnet50", num_classes=3, encoder_weights="imagenet")


def test_scratch_unet_rejects_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="from scratch"):
        segzoo.create_model("unet", num_classes=3, encoder_weights="imagenet")
