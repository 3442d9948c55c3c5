# shellcheck shell=bash
# Parse a VM serial log written with the XC-CHECK/XC-TIME/XC-DONE protocol
# (tests/xen/dom0/lib.sh) or KTAP, scan it for kernel problem reports, and
# write result.json. Source after scripts/lib.sh.

XC_RESULTS=${XC_RESULTS:-$XC_CACHE/results}

# Kernel reports that fail a run wherever they appear (Dom0 or, through the
# guest console dump, a DomU). Xen's own "(XEN)" lines are not kernel reports.
XC_KERNEL_PROBLEMS='WARNING:|BUG:|Oops|Kernel panic|general protection fault|possible (recursive|circular) locking|inconsistent lock state|lock held when returning|suspicious RCU usage|KASAN|UBSAN|INFO: task .* blocked for more than|soft lockup|hard LOCKUP|kernel BUG at|list_(add|del) corruption|Poison overwritten|Redzone|Object padding|slab error|Freepointer corrupt'

# xc_vm_run NAME OUTDIR TIMEOUT_S MEM_MB QEMU_ARGS...: boot a TCG VM (2 vCPUs,
# no network, serial on stdio) with a hard timeout, write OUTDIR/serial.log,
# then xc_report it. Returns non-zero unless every check passed. VM runs take
# a lock (XC_VM_LOCK) so that two of them never share the 2 cores: a TCG guest
# starved of CPU times out instead of failing for a reason.
xc_vm_run() {
	local name=$1 out=$2 timeout_s=$3 mem=$4 start rc
	shift 4
	start=$(date +%s%N)
	set +e
	flock "${XC_VM_LOCK:-/tmp/xen-clone-vm.lock}" \
		timeout --foreground -k 5 "$timeout_s" qemu-system-x86_64 -machine pc -accel "${XC_QEMU_ACCEL:-tcg}" -cpu "${XC_QEMU_CPU:-max}" -smp 2 -m "$mem" \
		-display none -serial stdio -monitor none -nic none -no-reboot "$@" \
		</dev/null 2>&1 | tr -d '\r' >"$out/serial.log"
	rc=${PIPESTATUS[0]}
	set -e
	xc_report "$name" "$out" "$rc" $((($(date +%s%N) - start) / 1000000))
}

# xc_report NAME OUTDIR QEMU_RC ELAPSED_MS: writes OUTDIR/result.json, prints
# one line per check, returns non-zero unless every check passed.
xc_report() {
	local name=$1 out=$2 qemu_rc=$3 elapsed=$4 log=$2/serial.log
	python3 - "$name" "$log" "$qemu_rc" "$elapsed" "$XC_KERNEL_PROBLEMS" >"$out/result.json" <<'PY'
import json, re, sys
name, log, qemu_rc, elapsed, problems = sys.argv[1:6]
lines = open(log, errors="replace").read().splitlines()
checks, times, counts, done = [], {}, {}, False
ktap = []
for l in lines:
    m = re.search(r"XC-CHECK (\S+) (pass|fail)\s*(.*)$", l)
    if m:
        checks.append({"name": m[1], "ok": m[2] == "pass", "detail": m[3]})
    m = re.search(r"XC-TIME (\S+) (\d+)", l)
    if m:
        times[m[1]] = int(m[2])
    m = re.search(r"XC-COUNT (\S+) (\d+)", l)
    if m:
        counts[m[1]] = int(m[2])
    if re.search(r"\bXC-DONE\b", l):
        done = True
    # KTAP results of KUnit suites (printed as "    ok 1 name" / "# ..."),
    # and TAP of userspace checkers.
    m = re.match(r"^(?:\[[^\]]*\]\s*)?(\s*)(not ok|ok) (\d+) (?:- )?([^#]*?)\s*(#.*)?$", l)
    if m and "XC-" not in l:
        ktap.append({"indent": len(m[1]), "ok": m[2] == "ok", "name": m[4].strip(),
                     "skip": bool(m[5] and "SKIP" in m[5]), "directive": (m[5] or "").strip()})
# "traps: prog[pid] ...", "prog[pid]: segfault at ..." and ld.so's
# "Inconsistency detected" are userspace crashes: a check of their own
# (no-userspace-crash), apart from the kernel's problems.
traps = [l for l in lines if re.search(r"traps: \S+\[\d+\]|\S+\[\d+\]: segfault at |Inconsistency detected by ld\.so", l)]
bad = [l for l in lines if not l.lstrip().startswith("(XEN)") and l not in traps
       and re.search(problems, l)]
res = {"name": name, "qemu_exit": int(qemu_rc), "elapsed_ms": int(elapsed), "done": done,
       "checks": checks, "times_ms": times, "counts": counts, "ktap": ktap, "kernel_problems": bad[:50],
       "userspace_traps": traps[:20]}
print(json.dumps(res, indent=1))
PY
	python3 - "$out/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
fails = 0
for c in r["checks"]:
    print(f"  {'PASS' if c['ok'] else 'FAIL'} {r['name']}/{c['name']}" + ("" if c["ok"] else f"  {c['detail']}"))
    fails += not c["ok"]
for k, v in r["times_ms"].items():
    print(f"  TIME {r['name']}/{k} {v} ms")
for k, v in r.get("counts", {}).items():
    print(f"  COUNT {r['name']}/{k} {v}")
if not r["done"]:
    print(f"  FAIL {r['name']}/completed  (no XC-DONE: timeout or crash, qemu exit {r['qemu_exit']})"); fails += 1
traps = r.get("userspace_traps", [])
if traps:
    print(f"  FAIL {r['name']}/no-userspace-crash  ({len(traps)} lines, first: {traps[0].strip()[:160]})"); fails += 1
else:
    print(f"  PASS {r['name']}/no-userspace-crash")
if r["kernel_problems"]:
    print(f"  FAIL {r['name']}/no-kernel-problems  ({len(r['kernel_problems'])} lines, first: {r['kernel_problems'][0].strip()[:160]})"); fails += 1
else:
    print(f"  PASS {r['name']}/no-kernel-problems")
kt = [t for t in r.get("ktap", []) if not t["skip"]]
kfail = [t for t in kt if not t["ok"]]
skips = [t for t in r.get("ktap", []) if t["skip"]]
if r.get("ktap"):
    print(f"  {'FAIL' if kfail else 'PASS'} {r['name']}/tap  ({len(kt) - len(kfail)} ok, {len(kfail)} not ok, {len(skips)} skipped)")
    for t in kfail:
        print(f"    not ok: {t['name']}")
    for t in skips:
        print(f"    skipped: {t['name']} {t['directive']}")
    fails += len(kfail)
if not r["checks"] and not r.get("ktap"):
    print(f"  FAIL {r['name']}/has-checks  (no check ran)"); fails += 1
sys.exit(1 if fails else 0)
PY
}
