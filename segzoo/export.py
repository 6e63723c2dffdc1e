"""``segzoo export CKPT --format onnx``: a checkpoint as an ONNX model, and a runtime for it.

Semantic models are exported with PyTorch's ``torch.export``-based exporter, batch, height
and width dynamic. The graph keeps segzoo's own padding (:mod:`segzoo.models.padding`), so
the ONNX model accepts any height and width of at least ``input_multiple`` pixels and returns
logits of the input's size. What the graph does not hold is recorded in the model's
``metadata_props`` (strings; lists and numbers as JSON): the normalisation (``mean``,
``std``), ``class_names``, ``palette``, ``ignore_index``, ``short_side`` (the scale the model
runs at: :func:`segzoo.inference.inference_short_side`) and the checkpoint's identity.
:class:`OnnxSegmenter` reads them and runs the same pre- and post-processing as ``segzoo predict``.

Input ``image``: float32 ``N x 3 x H x W``, RGB scaled to [0, 1] then ``(x - mean) / std``.
Output ``logits``: float32 ``N x num_classes x H x W``; ``argmax`` over axis 1 gives labels.

Two modules of the zoo need an export-friendly stand-in, computing the same function:
smp's PSPNet pools with ``AdaptiveAvgPool2d`` (bins 2, 3, 6), which the exporter turns into
index tables fixed at the example input's size; here the pooling is a product with
averaging matrices built from the actual size. SegNet's ``MaxUnpool2d`` exports as is.

Mask R-CNN (torchvision backend) goes through the TorchScript-based exporter
(``dynamo=False``), the path torchvision supports: input ``image`` float32 ``1 x 3 x H x W``
in [0, 1] (no normalisation: the model normalises and resizes inside), outputs ``boxes``,
``labels`` (1-based, 0 is background), ``scores`` and ``masks`` (``N x 1 x H x W``
probabilities).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from segzoo.version import __version__

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
INSTANCE_OUTPUTS = ("boxes", "labels", "scores", "masks")
FORMATS = ("onnx",)
ONNX_FILE = "model.onnx"
# Labels of the ONNX model and of PyTorch float32 must agree on this share of the pixels.
MIN_AGREEMENT = 0.999
# The TorchScript exporter's newest well-tested opset for torchvision's detection models.
INSTANCE_OPSET = 17

# The example input the exporter traces with. Its sides are odd, so they divide no model's
# multiple and the traced graph keeps the padding branch; they differ, so height and width
# stay two independent dimensions; the batch of 2 keeps the batch dimension dynamic.
_EXAMPLE_SHAPE = (2, 3, 101, 139)


class ExportError(RuntimeError):
    """A model cannot be exported, or the export does not reproduce PyTorch."""


# ---------------------------------------------------------------------------- export-friendly stand-ins


def _averaging_matrix(size: int | torch.SymInt, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``bins x size``: row ``i`` averages PyTorch's adaptive-pooling window ``i``
    (``floor(i * size / bins)`` to ``ceil((i + 1) * size / bins)``)."""
    i = torch.arange(bins, device=like.device)
    start = (i * size) // bins
    end = ((i + 1) * size + bins - 1) // bins
    j = torch.arange(size, device=like.device)
    inside = ((j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products, exportable with dynamic input sizes."""
    rows = _averaging_matrix(x.shape[-2], out_h, x)
    cols = _averaging_matrix(x.shape[-1], out_w, x)
    return rows @ x @ cols.transpose(0, 1)


class _ExportablePSPBlock(nn.Module):
    """smp's ``PSPBlock`` (pool to ``pool_size``, 1x1 conv, bilinear back), pooling by
    :func:`adaptive_avg_pool2d`. Keeps the block's own conv module and weights."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.pool_size = block.pool_size
        self.conv = block.pool[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        pooled = self.conv(adaptive_avg_pool2d(x, self.pool_size, self.pool_size))
        return F.interpolate(pooled, size=(height, width), mode="bilinear", align_corners=True)


def make_exportable(model: nn.Module) -> nn.Module:
    """Swap, in place, the modules the exporter cannot trace with dynamic sizes for
    equivalents that it can; returns ``model``."""
    from segmentation_models_pytorch.decoders.pspnet.decoder import PSPBlock

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, PSPBlock):
                setattr(module, name, _ExportablePSPBlock(child))
    return model


def input_multiple(model: nn.Module) -> int:
    """The side multiple :class:`~segzoo.models.padding.PadToMultiple` pads to (1 without it)."""
    from segzoo.models.padding import PadToMultiple

    return model.multiple if isinstance(model, PadToMultiple) else 1


def random_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give ``model`` random weights that predict varied labels, in place.

    PyTorch's default initialisation shrinks the signal at every layer; with batch norm's
    default statistics a deep random network then predicts one class everywhere, and a
    parity check on it proves nothing. He-normal convolutions and perturbed batch norms
    keep the activations alive. For benchmarks and tests without a trained checkpoint."""
    generator = torch.Generator().manual_seed(seed)

    def randn(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(randn(module.weight) * math.sqrt(2.0 / fan_in))
                if module.bias is not None:
                    module.bias.copy_(0.1 * randn(module.bias))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.copy_(1 + 0.2 * randn(module.weight))
                module.bias.copy_(0.2 * randn(module.bias))
                if module.running_var is not None:
                    module.running_mean.copy_(0.1 * randn(module.running_mean))
                    module.running_var.copy_(1 + 0.2 * torch.rand(module.running_var.shape, generator=generator))
    return model


# ---------------------------------------------------------------------------- metadata


def export_metadata(config: dict[str, Any], multiple: int = 1, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an exported checkpoint: strings, JSON for lists and numbers."""
    from segzoo.inference import inference_short_side

    task = config.get("task", "semantic")
    fields: dict[str, Any] = {
        "segzoo_version": __version__,
        "model": config["model"],
        "task": task,
        "dataset": config.get("dataset"),
        "num_classes": config["num_classes"],
        "class_names": config["class_names"],
        "palette": config.get("palette"),
        "ignore_index": config.get("ignore_index"),
        "short_side": inference_short_side(config),  # the scale to run at (what segzoo serves)
        **(extra or {}),
    }
    if task == "instance":
        fields["input"] = "image: float32 1x3xHxW RGB in [0, 1]; the model normalises and resizes inside"
        fields["output"] = "boxes Nx4 xyxy, labels N (1-based, 0 = background), scores N, masks Nx1xHxW"
    else:
        fields.update(
            mean=config["mean"],
            std=config["std"],
            input_multiple=multiple,
            input="image: float32 Nx3xHxW RGB, (x / 255 - mean) / std; H and W >= input_multiple",
            output="logits: float32 N x num_classes x H x W; labels = argmax over axis 1",
        )
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items() if v is not None}


def read_metadata(source: str | Path | Any) -> dict[str, Any]:
    """``metadata_props`` of an ONNX file (or an onnxruntime session), JSON values decoded."""
    if hasattr(source, "get_modelmeta"):
        raw = dict(source.get_modelmeta().custom_metadata_map)
    else:
        import onnx

        raw = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value  # plain strings: model name, descriptions
    return decoded


def _name_dimensions(proto: Any, names: dict[int, str]) -> None:
    """Give the input's dynamic axes readable names (``batch``, ``height``, ``width``) in
    place of the exporter's symbols (``s0``, ``s53``), wherever those symbols appear."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    renames = {dims[axis].dim_param: name for axis, name in names.items() if dims[axis].dim_param}
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def _write_metadata(path: Path, metadata: dict[str, str], doc: str, dim_names: dict[int, str] | None = None) -> None:
    import onnx

    from segzoo.checkpoint import atomic_write

    proto = onnx.load(str(path))
    if dim_names:
        _name_dimensions(proto, dim_names)
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = doc
    onnx.checker.check_model(proto)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))


# ---------------------------------------------------------------------------- export


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters' deprecation warnings and their libraries' log chatter (onnx_ir warns
    about every empty attribute) say nothing a user can act on: keep them off the terminal."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    config: dict[str, Any],
    out: str | Path,
    opset: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Export a loaded model (float32, eval mode; modified in place) to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval().cpu()
    if config.get("task") == "instance":
        _export_instance(model, out, opset)
        multiple = 1
    else:
        multiple = input_multiple(model)
        make_exportable(model)
        batch, height, width = (torch.export.Dim.AUTO,) * 3
        try:
            with _quiet_exporter():
                torch.onnx.export(
                    model,
                    (torch.randn(*_EXAMPLE_SHAPE),),
                    str(out),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=({0: batch, 2: height, 3: width},),
                    opset_version=opset,
                    external_data=False,  # one self-contained file: every model here is < 2 GB
                    verbose=False,
                )
        except Exception as exc:  # the exporter raises many types; say which model failed
            raise ExportError(f"{config['model']}: ONNX export failed ({str(exc).strip().splitlines()[0]})") from exc
    doc = f"segzoo {config['model']} ({config.get('dataset', '?')}); see metadata_props for pre-processing"
    dim_names = None if config.get("task") == "instance" else {0: "batch", 2: "height", 3: "width"}
    _write_metadata(out, export_metadata(config, multiple, extra_metadata), doc, dim_names)
    return out


class _InstanceExportWrapper(nn.Module):
    """torchvision's detector on one ``1 x 3 x H x W`` image, outputs as a tuple."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.detector([image[0]])[0]
        return tuple(output[name] for name in INSTANCE_OUTPUTS)


def _export_instance(model: nn.Module, out: Path, opset: int | None) -> None:
    backend = getattr(model, "backend", None)
    if backend != "torchvision":
        raise ExportError(
            f"ONNX export of Mask R-CNN supports the torchvision backend only; this checkpoint uses {backend!r} "
            "(Detectron2 models export with Detectron2's own tools: detectron2.export.TracingAdapter)"
        )
    wrapper = _InstanceExportWrapper(model.detector).eval()
    per_detection = {0: "detections"}
    try:
        with _quiet_exporter():
            # torch.export cannot trace the data-dependent number of boxes after NMS; the
            # TorchScript-based exporter can, and torchvision keeps its detection models
            # traceable for it.
            torch.onnx.export(
                wrapper,
                (torch.rand(1, 3, 96, 128),),
                str(out),
                dynamo=False,
                opset_version=opset or INSTANCE_OPSET,
                input_names=[INPUT_NAME],
                output_names=list(INSTANCE_OUTPUTS),
                dynamic_axes={
                    INPUT_NAME: {2: "height", 3: "width"},
                    "boxes": per_detection,
                    "labels": per_detection,
                    "scores": per_detection,
                    "masks": {0: "detections", 2: "height", 3: "width"},
                },
            )
    except Exception as exc:
        raise ExportError(
            f"{model.__class__.__name__}: ONNX export of Mask R-CNN failed ({str(exc).strip().splitlines()[0]})"
        ) from exc


# ---------------------------------------------------------------------------- runtime


class OnnxSegmenter:
    """An exported semantic model in onnxruntime, with segzoo's pre- and post-processing.

    >>> segmenter = OnnxSegmenter("checkpoints/camvid/unet_resnet34/model.onnx")  # doctest: +SKIP
    >>> labels = segmenter.predict_mask(read_image("photo.jpg"))                  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
        self.metadata = read_metadata(self.session)
        if self.metadata.get("task", "semantic") != "semantic":
            raise ValueError(f"{path}: a {self.metadata.get('task')} model; OnnxSegmenter runs semantic models")
        missing = [k for k in ("mean", "std", "class_names") if k not in self.metadata]
        if missing:
            raise ValueError(f"{path}: no {missing} in the model's metadata_props; export it with `segzoo export`")

    @property
    def config(self) -> dict[str, Any]:
        """The checkpoint config fields the pre- and post-processing need."""
        return self.metadata

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``N x 3 x H x W`` normalised float32 -> ``N x C x H x W`` logits."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def predict_labels(self, x: np.ndarray, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """Arg-max labels ``uint8 HxW`` of the first image, resized (nearest) to ``out_size``:
        the same as :func:`segzoo.inference.predict_labels`."""
        labels = torch.from_numpy(self.logits(x).argmax(axis=1)[0].astype(np.uint8))
        if out_size is not None and tuple(labels.shape) != tuple(out_size):
            labels = F.interpolate(labels[None, None].float(), size=out_size, mode="nearest")[0, 0].to(torch.uint8)
        return labels.numpy()

    def predict_mask(self, image: np.ndarray, max_side: int | None = None) -> np.ndarray:
        """Segment an RGB ``uint8 HxWx3`` image like ``segzoo predict``: shrunk to the scale the
        model runs at (or ``max_side``), labels at the image's size."""
        from segzoo.inference import inference_scale, resize_max_side, to_tensor

        small = resize_max_side(image, max_side or inference_scale(image, self.metadata))
        x = to_tensor(small, self.metadata["mean"], self.metadata["std"]).numpy()
        return self.predict_labels(x, out_size=image.shape[:2])


class OnnxModule(nn.Module):
    """An exported semantic model in onnxruntime, called like the PyTorch model it came from:
    ``module(x)`` takes the normalised ``N x 3 x H x W`` tensor and returns the logits as a
    float32 CPU tensor. The app serves models through it where onnxruntime is the faster
    runtime (:func:`segzoo.devices.resolve_runtime`)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        try:
            self.segmenter = OnnxSegmenter(path, threads=threads)
        except ValueError:
            raise
        except Exception as exc:  # onnxruntime's errors derive from Exception alone
            raise RuntimeError(f"{path}: onnxruntime cannot load it ({exc})") from exc
        self.path = Path(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            logits = self.segmenter.logits(x.detach().float().cpu().numpy())
        except Exception as exc:
            raise RuntimeError(f"{self.path.name}: onnxruntime failed ({exc})") from exc
        return torch.from_numpy(logits)


def runtime_name(model: nn.Module) -> str:
    """``"onnxruntime"`` for an :class:`OnnxModule`, ``"torch"`` for a PyTorch model: what runs it."""
    return "onnxruntime" if isinstance(model, OnnxModule) else "torch"


def onnx_cache_dir() -> Path:
    """Where exports made for serving are kept: ``$SEGZOO_CACHE/onnx`` (default
    ``~/.cache/segzoo/onnx``)."""
    from segzoo.devices import segzoo_cache_dir

    return segzoo_cache_dir() / "onnx"


def onnx_cache_path(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`cached_onnx` keeps the checkpoint's export (which may not exist yet)."""
    from segzoo.checkpoint import WEIGHTS_FILE, file_sha256, load_config

    directory = Path(checkpoint)
    cache_dir = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    return cache_dir / f"{load_config(directory)['model']}-{file_sha256(directory / WEIGHTS_FILE)[:16]}.onnx"


def cached_onnx(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The checkpoint exported to ONNX and verified (:func:`export_checkpoint`), from the cache
    when an export of the same weights is there. Files are named by the model and the
    weights' SHA-256, so a retrained checkpoint gets a new export; an export is written to a
    temporary name and renamed, so a killed export never leaves a file that looks finished."""
    path = onnx_cache_path(checkpoint, cache_dir)
    return path if path.is_file() else write_cached_onnx(checkpoint, path)


def write_cached_onnx(checkpoint: str | Path, path: Path) -> Path:
    """Export and verify the checkpoint into ``path`` (its :func:`onnx_cache_path`), through a
    temporary name: a killed export never leaves a file that looks finished."""
    partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.partial.onnx")
    try:
        export_checkpoint(checkpoint, out=partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels where two label maps agree."""
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    return float((a == b).mean())


@torch.inference_mode()
def verify_semantic(
    model: nn.Module, onnx_path: str | Path, images: Sequence[np.ndarray], config: dict[str, Any]
) -> float:
    """Label agreement of the ONNX model with PyTorch float32 over ``images`` (RGB uint8),
    both at the scale the model runs at; the share of all pixels."""
    from segzoo.inference import inference_scale, predict_mask

    segmenter = OnnxSegmenter(onnx_path)
    model = model.float().eval()
    same = total = 0
    for image in images:
        side = inference_scale(image, config)
        reference = predict_mask(model, image, config, max_side=side)
        labels = segmenter.predict_mask(image, max_side=side)
        same += int((reference == labels).sum())
        total += reference.size
    return same / total


@torch.inference_mode()
def verify_instance(model: nn.Module, onnx_path: str | Path, image: np.ndarray) -> dict[str, Any]:
    """Detections of the ONNX Mask R-CNN against PyTorch's on one RGB uint8 image: the
    counts, the largest score difference and the share of mask pixels that agree."""
    import onnxruntime as ort

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    reference = model.float().eval()([x])[0]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    boxes, labels, scores, masks = session.run(list(INSTANCE_OUTPUTS), {INPUT_NAME: x[None].numpy()})
    same_count = len(scores) == len(reference["scores"])
    report = {"detections": len(scores), "reference_detections": len(reference["scores"]), "same_count": same_count}
    if same_count and len(scores):
        report["max_score_difference"] = float(np.abs(scores - reference["scores"].numpy()).max())
        report["labels_equal"] = bool((labels == reference["labels"].numpy()).all())
        report["mask_agreement"] = label_agreement(masks > 0.5, reference["masks"].numpy() > 0.5)
    return report


def _verification_images(config: dict[str, Any], examples: Path | None) -> list[np.ndarray]:
    """The shipped example frames of the checkpoint's data set, else one synthetic photo whose
    size differs from the traced one (smooth noise: varied labels, any model)."""
    from segzoo.inference import read_image

    if examples is not None and examples.is_dir():
        frames = sorted(p for p in examples.glob(f"{config.get('dataset')}-*") if p.suffix.lower() in (".jpg", ".png")
                        and not p.name.endswith(".mask.png"))  # fmt: skip
        if frames:
            return [read_image(p) for p in frames]
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    import cv2

    return [cv2.resize(coarse, (197, 157), interpolation=cv2.INTER_CUBIC)]


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path | None = None,
    format: str = "onnx",
    opset: int | None = None,
    verify: bool = True,
    examples: str | Path | None = None,
) -> dict[str, Any]:
    """Export a checkpoint directory (or ``hf://`` checkpoint); returns a report of what was
    written and, with ``verify``, the label agreement with PyTorch float32 (an error below
    :data:`MIN_AGREEMENT`). The default ``out`` is ``CKPT/model.onnx`` for a local folder,
    ``./<repo>.onnx`` for a Hub checkpoint (its cache folder is not ours to write)."""
    from segzoo.checkpoint import WEIGHTS_FILE, file_sha256, load
    from segzoo.hub import is_hub_uri, local_name, resolve_checkpoint_dir

    if format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {format!r}")
    directory = resolve_checkpoint_dir(checkpoint)
    if out is None:
        out = Path(f"{local_name(str(checkpoint))}.onnx") if is_hub_uri(checkpoint) else directory / ONNX_FILE
    model, config = load(directory)
    reference = copy.deepcopy(model) if verify else None  # export_onnx swaps modules in place
    identity = {"checkpoint": str(checkpoint), "weights_sha256": file_sha256(directory / WEIGHTS_FILE)}
    start = time.perf_counter()
    path = export_onnx(model, config, out, opset=opset, extra_metadata=identity)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": config["model"],
        "onnx": str(path),
        "megabytes": round(path.stat().st_size / 1e6, 1),
        "export_seconds": round(time.perf_counter() - start, 1),
    }
    if reference is None:
        return report
    root = Path(examples) if examples else Path(__file__).resolve().parents[1] / "examples"
    if config.get("task", "semantic") == "semantic":
        agreement = verify_semantic(reference, path, _verification_images(config, root), config)
        report["label_agreement"] = agreement
        if agreement < MIN_AGREEMENT:
            raise ExportError(
                f"{path}: onnxruntime's labels agree with PyTorch's on only {100 * agreement:.3f}% of the pixels "
                f"(needed {100 * MIN_AGREEMENT:.1f}%); the export is wrong, do not use it"
            )
    else:
        check = verify_instance(reference, path, _verification_images(config, root)[0])
        report["detections"] = check
        masks_agree = check.get("mask_agreement", 1.0) >= MIN_AGREEMENT
        if not (check["same_count"] and check.get("labels_equal", True) and masks_agree):
            raise ExportError(f"{path}: onnxruntime's detections differ from PyTorch's ({check}); do not use it")
    return report


