#!/usr/bin/env python3
"""Turn the serial logs of bench/clone.sh's boots into clone.json and clone.csv.

    bench/clone.py OUTDIR

reads OUTDIR/clone-XENSTORED-vifV-serial.log (+ -result.json) of every
configuration that ran (the "XC-BENCH*" lines of
tests/nephele/scenarios/bench-clone.sh), writes OUTDIR/clone.json and
OUTDIR/clone.csv and prints a short table. Definitions are in METHOD below.
"""
import csv
import glob
import json
import math
import os
import re
import sys

METHOD = (
    "Nephele's Xen (scripts/build-nephele.sh) under QEMU TCG, 2 vCPUs, Dom0 1 GiB / 2 vCPUs (our "
    "slub_debug test kernel), Nephele's toolstack; one boot per configuration (xenstored x vifs per "
    "guest), same image, three consumers of the clone notifications in turn in that boot: floor "
    "(tests/nephele/tools/clone-floor on our xen_clone_dev: completes each entry as soon as it is read; "
    "children stay paused, no Xenstore, no devices), ours (xen_clone_dev + netback_clone + xencloned, "
    "default flags), Nephele's C xencloned (-c; -c -d on the C xenstored, which has no XS_CLONE) owning "
    "the ring itself, with netback_clone. Guests: 0 vif: tests/nephele/guests/forker (32 MB Mini-OS; "
    "mode=fork count=N delay_ms=D start_ms=S, mode=batch n=B); 1 vif: Nephele's server-udp (Mini-OS + lwIP + "
    "netfront, vif in bond0; '-f -c N': N fork()s back to back; '-x -c B': one clone() of B). Each series "
    "and each batch has a fresh parent; every domain is destroyed after it. Guest time: the parent's own "
    "clock around fork()/clone() (forker's XCF lines, server-udp's 'info: S.UUUUUU' lines). Dom0 overhead "
    "= a consumer's time - the floor's time in the same boot (medians and p90 for series; the single "
    "clone() call for batches). Daemon time: notification read -> completion as the daemon itself "
    "reports it (our stats file; Nephele's 'clone completion msec=' log lines; the floor: read -> ioctl "
    "returned). Xenstore requests: counted by the xenstored itself over the window (oxenstored's access "
    "log, the C xenstored's -T trace; watch events and connection bookkeeping are not requests), all "
    "connections (daemon, xenconsoled, Dom0 kernel, the guests), and the daemon's own (its connections: those "
    "that sent XS_INTRODUCE). Dom0 CPU: deltas of utime+stime over "
    "the window of the consumer (with its reaped children), the xenstored, the kernel threads (children "
    "of kthreadd) and all CPUs' irq+softirq time (/proc/stat); xenconsoled apart; 10 ms ticks; each "
    "net of Dom0's background (TCG keeps even an idle Dom0 busy): the rate of an idle window of 10 s "
    "taken with the same consumer running, times the window's length ('raw' without). The window "
    "opens once the parent runs and before it clones, and closes once the last clone returned and every "
    "child runs (forker: its first heartbeat; server-udp: 'Listening' and its vif in bond0; floor: the "
    "parent's return), plus 2 s. server-udp clones as soon as its netfront is up, so its window also "
    "holds its own start-up: that is measured alone (the same guest without -f/-x, 'base') and "
    "subtracted. Per clone = window / clones. p90 is nearest-rank.")

KV = re.compile(r"(\w+)=(\S*)")
SERIAL = re.compile(r"clone-(\w+)-vif(\d)-serial\.log$")
CPU_KEYS = ("cpu_consumer", "cpu_xenstored", "cpu_kthreads", "cpu_irq", "cpu_softirq")
CPU_ALL = CPU_KEYS + ("cpu_xenconsoled", "cpu_system", "cpu_user")
CONSUMERS = ("floor", "ours", "nephele", "xsfloor")


def kv(s):
    return {k: v for k, v in KV.findall(s)}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def pct(vals, q):
    s = sorted(v for v in vals if v is not None)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else None


def rnd(v, nd=1):
    return None if v is None else round(v, nd)


def ratio(a, b, nd=3):
    return round(a / b, nd) if a is not None and b not in (None, 0) else None


