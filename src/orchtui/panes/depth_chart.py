"""A queue's depth over the last minutes, drawn with plotext, as Rich text.

Pure: samples and a moment in, text out, so it is tested at fixed times without a
terminal. The daemons sample every queue's depth into a table each few seconds, so
every console draws the same history from the same rows.

Three lines share one axis: ready (``▄``), in flight (``·``) and dead letters (``×``).
Each has its own mark, so the chart reads under NO_COLOR and on a 16-colour terminal;
colour is put on top of plotext's colourless drawing here, in the console's ANSI
names, instead of plotext's 256-colour theme. Where the daemons stopped sampling (no
daemon ran), the lines break rather than bridge the gap with a line nobody measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import plotext
from rich.text import Text

from orchcore.bus.models import DepthSample
from orchtui.formatting import age

#: How far back the chart looks.
WINDOW = timedelta(minutes=15)
#: A wider gap between two samples means nobody sampled then: the lines break there.
GAP = timedelta(seconds=30)
#: Below this the chart is not worth drawing; the pane says why instead.
MIN_WIDTH, MIN_HEIGHT = 30, 5


@dataclass(frozen=True)
class Series:
    """One line of the chart: what it counts, its mark, its colour."""

    name: str
    mark: str  # what plotext draws it with ("hd": half-block characters)
    legend_mark: str  # how the legend shows that mark
    style: str
    #: the characters plotext draws this series with, for putting colour on them
    glyphs: frozenset[str]


_HALF_BLOCKS = frozenset("▀▄█▌▐▖▗▘▝▙▚▛▜▝▞▟")
READY = Series("ready", "hd", "▄", "cyan", _HALF_BLOCKS)
IN_FLIGHT = Series("in flight", "·", "·", "yellow", frozenset("·"))
DEAD_LETTERS = Series("dead letters", "×", "×", "red", frozenset("×"))
#: Drawn in this order: where lines meet, the later one shows (dead letters last).
SERIES = (READY, IN_FLIGHT, DEAD_LETTERS)
FRAME_STYLE = "bright_black"


def _values(sample: DepthSample, series: Series) -> int:
    if series is READY:
        return sample.ready
    if series is IN_FLIGHT:
        return sample.in_flight
    return sample.dead_letters


def in_window(samples: Sequence[DepthSample], now: datetime) -> list[DepthSample]:
    """The samples of the last :data:`WINDOW`, oldest first."""
    since = now - WINDOW
    return sorted((s for s in samples if since <= s.sampled_at <= now), key=lambda s: s.sampled_at)


def nice_top(peak: int) -> int:
    """The y axis' top: the peak rounded up to a round number (2, 3, 4, 5, 6, 8 and 10,
    15, 20 … times powers of ten), at least 2, so the ticks read as whole counts."""
    magnitude = 1
    while True:
        for step in (1, 1.5, 2, 3, 4, 5, 6, 8):
            top = step * magnitude
            if top == int(top) and top >= max(peak, 2):
                return int(top)
        magnitude *= 10


def y_ticks(top: int) -> list[int]:
    return [0, top // 2, top] if top % 2 == 0 else [0, top]


def depth_chart(samples: Sequence[DepthSample], now: datetime, *, width: int, height: int) -> Text:
    """The chart, ``width`` x ``height`` cells, time along x from -15m to now."""
    shown = in_window(samples, now)
    if not shown:
        return Text(
            "no depth samples in the last 15 minutes: the daemons take one each few "
            "seconds (is a daemon running?)",
            style="bright_black",
        )
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Text("(too small for the chart)", style="bright_black")
    seconds = [(s.sampled_at - now).total_seconds() for s in shown]
    peak = max(max(_values(s, series) for series in SERIES) for s in shown)
    top = nice_top(peak)
    # plotext keeps one figure per process; the console draws from one thread, so the
    # figure is cleared and reused for each chart rather than made anew.
    figure = plotext.figure
    figure.clear.all()
    figure.theme("colorless")
    figure.plot_size(width, height)
    window = WINDOW.total_seconds()
    for series in SERIES:
        signal = figure.signal(seconds, [_values(s, series) for s in shown], marker=series.mark)
        signal.lines(True)
        for index in range(1, len(shown)):
            if shown[index].sampled_at - shown[index - 1].sampled_at > GAP:
                signal.line(index, False)
        figure.draw(signal)
    minutes = int(window // 60)
    figure.ruler(0).lim(-window, 0)
    ticks = [-window, -window * 2 / 3, -window / 3, 0]
    labels = [f"-{minutes}m", f"-{minutes * 2 // 3}m", f"-{minutes // 3}m", "now"]
    figure.ruler(0).ticks(ticks, labels)
    figure.ruler(1).lim(0, top)
    figure.ruler(1).ticks(y_ticks(top), [str(t) for t in y_ticks(top)])
    drawn = figure.build().string(colorless=True).rstrip("\n")
    return _coloured(drawn)


def _coloured(drawn: str) -> Text:
    """plotext's colourless drawing with each series' marks in its colour, the frame dim."""
    text = Text(drawn)
    for index, char in enumerate(drawn):
        for series in SERIES:
            if char in series.glyphs:
                text.stylize(series.style, index, index + 1)
                break
        else:
            if "─" <= char <= "╿":  # box drawing: the frame and its ticks
                text.stylize(FRAME_STYLE, index, index + 1)
    return text


def legend(samples: Sequence[DepthSample], now: datetime) -> Text:
    """``▄ ready 12  · in flight 2  × dead letters 3  peak 40 4m ago``: each line's mark
    and latest value, then when the queue was deepest (and how old the last sample is,
    once the daemons have stopped sampling)."""
    shown = in_window(samples, now)
    if not shown:
        return Text()  # the chart says why there is nothing to show
    latest = shown[-1]
    text = Text()
    for series in SERIES:
        text.append(
            f"{series.legend_mark} {series.name} {_values(latest, series)}", style=series.style
        )
        text.append("  ")
    deepest = max(shown, key=lambda s: (s.ready, s.sampled_at))
    if deepest.ready:
        text.append(f"peak {deepest.ready} {age(deepest.sampled_at, now)} ago", FRAME_STYLE)
    if now - latest.sampled_at > GAP:
        text.append(f" · last sample {age(latest.sampled_at, now)} ago", FRAME_STYLE)
    text.rstrip()
    return text
