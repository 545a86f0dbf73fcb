"""Rendering of the weekly report dict (see :func:`tracehound.api.report.weekly_report`).

HTML is one self-contained page: inline CSS, and inline SVG charts drawn by pygal with ``js=[]``
(pygal's tooltips script would be a network reference) and its CSS inlined. Markdown is GitHub
flavoured (tables). Neither format references anything on the network.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

from jinja2 import Environment

STATUS_TITLES = {
    "new": "New this week",
    "regressed": "Regressed (back after a clean week)",
    "open": "Still open",
    "resolved": "Resolved",
}
BREAKDOWN = ("db", "cache", "http", "template", "self")
ROUTES_NOTE = "The routes with the most total time (requests x latency), plus the slowest by p95."


def _days(report: dict) -> list[str]:
    start = dt.date.fromisoformat(report["start"][:10]) - dt.timedelta(days=7)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(14)]


def _route_name(route: dict) -> str:
    return route["endpoint"] or f"({route['service']})"


def _location(finding: dict) -> str:
    loc = finding.get("code_location")
    if not loc:
        return ""
    where = f"{loc['filepath']}:{loc['lineno']}" if loc.get("lineno") else loc["filepath"]
    return f"{where} in {loc['function']}" if loc.get("function") else where


def _svg(chart) -> str:
    """Render inline (no XML declaration), dropping pygal's comments (they carry its web address) and
    its config ``<script>`` (only its tooltip JS reads it, and we load none: ``js=[]``)."""
    svg = re.sub(r"<!--.*?-->", "", chart.render(is_unicode=True), flags=re.S)
    return re.sub(r"<script\b.*?</script>", "", svg, flags=re.S | re.I)


def latency_trend_svg(report: dict) -> str:
    """Line chart: daily p95 (ms) per top route over the report week and the week before."""
    import pygal

    days = _days(report)
    chart = pygal.Line(
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=360,
        title="p95 latency per day (ms)",
        x_label_rotation=30,
        show_minor_x_labels=True,
        legend_at_bottom=True,
        allow_interruptions=True,
    )
    chart.x_labels = [d[5:] for d in days]
    for route in report["routes"]:
        chart.add(_route_name(route), [route["daily_p95_ms"].get(d) for d in days])
    return _svg(chart)


def breakdown_svg(report: dict) -> str:
    """Stacked bars: mean exclusive time per request (ms) by category, per top route."""
    import pygal

    chart = pygal.HorizontalStackedBar(
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=80 + 50 * max(1, len(report["routes"])),
        title="Where the time goes: mean ms per request",
        legend_at_bottom=True,
    )
    chart.x_labels = [_route_name(r) for r in report["routes"]]
    for part in BREAKDOWN:
        chart.add(part, [r["breakdown_ms"][part] for r in report["routes"]])
    return _svg(chart)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _ms(value) -> str:
    """``1,234.5 ms``; ``no data`` for ``None`` (no request in that period)."""
    return "no data" if value is None else f"{value:,.1f} ms"


def _plural(n: int, word: str) -> str:
    """``1 occurrence``, ``2 occurrences`` (thousands separated)."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _previous(head: dict, key: str) -> str:
    """The week before's ``p95_ms`` or ``error_rate``, or ``no requests`` when it had none."""
    prev = head["previous"]
    if not prev["requests"]:
        return "no requests"
    return _pct(prev[key]) if key == "error_rate" else _ms(prev[key])