def sub(a, b):
    return None if a is None or b is None else a - b


def parse_log(path):
    """Every XC-BENCH* record of one boot, in order."""
    recs = []
    for line in open(path, errors="replace"):
        m = re.search(r"XC-BENCH(-\w+)? (.*)$", line.rstrip("\n"))
        if not m:
            continue
        tag, rest = (m[1] or "")[1:] or "WINDOW", m[2]
        if tag == "STATS":
            head, _, js = rest.partition("{")
            r = kv(head)
            r["stats"] = None
            js = "{" + js.strip().rstrip(",")
            for cand in (js, js + "}"):
                try:
                    r["stats"] = json.loads(cand)
                    break
                except ValueError:
                    pass
        else:
            r = kv(rest)
        r["tag"] = tag
        recs.append(r)
    return recs


def window(recs, daemon, kind, n=None):
    for r in recs:
        if r["tag"] == "WINDOW" and r.get("daemon") == daemon and r.get("kind") == kind and \
                (n is None or r.get("n") == str(n)):
            return {k: int(v) for k, v in r.items() if k not in ("tag", "kind", "daemon") and v.lstrip("-").isdigit()}
    return None


def daemon_ms(recs, daemon, kind, n=None):
    for r in recs:
        if r["tag"] == "DAEMON" and r.get("daemon") == daemon and r.get("kind") == kind and \
                (n is None or r.get("n") == str(n)):
            return [float(x) for x in r.get("ms", "").split(",") if num(x) is not None]
    return []


def stages(recs, kind, n, daemon="ours"):
    """Our daemon's mean stage times (ms) and mean latency over one window
    (daemon: ours or xsfloor, both xencloned; older logs name no daemon: ours)."""
    pair = {r.get("when"): r.get("stats") for r in recs
            if r["tag"] == "STATS" and r.get("kind") == kind and r.get("n") == str(n)
            and r.get("daemon", "ours") == daemon}
    a, b = pair.get("before"), pair.get("after")
    if not a or not b:
        return None, None
    ca, cb = a.get("latency_ms", {}).get("count", 0), b.get("latency_ms", {}).get("count", 0)
    if cb <= ca:
        return None, None
    def tot(s, c, v):
        return (v or 0) * c
    lat = (tot(b, cb, b["latency_ms"].get("mean")) - tot(a, ca, a["latency_ms"].get("mean"))) / (cb - ca)
    st = {}
    for k, v in (b.get("stages_mean_ms") or {}).items():
        va = (a.get("stages_mean_ms") or {}).get(k, 0)
        st[k] = max(0.0, round((v * cb - va * ca) / (cb - ca), 3))  # 0, not -0.0 from rounding
    return st, round(lat, 3)


def per_clone(w, base, n, idle=None):
    """Xenstore requests and CPU ms per clone of a window, less the base
    window (server-udp's own start-up), each net of the idle background
    (the idle window's rate times the window's length)."""
    if not w or not n:
        return None
    iw = (idle or {}).get("wall_ms") or 0
    def net(win, k):
        if not win or win.get(k) is None:
            return 0
        bg = idle.get(k, 0) * win.get("wall_ms", 0) / iw if iw else 0
        return win[k] - bg
    def d(k, raw=False):
        if w.get(k) is None:
            return None
        if raw:
            return (w[k] - (base or {}).get(k, 0)) / n
        return (net(w, k) - net(base, k)) / n
    out = {"xs_requests": rnd(d("xs_requests", True)), "xs_clone_ops": rnd(d("xs_clone_ops", True), 2),
           "xs_daemon": rnd(d("xs_daemon", True)) if "xs_daemon" in w else None}
    for k in CPU_ALL:
        out[k.replace("cpu_", "cpu_ms_")] = rnd(d(k))
    parts = [d(k) for k in CPU_KEYS]
    out["cpu_ms_dom0"] = rnd(sum(parts)) if all(p is not None for p in parts) else None
    raw = [d(k, True) for k in CPU_KEYS]
    out["cpu_ms_dom0_raw"] = rnd(sum(raw)) if all(p is not None for p in raw) else None
    out["wall_ms"] = w.get("wall_ms")
    return out


