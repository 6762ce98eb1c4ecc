"""Plots for the HTML pages, drawn with matplotlib (no pyplot: no global state, safe in any thread) and embedded
as SVG data URIs, so a page needs nothing from the network and its images never clash with each other's ids.
"""

from __future__ import annotations

import base64
import io

import numpy as np

# One colour per section label, the same on every page and timeline (Okabe-Ito and Tableau tones: told apart by
# most colour-blind readers, and readable with white text).
SECTION_COLOURS = {
    "Intro": "#4e79a7", "Verse": "#59a14f", "Pre-Chorus": "#8cd17d", "Chorus": "#e15759", "Post-Chorus": "#ff9d9a",
    "Bridge": "#b07aa1", "Instrumental": "#f28e2b", "Solo": "#ffbe7d", "Breakdown": "#9c755f", "Build": "#edc948",
    "Drop": "#d37295", "Outro": "#76b7b2", "Silence": "#bab0ac",
}
OTHER_COLOURS = ("#499894", "#86bcb6", "#79706e", "#d4a6c8", "#fabfd2", "#b6992d", "#a0cbe8")
SERIES = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
INK, GRID = "#333333", "#dddddd"
WIDTH, HEIGHT = 5.6, 2.9  # inches: two plots side by side on a laptop screen


def section_colour(label: str) -> str:
    """The colour of a section label; unknown labels get a stable colour from their name."""
    if label in SECTION_COLOURS:
        return SECTION_COLOURS[label]
    return OTHER_COLOURS[sum(map(ord, label)) % len(OTHER_COLOURS)] if label else "#cccccc"


def _figure(width: float = WIDTH, height: float = HEIGHT):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=8)
    ax.grid(axis="y", color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def data_uri(fig) -> str:
    """The figure as an SVG data URI (text kept as text: small files, the page's font)."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ls-acestep"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _title(ax, title: str, xlabel: str = "", ylabel: str = "") -> None:
    ax.set_title(title, fontsize=10, color=INK, loc="left")
    ax.set_xlabel(xlabel, fontsize=8, color=INK)
    ax.set_ylabel(ylabel, fontsize=8, color=INK)


def histogram(series: dict[str, list[float]], title: str, xlabel: str, bins=20, value_range=None) -> str | None:
    """Overlaid histograms, one per named series (a legend when more than one); None when there is no value."""
    series = {k: [v for v in vs if v is not None and np.isfinite(v)] for k, vs in series.items()}
    series = {k: vs for k, vs in series.items() if vs}
    if not series:
        return None
    fig, ax = _figure()
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    lo, hi = value_range or (float(every.min()), float(every.max()))
    if hi <= lo:  # one value: a narrow range around it (never below zero for a positive quantity)
        spread = max(abs(lo) * 0.1, 0.5) if lo <= 0 else lo * 0.1
        lo, hi = lo - spread, hi + spread
    edges = np.histogram_bin_edges(every, bins=bins, range=(lo, hi))
    for index, (name, values) in enumerate(series.items()):
        colour = SERIES[index % len(SERIES)]
        if len(series) == 1:
            ax.hist(values, bins=edges, color=colour, edgecolor="white", linewidth=0.5)
        else:
            ax.hist(values, bins=edges, histtype="step", linewidth=1.6, color=colour, label=name)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    ax.yaxis.get_major_locator().set_params(integer=True)
    _title(ax, title, xlabel, "count")
    return data_uri(fig)


def bars(counts: dict[str, int], title: str, xlabel: str = "", colours: dict[str, str] | None = None,
         limit: int = 30) -> str | None:
    """A bar per category in the given order (at most ``limit``, the rest summed as "other"); None when empty."""
    items = [(k, v) for k, v in counts.items() if v]
    if not items:
        return None
    if len(items) > limit:
        items = items[:limit - 1] + [("other", sum(v for _, v in items[limit - 1:]))]
    fig, ax = _figure(width=min(WIDTH, 0.28 * len(items) + 2.5) if len(items) <= 12 else 0.28 * len(items) + 1.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    labels = [k for k, _ in items]
    ax.bar(range(len(items)), [v for _, v in items], width=0.6, color=[(colours or {}).get(k, SERIES[0]) for k in labels],
           edgecolor="white", linewidth=0.5)
    crowded = len(items) > 8 or (len(items) > 4 and max(len(k) for k in labels) > 5)
    ax.set_xticks(range(len(items)), labels, rotation=45 if crowded else 0, ha="right" if crowded else "center",
                  rotation_mode="anchor" if crowded else "default")
    _title(ax, title, xlabel, "songs")
    return data_uri(fig)


def grouped_bars(values: dict[str, dict[str, float]], title: str, xlabel: str) -> str | None:
    """Horizontal bars: one group per category (the inner keys), one bar per series (the outer keys)."""
    categories: list[str] = []
    for inner in values.values():
        categories.extend(k for k in inner if k not in categories)
    if not categories:
        return None
    fig, ax = _figure(height=max(HEIGHT, 0.3 * len(categories) * max(1, len(values)) ** 0.5 + 1))
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color=GRID, linewidth=0.6)
    height = 0.8 / max(1, len(values))
    for index, (name, inner) in enumerate(values.items()):
        ys = np.arange(len(categories)) + index * height - 0.4 + height / 2
        ax.barh(ys, [inner.get(c) or 0.0 for c in categories], height=height, label=name,
                color=SERIES[index % len(SERIES)])
    ax.set_yticks(range(len(categories)), categories)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    if len(values) > 1:
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    _title(ax, title, xlabel)
    return data_uri(fig)


def scatter(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str, ylabel: str) -> str | None:
    """Points per named series; None when no point has both coordinates."""
    cleaned = {}
    for name, (xs, ys) in series.items():
        points = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
        if points:
            cleaned[name] = points
    if not cleaned:
        return None
    fig, ax = _figure()
    ax.grid(axis="x", color=GRID, linewidth=0.6)
    for index, (name, points) in enumerate(cleaned.items()):
        xs, ys = zip(*points)
        ax.scatter(xs, ys, s=26, alpha=0.75, color=SERIES[index % len(SERIES)], label=name, linewidths=0)
    if len(cleaned) > 1:
        ax.legend(fontsize=7, frameon=False)
    _title(ax, title, xlabel, ylabel)
    return data_uri(fig)