def render_markdown(report: dict) -> str:
    """The report as GitHub-flavoured Markdown."""
    head, prev = report["headline"], report["headline"]["previous"]
    out = [
        f"# tracehound weekly report {report['week']}",
        "",
        f"{report['start'][:10]} to {report['end'][:10]} (UTC), compared with {report['previous_week']}.",
        "",
        "| | this week | previous week |",
        "|---|---:|---:|",
        f"| requests | {head['requests']:,} | {prev['requests']:,} |",
        f"| error rate | {_pct(head['error_rate'])} | {_previous(head, 'error_rate')} |",
        f"| p95 latency | {_ms(head['p95_ms'])} | {_previous(head, 'p95_ms')} |",
        "",
        "## Top routes",
        "",
        ROUTES_NOTE,
        "",
        "| route | requests | total time | p95 | p95 previous week | error rate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["routes"]:
        out.append(
            f"| `{_route_name(r)}` | {r['requests']:,} | {_ms(r['total_ms'])} | {_ms(r['p95_ms'])} "
            f"| {_ms(r['previous_p95_ms'])} | {_pct(r['error_rate'])} |"
        )
    counts = report["counts"]
    out += [
        "",
        "## Findings",
        "",
        ", ".join(f"{counts[s]} {s}" for s in STATUS_TITLES),
        "",
        "## Top findings by impact",
        "",
    ]
    if not report["top_findings"]:
        out.append("No open finding this week.")
    for i, f in enumerate(report["top_findings"], 1):
        out += [
            f"{i}. **{f['title']}** ({f['kind']}, {f['severity']}, {f['status']})  ",
            f"   `{f['endpoint']}`: {_plural(f['occurrences'], 'occurrence')}, {_ms(f['impact_ms'])} wasted  ",
            f"   at `{_location(f)}`  " if f.get("code_location") else "   code location unknown  ",
            f"   fix: {f['fix_hint']}",
        ]
    for status, title in STATUS_TITLES.items():
        items = report["findings"][status]
        if not items:
            continue
        out += ["", f"### {title}", "", "| kind | route | title | impact this week |", "|---|---|---|---:|"]
        for f in items:
            title_text = f["title"].replace("|", "\\|")
            out.append(f"| {f['kind']} | `{f['endpoint']}` | {title_text} | {_ms(f['impact_ms'])} |")
    out += [
        "",
        "## Time breakdown per route (mean ms per request)",
        "",
        "| route | " + " | ".join(BREAKDOWN) + " |",
        "|---|" + "---:|" * len(BREAKDOWN),
    ]
    for r in report["routes"]:
        out.append(
            f"| `{_route_name(r)}` | " + " | ".join(f"{r['breakdown_ms'][p]:.1f}" for p in BREAKDOWN) + " |"
        )
    return "\n".join(out) + "\n"


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tracehound weekly report {{ r.week }}</title>
<link rel="icon" href="data:,">
<style>
body{font-family:system-ui,-apple-system,sans-serif;margin:2rem auto;max-width:64rem;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{padding:.25rem .7rem;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.kpi{display:flex;gap:2rem}.kpi div{font-size:1.6rem}
.kpi small{display:block;font-size:.8rem;color:#666}code{background:#f4f4f4;padding:0 .2rem}
.sev-high{color:#b00020}.sev-medium{color:#b36b00}.sev-low{color:#555}li{margin-bottom:.6rem}
</style></head><body>
"""

_BODY = """<h1>tracehound weekly report {{ r.week }}</h1>
<p>{{ r.start[:10] }} to {{ r.end[:10] }} (UTC), compared with {{ r.previous_week }}.</p>
<section class="kpi">
<div>{{ "{:,}".format(h.requests) }}<small>requests ({{ "{:,}".format(h.previous.requests) }} the week before)</small></div>
<div>{{ pct(h.error_rate) }}<small>error rate ({{ previous(h, "error_rate") }} the week before)</small></div>
<div>{{ ms(h.p95_ms) }}<small>p95 latency ({{ previous(h, "p95_ms") }} the week before)</small></div>
</section>
<h2>Top routes</h2>
<p>{{ routes_note }}</p>
<table><tr><th>route</th><th>requests</th><th>total time</th><th>p95</th><th>p95 previous week</th><th>error rate</th></tr>
{% for x in r.routes %}<tr><td><code>{{ route_name(x) }}</code></td><td class="n">{{ "{:,}".format(x.requests) }}</td>
<td class="n">{{ ms(x.total_ms) }}</td><td class="n">{{ ms(x.p95_ms) }}</td><td class="n">{{ ms(x.previous_p95_ms) }}</td><td class="n">{{ pct(x.error_rate) }}</td></tr>
{% endfor %}</table>
<figure>{{ trend_svg|safe }}</figure>
<h2>Findings</h2>
<p>{% for s, t in titles.items() %}{{ r.counts[s] }} {{ s }}{% if not loop.last %}, {% endif %}{% endfor %}</p>
<h3>Top findings by impact</h3>
{% if not r.top_findings %}<p>No open finding this week.</p>{% endif %}
<ol>{% for f in r.top_findings %}<li><strong>{{ f.title }}</strong>
<span class="sev-{{ f.severity }}">{{ f.kind }}, {{ f.severity }}</span>, {{ f.status }}<br>
<code>{{ f.endpoint }}</code>: {{ plural(f.occurrences, "occurrence") }}, {{ ms(f.impact_ms) }} wasted<br>
{% if f.code_location %}at <code>{{ location(f) }}</code><br>{% endif %}
fix: {{ f.fix_hint }}</li>{% endfor %}</ol>
{% for s, t in titles.items() %}{% if r.findings[s] %}<h3>{{ t }}</h3>
<table><tr><th>kind</th><th>route</th><th>title</th><th>impact this week</th><th>previous week</th></tr>
{% for f in r.findings[s] %}<tr><td>{{ f.kind }}</td><td><code>{{ f.endpoint }}</code></td><td>{{ f.title }}</td>
<td class="n">{{ ms(f.impact_ms) }}</td><td class="n">{{ ms(f.previous_impact_ms) }}</td></tr>{% endfor %}
</table>{% endif %}{% endfor %}
<h2>Where the time goes</h2>
<figure>{{ breakdown_svg|safe }}</figure>
"""

_TAIL = """</body></html>
"""


@functools.cache
def _template(fragment: bool):
    """The compiled Jinja2 template (autoescape on), compiled once per process: compiling costs
    ~20 ms, about as much as rendering."""
    return Environment(autoescape=True).from_string(_BODY if fragment else _HEAD + _BODY + _TAIL)


def render_html(report: dict, fragment: bool = False) -> str:
    """The report as one self-contained HTML page (escaped text, inline SVG, no network reference).

    ``fragment=True`` gives only the body's content (no html/head/body, no inline CSS) for a page
    that wraps it in its own layout (the UI's ``/reports/weekly``)."""
    return _template(fragment).render(
        r=report,
        h=report["headline"],
        titles=STATUS_TITLES,
        pct=_pct,
        ms=_ms,
        plural=_plural,
        previous=_previous,
        routes_note=ROUTES_NOTE,
        route_name=_route_name,
        location=_location,
        trend_svg=latency_trend_svg(report),
        breakdown_svg=breakdown_svg(report),
    )
