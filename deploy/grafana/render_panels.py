"""Render the dashboard's panels from a real Prometheus into one PNG (Grafana is not packaged
for Debian, so this stands in for a screenshot), and report each query's series count.

    python deploy/grafana/render_panels.py --prometheus http://127.0.0.1:9090 \
        --minutes 10 --out dashboard.png

Every panel target's PromQL is sent to Prometheus' ``/api/v1/query_range`` exactly as in
``duskwatch.json``, with Grafana's variables substituted (``$camera``/``$instance``: all,
``$__rate_interval``: four scrape intervals, ``$__range``: the window). Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path

DASHBOARD = Path(__file__).with_name("duskwatch.json")
MAX_LINES = 8  # per panel


def substitute(expr: str, rate_interval: str, window_s: int) -> str:
    for name, value in (("$__rate_interval", rate_interval), ("$__range", f"{window_s}s"),
                        ("$__interval", "15s"), ("$camera", ".*"), ("$instance", ".*")):
        expr = expr.replace(name, value)
    return expr


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{qs}", timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def top(result: list[dict], k: int) -> list[dict]:
    """The ``k`` series with the largest last value (a panel of 80 all-zero classes is noise)."""
    def last(series: dict) -> float:
        v = float(series["values"][-1][1]) if series["values"] else 0.0
        return v if v == v else 0.0  # NaN (e.g. a quantile of no observations) sorts last
    return sorted(result, key=last, reverse=True)[:k]


def legend(fmt: str, labels: dict) -> str:
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    while "{{" in out:  # labels the series does not have render empty, as in Grafana
        a, b = out.index("{{"), out.index("}}") + 2
        out = out[:a] + out[b:]
    return out.strip() or json.dumps(labels)


def render(base: str, minutes: float, out: Path, scrape_s: float) -> list[tuple[str, int]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    end = time.time()
    start = end - minutes * 60
    step = max(scrape_s, minutes * 60 / 300)
    rate_interval = f"{int(4 * scrape_s)}s"
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
    counts = []
    for ax, panel in zip(axes.flat, panels):
        n = 0
        for target in panel["targets"]:
            expr = substitute(target["expr"], rate_interval, int(minutes * 60))
            result = query_range(base, expr, start, end, step)
            n += len(result)
            for series in top(result, MAX_LINES):
                ts = [(float(t) - end) / 60 for t, _ in series["values"]]
                vs = [float(v) for _, v in series["values"]]
                ax.plot(ts, vs, label=legend(target.get("legendFormat", ""), series["metric"]),
                        drawstyle="steps-post" if panel["type"] == "state-timeline" else "default")
        counts.append((panel["title"], n))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.set_title(f"{panel['title']} [{panel['type']}]" + (f" ({unit})" if unit else ""), fontsize=9)
        ax.set_xlabel("minutes from now", fontsize=7)
        ax.tick_params(labelsize=7)
        if n:
            ax.legend(fontsize=6, loc="best")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"duskwatch dashboard panels, queried from {base}", fontsize=11)
    fig.subplots_adjust(hspace=0.55, wspace=0.2, top=0.95, bottom=0.04, left=0.04, right=0.99)
    fig.savefig(out, dpi=80)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--scrape-interval", type=float, default=15, help="seconds")
    ap.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = ap.parse_args()
    for title, n in render(args.prometheus, args.minutes, args.out, args.scrape_interval):
        print(f"{n:3d} series  {title}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
