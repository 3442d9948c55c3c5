#!/usr/bin/env bash
# Benchmark 1 (issue 7): vif attach latency on stock Xen 4.17 under QEMU TCG,
# clone path (netback_clone + xencloned --adopt-only) vs stock path (netback
# negotiation + the stock vif-bridge script), N = 1, 8, 32 vifs attached at
# once, both in the same VM run (tests/xen/scenarios/bench-attach.sh).
#
#   bench/attach.sh OUTDIR [--timeout SECONDS]
#
# Needs the kernel, modules and userspace built (scripts/build.sh). Writes
# OUTDIR/attach.json (per path and N: samples, p50, p99; ratios clone/stock),
# OUTDIR/attach.csv (one row per sample), and the run's serial log and
# result.json as OUTDIR/attach-serial.log, attach-result.json. Exits non-zero
# if a check of the run failed (the numbers are still written if any).
. "$(dirname "$0")/../scripts/lib.sh"
. "$XC_ROOT/tests/lib/results.sh"

out=${1:?usage: bench/attach.sh OUTDIR [--timeout SECONDS]}
timeout_s=900
[ "${2:-}" = --timeout ] && timeout_s=${3:?--timeout needs SECONDS}
mkdir -p "$out"
for f in "$XC_ROOT/rust/netback_clone/netback_clone.ko" "$XC_ROOT/userspace/target/release/xencloned"; do
	[ -e "$f" ] || die "$f missing: run scripts/build.sh (make modules userspace) first"
done

rc=0
"$XC_ROOT/tests/xen/run.sh" bench-attach --timeout "$timeout_s" || rc=$?
res=$XC_RESULTS/xen-bench-attach
cp "$res/serial.log" "$out/attach-serial.log"
cp "$res/result.json" "$out/attach-result.json"

python3 - "$out" "$rc" <<'PY' || rc=1
import csv, json, math, os, re, sys

out, run_rc = sys.argv[1], int(sys.argv[2])
log = open(os.path.join(out, "attach-serial.log"), errors="replace").read().splitlines()
sample_re = re.compile(r"XC-BENCH path=(clone|stock) n=(\d+) rep=(\d+) vif=(\S+) ms=(-?\d+) late=(-?\d+) ok=([01])")
round_re = re.compile(r"XC-BENCH-ROUND path=(clone|stock) n=(\d+) rep=(\d+) vifs=(\d+) ok=(\d+)")
rows = [{"path": m[1], "n": int(m[2]), "rep": int(m[3]), "vif": m[4], "ms": int(m[5]), "late": int(m[6]),
         "ok": int(m[7])} for m in (sample_re.search(l) for l in log) if m]
rounds = [{"path": m[1], "n": int(m[2]), "rep": int(m[3]), "vifs": int(m[4]), "ok": int(m[5])}
          for m in (round_re.search(l) for l in log) if m]
if not rounds:
    sys.exit("bench attach: no XC-BENCH-ROUND line in the serial log")
with open(os.path.join(out, "attach.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["path", "n", "rep", "vif", "ms", "late", "ok"])
    w.writeheader()
    w.writerows(rows)


def pct(sorted_ms, q):
    """Nearest-rank percentile."""
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)] if sorted_ms else None


runs, by = [], {}
for path in ("clone", "stock"):
    for n in sorted({r["n"] for r in rounds}):
        rr = [r for r in rounds if r["path"] == path and r["n"] == n]
        if not rr:
            continue
        s = [r["ms"] for r in rows if r["path"] == path and r["n"] == n and r["ok"]]
        ss = sorted(s)
        attempted, ok = sum(r["vifs"] for r in rr), sum(r["ok"] for r in rr)
        run = {"path": path, "n": n, "samples_ms": s, "p50_ms": pct(ss, 0.5), "p99_ms": pct(ss, 0.99),
               "min_ms": ss[0] if ss else None, "max_ms": ss[-1] if ss else None,
               "mean_ms": round(sum(s) / len(s), 1) if s else None, "rounds": len(rr),
               "vifs_attempted": attempted, "vifs_connected": ok,
               # Every vif of every round of this N attached (the clone path only gets
               # the vifs its round's stock path connected).
               "complete": ok == attempted == n * len(rr)}
        runs.append(run)
        by[(path, n)] = run
ratio, partial, notes = {"p50": {}, "p99": {}}, {"p50": {}, "p99": {}}, []
for n in sorted({n for _, n in by}):
    c, st = by.get(("clone", n)), by.get(("stock", n))
    for q in ("p50", "p99"):
        both = c and st and c[q + "_ms"] and st[q + "_ms"]
        r = round(c[q + "_ms"] / st[q + "_ms"], 3) if both else None
        ratio[q][str(n)] = r if both and c["complete"] and st["complete"] else None
        partial[q][str(n)] = r
    if not (c and st and c["complete"] and st["complete"]):
        notes.append(f"N={n}: no ratio: stock {st['vifs_connected'] if st else 0}/{st['vifs_attempted'] if st else 0}, "
                     f"clone {c['vifs_connected'] if c else 0}/{c['vifs_attempted'] if c else 0} vifs connected")
