"""The Leaderboard tab: test-set scores of every trained model, as a table and charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from segzoo.app.context import PRIVATE_EVENT, AppContext
from segzoo.app.figures import class_iou_heatmap, miou_bars, speed_quality
from segzoo.app.tables import display_table, leaderboard_frame


@dataclass(frozen=True)
class LeaderboardHandlers:
    """The Leaderboard tab's event handler, a plain method over the app's context."""

    context: AppContext

    def leaderboard_views(self, dataset: str | None) -> tuple[Any, ...]:
        """The data set choices, then the table and charts of ``dataset`` (else the first)."""
        catalog = self.context.catalog
        frame = leaderboard_frame(catalog, self.context.leaderboard_path)
        datasets = list(dict.fromkeys(list(frame["dataset"]) + catalog.datasets))
        if dataset not in datasets:
            dataset = datasets[0] if datasets else None
        rows = frame[frame["dataset"] == dataset] if dataset else frame
        label_set = catalog.label_sets.get(dataset) if dataset else None
        classes = label_set.class_names if label_set else None
        return (
            gr.update(choices=datasets, value=dataset),
            display_table(rows),
            miou_bars(rows, f"mIoU per model ({dataset})" if dataset else "mIoU per model"),
            speed_quality(rows),
            class_iou_heatmap(rows, classes),
        )


def build_leaderboard_tab(handlers: LeaderboardHandlers) -> None:
    """The Leaderboard tab, filled when it is opened and when its data set changes."""
    with gr.Tab("Leaderboard", id="leaderboard") as tab:
        gr.Markdown(
            "Test-set scores from `benchmarks/leaderboard.json` (`segzoo leaderboard`) or each "
            "checkpoint's `metrics.json` (`segzoo evaluate`). Click a column header to sort."
        )
        board_dataset = gr.Dropdown(label="Data set", elem_id="board-dataset")
        board = gr.Dataframe(interactive=False, label="Leaderboard", elem_id="leaderboard-table")
        with gr.Row():
            miou_plot = gr.Plot(label="mIoU per model", show_label=False, elem_id="miou-plot")
            tradeoff_plot = gr.Plot(label="Accuracy against latency", show_label=False, elem_id="tradeoff-plot")
        class_plot = gr.Plot(label="IoU per class", show_label=False, elem_id="class-plot")

    views = handlers.leaderboard_views  # one concurrency slot for both events (see build_compare_tab)
    outputs = [board_dataset, board, miou_plot, tradeoff_plot, class_plot]
    tab.select(views, board_dataset, outputs, **PRIVATE_EVENT)
    board_dataset.input(views, board_dataset, outputs, **PRIVATE_EVENT)
