#!/usr/bin/env python3
"""Merge the benchmark results of one run into tables and a plot.

    bench/report.py OUTDIR

reads OUTDIR/{attach,pipeline,build}.json (whichever exist), writes
OUTDIR/report.md (tables) and OUTDIR/report.svg (plot), and prints the
tables. The SVG is written by hand so that no plotting library is needed.
"""
import json
import os
import sys
from html import escape


def load(out, name):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def attach_section(a):
    runs = {(r["path"], r["n"]): r for r in a["runs"]}
    ns = sorted({r["n"] for r in a["runs"]})
    rows = []
    for n in ns:
        c, s = runs.get(("clone", n), {}), runs.get(("stock", n), {})
        def conn(r):
            if "vifs_attempted" not in r:
                return "-"
            return f"{r.get('vifs_connected')}/{r.get('vifs_attempted')}"
        rows.append([n, c.get("p50_ms"), c.get("p99_ms"), conn(c), s.get("p50_ms"), s.get("p99_ms"), conn(s),
                     a.get("ratio_p50", {}).get(str(n)), a.get("ratio_p99", {}).get(str(n))])
    md = ["## Vif attach latency (stock Xen 4.17 under QEMU TCG)", "",
          a.get("method", ""), "",
          table(["N vifs", "clone p50 ms", "clone p99 ms", "clone connected", "stock p50 ms", "stock p99 ms",
                 "stock connected", "ratio p50 (clone/stock)", "ratio p99"], rows),
          "", "Ratios are given only when every vif of both paths connected; percentiles of incomplete "
          "runs cover the connected vifs only."]
    return "\n".join(md)


def pipeline_section(p):
    rows = [[r["queued"], r["vifs"], r.get("repeats"), r["clones_per_s"],
             min(r["elapsed_ms"]) if r.get("elapsed_ms") else None] for r in p["runs"]]
    md = ["## Dom0 pipeline throughput (simulated clone device, real xenstored)", "",
          table(["queued", "vifs/clone", "repeats", "clones/s (median)", "best elapsed ms"], rows)]
    rss = p.get("rss")
    if rss:
        md += ["", f"Daemon RSS: {fmt(rss.get('rss_idle_kib'))} KiB idle, "
               f"{fmt(rss.get('rss_inflight_kib'))} KiB with {rss.get('inflight')} clones in flight: "
               f"**{fmt(rss.get('per_clone_kib'), 2)} KiB per in-flight clone**."]
    xs = p.get("xenstore_requests_per_clone")
    if xs:
        rows = []
        for k, v in xs.items():
            if isinstance(v, dict):
                rows.append([k, v.get("vifs0"), v.get("vifs1")])
        md += ["", "Xenstore requests per clone:", "",
               table(["daemon", "0 vifs", "1 vif"], rows)]
    return "\n".join(md)


def build_section(b):
    rows = [[k, v.get("seconds"), v.get("note", "")] for k, v in b.items()]
    return "\n".join(["## Kernel and module build (2 cores)", "",
                      table(["build", "seconds", "how measured"], rows)])


class Svg:
    def __init__(self, w, h):
        self.w, self.h, self.parts = w, h, []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, anchor="start", weight="normal"):
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'font-weight="{weight}" font-family="sans-serif">{escape(str(s))}</text>')

    def rect(self, x, y, w, h, fill):
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"/>')

    def line(self, x1, y1, x2, y2, stroke="#888"):
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>')

    def render(self):
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}"><rect width="100%" height="100%" fill="white"/>'
                + "".join(self.parts) + "</svg>\n")


def bars(svg, x0, y0, w, h, title, ylabel, groups, series, colors):
    """Grouped bar chart. groups: labels; series: [(name, [values per group])]."""
    svg.text(x0 + w / 2, y0 - 10, title, 14, "middle", "bold")
    vals = [v for _, vs in series for v in vs if v is not None]
    top = max(vals) * 1.15 if vals else 1
    svg.line(x0, y0, x0, y0 + h)
    svg.line(x0, y0 + h, x0 + w, y0 + h)
    for i in range(5):
        v = top * i / 4
        y = y0 + h - h * i / 4
        svg.line(x0 - 4, y, x0, y)
        svg.text(x0 - 6, y + 4, f"{v:.0f}" if top >= 10 else f"{v:.2f}", 10, "end")
    svg.add(f'<text x="{x0 - 45}" y="{y0 + h / 2}" font-size="11" font-family="sans-serif" '
            f'text-anchor="middle" transform="rotate(-90 {x0 - 45} {y0 + h / 2})">{escape(ylabel)}</text>')
    gw = w / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        gx = x0 + gi * gw + gw * 0.1
        for si, (_, vs) in enumerate(series):
            v = vs[gi]
            if v is None:
                continue
            bh = h * v / top
            svg.rect(gx + si * bw, y0 + h - bh, bw - 2, bh, colors[si % len(colors)])
            svg.text(gx + si * bw + bw / 2, y0 + h - bh - 3, fmt(v, 1 if v < 100 else 0), 9, "middle")
        svg.text(x0 + gi * gw + gw / 2, y0 + h + 15, g, 11, "middle")
    lx = x0 + 10
    for si, (name, _) in enumerate(series):
        svg.rect(lx, y0 + 2, 10, 10, colors[si % len(colors)])
        svg.text(lx + 14, y0 + 11, name, 10)
        lx += 14 + 7 * len(name) + 12


def plot(out, attach, pipeline):
    panels = [p for p in (attach, pipeline) if p]
    if not panels:
        return None
    svg = Svg(520 * len(panels), 380)
    colors = ["#1f77b4", "#aec7e8", "#d62728", "#ff9896"]
    x = 70
    if attach:
        runs = {(r["path"], r["n"]): r for r in attach["runs"]}
        ns = sorted({r["n"] for r in attach["runs"]})
        series = [(f"{path} {q}", [runs.get((path, n), {}).get(f"{q}_ms") for n in ns])
                  for path in ("clone", "stock") for q in ("p50", "p99")]
        bars(svg, x, 50, 420, 270, "Vif attach latency", "ms (backend node -> connected + enslaved)",
             [f"N={n}" for n in ns], series, colors)
        x += 520
    if pipeline:
        queued = sorted({r["queued"] for r in pipeline["runs"]})
        vifs = sorted({r["vifs"] for r in pipeline["runs"]})
        runs = {(r["queued"], r["vifs"]): r for r in pipeline["runs"]}
        series = [(f"{v} vif/clone", [runs.get((q, v), {}).get("clones_per_s") for q in queued])
                  for v in vifs]
        bars(svg, x, 50, 420, 270, "xencloned pipeline throughput", "clones per second",
             [f"{q} queued" for q in queued], series, ["#2ca02c", "#98df8a"])
    path = os.path.join(out, "report.svg")
    with open(path, "w") as f:
        f.write(svg.render())
    return path


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/report.py OUTDIR")
    out = sys.argv[1]
    attach, pipeline, build = (load(out, n) for n in ("attach.json", "pipeline.json", "build.json"))
    sections = ["# xen-clone benchmarks", ""]
    for data, fn in ((attach, attach_section), (pipeline, pipeline_section), (build, build_section)):
        if data:
            sections += [fn(data), ""]
    if not (attach or pipeline or build):
        sys.exit(f"no results in {out}")
    svg = plot(out, attach, pipeline)
    if svg:
        sections += [f"Plot: {svg}", ""]
    md = "\n".join(sections)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
