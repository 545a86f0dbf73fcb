"""Server-side SVG charts (pygal), inlined into pages: no JavaScript, no CDN, no network.

pygal's SVG normally references its tooltip script from a CDN and embeds a config ``<script>`` and
comments with project URLs. :func:`_clean` removes every ``<script>`` and comment, so the SVG that
reaches the page holds only shapes, text and one ``<style>``. Labels (routes, service names) are
text nodes that ElementTree escapes on output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pygal
from markupsafe import Markup
from pygal.style import Style

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

PALETTE = ("#2563eb", "#f59e0b", "#dc2626", "#10b981", "#8b5cf6", "#64748b")
BREAKDOWN_COLORS = ("#2563eb", "#10b981", "#f59e0b", "#8b5cf6", "#94a3b8")  # db cache http template self

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#334155",
    foreground_strong="#0f172a",
    foreground_subtle="#e2e8f0",
    opacity=".85",
    opacity_hover="1",
    colors=PALETTE,
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=15,
    guide_stroke_color="#e2e8f0",
    major_guide_stroke_color="#cbd5e1",
    guide_stroke_dasharray="0",
    major_guide_stroke_dasharray="0",
)

_COMMON = {
    "js": [],
    "disable_xml_declaration": True,
    "no_prefix": False,
    "style": STYLE,
    "show_dots": False,
    "interpolate": None,
    "allow_interruptions": True,
}


def _clean(svg: str | bytes) -> Markup:
    """Drop ``<script>`` elements and comments (ElementTree's parser skips comments)."""
    root = ET.fromstring(svg)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}script", "script"):
                parent.remove(child)
    root.set("role", "img")
    return Markup(ET.tostring(root, encoding="unicode"))


def sparkline(
    values: list[float | None], *, width: int = 120, height: int = 28, title: str = "p95 ms per bucket"
) -> Markup:
    """A tiny line of ``values`` (``None`` leaves a gap); empty Markup with fewer than two values.
    Its ``<title>`` (the tooltip) lists the values with one decimal; ``title`` must not come from spans.

    Drawn as a bare SVG polyline rather than with pygal: pygal costs ~10 ms per chart, and the
    overview has one sparkline per route (40 routes would take 400 ms). The SVG holds only numbers
    formatted here, no text from spans.
    """
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return Markup("")
    lo, hi = min(present), max(present)
    span = (hi - lo) or 1.0
    step = width / max(len(values) - 1, 1)
    segments, current = [], []
    for i, v in enumerate(values):
        if v is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{i * step:.1f},{2 + (height - 4) * (1 - (v - lo) / span):.1f}")
    if current:
        segments.append(current)
    lines = "".join(
        f'<polyline points="{" ".join(seg)}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.6" '
        'stroke-linejoin="round" stroke-linecap="round"/>'
        if len(seg) > 1
        else f'<circle cx="{seg[0].split(",")[0]}" cy="{seg[0].split(",")[1]}" r="1.4" fill="{PALETTE[0]}"/>'
        for seg in segments
    )
    label = ", ".join("–" if v is None else f"{v:.1f}" for v in values)
    return Markup(
        f'<svg xmlns="{SVG_NS}" class="sparkline" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{title}: {label}</title>{lines}</svg>'
    )


def duration_text(seconds: float) -> str:
    """A bucket size for people: ``2.5 s``, ``45 s``, ``2.5 min``, ``1 h``, ``1.5 d``."""
    if seconds < 10:
        return f"{seconds:.3g} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def time_format(bucket_seconds: float, span_seconds: float) -> str:
    """strftime format of x-axis labels so that neighbouring buckets read differently: seconds for
    buckets under a minute, the date only when the window covers more than a day."""
    fmt = "%H:%M:%S" if bucket_seconds < 60 else "%H:%M"
    return ("%m-%d " + fmt) if span_seconds > 86400 or bucket_seconds >= 3600 else fmt


def _x_labels(points: list[dict], bucket_seconds: float | None) -> list[str]:
    if bucket_seconds is None:
        bucket_seconds = (points[1]["start"] - points[0]["start"]).total_seconds() if len(points) > 1 else 60
    span = (points[-1]["start"] - points[0]["start"]).total_seconds() if points else 0
    fmt = time_format(bucket_seconds, span)
    return [p["start"].strftime(fmt) for p in points]


def latency_chart(
    points: list[dict], *, title: str = "Latency (ms)", bucket_seconds: float | None = None
) -> Markup:
    """p50/p95/p99 lines over time buckets (``points`` from ``queries.endpoint_series``); x labels in
    UTC, formatted by :func:`time_format`."""
    chart = pygal.Line(
        width=1100,
        height=320,
        include_x_axis=True,
        show_minor_y_labels=False,
        title=title,
        legend_at_bottom=True,
        x_label_rotation=0,
        show_minor_x_labels=False,
        truncate_label=-1,
        **_COMMON,
    )
    chart.x_labels = _x_labels(points, bucket_seconds)
    chart.x_labels_major = chart.x_labels[:: max(len(points) // 6, 1)]
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        chart.add(name.replace("_ms", ""), [round(p[name], 2) for p in points])
    return _clean(chart.render())


def breakdown_chart(
    points: list[dict],
    *,
    title: str = "Where the time goes (mean ms per request)",
    bucket_seconds: float | None = None,
) -> Markup:
    """Stacked bars per time bucket: db, cache, http, template and self time (ms per request)."""
    chart = pygal.StackedBar(
        width=1100,
        height=320,
        show_minor_y_labels=False,
        title=title,
        legend_at_bottom=True,
        show_minor_x_labels=False,
        truncate_label=-1,
        **{**_COMMON, "style": Style(**{**STYLE.to_dict(), "colors": BREAKDOWN_COLORS})},
    )
    chart.x_labels = _x_labels(points, bucket_seconds)
    chart.x_labels_major = chart.x_labels[:: max(len(points) // 6, 1)]
    for name in ("db_ms", "cache_ms", "http_ms", "template_ms", "self_ms"):
        chart.add(name.replace("_ms", ""), [round(p[name] or 0.0, 3) for p in points])
    return _clean(chart.render())
