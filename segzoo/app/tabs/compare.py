"""The Compare tab: run the chosen models on one photo and show their results side by side.

The work is in :mod:`segzoo.app.compare`; here are the page's components and
:class:`CompareHandlers`, whose methods are the tab's event handlers.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from segzoo.app.catalog import Catalog, LabelSet
from segzoo.app.compare import (
    GROUP_DISAGREEMENT_COLOUR,
    TABLE_COLUMNS,
    Comparison,
    GroupDisagreement,
    ModelOutput,
    compare_models,
    read_ground_truth,
)
from segzoo.app.context import PRIVATE_EVENT, AppContext, dataset_choices, model_choices
from segzoo.app.figures import class_iou_heatmap
from segzoo.app.store import COMPARISON_TTL_SECONDS, ComparisonStore
from segzoo.inference import read_photo

log = logging.getLogger(__name__)

EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MASK_SUFFIX = ".mask.png"  # examples/<dataset>-<name>.mask.png: ground truth of <dataset>-<name>.*


def user_error(message: str, title: str) -> gr.Error:
    """An expected problem with what the user sent (unreadable, too large, wrong mask):
    shown to them, logged as one line; a traceback would only bury real faults."""
    log.warning("%s: %s", title, message)
    return gr.Error(message, title=title, print_exception=False)


def photo_input(**kwargs: Any) -> gr.Image:
    """A filepath ``gr.Image`` whose unreadable uploads give a readable message, not a bare "Error".

    ``image_mode=None``: Gradio hands over the uploaded file untouched. With a mode set it
    re-encodes every upload not already in that mode, and its ``convert("RGB")`` clips a
    16-bit photo to pure white; :func:`segzoo.inference.read_photo` decodes the original
    instead (EXIF orientation, 16-bit, float, animations). Gradio opens an upload with PIL
    before our function runs; a junk file fails there. The wrapper is set on the instance:
    a subclass would make Gradio write a ``.pyi`` stub next to this module at import time.
    """
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = component.preprocess

    def readable_preprocess(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception as exc:  # PIL raises several types for junk uploads
            name = getattr(payload, "orig_name", None) or "the upload"
            raise user_error(f"{name}: not a readable image ({exc})", "Unreadable file") from None

    component.preprocess = readable_preprocess  # type: ignore[method-assign]
    return component


def model_checkboxes(**kwargs: Any) -> gr.CheckboxGroup:
    """The Models checkboxes, whose choices follow the chosen data set in the browser.

    An API client sends a data set and its models in one ``/compare`` call and never
    changes the choices, which stay the first data set's: Gradio's own check would refuse
    every other data set's models. The Compare handler checks them against the data set
    instead, and names its trained models when one is not. Set on the instance, as in
    :func:`photo_input`."""
    component = gr.CheckboxGroup(**kwargs)

    def any_model_names(payload: Any) -> list[str]:
        payload = [] if payload is None else payload
        if not isinstance(payload, list) or not all(isinstance(name, str) for name in payload):
            raise user_error(f"models must be a list of model names, got {payload!r}", "Bad request")
        return payload

    def api_info() -> dict[str, Any]:  # not an enum of the first data set's models
        return {"items": {"type": "string"}, "title": "Model folders of the data set", "type": "array"}

    component.preprocess = any_model_names  # type: ignore[method-assign]
    component.api_info = api_info  # type: ignore[method-assign]
    return component


def legend_html(label_set: LabelSet | None) -> str:
    if label_set is None:
        return ""
    items = "".join(
        f'<span><span class="swatch" style="background: rgb{tuple(colour)}"></span>{html.escape(name)}</span>'
        for name, colour in zip(label_set.class_names, label_set.palette, strict=False)
    )
    return f'<div class="legend" aria-label="class colours">{items}</div>'


def untrained_note(catalog: Catalog, dataset: str | None) -> str:
    if not dataset:
        return ""
    missing = catalog.untrained(dataset)
    if not missing:
        return ""
    return (
        f"Not trained on {dataset} yet (so not offered): {', '.join(missing)}. "
        f"Train one with `segzoo train --model NAME --dataset ...`."
    )


def no_checkpoints_note(context: AppContext) -> str:
    note = (
        f"**No trained model found in `{context.checkpoints}`.** Train one "
        "(`segzoo train --model unet_resnet34 --dataset camvid --data-root DIR`) or start the app with "
        "`--checkpoints DIR` pointing at a folder of checkpoints (`DIR/<dataset>/<model>/`)."
    )
    if context.catalog.problems:
        note += "\n\nSkipped:\n" + "\n".join(f"- {p}" for p in context.catalog.problems[:10])
    return note


def find_examples(examples_dir: Path | None, catalog: Catalog) -> list[list[Any]]:
    """``[photo, data set, ground truth or None]`` rows for ``examples/<dataset>-<name>.<ext>``.

    Photos whose data set has trained models come with it (and their ground truth); only when
    no photo matches any trained data set are they all offered, with the first data set.
    """
    if examples_dir is None or not examples_dir.is_dir():
        return []
    datasets = catalog.datasets
    matched, unmatched = [], []
    for photo in sorted(examples_dir.iterdir()):
        if photo.name.endswith(MASK_SUFFIX) or photo.suffix.lower() not in EXAMPLE_SUFFIXES:
            continue
        hint = photo.name.split("-", 1)[0]
        matches = [d for d in datasets if d == hint] or [d for d in datasets if d.startswith(hint)]
        if matches:
            mask = photo.with_name(photo.stem + MASK_SUFFIX)
            matched.append([str(photo), matches[0], str(mask) if mask.is_file() else None])
        else:
            unmatched.append([str(photo), datasets[0] if datasets else None, None])
    return matched or unmatched


def group_disagreement_text(groups: GroupDisagreement) -> str:
    """What the classics-against-encoder-models map shows, in words."""
    r, g, b = GROUP_DISAGREEMENT_COLOUR
    lines = [
        f"**Classics against encoder models.** The classics ({html.escape(', '.join(groups.classics))}) "
        f"and the encoder models ({html.escape(', '.join(groups.encoders))}) each vote at every pixel for "
        "the label most of their models give (on a tie, the one with the best test mIoU decides); the two "
        f"votes differ on **{100 * groups.share:.1f}%** of the pixels "
        f'(<span style="color: rgb({r},{g},{b})">■</span> below).'
    ]
    if groups.top_pairs:
        pairs = "; ".join(
            f"*{html.escape(c)}* where the encoder models say *{html.escape(e)}* ({100 * share:.1f}%)"
            for c, e, share in groups.top_pairs
        )
        lines.append(f"Most often the classics say {pairs}.")
    return " ".join(lines)


def _status(comparison: Comparison, work_shape: tuple[int, int] | None, disagreement: float | None) -> str:
    h, w = comparison.size
    n = len(comparison.outputs)
    lines = [f"**{n} model{'s' * (n != 1)}** on your {w}×{h} photo"]
    if work_shape and tuple(work_shape) != (h, w):
        lines[0] += f" (run at {work_shape[1]}×{work_shape[0]}, shown at full size)"
    lines[0] += "."
    if disagreement is not None:
        lines.append(f"The models disagree on **{100 * disagreement:.1f}%** of the pixels (map below).")
    loaded = [o for o in comparison.outputs if o.load_seconds]
    if loaded:
        seconds = sum(o.load_seconds for o in loaded)
        lines.append(
            f"Loaded {len(loaded)} model{'s' * (len(loaded) != 1)} in {seconds:.1f} s "
            "(kept in memory for the next photo)."
        )
    for note in comparison.notes:
        lines.append(f"ℹ️ {note}")
    failed = [o for o in comparison.outputs if o.error]
    for o in failed:
        lines.append(f"⚠️ {o.entry.label}: {o.error}")
    if comparison.ground_truth_note:
        lines.append(f"⚠️ {comparison.ground_truth_note}")
    return " ".join(lines[:1]) + ("\n\n" + "\n\n".join(lines[1:]) if len(lines) > 1 else "")


def _caption(comparison: Comparison, output: ModelOutput) -> str:
    if output.error:
        return f"{output.entry.label}: failed"
    caption = f"{output.entry.label} · {1000 * output.seconds:.0f} ms"
    scores = output.image_scores
    if scores and not math.isnan(scores.get("miou", math.nan)):
        caption += f" · mIoU {100 * scores['miou']:.1f}%"
    return caption


def gallery_items(
    comparison: Comparison, opacity: float, score_threshold: float | None = None
) -> list[tuple[np.ndarray, str]]:
    return [(comparison.rendered(o, opacity, score_threshold), _caption(comparison, o)) for o in comparison.outputs]


def slider_choices(comparison: Comparison) -> list[tuple[str, str]]:
    """(label, key) of the models the before/after slider can show: a failed model has no result."""
    return [(o.entry.label, o.entry.key) for o in comparison.outputs if o.error is None]


def slider_choice(comparison: Comparison, choice: str | None) -> str | None:
    """``choice`` when this comparison has it (the user's pick survives a new photo), else the first model."""
    keys = [key for _, key in slider_choices(comparison)]
    return choice if choice in keys else (keys[0] if keys else None)


def slider_images(
    comparison: Comparison, choice: str | None, opacity: float, score_threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(the photo, the chosen model's result over it at ``opacity``), both at the uploaded size;
    drawn from the stored comparison, no model runs."""
    key = slider_choice(comparison, choice)
    output = next((o for o in comparison.outputs if o.entry.key == key and o.error is None), None)
    if output is None:
        return None
    return comparison.image, comparison.rendered(output, opacity, score_threshold)


def class_iou_figure(comparison: Comparison) -> go.Figure:
    return class_iou_heatmap(
        comparison.class_iou_frame(),
        comparison.label_set.class_names,
        title="IoU per class on your mask",
        empty_message="No per-class scores: upload the photo's ground-truth mask (semantic models only)",
    )


class CompareHandlers:
    """The Compare tab's event handlers, as plain methods over the app's context and the
    latest comparisons: a test calls them as Gradio does, with the components' values."""

    def __init__(self, context: AppContext, gpu: Callable[[Callable], Callable] = lambda f: f) -> None:
        self.context = context
        self.comparisons = ComparisonStore()
        # Only the model runs get the GPU: ``gpu`` is ``spaces.GPU`` on ZeroGPU.
        self._run_on_gpu = gpu(self.run_models)

    def run_models(
        self,
        image: str | None,
        dataset: str | None,
        models: list[str] | None,
        opacity: float = 0.5,
        ground_truth: str | None = None,
        score_threshold: float = 0.5,
    ) -> tuple[Any, ...]:
        """Compare's work (run under ``gpu``); returns what Compare shows, then the comparison."""
        catalog = self.context.catalog
        if not catalog.label_sets:
            raise user_error(f"No trained model found in {self.context.checkpoints}; train one first.", "No models")
        if image is None:
            raise user_error("Upload a photo (or pick an example) first.", "No photo")
        if not dataset:
            dataset = catalog.datasets[0]
        try:
            label_set = catalog.label_set(dataset)
            keys = models if models else []
            if isinstance(keys, str):
                keys = [keys]
            if not keys:
                raise ValueError("Select at least one model.")
            entries = [label_set.entry(k) for k in keys]
            # Gradio keeps the upload's own file name in its temporary path: name only that.
            photo = read_photo(image, name=Path(image).name)
        except ValueError as exc:
            raise user_error(str(exc), "Cannot compare") from None
        notes = list(photo.notes)
        truth, note = None, None
        if ground_truth:
            try:
                truth = read_ground_truth(ground_truth, label_set, photo.pixels.shape[:2], photo.orientation, notes)
            except ValueError as exc:
                note = f"Ground truth not used: {exc}"
                log.warning("%s", note)
                gr.Warning(note)
        for text in photo.notes:
            log.info("%s", text)
        try:
            comparison = compare_models(
                photo.pixels,
                label_set,
                entries,
                self.context.cache,
                self.context.max_side,
                float(score_threshold),
                truth,
            )
        except Exception as exc:  # keep serving; say what happened (the traceback goes to the log)
            log.exception("compare failed")
            raise gr.Error(
                f"The comparison failed: {type(exc).__name__}: {exc}", title="Comparison failed", print_exception=False
            ) from None
        comparison.ground_truth_note = note
        if self.context.cache.runtime == "onnxruntime":
            waiting = [o for o in comparison.semantic() if o.runtime == "torch" and o.error is None]
            if waiting:
                notes.append(
                    f"{len(waiting)} of the models ran on PyTorch this time: their onnxruntime versions, faster "
                    "on this CPU, are being prepared in the background."
                )
        comparison.notes = notes
        result = comparison.disagreement()
        disagreement_image, share = result if result else (None, None)
        work = comparison.work_image.shape[:2] if comparison.work_image is not None else None
        return (
            gallery_items(comparison, float(opacity)),
            comparison.table(),
            disagreement_image,
            _status(comparison, work, share),
            comparison,
        )

    def compare(
        self,
        image: str | None,
        dataset: str | None,
        models: list[str] | None,
        opacity: float = 0.5,
        ground_truth: str | None = None,
        score_threshold: float = 0.5,
    ) -> tuple[Any, ...]:
        """Segment one photo with the chosen models of one data set.

        Returns the overlays (one per model, at the photo's size, PNG; opacity 1 gives the
        pure colour masks), a table of inference times and scores, the disagreement map and
        a status message.
        """
        # Stored here, in the server process: on ZeroGPU run_models runs in a worker.
        *shown, comparison = self._run_on_gpu(image, dataset, models, opacity, ground_truth, score_threshold)
        comparison.work_image = None  # re-rendering needs the photo and the labels only
        return (*shown, self.comparisons.put(comparison))

    def rerender(self, key: str | None, opacity: float, score_threshold: float) -> Any:
        comparison = self.comparisons.get(key)
        if comparison is None:  # none yet, or dropped from the store: Compare again to re-blend
            return gr.skip()
        return gallery_items(comparison, float(opacity), float(score_threshold))

    def comparison_views(
        self, key: str | None, choice: str | None, opacity: float, score_threshold: float
    ) -> tuple[Any, ...]:
        """After Compare: the slider's model choices and images, and the per-class IoU, all
        from the stored comparison (no model runs)."""
        comparison = self.comparisons.get(key)
        if comparison is None:
            return (gr.skip(),) * 7
        choice = slider_choice(comparison, choice)
        groups = comparison.group_disagreement()
        return (
            gr.update(choices=slider_choices(comparison), value=choice),
            slider_images(comparison, choice, float(opacity), float(score_threshold)),
            gr.update(visible=bool(comparison.scored())),  # only with a ground truth
            class_iou_figure(comparison),
            gr.update(visible=groups is not None),  # only with classics and encoder models
            groups.image if groups else None,
            group_disagreement_text(groups) if groups else "",
        )

    def show_slider(self, key: str | None, choice: str | None, opacity: float, score_threshold: float) -> Any:
        comparison = self.comparisons.get(key)
        if comparison is None:  # as for rerender: Compare again
            return gr.skip()
        return slider_images(comparison, choice, float(opacity), float(score_threshold))

    def class_iou(self, key: str | None) -> pd.DataFrame:
        """Each model's IoU per class (%) on the ground-truth mask of this session's last Compare.

        Rows are models, columns classes; a class in neither the mask nor a model's labels is
        blank (``None``), not 0. No rows when Compare had no ground truth.
        """
        comparison = self.comparisons.get(key)
        if comparison is None:
            raise user_error("Nothing to score yet: run /compare with a ground-truth mask first.", "No comparison")
        return comparison.class_iou_table()

    def on_dataset(self, dataset: str | None) -> tuple[Any, ...]:
        catalog = self.context.catalog
        choices = model_choices(catalog, dataset)
        label_set = catalog.label_sets.get(dataset) if dataset else None
        has_instances = bool(label_set and "instance" in label_set.tasks())
        return (
            gr.update(choices=choices, value=[v for _, v in choices]),
            legend_html(label_set),
            untrained_note(catalog, dataset),
            gr.update(visible=has_instances),
        )

    def on_load(self) -> tuple[Any, ...]:
        """A fresh page: the data sets and models of the (rescanned) catalogue."""
        catalog = self.context.catalog
        choices = dataset_choices(catalog)
        value = choices[0][1] if choices else None
        return (
            gr.update(choices=choices, value=value),
            *self.on_dataset(value),
            gr.update(value=no_checkpoints_note(self.context), visible=not catalog.label_sets),
        )


def build_compare_tab(handlers: CompareHandlers) -> list[gr.components.Component]:
    """The Compare tab and its events; returns the components :meth:`CompareHandlers.on_load`
    updates, in its order."""
    context = handlers.context
    catalog = context.catalog
    choices = dataset_choices(catalog)
    first = choices[0][1] if choices else None
    first_set = catalog.label_sets.get(first) if first else None
    examples = find_examples(context.examples_dir, catalog)

    with gr.Tab("Compare", id="compare"):
        empty_note = gr.Markdown(no_checkpoints_note(context), visible=not catalog.label_sets)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                image = photo_input(
                    label="Photo",
                    sources=["upload", "clipboard", "webcam"],
                    height=300,
                    elem_id="photo",
                )
                dataset = gr.Dropdown(
                    choices=choices,
                    value=first,
                    label="Data set / label set",
                    info="The classes the models predict",
                    elem_id="dataset",
                )
                models = model_checkboxes(
                    choices=model_choices(catalog, first),
                    value=[v for _, v in model_choices(catalog, first)],
                    label="Models",
                    show_select_all=True,
                    elem_id="models",
                )
                untrained = gr.Markdown(untrained_note(catalog, first), elem_classes="note")
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity")
                score_threshold = gr.Slider(
                    0.05,
                    0.95,
                    value=0.5,
                    step=0.05,
                    label="Mask R-CNN score threshold",
                    visible=bool(first_set and "instance" in first_set.tasks()),
                )
                with gr.Accordion("Ground truth (optional)", open=False):
                    gr.Markdown(
                        "A PNG of class indices (one per pixel) or drawn in the legend's colours, "
                        "the size of the photo.",
                        elem_classes="note",
                    )
                    ground_truth = photo_input(
                        label="Ground-truth mask",
                        sources=["upload"],
                        height=160,
                        elem_id="ground-truth",
                    )
                run = gr.Button("Compare", variant="primary", elem_id="compare-button")
                if examples:
                    gr.Examples(
                        examples=examples,
                        inputs=[image, dataset, ground_truth],
                        label="Examples",
                        examples_per_page=8,
                        visible_columns=[0],  # the photo; it sets all three
                    )
            with gr.Column(scale=5):
                status = gr.Markdown("Pick a photo and press **Compare**.", elem_id="status")
                gallery = gr.Gallery(
                    label="Each model's result (click to enlarge)",
                    columns=3,
                    height="auto",
                    object_fit="contain",
                    format="png",
                    elem_id="results",
                )
                legend = gr.HTML(legend_html(first_set), elem_id="legend")
                with gr.Row(equal_height=False):
                    slider_model = gr.Dropdown(
                        choices=[],
                        value=None,
                        label="Before / after",
                        info="The model whose labels the slider shows over your photo",
                        scale=1,
                        min_width=200,
                        elem_id="slider-model",
                    )
                    before_after = gr.ImageSlider(
                        label="Your photo and the model's labels: drag the handle",
                        type="numpy",
                        format="png",
                        interactive=False,
                        scale=3,
                        elem_id="before-after",
                    )
                table = gr.Dataframe(
                    headers=TABLE_COLUMNS,
                    label="Per-model numbers",
                    interactive=False,
                    wrap=True,
                    column_widths=["20%", "9%", "9%", "11%", "11%", "9%", "31%"],
                    elem_id="results-table",
                )
                with gr.Column(visible=False, elem_id="class-iou") as class_iou_box:  # with a ground truth
                    class_iou_plot = gr.Plot(
                        label="IoU per class on your mask", show_label=False, elem_id="class-iou-plot"
                    )
                    with gr.Accordion("IoU per class on your mask, as numbers", open=False):
                        class_iou_table = gr.Dataframe(
                            label="IoU per class (%); blank: the class is in neither the mask nor the model's labels",
                            interactive=False,
                            elem_id="class-iou-table",
                        )
                disagreement = gr.Image(
                    label="Disagreement: where the models give different labels",
                    format="png",
                    interactive=False,
                    elem_id="disagreement",
                )
                gr.HTML(
                    '<div class="disagreement-key">Distinct labels at a pixel:'
                    '<span class="swatch" style="background: rgb(255,214,0)"></span>2'
                    '<span class="swatch" style="background: rgb(255,120,0)"></span>3'
                    '<span class="swatch" style="background: rgb(220,20,60)"></span>4 or more'
                    "; grey: all agree.</div>"
                )
                with gr.Column(visible=False, elem_id="classics-vs-encoders") as groups_box:
                    groups_text = gr.Markdown(elem_id="classics-vs-encoders-text")
                    groups_image = gr.Image(
                        label="Classics against encoder models: where the two groups' majority labels differ",
                        format="png",
                        interactive=False,
                        elem_id="classics-vs-encoders-map",
                    )
                comparison = gr.State(time_to_live=COMPARISON_TTL_SECONDS)  # a ComparisonStore key

    compared = run.click(
        handlers.compare,
        inputs=[image, dataset, models, opacity, ground_truth, score_threshold],
        outputs=[gallery, table, disagreement, status, comparison],
        api_name="compare",
        concurrency_limit=1,
    )
    # Chained rather than more /compare outputs, so API clients keep its four return values;
    # both read the stored comparison and run no model.
    compared.success(handlers.class_iou, comparison, class_iou_table, api_name="class_iou", show_progress="hidden")
    slider_inputs = [comparison, slider_model, opacity, score_threshold]
    compared.success(
        handlers.comparison_views,
        slider_inputs,
        [slider_model, before_after, class_iou_box, class_iou_plot, groups_box, groups_image, groups_text],
        show_progress="hidden",
        **PRIVATE_EVENT,
    )
    # One bound method for all the events of a handler: Gradio gives the events of one function
    # object (``id(fn)``) one concurrency slot, and each attribute access makes a new one.
    rerender, show_slider = handlers.rerender, handlers.show_slider
    for slider in (opacity, score_threshold):  # re-blend or re-draw, without running the models again
        slider.change(
            rerender,
            [comparison, opacity, score_threshold],
            gallery,
            show_progress="hidden",
            trigger_mode="always_last",
            **PRIVATE_EVENT,
        )
        slider.change(
            show_slider,
            slider_inputs,
            before_after,
            show_progress="hidden",
            trigger_mode="always_last",
            **PRIVATE_EVENT,
        )
    # .input, not .change: comparison_views setting the choice must not draw the slider twice.
    slider_model.input(
        show_slider, slider_inputs, before_after, show_progress="hidden", trigger_mode="always_last", **PRIVATE_EVENT
    )
    dataset.change(handlers.on_dataset, dataset, [models, legend, untrained, score_threshold], **PRIVATE_EVENT)
    return [dataset, models, legend, untrained, score_threshold, empty_note]