def idle_rates(idle):
    """Background CPU while idle, in percent of one CPU."""
    if not idle or not idle.get("wall_ms"):
        return None
    return {k.replace("cpu_", "") + "_pct": round(100 * idle.get(k, 0) / idle["wall_ms"], 1) for k in CPU_ALL}


def consumer(recs, daemon, vif, batches):
    forks = [r for r in recs if r["tag"] == "FORK" and r.get("daemon") == daemon]
    fms = [float(r["ms"]) for r in forks if num(r.get("ms")) is not None and int(r.get("rc", "-1")) >= 0]
    base = window(recs, daemon, "base") if vif else None
    idle = window(recs, daemon, "idle")
    w = window(recs, daemon, "seq")
    n = w.get("n") if w else len(fms)
    dms = daemon_ms(recs, daemon, "seq")
    seq = {"n": n, "forks_ok": len(fms), "fork_ms": fms,
           "median_ms": rnd(pct(fms, 0.5), 2), "p90_ms": rnd(pct(fms, 0.9), 2),
           "mean_ms": rnd(sum(fms) / len(fms), 2) if fms else None,
           "min_ms": rnd(min(fms), 2) if fms else None, "max_ms": rnd(max(fms), 2) if fms else None,
           "daemon_ms": dms, "daemon_median_ms": rnd(pct(dms, 0.5), 2), "daemon_p90_ms": rnd(pct(dms, 0.9), 2),
           "per_clone": per_clone(w, base, n, idle), "window": w, "base_window": base}
    if not vif:
        f, rest = window(recs, daemon, "first"), window(recs, daemon, "rest")
        seq["first_clone"] = per_clone(f, None, 1, idle)
        seq["rest_per_clone"] = per_clone(rest, None, rest.get("n"), idle) if rest else None
    if daemon in ("ours", "xsfloor"):
        seq["stages_mean_ms"], seq["daemon_mean_ms"] = stages(recs, "seq", n, daemon)
    out = {"seq": seq, "batch": {}, "idle_window": idle, "idle_cpu": idle_rates(idle)}
    for b in batches:
        br = next((r for r in recs if r["tag"] == "BATCH" and r.get("daemon") == daemon and r.get("n") == str(b)), None)
        bw = window(recs, daemon, "batch", b)
        bd = daemon_ms(recs, daemon, "batch", b)
        e = {"rc": br.get("rc") if br else None, "ms": num(br.get("ms")) if br else None,
             "ms_per_child": rnd(num(br.get("ms")) / b, 2) if br and num(br.get("ms")) is not None else None,
             "daemon_ms": bd, "daemon_median_ms": rnd(pct(bd, 0.5), 2), "daemon_max_ms": rnd(max(bd), 2) if bd else None,
             "per_clone": per_clone(bw, base, b, idle), "window": bw}
        if daemon in ("ours", "xsfloor"):
            e["stages_mean_ms"], e["daemon_mean_ms"] = stages(recs, "batch", b, daemon)
        if br and br.get("rc") not in ("0",):
            e["ms"] = None  # a failed clone() has no time worth comparing
        out["batch"][str(b)] = e
    return out


