#!/usr/bin/env python3
"""Merge the benchmark results of one run into tables and a plot.

    bench/report.py OUTDIR

reads OUTDIR/{clone,attach,pipeline,build}.json (whichever exist), writes
OUTDIR/report.md (tables) and OUTDIR/report.svg (plots), and prints the
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

CONSUMER_NAMES = {"floor": "floor", "ours": "ours", "nephele": "Nephele's", "xsfloor": "XS_CLONE floor"}


def cfg_name(c):
    return f"{c['xenstored']}, {c['vif']} vif"


def rt(v):
    """A ratio, two decimals."""
    return "-" if v is None else f"{v:.2f}"


def clone_section(cl):
    cfgs = cl["configs"]
    md = ["## Real clones on Nephele's hypervisor (QEMU TCG): ours vs Nephele's, with the floor", "",
          cl.get("method", ""), ""]
    # Ratios and the floor, one row per configuration: the summary.
    rows = []
    for c in cfgs:
        r = c["compare"].get("ratio_ours_nephele") or {}
        fl = c["consumers"].get("floor", {}).get("seq", {})
        ov = c["compare"].get("overhead", {})
        bs = sorted((r.get("batch") or {}), key=int)
        bmax = bs[-1] if bs else None
        rows.append([cfg_name(c), fl.get("median_ms"),
                     (ov.get("ours") or {}).get("seq_median_ms"), (ov.get("nephele") or {}).get("seq_median_ms"),
                     rt(r.get("overhead_median")), rt(r.get("overhead_p90")), rt(r.get("seq_median")),
                     rt(r.get("xs_requests_per_clone")), rt(r.get("xs_daemon_requests_per_clone")),
                     rt(r.get("cpu_dom0_per_clone")), rt(r.get("cpu_dom0_over_floor_per_clone")),
                     f"{rt(r['batch'].get(bmax))} (B={bmax})" if bmax else None,
                     f"{rt(r['batch_overhead'].get(bmax))} (B={bmax})" if bmax else None,
                     (ov.get("xsfloor") or {}).get("seq_median_ms"), rt(r.get("xsfloor_overhead_median"))])
    md += ["### Ratios ours / Nephele's per configuration", "",
           table(["configuration", "floor fork median ms", "ours overhead ms", "Nephele's overhead ms",
                  "overhead median", "overhead p90", "fork median", "Xenstore req/clone", "daemon's own req/clone",
                  "Dom0 CPU/clone", "Dom0 CPU/clone over floor",
                  "batch time", "batch overhead", "XS_CLONE floor overhead ms", "XS_CLONE floor / Nephele's"], rows),
           "", "Overhead = fork() median (or p90) minus the floor's in the same boot; a ratio < 1 is ours "
           "better. Batch ratios are for the largest batch of the run. XS_CLONE floor: xencloned "
           "--bench-xs-floor, only the requests no XS_CLONE daemon can do without (XS_CLONE of the basic and "
           "console trees, XS_INTRODUCE, pipelined) and the completion, children left paused; its overhead over "
           "Nephele's is the lowest ratio any XS_CLONE daemon can reach in that boot.", ""]
    # Sequential forks, per consumer.
    rows = []
    for c in cfgs:
        ov = c["compare"].get("overhead", {})
        for d, v in c["consumers"].items():
            s = v["seq"]
            pc = s.get("per_clone") or {}
            irq = None if pc.get("cpu_ms_irq") is None else round(pc["cpu_ms_irq"] + (pc.get("cpu_ms_softirq") or 0), 1)
            rows.append([cfg_name(c), CONSUMER_NAMES.get(d, d), f"{s['forks_ok']}/{s['n']}", s["median_ms"], s["p90_ms"],
                         (ov.get(d) or {}).get("seq_median_ms"), (ov.get(d) or {}).get("seq_p90_ms"),
                         s.get("daemon_median_ms"), pc.get("xs_requests"), pc.get("xs_daemon"),
                         (s.get("first_clone") or {}).get("xs_requests"), pc.get("cpu_ms_dom0"),
                         (ov.get(d) or {}).get("seq_cpu_dom0_ms"),
                         pc.get("cpu_ms_consumer"), pc.get("cpu_ms_xenstored"), pc.get("cpu_ms_kthreads"), irq,
                         pc.get("cpu_ms_xenconsoled")])
    md += ["### Sequential fork()s", "",
           table(["configuration", "consumer", "forks", "median ms", "p90 ms", "overhead median ms",
                  "overhead p90 ms", "daemon median ms", "Xenstore req/clone", "daemon's own req/clone",
                  "first clone req",
                  "Dom0 CPU ms/clone", "over floor", "consumer", "xenstored", "kthreads", "irq+softirq",
                  "(xenconsoled)"], rows),
           "", "CPU columns are ms per clone, net of the idle background (below); Dom0 CPU = consumer + "
           "xenstored + kernel threads + irq + softirq. "
           "'first clone req' (0 vif only): the first clone of a parent, which also reads the parent.", ""]
    # Background.
    rows = []
    for c in cfgs:
        for d, v in c["consumers"].items():
            ic = v.get("idle_cpu") or {}
            if ic:
                rows.append([cfg_name(c), CONSUMER_NAMES.get(d, d), ic.get("consumer_pct"), ic.get("xenstored_pct"),
                             ic.get("kthreads_pct"), round(ic.get("irq_pct", 0) + ic.get("softirq_pct", 0), 1),
                             ic.get("xenconsoled_pct"), ic.get("system_pct"), ic.get("user_pct")])
    if rows:
        md += ["### Dom0 background while idle (percent of one CPU, 10 s with the consumer running, nothing to do)", "",
               table(["configuration", "consumer", "consumer %", "xenstored %", "kthreads %", "irq+softirq %",
                      "xenconsoled %", "system % (all)", "user % (all)"], rows),
               "", "Subtracted (rate x window length) from the CPU figures above; a consumer that is busy while "
               "idle shows it here.", ""]
    # Batches.
    rows = []
    for c in cfgs:
        ov = c["compare"].get("overhead", {})
        r = c["compare"].get("ratio_ours_nephele") or {}
        for b in c["batches"]:
            b = str(b)
            e = {d: v["batch"].get(b, {}) for d, v in c["consumers"].items()}
            rows.append([cfg_name(c), b, e.get("floor", {}).get("ms"), e.get("ours", {}).get("ms"),
                         e.get("nephele", {}).get("ms"), (ov.get("ours") or {}).get("batch_ms", {}).get(b),
                         (ov.get("nephele") or {}).get("batch_ms", {}).get(b), rt((r.get("batch") or {}).get(b)),
                         rt((r.get("batch_overhead") or {}).get(b)),
                         (e.get("ours", {}).get("per_clone") or {}).get("xs_requests"),
                         (e.get("nephele", {}).get("per_clone") or {}).get("xs_requests"),
                         (e.get("ours", {}).get("per_clone") or {}).get("cpu_ms_dom0"),
                         (e.get("nephele", {}).get("per_clone") or {}).get("cpu_ms_dom0")])
    md += ["### One clone() of B children", "",
           table(["configuration", "B", "floor ms", "ours ms", "Nephele's ms", "ours overhead ms",
                  "Nephele's overhead ms", "ratio time", "ratio overhead", "ours req/clone",
                  "Nephele's req/clone", "ours CPU ms/clone", "Nephele's CPU ms/clone"], rows), ""]
    # Where our time goes.
    names = []
    for c in cfgs:
        for k in (c["consumers"].get("ours", {}).get("seq", {}).get("stages_mean_ms") or {}):
            if k not in names:
                names.append(k)
    if names:
        rows = []
        for c in cfgs:
            o = c["consumers"].get("ours", {})
            for label, e in [("seq", o.get("seq", {}))] + [(f"batch {b}", v) for b, v in o.get("batch", {}).items()]:
                st = e.get("stages_mean_ms") or {}
                if st:
                    rows.append([cfg_name(c), label, e.get("daemon_mean_ms")] + [st.get(k) for k in names])
        md += ["### Where our daemon's time goes (mean ms per clone, notification read -> completion + unpause)", "",
               table(["configuration", "series", "latency mean"] + names, rows),
               "", "Stages from our stats file (/run/xencloned/stats.1.json), over each window. Nephele's "
               "daemon reports only its total ('daemon median ms' above).", ""]
    # Targets.
    rows = [[t["target"], t["config"], rt(t["value"]), t["limit"],
             "met" if t["met"] else "NOT met" if t["met"] is False else "not measured"] for t in cl.get("targets", [])]
    md += ["### Issue 13 targets", "", table(["target", "configuration", "ours/Nephele's", "limit", ""], rows)]
    for c in cfgs:
        h = c.get("host") or {}
        if h.get("samples_with_other_vms"):
            md += ["", f"Boot {cfg_name(c)}: another VM ran on the host's 2 cores during "
                   f"{h['samples_with_other_vms']} of {h['samples']} samples (max {h['max_qemu']} QEMU at once, "
                   f"load {h['max_load1']}): its times are inflated by that much contention."]
    bad = [(cfg_name(c), c["boot"]) for c in cfgs if c["boot"]["failed_checks"] or not c["boot"]["done"]]
    for name, b in bad:
        md += ["", f"Boot {name}: done={b['done']}, {len(b['failed_checks'])} failed check(s)"
               + (": " + "; ".join(b["failed_checks"][:5]) if b["failed_checks"] else "")]
    return "\n".join(md)


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


CONSUMER_COLORS = {"floor": "#7f7f7f", "ours": "#1f77b4", "nephele": "#d62728"}


def log_axis(svg, x0, y0, h, lo, hi, label):
    """A log10 y axis from lo to hi (decades); returns value -> y."""
    import math
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if a == b:
        b += 1
    def y(v):
        return y0 + h - h * (math.log10(max(v, 10 ** a)) - a) / (b - a)
    svg.line(x0, y0, x0, y0 + h)
    for e in range(a, b + 1):
        yy = y(10 ** e)
        svg.line(x0 - 4, yy, x0, yy)
        v = 10 ** e
        svg.text(x0 - 6, yy + 4, f"{v:g}" if v < 1e4 else f"1e{e}", 10, "end")
        if e < b:
            for k in range(2, 10):
                svg.line(x0 - 2, y(k * v), x0, y(k * v), "#ccc")
    svg.add(f'<text x="{x0 - 45}" y="{y0 + h / 2}" font-size="11" font-family="sans-serif" '
            f'text-anchor="middle" transform="rotate(-90 {x0 - 45} {y0 + h / 2})">{escape(label)}</text>')
    return y


def clone_dist(svg, x0, y0, w, h, cl):
    """fork() latency distribution per configuration and consumer: samples, median, p90."""
    svg.text(x0 + w / 2, y0 - 10, "Sequential fork() latency in the guest (dots: forks; bar: median; tick: p90)",
             14, "middle", "bold")
    groups = [(cfg_name(c), c["consumers"]) for c in cl["configs"]]
    vals = [v for _, cs in groups for d in cs.values() for v in d["seq"]["fork_ms"] if v > 0]
    if not vals:
        return
    y = log_axis(svg, x0, y0, h, min(vals) * 0.8, max(vals) * 1.2, "ms (log)")
    svg.line(x0, y0 + h, x0 + w, y0 + h)
    gw = w / len(groups)
    for gi, (name, cs) in enumerate(groups):
        ds = [d for d in ("floor", "ours", "nephele") if d in cs]
        cw = gw * 0.8 / max(len(ds), 1)
        for di, d in enumerate(ds):
            s = cs[d]["seq"]
            cx = x0 + gi * gw + gw * 0.1 + di * cw + cw / 2
            col = CONSUMER_COLORS.get(d, "#000")
            for i, v in enumerate(s["fork_ms"]):
                jx = cx + ((i * 37) % 11 - 5) * cw / 30
                svg.add(f'<circle cx="{jx:.1f}" cy="{y(v):.1f}" r="2.2" fill="{col}" fill-opacity="0.55"/>')
            if s.get("median_ms"):
                svg.add(f'<line x1="{cx - cw * 0.35:.1f}" y1="{y(s["median_ms"]):.1f}" x2="{cx + cw * 0.35:.1f}" '
                        f'y2="{y(s["median_ms"]):.1f}" stroke="{col}" stroke-width="3"/>')
                svg.text(cx + cw * 0.38, y(s["median_ms"]) + 3, fmt(s["median_ms"], 0), 9)
            if s.get("p90_ms"):
                svg.add(f'<line x1="{cx - cw * 0.2:.1f}" y1="{y(s["p90_ms"]):.1f}" x2="{cx + cw * 0.2:.1f}" '
                        f'y2="{y(s["p90_ms"]):.1f}" stroke="{col}" stroke-width="1.5" stroke-dasharray="3,2"/>')
            svg.text(cx, y0 + h + 14, CONSUMER_NAMES.get(d, d), 9, "middle")
        svg.text(x0 + gi * gw + gw / 2, y0 + h + 30, name, 11, "middle", "bold")
        if gi:
            svg.line(x0 + gi * gw, y0, x0 + gi * gw, y0 + h, "#ddd")


def clone_batch(svg, x0, y0, w, h, c, lo, hi):
    """clone() time against batch size, one line per consumer (log-log)."""
    import math
    svg.text(x0 + w / 2, y0 - 10, f"clone() of B children: {cfg_name(c)}", 12, "middle", "bold")
    y = log_axis(svg, x0, y0, h, lo, hi, "ms (log)")
    svg.line(x0, y0 + h, x0 + w, y0 + h)
    bs = sorted(c["batches"])
    if not bs:
        return
    lb, hb = math.log2(bs[0]), math.log2(bs[-1]) if bs[-1] > bs[0] else math.log2(bs[0]) + 1
    def x(b):
        return x0 + 10 + (w - 20) * (math.log2(b) - lb) / (hb - lb)
    for b in bs:
        svg.line(x(b), y0 + h, x(b), y0 + h + 4)
        svg.text(x(b), y0 + h + 15, f"B={b}", 10, "middle")
    ly = y0 + 4
    for d in ("floor", "ours", "nephele"):
        if d not in c["consumers"]:
            continue
        col = CONSUMER_COLORS[d]
        pts = [(x(b), y(e["ms"])) for b in bs for e in [c["consumers"][d]["batch"].get(str(b), {})]
               if e.get("ms")]
        if len(pts) > 1:
            svg.add(f'<polyline fill="none" stroke="{col}" stroke-width="2" points="'
                    + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts) + '"/>')
        for px, py in pts:
            svg.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{col}"/>')
        svg.rect(x0 + 8, ly, 10, 10, col)
        svg.text(x0 + 22, ly + 9, CONSUMER_NAMES.get(d, d), 10)
        ly += 14


def plot(out, attach, pipeline, clone=None):
    rows = []  # (height, [(width, draw(svg, x, y))])
    if clone and clone.get("configs"):
        ncfg = len(clone["configs"])
        rows.append((380, [(max(1040, 260 * ncfg), lambda svg, x, y: clone_dist(svg, x + 70, y + 40, max(1040, 260 * ncfg) - 100, 280, clone))]))
        ms = [e["ms"] for c in clone["configs"] for d in c["consumers"].values() for e in d["batch"].values() if e.get("ms")]
        if ms:
            lo, hi = min(ms) * 0.8, max(ms) * 1.2
            row = []
            for c in clone["configs"]:
                row.append((300, lambda svg, x, y, c=c: clone_batch(svg, x + 65, y + 40, 215, 220, c, lo, hi)))
            rows.append((320, row))
    other = []
    colors = ["#1f77b4", "#aec7e8", "#d62728", "#ff9896"]
    if attach:
        def draw_attach(svg, x, y):
            runs = {(r["path"], r["n"]): r for r in attach["runs"]}
            ns = sorted({r["n"] for r in attach["runs"]})
            series = [(f"{path} {q}", [runs.get((path, n), {}).get(f"{q}_ms") for n in ns])
                      for path in ("clone", "stock") for q in ("p50", "p99")]
            bars(svg, x + 70, y + 50, 420, 270, "Vif attach latency", "ms (backend node -> connected + enslaved)",
                 [f"N={n}" for n in ns], series, colors)
        other.append((520, draw_attach))
    if pipeline:
        def draw_pipeline(svg, x, y):
            queued = sorted({r["queued"] for r in pipeline["runs"]})
            vifs = sorted({r["vifs"] for r in pipeline["runs"]})
            runs = {(r["queued"], r["vifs"]): r for r in pipeline["runs"]}
            series = [(f"{v} vif/clone", [runs.get((q, v), {}).get("clones_per_s") for q in queued])
                      for v in vifs]
            bars(svg, x + 70, y + 50, 420, 270, "xencloned pipeline throughput", "clones per second",
                 [f"{q} queued" for q in queued], series, ["#2ca02c", "#98df8a"])
        other.append((520, draw_pipeline))
    if other:
        rows.append((380, other))
    if not rows:
        return None
    width = max(sum(w for w, _ in r) for _, r in rows)
    svg = Svg(width, sum(h for h, _ in rows))
    y = 0
    for h, row in rows:
        x = 0
        for w, draw in row:
            draw(svg, x, y)
            x += w
        y += h
    path = os.path.join(out, "report.svg")
    with open(path, "w") as f:
        f.write(svg.render())
    return path


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/report.py OUTDIR")
    out = sys.argv[1]
    clone, attach, pipeline, build = (load(out, n) for n in ("clone.json", "attach.json", "pipeline.json", "build.json"))
    sections = ["# xen-clone benchmarks", ""]
    for data, fn in ((clone, clone_section), (attach, attach_section), (pipeline, pipeline_section),
                     (build, build_section)):
        if data:
            sections += [fn(data), ""]
    if not (clone or attach or pipeline or build):
        sys.exit(f"no results in {out}")
    svg = plot(out, attach, pipeline, clone)
    if svg:
        sections += [f"Plot: {svg}", ""]
    md = "\n".join(sections)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