# ---------------------------------------------------------------------------- command line


def run(args: argparse.Namespace) -> int:
    report = export_checkpoint(
        args.checkpoint, out=args.out, format=args.format, opset=args.opset, verify=args.verify, examples=args.examples
    )
    line = f"wrote {report['onnx']} ({report['megabytes']} MB, {report['export_seconds']} s)"
    if "label_agreement" in report:
        line += f"; labels agree with PyTorch float32 on {100 * report['label_agreement']:.3f}% of the pixels"
    if "detections" in report:
        line += f"; {report['detections']['detections']} detections, as PyTorch's"
    print(line)
    return 0


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (dynamic sizes, normalisation and classes in its metadata)",
        description="Export a checkpoint to ONNX: input 'image' N x 3 x H x W (normalised as recorded in the "
        "model's metadata_props: mean, std), output 'logits'; class_names and palette in the metadata too. "
        "The export is checked with onnxruntime against PyTorch float32 on the example frames.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory or hf://user/repo[/subfolder]")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default: onnx)")
    p.add_argument("--out", metavar="FILE", help="output file (default: CKPT/model.onnx; ./<repo>.onnx for hf://)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset version (default: the exporter's, 18+)")
    p.add_argument("--examples", metavar="DIR", help="photos <dataset>-*.jpg to verify on (default: examples/)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the onnxruntime-versus-PyTorch label check")  # fmt: skip
    p.set_defaults(func=run)