def compare(cfg):
    """Overheads over the floor and ratios ours/Nephele of one configuration."""
    c = cfg["consumers"]
    fl = c.get("floor", {}).get("seq", {})
    res = {"overhead": {}, "ratio_ours_nephele": {}}
    for d in ("ours", "nephele", "xsfloor"):
        s = c.get(d, {}).get("seq")
        if not s:
            continue
        fpc = fl.get("per_clone") or {}
        o = {"seq_median_ms": rnd(sub(s["median_ms"], fl.get("median_ms")), 2),
             "seq_p90_ms": rnd(sub(s["p90_ms"], fl.get("p90_ms")), 2), "batch_ms": {},
             # Dom0 CPU per clone over the floor's: what the floor's clones cost
             # Dom0 too (domain-state scans of every Dom0 daemon, the kernel's
             # event handling) is not the daemon's.
             "seq_cpu_dom0_ms": rnd(sub((s.get("per_clone") or {}).get("cpu_ms_dom0"), fpc.get("cpu_ms_dom0")))}
        for b, e in c[d]["batch"].items():
            fb = c.get("floor", {}).get("batch", {}).get(b, {})
            o["batch_ms"][b] = rnd(sub(e.get("ms"), fb.get("ms")), 2)
        res["overhead"][d] = o
    ours, neph = c.get("ours"), c.get("nephele")
    if ours and neph:
        so, sn = ours["seq"], neph["seq"]
        oo, on = res["overhead"]["ours"], res["overhead"]["nephele"]
        pco, pcn = so.get("per_clone") or {}, sn.get("per_clone") or {}
        r = {"seq_median": ratio(so["median_ms"], sn["median_ms"]), "seq_p90": ratio(so["p90_ms"], sn["p90_ms"]),
             "overhead_median": ratio(oo["seq_median_ms"], on["seq_median_ms"]),
             "overhead_p90": ratio(oo["seq_p90_ms"], on["seq_p90_ms"]),
             "daemon_median": ratio(so["daemon_median_ms"], sn["daemon_median_ms"]),
             "xs_requests_per_clone": ratio(pco.get("xs_requests"), pcn.get("xs_requests")),
             "xs_daemon_requests_per_clone": ratio(pco.get("xs_daemon"), pcn.get("xs_daemon")),
             "cpu_dom0_per_clone": ratio(pco.get("cpu_ms_dom0"), pcn.get("cpu_ms_dom0")),
             "cpu_dom0_over_floor_per_clone": ratio(oo.get("seq_cpu_dom0_ms"), on.get("seq_cpu_dom0_ms")),
             "batch": {}, "batch_overhead": {}}
        # The XS_CLONE floor (xsfloor: only the mandatory requests) over
        # Nephele's: the lowest overhead ratio any XS_CLONE daemon reaches.
        ox = res["overhead"].get("xsfloor")
        if ox:
            r["xsfloor_overhead_median"] = ratio(ox["seq_median_ms"], on["seq_median_ms"])
            r["xsfloor_xs_daemon_requests_per_clone"] = ratio(
                (c["xsfloor"]["seq"].get("per_clone") or {}).get("xs_daemon"), pcn.get("xs_daemon"))
        for b in ours["batch"]:
            eo, en = ours["batch"][b], neph["batch"].get(b, {})
            r["batch"][b] = ratio(eo.get("ms"), en.get("ms"))
            r["batch_overhead"][b] = ratio(oo["batch_ms"].get(b), on["batch_ms"].get(b))
        res["ratio_ours_nephele"] = r
    return res


