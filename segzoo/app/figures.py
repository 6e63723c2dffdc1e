"""Plotly figures for the Leaderboard and Training-curves tabs (and Compare's per-class IoU)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

COLOURS = px.colors.qualitative.Plotly + px.colors.qualitative.D3
_LAYOUT = dict(
    template="plotly_white",
    margin=dict(l=60, r=20, t=50, b=90),
    height=420,
    legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
)


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank chart that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, font=dict(size=14, color="#666"), x=0.5, y=0.5, xref="paper", yref="paper"
    )
    fig.update_layout(title=title, xaxis=dict(visible=False), yaxis=dict(visible=False), **_LAYOUT)
    return fig


def _names(frame: pd.DataFrame) -> list[str]:
    return [f"{m} (interim)" if i else m for m, i in zip(frame["model"], frame["interim"], strict=True)]


def miou_bars(frame: pd.DataFrame, title: str = "mIoU per model") -> go.Figure:
    """Horizontal bars, best on top, coloured by family."""
    frame = frame.dropna(subset=["miou"])
    if frame.empty:
        return empty_figure("No evaluated model yet: run `segzoo evaluate`", title)
    frame = frame.sort_values("miou")
    families = sorted(set(frame["family"]))
    fig = go.Figure()
    for i, family in enumerate(families):
        rows = frame[frame["family"] == family]
        fig.add_bar(
            x=100 * rows["miou"],
            y=_names(rows),
            orientation="h",
            name=family or "other",
            marker_color=COLOURS[i % len(COLOURS)],
            text=[f"{100 * v:.1f}" for v in rows["miou"]],
            textposition="outside",
            cliponaxis=False,
        )
    fig.update_layout(
        title=title,
        xaxis_title="mIoU (%)",
        yaxis=dict(categoryorder="array", categoryarray=_names(frame)),
        legend_title_text="Family",
        **{**_LAYOUT, "height": max(300, 60 + 32 * len(frame))},
    )
    return fig


def speed_quality(frame: pd.DataFrame, title: str = "Accuracy against latency") -> go.Figure:
    """mIoU against latency per image; marker area follows the parameter count."""
    frame = frame.dropna(subset=["miou", "latency_ms"])
    if frame.empty:
        return empty_figure("No latency measured yet: run `segzoo leaderboard` (it benchmarks each model)", title)
    params = frame["params"].fillna(frame["params"].median() if frame["params"].notna().any() else 1e7)
    size = 12 + 28 * (params / max(params.max(), 1)) ** 0.5
    fig = go.Figure()
    for i, family in enumerate(sorted(set(frame["family"]))):
        rows = frame["family"] == family
        fig.add_scatter(
            x=frame.loc[rows, "latency_ms"],
            y=100 * frame.loc[rows, "miou"],
            mode="markers+text",
            name=family or "other",
            text=_names(frame[rows]),
            textposition="top center",
            marker=dict(
                size=size[rows], color=COLOURS[i % len(COLOURS)], opacity=0.8, line=dict(width=1, color="white")
            ),
            customdata=(params[rows] / 1e6).round(1),
            hovertemplate="%{text}<br>%{x:.1f} ms, mIoU %{y:.1f}%<br>%{customdata} M parameters<extra></extra>",
        )
    devices = sorted({d for d in frame.get("latency_device", []) if isinstance(d, str) and d})
    where = f", {', '.join(devices)}" if devices else ""
    fig.update_layout(
        title=title,
        xaxis_title=f"Latency per image (ms{where}; lower is better)",
        yaxis_title="mIoU (%)",
        legend_title_text="Family",
        **_LAYOUT,
    )
    return fig


def class_iou_heatmap(
    frame: pd.DataFrame,
    class_names: list[str] | None = None,
    title: str = "IoU per class",
    empty_message: str = "No per-class scores yet: run `segzoo evaluate`",
) -> go.Figure:
    """Models (rows) x classes (columns), IoU in %, blank where undefined."""
    frame = frame[[bool(v) for v in frame["iou"]]]
    if frame.empty:
        return empty_figure(empty_message, title)
    if not class_names:
        class_names = list(dict.fromkeys(c for ious in frame["iou"] for c in ious))

    def percent(value: float | None) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else 100 * value

    z = [[percent(ious.get(c)) for c in class_names] for ious in frame["iou"]]
    text = [["" if v is None else f"{v:.0f}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=class_names,
            y=_names(frame),
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            zmin=0,
            zmax=100,
            colorbar=dict(title="IoU %"),
            hovertemplate="%{y}<br>%{x}: %{z:.1f}%<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_layout(title=title, **{**_LAYOUT, "height": max(300, 120 + 36 * len(frame))})
    fig.update_yaxes(autorange="reversed")
    return fig


def _whole_training(history: pd.DataFrame) -> pd.DataFrame:
    """Epochs counted over every training stage (a run started with ``--init-from`` numbers
    its epochs from 1 again after the earlier stage's)."""
    if "stage" not in history or history["stage"].nunique() <= 1:
        return history
    return history.assign(epoch=range(1, len(history) + 1))


def training_curves(histories: dict[str, pd.DataFrame]) -> tuple[go.Figure, go.Figure]:
    """(loss per epoch: train solid, validation dashed; validation mIoU, or Mask R-CNN's mask AP,
    per epoch), one colour per model."""
    if not histories:
        message = "No history.csv found for the selected models"
        return empty_figure(message, "Loss"), empty_figure(message, "Validation mIoU")
    loss, miou = go.Figure(), go.Figure()
    histories = {name: _whole_training(history) for name, history in histories.items()}
    for i, (name, history) in enumerate(histories.items()):
        colour = COLOURS[i % len(COLOURS)]
        for column, dash, label in (("train_loss", "solid", "train"), ("val_loss", "dash", "val")):
            # Epochs without validation (--val-every) have no value: join the validated ones.
            rows = history.dropna(subset=[column])
            if not rows.empty:
                loss.add_scatter(
                    x=rows["epoch"],
                    y=rows[column],
                    mode="lines",
                    name=f"{name} {label}",
                    legendgroup=name,
                    line=dict(color=colour, dash=dash),
                )
        # Mask R-CNN's validation score is its mask AP (history column val_mask_ap).
        for column, label in (("val_miou", name), ("val_mask_ap", f"{name} mask AP")):
            rows = history.dropna(subset=[column]) if column in history else history.iloc[:0]
            if not rows.empty:
                miou.add_scatter(
                    x=rows["epoch"],
                    y=100 * pd.to_numeric(rows[column], errors="coerce"),
                    mode="lines+markers",
                    name=label,
                    legendgroup=name,
                    line=dict(color=colour, dash="solid" if column == "val_miou" else "dot"),
                    marker=dict(size=4),
                )
    with_ap = any("val_mask_ap" in h and h["val_mask_ap"].notna().any() for h in histories.values())
    layout = {**_LAYOUT, "height": 440, "margin": dict(l=60, r=20, t=50, b=110)}
    loss.update_layout(title="Loss (solid: train, dashed: validation)", yaxis_title="loss", **layout)
    miou.update_layout(
        title="Validation mIoU" + (" (dotted: Mask R-CNN's mask AP)" if with_ap else ""),
        yaxis_title="mIoU" + (" / mask AP" if with_ap else "") + " (%)",
        **layout,
    )
    last_epoch = max(float(h["epoch"].max()) for h in histories.values())
    for fig in (loss, miou):
        # Whole epochs: one tick each for short runs, plotly's choice (never fractional) for long ones.
        fig.update_xaxes(title="epoch", dtick=1 if last_epoch <= 15 else None, tickformat="d")
    if not miou.data:
        miou = empty_figure("No validation score recorded", "Validation mIoU")
    return loss, miou
