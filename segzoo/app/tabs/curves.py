"""The Training curves tab: loss and validation mIoU per epoch of the models of a data set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from segzoo.app.context import PRIVATE_EVENT, AppContext, dataset_choices, model_choices
from segzoo.app.figures import training_curves
from segzoo.app.tables import read_history


@dataclass(frozen=True)
class CurvesHandlers:
    """The Training curves tab's event handlers, plain methods over the app's context."""

    context: AppContext

    def curve_models(self, dataset: str | None) -> Any:
        """Every model of ``dataset``, all ticked."""
        choices = model_choices(self.context.catalog, dataset)
        return gr.update(choices=choices, value=[v for _, v in choices])

    def curves(self, dataset: str | None, models: list[str] | None) -> tuple[go.Figure, go.Figure]:
        """The loss and validation-mIoU figures of ``models`` (``None``: all) of ``dataset``."""
        catalog = self.context.catalog
        histories = {}
        if dataset in catalog.label_sets:
            for entry in catalog.label_sets[dataset].entries:
                if models is not None and entry.key not in models:
                    continue
                history = read_history(entry.history_path)
                if history is not None:
                    histories[entry.label] = history
        return training_curves(histories)

    def on_load(self) -> tuple[Any, ...]:
        """A fresh page: the data sets and models of the (rescanned) catalogue."""
        choices = dataset_choices(self.context.catalog)
        value = choices[0][1] if choices else None
        return gr.update(choices=choices, value=value), self.curve_models(value)


def build_curves_tab(handlers: CurvesHandlers) -> list[gr.components.Component]:
    """The Training curves tab and its events; returns the components
    :meth:`CurvesHandlers.on_load` updates, in its order."""
    catalog = handlers.context.catalog
    choices = dataset_choices(catalog)
    first = choices[0][1] if choices else None
    with gr.Tab("Training curves", id="curves") as tab:
        gr.Markdown("Loss and validation mIoU per epoch, from each checkpoint's `history.csv`.")
        with gr.Row():
            dataset = gr.Dropdown(choices=choices, value=first, label="Data set", elem_id="curves-dataset")
            models = gr.CheckboxGroup(
                choices=model_choices(catalog, first),
                value=[v for _, v in model_choices(catalog, first)],
                label="Models",
                elem_id="curves-models",
            )
        with gr.Row():
            loss_plot = gr.Plot(label="Loss", show_label=False, elem_id="loss-plot")
            miou_plot = gr.Plot(label="Validation mIoU", show_label=False, elem_id="val-miou-plot")

    curves = handlers.curves  # one concurrency slot for both events (see build_compare_tab)
    dataset.change(handlers.curve_models, dataset, models, **PRIVATE_EVENT)
    models.change(curves, [dataset, models], [loss_plot, miou_plot], **PRIVATE_EVENT)
    tab.select(curves, [dataset, models], [loss_plot, miou_plot], **PRIVATE_EVENT)
    return [dataset, models]