def targets(configs):
    """Issue 13's targets, per configuration where they apply."""
    t = []
    for cfg in configs:
        r = cfg["compare"].get("ratio_ours_nephele") or {}
        name = f"{cfg['xenstored']} {cfg['vif']} vif"
        lim = 0.2 if cfg["xenstored"] == "oxenstored" else 0.5
        mode = "XS_CLONE" if cfg["xenstored"] == "oxenstored" else "deep copy"
        v = r.get("overhead_median")
        t.append({"target": f"Dom0 overhead <= {lim}x Nephele's ({mode}, {cfg['vif']} vif)", "config": name,
                  "value": v, "limit": lim, "met": None if v is None else bool(v <= lim)})
        v = r.get("xs_requests_per_clone")
        t.append({"target": "Xenstore requests per clone <= 0.5x Nephele's (all connections)", "config": name,
                  "value": v, "limit": 0.5, "met": None if v is None else bool(v <= 0.5)})
        v = r.get("xs_daemon_requests_per_clone")
        t.append({"target": "  the daemon's own requests per clone <= 0.5x Nephele's", "config": name,
                  "value": v, "limit": 0.5, "met": None if v is None else bool(v <= 0.5)})
        if cfg["vif"]:
            bs = sorted((r.get("batch") or {}), key=int)
            b = "64" if "64" in bs else (bs[-1] if bs else None)
            v = (r.get("batch") or {}).get(b) if b else None
            t.append({"target": "batch of 64 with vifs <= 0.5x Nephele's time" +
                      ("" if b == "64" else f" (measured: batch of {b})"), "config": name,
                      "value": v, "limit": 0.5, "met": None if v is None else bool(v <= 0.5)})
    return t


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/clone.py OUTDIR")
    out = sys.argv[1]
    configs, rows = [], []
    logs = [(m[1], int(m[2]), log) for log in glob.glob(os.path.join(out, "clone-*-vif*-serial.log"))
            for m in [SERIAL.search(log)] if m]
    for xs, vif, log in sorted(logs, key=lambda t: (t[0] != "oxenstored", t[0], t[1])):
        recs = parse_log(log)
        conf = next((r for r in recs if r["tag"] == "CONFIG"), {})
        batches = [int(b) for b in conf.get("batches", "").split(":") if b.isdigit()]
        daemons = [d for d in conf.get("daemons", "").split(":") if d]
        res_path = log.replace("-serial.log", "-result.json")
        res = json.load(open(res_path)) if os.path.exists(res_path) else {}
        bp = log.replace("-serial.log", "-build.txt")
        build = open(bp).read().split("\n")[0] if os.path.exists(bp) else None
        hp = log.replace("-serial.log", "-host.txt")
        host = [l.split() for l in open(hp)] if os.path.exists(hp) else []
        host = [h for h in host if len(h) == 3]
        cfg = {"xenstored": xs, "vif": vif, "build": build,
               "host": {"samples": len(host), "max_qemu": max((int(h[1]) for h in host), default=None),
                        "samples_with_other_vms": sum(1 for h in host if int(h[1]) > 1),
                        "max_load1": max((float(h[2]) for h in host), default=None)}, "forks": int(conf.get("forks", 0) or 0), "batches": batches,
               "delay_ms": num(conf.get("delay_ms")), "consumers": {},
               "boot": {"done": res.get("done"), "elapsed_s": round(res.get("elapsed_ms", 0) / 1000),
                        "failed_checks": [c["name"] + (": " + c["detail"] if c.get("detail") else "")
                                          for c in res.get("checks", []) if not c["ok"]],
                        "kernel_problems": len(res.get("kernel_problems", [])),
                        "userspace_traps": len(res.get("userspace_traps", []))}}
        for d in daemons:
            cfg["consumers"][d] = consumer(recs, d, vif, batches)
            s = cfg["consumers"][d]["seq"]
            for i, ms in enumerate(s["fork_ms"], 1):
                rows.append([xs, vif, d, "fork_ms", 1, i, ms])
            for i, ms in enumerate(s["daemon_ms"], 1):
                rows.append([xs, vif, d, "daemon_seq_ms", 1, i, ms])
            for b, e in cfg["consumers"][d]["batch"].items():
                rows.append([xs, vif, d, "batch_ms", b, 1, e["ms"]])
                for i, ms in enumerate(e["daemon_ms"], 1):
                    rows.append([xs, vif, d, "daemon_batch_ms", b, i, ms])
        cfg["compare"] = compare(cfg)
        configs.append(cfg)
    if not configs:
        sys.exit(f"bench clone: no clone-*-serial.log in {out}")
    doc = {"method": METHOD, "configs": configs, "targets": targets(configs)}
    with open(os.path.join(out, "clone.json"), "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(out, "clone.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["xenstored", "vif", "consumer", "measure", "batch_n", "i", "ms"])
        w.writerows(rows)
    for cfg in configs:
        print(f"{cfg['xenstored']}, {cfg['vif']} vif: " + ", ".join(
            f"{d} seq median {c['seq']['median_ms']} ms p90 {c['seq']['p90_ms']} ms "
            f"xs/clone {(c['seq']['per_clone'] or {}).get('xs_requests')}"
            for d, c in cfg["consumers"].items()))
        print("  ratios ours/Nephele:", json.dumps(cfg["compare"].get("ratio_ours_nephele")))
        if cfg["boot"]["failed_checks"]:
            print(f"  {len(cfg['boot']['failed_checks'])} failed check(s), first: {cfg['boot']['failed_checks'][0]}")
    for t in doc["targets"]:
        print(f"target {t['target']} [{t['config']}]: {t['value']} -> "
              f"{'met' if t['met'] else 'not met' if t['met'] is False else 'not measured'}")
    if any(c["boot"]["failed_checks"] or not c["boot"]["done"] for c in configs):
        sys.exit(1)


if __name__ == "__main__":
    main()