libxl_gave_up = sum(1 for l in log if "unable to add device with path" in l)
if libxl_gave_up:
    notes.append(f"stock path: libxl gave up on {libxl_gave_up} vif(s) ('unable to add device': no InitWait "
                 "from netback within its fixed 10 s); the ratio over connected vifs only is biased in the "
                 "stock path's favour (only its fastest attaches are counted)")
result = json.load(open(os.path.join(out, "attach-result.json")))
failed = [c["name"] + (": " + c["detail"] if c["detail"] else "") for c in result["checks"] if not c["ok"]]
jms = next((m[1] for m in (re.search(r"clock ([0-9.]+) ms per jiffy", l) for l in log) if m), "?")
crashes = sum(1 for l in log if re.search(r"segfault at|general protection fault|malloc\(\): ", l))
method = (
    "One VM run (tests/xen/scenarios/bench-attach.sh): Debian Xen 4.17 under QEMU TCG, 2 vCPUs, "
    "Dom0 1 GiB / 2 vCPUs (our lockdep/slub_debug test kernel), 4 PV DomUs (128 MB, 1 vCPU, netfront), "
    "bond0 (balance-xor). Per round, N vifs are attached at once, spread over the DomUs, all into bond0. "
    "Stock path: N concurrent 'xl network-attach DOMU bridge=bond0 devid=K' (libxl writes frontend and "
    "backend, netback/netfront negotiate, libxl runs the stock vif-bridge script: ip link set master "
    "bond0, up, hotplug-status=connected; libxl gives up after 10 s without InitWait or 40 s of script). "
    "Clone path, right after, on the vifs of that stock round that reached "
    "Connected, topped up to N (if stock attaches failed) by vifs attached one at a time, untimed: their backend "
    "nodes are removed (netback releases the vifs, netfront stays Connected) and written back by N "
    "concurrent xenstore-write processes (one transaction each) with state=4 and cloned=true, the shape a "
    "cloning hypervisor + xencloned give them; netback_clone connects each to the existing rings and "
    "xencloned --adopt-only enslaves it over rtnetlink on the online uevent and writes "
    "hotplug-status=connected. Latency per vif: from its backend node appearing (first event of one "
    "xenstore watch on /local/domain/0/backend/vif under that node) to the event of its "
    "hotplug-status=connected write (libxl's initial hotplug-status=\"\" skipped) with the vif then a slave "
    "of bond0 (else the time it became one, polled every 2 ms; the 'late' column counts such polls). The "
    "watch is read by a single awk process at nice -20 in Dom0 that timestamps those events from the "
    f"/proc/schedstat jiffies counter ({jms} ms per jiffy), with no fork on that path; both ends of each "
    "sample carry the same Dom0 scheduling delay. Rounds: "
    + ", ".join(f"N={r['n']} x{r['rounds']}" for r in runs if r["path"] == "stock")
    + " (stock then clone in each round). p50/p99 are nearest-rank over the connected vifs of a path "
    "and N; ratio = clone / stock, only where both paths connected every vif of every round of that N "
    f"(else null, see notes). Dom0 userspace crashes seen in the run's serial log: {crashes}.")
doc = {"runs": runs, "ratio_p50": ratio["p50"], "ratio_p99": ratio["p99"], "method": method,
       # The same ratios over whatever vifs connected, complete or not: biased
       # towards the attaches that survived; for reading failed runs only.
       "ratio_p50_connected_only": partial["p50"], "ratio_p99_connected_only": partial["p99"],
       "notes": notes, "samples": len(rows), "run_exit": run_rc, "failed_checks": failed,
       "dom0_userspace_crashes": crashes}
with open(os.path.join(out, "attach.json"), "w") as f:
    json.dump(doc, f, indent=1)
print(f"{'path':6} {'N':>3} {'connected':>10} {'p50 ms':>8} {'p99 ms':>8}")
for r in runs:
    print(f"{r['path']:6} {r['n']:>3} {str(r['vifs_connected']) + '/' + str(r['vifs_attempted']):>10} "
          f"{r['p50_ms'] if r['p50_ms'] is not None else '-':>8} {r['p99_ms'] if r['p99_ms'] is not None else '-':>8}")
print("ratio clone/stock p50:", ratio["p50"], " p99:", ratio["p99"])
if partial != ratio:
    print("over connected vifs only: p50:", partial["p50"], " p99:", partial["p99"])
for n in notes:
    print("note:", n)
if failed:
    print(f"{len(failed)} failed check(s), first: {failed[0]}")
    sys.exit(1)
PY
log "attach: $out/attach.json, $out/attach.csv"
exit $rc
