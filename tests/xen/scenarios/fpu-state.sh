# The test environment itself: a Dom0 process's vector registers must survive
# Xen switching vCPUs between domains. Under QEMU TCG, Xen's lazy FPU
# switching lost them (Dom0 processes saw other processes' ymm contents and
# crashed in libc), which is why tests/xen/run.sh boots Xen with
# spec-ctrl=eager-fpu. Without that option this scenario fails.
#   control: 3 fpu-probes with no DomU running;
#   load:    3 fpu-probes and a loop of short-lived processes while 3 DomUs
#            (no vif) are created and run.
probe_all() { # SECONDS TAG: run 3 probes at once, log them, fail on any bad check
	for k in 1 2 3; do fpu-probe "$1" "$k" >"/tmp/fpu-$2-$k" 2>&1 & done
	wait
	_ok=0
	for k in 1 2 3; do
		sed "s/^/XC-LOG $2: /" "/tmp/fpu-$2-$k"
		grep -q "^fpu-probe $k checks=[1-9][0-9]* bad=0$" "/tmp/fpu-$2-$k" && _ok=$((_ok + 1))
	done
	[ "$_ok" = 3 ]
}

if probe_all 10 control; then xc_pass fpu-probe-no-domu; else xc_fail fpu-probe-no-domu; fi

churn() { # short-lived processes until /tmp/churn.stop appears
	while [ ! -e /tmp/churn.stop ]; do
		xenstore-ls /local/domain/0 >/dev/null 2>&1
		sh -c : 2>/dev/null
		xl list >/dev/null 2>&1
	done
}

crash_lines() { dmesg | grep -E 'segfault at|general protection|traps:'; }
crashes_before=$(crash_lines | wc -l)
probe_all 50 load >/tmp/fpu-load.log 2>&1 &
probes=$!
churn &
churner=$!
for d in f1 f2 f3; do xc_check "domu-create-$d" xc_clone_domu "$d" 10.9.0.2 - -; done
if wait "$probes"; then xc_pass fpu-probe-with-domus; else xc_fail fpu-probe-with-domus; fi
cat /tmp/fpu-load.log
touch /tmp/churn.stop; wait "$churner"
crashes=$(crash_lines | tail -n +$((crashes_before + 1)))
if [ -z "$crashes" ]; then xc_pass no-userspace-crash-with-domus; else xc_fail no-userspace-crash-with-domus "$(echo "$crashes" | head -3 | tr '\n' '|')"; fi
for d in f1 f2 f3; do xl destroy "$d" 2>/dev/null; done
