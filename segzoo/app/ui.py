"""The Gradio page: the Compare, Leaderboard and Training curves tabs of :mod:`segzoo.app.tabs`,
and what the page does when it opens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from segzoo.app.context import PRIVATE_EVENT, AppContext
from segzoo.app.tabs.compare import CompareHandlers, build_compare_tab
from segzoo.app.tabs.curves import CurvesHandlers, build_curves_tab
from segzoo.app.tabs.leaderboard import LeaderboardHandlers, build_leaderboard_tab

TITLE = "segzoo: compare segmentation models"
INTRO = """
# segzoo: compare segmentation models
Upload a photo (or pick an example below), choose a data set and the models trained on it, and press
**Compare**: each model's labels are drawn over your photo, with the time it took. Add the photo's
ground-truth mask to score every model on it. The other tabs show the test-set leaderboard and the
training curves.
"""
CSS = """
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.9em; }
.legend span.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px;
  margin-right: 5px; vertical-align: -2px; border: 1px solid rgba(0,0,0,.25); }
.disagreement-key span.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin: 0 4px 0 10px; vertical-align: -1px; }
.note, .note * { font-size: 0.85rem !important; color: var(--body-text-color-subdued); }
footer { display: none !important; }
"""
# Uploads and rendered results live in Gradio's cache: every 10 minutes, delete those older
# than an hour (and all of them when the server stops).
DELETE_CACHE = (600, 3600)


@dataclass(frozen=True)
class PageHandlers:
    """What happens when a page opens, over the tabs it refreshes."""

    context: AppContext
    compare: CompareHandlers
    curves: CurvesHandlers

    def on_load(self) -> tuple[Any, ...]:
        """A fresh page sees checkpoints written since the app started."""
        self.context.rescan()
        return (*self.compare.on_load(), *self.curves.on_load())


def build_app(context: AppContext, gpu: Callable[[Callable], Callable] = lambda f: f) -> gr.Blocks:
    """The Blocks app. ``gpu`` wraps the Compare function (``spaces.GPU`` on ZeroGPU)."""
    page = PageHandlers(context, CompareHandlers(context, gpu), CurvesHandlers(context))
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            compare_outputs = build_compare_tab(page.compare)
            build_leaderboard_tab(LeaderboardHandlers(context))
            curves_outputs = build_curves_tab(page.curves)
        demo.load(page.on_load, None, [*compare_outputs, *curves_outputs], **PRIVATE_EVENT)
    return demo
