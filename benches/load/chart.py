"""make bench's chart: one row per scenario, throughput ratio and Envoy's CPU per request side by side.

Written as SVG by hand (no plotting library in the bench's venv). Panels, left to right:

1. rps ratio (variant / reference): the median of the per-round ratios as a bar from 1.00, the min-max
   spread of the rounds as a whisker, the target (where there is one) as a red tick;
2. CPU ratio (Envoy's CPU per request, variant / reference), the same way; the target there is 1/t;
3. Envoy's CPU per request in microseconds: the reference (grey) above the variant (colour), with the
   added microseconds written beside them.

The ratio axes are logarithmic (1/4 to 4, 1.00 in the middle), so 0.5 and 2 are as far from 1.00;
values past them are drawn at the edge. Each ratio's value and spread are written beside its panel. Re-draw from a summary:
    .tools/venv/bin/python benches/load/chart.py target/bench/summary.json target/bench/summary.svg
"""

import json
import math
import sys
from html import escape
from pathlib import Path

ROW = 30
LABEL_W = 300
PANEL_W = 280
VALUE_W = 130
GAP = 24
TOP = 92
RATIO_LOG2 = 2  # the ratio axes span 2**-2 .. 2**2
COLOURS = {"wasm": "#3b73b9", "module": "#3a9a4a", "aa": "#8c8c8c"}


def _text(x, y, s, size=11, anchor="start", colour="#222", weight="normal"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}" '
            f'font-weight="{weight}">{escape(str(s))}</text>')


def _ratio_x(x0, v):
    lv = max(-RATIO_LOG2, min(RATIO_LOG2, math.log2(v))) if v > 0 else -RATIO_LOG2
    return x0 + (lv + RATIO_LOG2) / (2 * RATIO_LOG2) * PANEL_W


def _ratio_panel(x0, y, s, key, target, colour):
    """One ratio (bar from 1.00 to the median, spread whisker, target tick, value beside) in a panel at x0."""
    out = []
    sp = s.get("spread", {}).get(key)
    if not sp:
        return [_text(x0 + PANEL_W + 6, y + 19, "not measured", 10, colour="#888")]
    one, med = _ratio_x(x0, 1.0), _ratio_x(x0, sp["median"])
    out.append(f'<rect x="{min(one, med):.1f}" y="{y + 7}" width="{max(abs(med - one), 1):.1f}" height="{ROW - 14}" '
               f'fill="{colour}" opacity="0.8"/>')
    lo, hi = _ratio_x(x0, sp["min"]), _ratio_x(x0, sp["max"])
    mid = y + ROW / 2
    out.append(f'<line x1="{lo:.1f}" y1="{mid}" x2="{hi:.1f}" y2="{mid}" stroke="#111" stroke-width="1.2"/>')
    for xx in (lo, hi):
        out.append(f'<line x1="{xx:.1f}" y1="{mid - 5}" x2="{xx:.1f}" y2="{mid + 5}" stroke="#111" stroke-width="1.2"/>')
    if target is not None:
        tx = _ratio_x(x0, target)
        out.append(f'<line x1="{tx:.1f}" y1="{y + 3}" x2="{tx:.1f}" y2="{y + ROW - 3}" stroke="#d62728" stroke-width="2"/>')
    out.append(_text(x0 + PANEL_W + 6, y + 19, f"{sp['median']:.2f} [{sp['min']:.2f}-{sp['max']:.2f}]", 10))
    return out


def draw(summary, path, targets=None):
    """Writes the chart of summary (the dict of summary.json) to path; targets: scenario -> rps ratio wanted."""
    targets = targets or {}
    scenarios = summary["scenarios"]
    x1 = LABEL_W
    x2 = x1 + PANEL_W + VALUE_W + GAP
    x3 = x2 + PANEL_W + VALUE_W + GAP
    width = x3 + PANEL_W + 170
    height = TOP + ROW * len(scenarios) + 60
    cpu_max = max([max(s.get("cpu_us_per_request", 0), s.get("baseline_cpu_us_per_request", 0)) for s in scenarios] + [1])
    m = summary.get("machine", {})
    st = summary.get("settings", {})
    pin = summary.get("pinning", {})
    load = summary.get("load_average", {})
    aa = summary.get("aa") or {}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif">', f'<rect width="{width}" height="{height}" fill="#fff"/>']
    out.append(_text(10, 22, f"certbound make bench: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; Envoy 1 worker; "
                              f"{st.get('rounds')} rounds x {st.get('seconds')} s per variant (ABAB), "
                              f"{st.get('connections')} connections" + (" (smoke run)" if st.get("smoke") else ""),
                     13, weight="bold"))
    pin_text = (f"oha on core {pin.get('load_generator_cores')}, Envoy on {pin.get('envoy_cores')}, "
                f"AS / authorizer / upstream Envoy / etcd on {pin.get('others_cores')}" if pin.get("pinned")
                else f"not pinned ({pin.get('why_not', '?')})")
    out.append(_text(10, 40, f"{pin_text}; load average {load.get('start')} -> {load.get('end')}", 11))
    if aa:
        out.append(_text(10, 56, f"A/A spread (the same listener twice): rps {aa['rps_spread'][0]:.3f}-{aa['rps_spread'][1]:.3f}, "
                                  f"CPU {aa['cpu_spread'][0]:.3f}-{aa['cpu_spread'][1]:.3f}. Bars: median of the per-round "
                                  f"ratios; whiskers: min-max over rounds; red: target", 11))
    out.append(_text(x1, TOP - 10, "rps ratio (variant / reference), log scale", 11, weight="bold"))
    out.append(_text(x2, TOP - 10, "Envoy CPU per request ratio (variant / reference), log scale", 11, weight="bold"))
    out.append(_text(x3, TOP - 10, "Envoy CPU per request, us (grey: reference)", 11, weight="bold"))
    bottom = TOP + ROW * len(scenarios)
    ticks = [2.0 ** e for e in range(-RATIO_LOG2, RATIO_LOG2 + 1)] + [0.85, 0.95, 1 / 0.95, 1 / 0.85]
    for x0 in (x1, x2):
        for v in ticks:
            xx = _ratio_x(x0, v)
            major = abs(math.log2(v)) % 1 == 0
            out.append(f'<line x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{bottom}" '
                       f'stroke="{"#555" if v == 1.0 else "#ccc" if major else "#eee"}"/>')
            if major:
                out.append(_text(xx, bottom + 14, f"{v:g}", 10, anchor="middle", colour="#555"))
    for i, s in enumerate(scenarios):
        y = TOP + i * ROW
        if i % 2 == 0:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{ROW}" fill="#f5f5f5"/>')
        colour = COLOURS["aa"] if s.get("aa") else COLOURS.get(s.get("artifact"), "#555")
        name = s["name"] + (" (A/A)" if s.get("aa") else "")
        out.append(_text(8, y + 13, f"{name}", 11, colour=colour, weight="bold" if s.get("aa") else "normal"))
        out.append(_text(8, y + 25, f"{s['artifact']} vs {s['reference']}", 9, colour="#666"))
        t = targets.get(s["name"])
        if s.get("aa"):
            t = None
        out += _ratio_panel(x1, y, s, "rps_ratio", t, colour)
        out += _ratio_panel(x2, y, s, "cpu_ratio", 1 / t if t else None, colour)
        if "cpu_us_per_request" in s:
            w = lambda v: max(v, 0) / cpu_max * PANEL_W
            out.append(f'<rect x="{x3}" y="{y + 4}" width="{w(s["baseline_cpu_us_per_request"]):.1f}" height="{(ROW - 10) / 2:.1f}" fill="#b0b0b0"/>')
            out.append(f'<rect x="{x3}" y="{y + 4 + (ROW - 10) / 2 + 2:.1f}" width="{w(s["cpu_us_per_request"]):.1f}" '
                       f'height="{(ROW - 10) / 2:.1f}" fill="{colour}"/>')
            end = x3 + max(w(s["cpu_us_per_request"]), w(s["baseline_cpu_us_per_request"])) + 4
            out.append(_text(end, y + 19, f"{s['cpu_us_per_request']:.1f} vs {s['baseline_cpu_us_per_request']:.1f} "
                                          f"({s['added_cpu_us_per_request']:+.1f})", 10))
    out.append(_text(10, height - 14, "Envoy's CPU per request = user + system CPU time of the bench Envoy over the "
                                      "measured window (/proc/<pid>/stat) / the requests it answered in that window "
                                      "(its downstream_rq_total counters).", 10, colour="#444"))
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench/summary.json")
    dst = Path(sys.argv[2] if len(sys.argv) > 2 else src.with_suffix(".svg"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run  # the targets

    draw(json.loads(src.read_text()), dst, targets=run.chart_targets())
    print(dst)
