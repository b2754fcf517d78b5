#!/bin/sh
# job.sh — the checks of the pure cgroup v2 suite, run inside the VM by
# init.sh (chrooted into the overlay of the host root, cgroup2 alone at
# /sys/fs/cgroup). vm_test.go fills the writable share /vmjob:
#   bin/reconciler, bin/flatjson    static binaries built on the host
#   images/busybox.tar               the test image (docker.io/library/busybox:latest)
#   manifests/lab, manifests/vmt     examples/lab and testdata/manifests
# and reads back:
#   results.txt   one line per check: "ok NAME" or "FAIL NAME: detail"
#   timing.txt    "EVENT UPTIME_SECONDS" lines (boot and suite time)
#   logs/         NAME.log per check, containerd.log, status JSON per phase
#
# Every check runs in a subshell: `die` ends the check, its last line is the
# FAIL detail. Checks are ordered; a later check may depend on the state an
# earlier one left (as a real host would), but each reports on its own.
#
# The expected values below mirror testdata/manifests: change both together.
# Hazard: this script must end in poweroff (trap on EXIT), else the VM only
# stops at the harness's timeout.

J=/vmjob
export PATH="$J/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESULTS=$J/results.txt
LOGS=$J/logs
CG=/sys/fs/cgroup
ROOT=kukeon-vm # --cgroup-root, without the leading slash
SOCK=/run/ctrd/containerd.sock
STATE=/tmp/reconciler-state
M=/tmp/manifests # the manifest directory the reconciler watches
NS=vmt.kukeon.io # containerd namespace of realm vmt
CONTAINERD_PID=

: >"$RESULTS"
: >"$J/timing.txt"
mkdir -p "$LOGS" "$M" "$STATE"

uptime_s() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "$1 $(uptime_s)" >>"$J/timing.txt"; }

finish() {
	mark job-end
	# Reconciler state and container logs, for the report.
	cp -r "$STATE" "$LOGS/reconciler-state" 2>/dev/null
	if [ -n "$CONTAINERD_PID" ]; then
		kill "$CONTAINERD_PID" 2>/dev/null
	fi
	sync
	echo "vm-job: done, powering off"
	/bin/busybox poweroff -f
}
trap finish EXIT
trap 'exit 1' INT TERM

mark job-start

die() {
	echo "$*"
	exit 1
}

# run_check NAME FUNCTION records the function's result as check NAME.
run_check() {
	_name=$1
	_start=$(uptime_s)
	_out=$( ($2) 2>&1)
	_rc=$?
	printf '%s\n' "$_out" >"$LOGS/$_name.log"
	if [ "$_rc" -eq 0 ]; then
		echo "ok $_name" >>"$RESULTS"
	else
		_detail=$(printf '%s\n' "$_out" | grep -v '^[[:space:]]*$' | tail -n 1)
		echo "FAIL $_name: ${_detail:-exit status $_rc}" >>"$RESULTS"
	fi
	echo "vm-job: $_name exit=$_rc start=$_start end=$(uptime_s)"
}

# once [FLAGS...] runs one reconciler pass over $M.
once() {
	timeout 300 reconciler --once --manifests "$M" --containerd-address "$SOCK" \
		--cgroup-root "/$ROOT" --state-dir "$STATE" --image-archives "$J/images" \
		--timeout 120s "$@"
}

# status_flat FILE writes `reconciler status -o json` flattened to FILE and
# keeps the JSON in logs/.
status_flat() {
	reconciler status -o json --state-dir "$STATE" >"$1.json" 2>&1 ||
		die "reconciler status: $(tail -n 1 "$1.json")"
	cp "$1.json" "$LOGS/$(basename "$1").json"
	flatjson "$1.json" >"$1" || die "status is not JSON: $(head -c 200 "$1.json")"
}

# status_prefix FLAT KEY VALUE prints the flattened path of the object that
# has KEY=VALUE (e.g. cgroupPath=/kukeon-vm/lab), or nothing.
status_prefix() {
	awk -v k=".$2" -v v="$3" '{
		i = index($0, "="); key = substr($0, 1, i-1); val = substr($0, i+1)
		if (val == v && substr(key, length(key)-length(k)+1) == k) { print substr(key, 1, length(key)-length(k)); exit }
	}' "$1"
}

# status_values FLAT PREFIX FIELD prints the values of PREFIX.FIELD and of
# the list PREFIX.FIELD[i], one a line.
status_values() {
	awk -v p="$2.$3" '{
		i = index($0, "="); key = substr($0, 1, i-1)
		if (key == p || index(key, p "[") == 1) print substr($0, i+1)
	}' "$1"
}

words() { tr ' ' '\n' | grep -v '^$' | sort | tr '\n' ' ' | sed 's/ $//'; }

# has_all "WANTED" "HAVE": every word of WANTED is in HAVE.
has_all() {
	for _w in $1; do
		case " $2 " in *" $_w "*) ;; *) return 1 ;; esac
	done
}

# levels prints the level cgroups (realm, space, stack, cell) under the root,
# relative to $CG, parents first.
levels() {
	(cd "$CG" && find "$ROOT" -mindepth 1 -maxdepth 4 -type d | sort)
}

# tasks prints "containerd-id pid" of the running tasks of namespace $1.
tasks() {
	ctr -a "$SOCK" -n "$1" tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" { print $1, $2 }' | sort
}

# ---------------------------------------------------------------------------
# vm-boots: the harness itself — cgroup2 with the controllers we need,
# containerd, image import, one container run, results share writable.

check_vm_boots() {
	grep -q "^cgroup2 $CG cgroup2" /proc/mounts || die "cgroup2 is not mounted at $CG: $(grep cgroup /proc/mounts)"
	ctrls=$(cat "$CG/cgroup.controllers")
	echo "host controllers: $ctrls"
	has_all "cpu memory io pids" "$ctrls" || die "cgroup.controllers lacks cpu memory io pids: $ctrls"
	[ -n "$CONTAINERD_PID" ] || die "containerd did not start (see logs/containerd.log)"
	ctr -a "$SOCK" -n vmboot images import "$J/images/busybox.tar" || die "ctr images import failed"
	out=$(timeout 120 ctr -a "$SOCK" -n vmboot run --rm docker.io/library/busybox:latest vmboot-hello \
		/bin/sh -c 'echo hello from $(cat /proc/self/cgroup)' 2>&1)
	echo "$out"
	case "$out" in *"hello from 0::"*) ;; *) die "container run: $out" ;; esac
	rmdir "$CG/vmboot" 2>/dev/null
	ctr -a "$SOCK" -n vmboot images rm docker.io/library/busybox:latest >/dev/null 2>&1
	echo probe >"$J/share-probe" && [ "$(cat "$J/share-probe")" = probe ] || die "results share is not writable"
	rm -f "$J/share-probe"
}

start_containerd() {
	mkdir -p /run/ctrd /tmp/ctrd
	cat >/run/ctrd/config.toml <<EOF
version = 2
root = "/tmp/ctrd/root"
state = "/run/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
EOF
	containerd --config /run/ctrd/config.toml >"$LOGS/containerd.log" 2>&1 &
	pid=$!
	i=0
	while [ $i -lt 120 ]; do
		if ctr -a "$SOCK" version >/dev/null 2>&1; then
			CONTAINERD_PID=$pid
			mark containerd-ready
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
		i=$((i + 1))
	done
	echo "vm-job: containerd did not come up"
	return 1
}

need_reconciler() {
	[ -x "$J/bin/reconciler" ] || die "reconciler binary missing (build failed on the host)"
}

# ---------------------------------------------------------------------------
# Phase A: examples/lab.

check_lab_converges() {
	need_reconciler
	[ -d "$J/manifests/lab" ] || die "examples/lab missing from the share"
	cp -r "$J/manifests/lab/." "$M/"
	once || die "reconciler --once over examples/lab exited $?"
	once --dry-run || die "second pass not in sync: --once --dry-run exited $?"
	# prune-realm later proves that removing realm lab removes this subtree.
	[ -d "$CG/$ROOT/lab" ] && touch /tmp/lab-created
}

# check_tree verifies every level cgroup: it exists, and cpu memory io pids
# are in its own and every ancestor's cgroup.subtree_control (the cgroup
# root's included). $1 lists paths (relative to the root) that must exist.
check_tree() {
	for p in $1; do
		[ -d "$CG/$ROOT/$p" ] || die "level cgroup /$ROOT/$p missing"
	done
	bad=0
	for d in . "$ROOT" $(levels); do
		sc=$(cat "$CG/$d/cgroup.subtree_control")
		if has_all "cpu memory io pids" "$sc"; then
			echo "/$d: subtree_control: $sc"
		else
			echo "/$d: subtree_control lacks cpu memory io pids: '$sc'"
			bad=$((bad + 1))
		fi
	done
	[ $bad -eq 0 ] || die "$bad level cgroups do not delegate cpu memory io pids"
}

# check_status_controllers: for every level, status.controllers equals the
# kernel's cgroup.subtree_control of that level.
check_status_controllers() {
	status_flat /tmp/status-$1
	[ -n "$(levels)" ] || die "no level cgroups under /$ROOT to compare with status"
	bad=0
	for d in $(levels); do
		prefix=$(status_prefix /tmp/status-$1 cgroupPath "/$d")
		if [ -z "$prefix" ]; then
			echo "/$d: no object with this cgroupPath in status"
			bad=$((bad + 1))
			continue
		fi
		got=$(status_values /tmp/status-$1 "$prefix" controllers | words)
		want=$(words <"$CG/$d/cgroup.subtree_control")
		if [ "$got" = "$want" ]; then
			echo "/$d: status and kernel: $got"
		else
			echo "/$d: status says '$got', kernel cgroup.subtree_control says '$want'"
			bad=$((bad + 1))
		fi
	done
	[ $bad -eq 0 ] || die "$bad levels disagree with the kernel (see above)"
}

check_lab_tree() {
	check_tree "lab lab/web lab/web/blog lab/web/blog/frontend lab/web/blog/worker"
}
check_lab_status() { check_status_controllers lab; }

# check_no_internal_process: no level cgroup (root of the tree included)
# holds a process; processes live only in container leaves.
check_no_internal_process() {
	bad=0
	for d in "$ROOT" $(levels); do
		procs=$(cat "$CG/$d/cgroup.procs" | tr '\n' ' ')
		if [ -n "$procs" ]; then
			echo "/$d holds processes: $procs"
			bad=$((bad + 1))
		fi
	done
	leaves=$(cd "$CG" && find "$ROOT" -mindepth 5 -maxdepth 5 -type d | wc -l)
	echo "container leaves: $leaves"
	[ "$leaves" -gt 0 ] || die "no container leaf cgroups under /$ROOT"
	[ $bad -eq 0 ] || die "$bad level cgroups hold processes"
}

# ---------------------------------------------------------------------------
# Phase B: testdata/manifests (realm vmt) replaces examples/lab.

check_vmt_converges() {
	need_reconciler
	rm -rf "$M" && mkdir -p "$M" && cp -r "$J/manifests/vmt/." "$M/" || die "copy manifests"
	# cell-oom.yaml joins in phase C: its container is OOM-killed on purpose.
	rm -f "$M/cell-oom.yaml"
	once || die "reconciler --once over testdata/manifests exited $?"
	once --dry-run || die "second pass not in sync: --once --dry-run exited $?"
}

check_prune_realm() {
	[ -f /tmp/lab-created ] || die "realm lab was never created (lab-converges), so its prune proves nothing"
	[ ! -d "$CG/$ROOT/lab" ] || die "realm lab pruned from the manifests but /$ROOT/lab still exists: $(cd "$CG" && find "$ROOT/lab" -type d)"
	for ns in $(ctr -a "$SOCK" namespaces ls -q); do
		left=$(ctr -a "$SOCK" -n "$ns" containers ls -q 'labels."kukeon.io/realm"==lab')
		[ -z "$left" ] || die "containers of realm lab left in namespace $ns: $left"
	done
	echo "realm lab: cgroup subtree and containers gone"
}

check_vmt_tree() {
	check_tree "vmt vmt/s1 vmt/s1/k1 vmt/s1/k1/limits vmt/s1/k1/nested vmt/s1/k2"
}

# runc enables every available controller in the parents of a container
# cgroup, so delegation above containers could be runc's doing. Stack k2 has
# no cells: its cgroup.subtree_control is the reconciler's alone, and must be
# exactly cpu io memory pids (no cpuset without cpus/mems, nothing else).
check_reconciler_delegates() {
	d=$CG/$ROOT/vmt/s1/k2
	[ -d "$d" ] || die "stack k2 (no cells) has no cgroup"
	got=$(words <"$d/cgroup.subtree_control")
	echo "/$ROOT/vmt/s1/k2: subtree_control: $got"
	[ "$got" = "cpu io memory pids" ] || die "stack k2 delegates '$got', want exactly 'cpu io memory pids'"
	[ -z "$(ls -d "$d"/*/ 2>/dev/null)" ] || die "stack k2 has child cgroups: $(ls -d "$d"/*/)"
}
check_vmt_status() { check_status_controllers vmt; }

# expect_files reads "PATH FILE WANT..." lines on stdin and compares each
# cgroup file under the root with WANT.
expect_files() {
	bad=0
	while read -r p f want; do
		[ -n "$p" ] || continue
		got=$(cat "$CG/$ROOT/$p/$f" 2>&1)
		if [ "$got" = "$want" ]; then
			echo "/$ROOT/$p/$f = $got"
		else
			echo "/$ROOT/$p/$f = '$got', want '$want'"
			bad=$((bad + 1))
		fi
	done
	[ $bad -eq 0 ] || die "$bad cgroup files differ from the manifests (see above)"
}

check_level_limits() {
	expect_files <<EOF
vmt memory.max 1879048192
vmt memory.high 1610612736
vmt cpu.max 400000 100000
vmt cpu.weight 200
vmt pids.max 2000
vmt io.weight default 300
vmt/s1 memory.max 1342177280
vmt/s1 memory.high 1073741824
vmt/s1 cpu.max 300000 100000
vmt/s1 cpu.weight 150
vmt/s1 pids.max 1500
vmt/s1 io.weight default 250
vmt/s1/k1 memory.max 1073741824
vmt/s1/k1 memory.high 805306368
vmt/s1/k1 cpu.max 200000 100000
vmt/s1/k1 cpu.weight 120
vmt/s1/k1 pids.max 1000
vmt/s1/k1 io.weight default 200
vmt/s1/k1/limits memory.max 536870912
vmt/s1/k1/limits memory.high 402653184
vmt/s1/k1/limits cpu.max 100000 100000
vmt/s1/k1/limits cpu.weight 80
vmt/s1/k1/limits pids.max 500
vmt/s1/k1/limits io.weight default 150
EOF
}

# Container app of cell limits: memoryLimitBytes 64Mi, pidsLimit 32,
# cpuShares 512. runc converts shares to cpu.weight: 1.1.x linearly
# (1 + (shares-2)*9999/262142 = 20), 1.3+ with a quadratic-exponent curve
# (59); either is the kernel honouring cpuShares.
check_container_limits() {
	leaf=vmt/s1/k1/limits/s1_k1_limits_app
	[ -d "$CG/$ROOT/$leaf" ] || die "container cgroup /$ROOT/$leaf missing"
	expect_files <<EOF
$leaf memory.max 67108864
$leaf pids.max 32
EOF
	w=$(cat "$CG/$ROOT/$leaf/cpu.weight")
	case "$w" in
	20 | 59) echo "/$ROOT/$leaf/cpu.weight = $w (cpuShares 512)" ;;
	*) die "/$ROOT/$leaf/cpu.weight = $w, want 20 (runc 1.1) or 59 (runc 1.3) for cpuShares 512" ;;
	esac
	[ -n "$(cat "$CG/$ROOT/$leaf/cgroup.procs")" ] || die "container app has no process in its cgroup"
}

# Container forker (pidsLimit 8) spawns 16 background sleeps: forks past
# pids.max fail with EAGAIN, which the kernel counts in pids.events.
check_pids_enforced() {
	leaf=$CG/$ROOT/vmt/s1/k1/limits/s1_k1_limits_forker
	[ -d "$leaf" ] || die "container cgroup $leaf missing"
	echo "pids.max $(cat "$leaf/pids.max") pids.current $(cat "$leaf/pids.current")"
	i=0
	while [ $i -lt 60 ]; do
		n=$(awk '$1 == "max" { print $2 }' "$leaf/pids.events")
		if [ "${n:-0}" -gt 0 ]; then
			echo "pids.events: max $n (forks refused with EAGAIN)"
			# The task's own view of EAGAIN (busybox: "can't fork: Resource
			# temporarily unavailable") in its log, when the reconciler keeps
			# one under the state dir.
			log=$(find "$STATE" -name s1_k1_limits_forker.log | head -n 1)
			if [ -n "$log" ]; then
				# The shim may still be copying the task's stderr.
				grep "Resource temporarily unavailable" "$log" ||
					{ sleep 3 && grep "Resource temporarily unavailable" "$log"; } ||
					die "forker log $log shows no EAGAIN: $(tail -n 2 "$log" | tr '\n' ' ')"
			else
				echo "note: no container log for forker under $STATE"
			fi
			[ "$(cat "$leaf/pids.current")" -le 8 ] || die "pids.current $(cat "$leaf/pids.current") exceeds pidsLimit 8"
			return 0
		fi
		sleep 1
		i=$((i + 1))
	done
	die "pids.events max stayed 0: the forker was never refused a fork (pids.max $(cat "$leaf/pids.max"))"
}

# nestedCgroupRuntime: every controller the host offers is delegated down to
# the cell (its own and its ancestors' subtree_control) and reaches the leaf.
# runc enables every available controller in the parents of a container
# cgroup anyway, so the check also takes controllers away by hand — from the
# nested cell and, as a control, from cell limits — and expects the next pass
# to give them back to the nested cell only.
check_nested_delegation() {
	host=$(cat "$CG/cgroup.controllers")
	cell=$ROOT/vmt/s1/k1/nested
	control=$ROOT/vmt/s1/k1/limits
	[ -d "$CG/$cell" ] || die "cell cgroup /$cell missing"
	bad=0
	for d in . "$ROOT" "$ROOT/vmt" "$ROOT/vmt/s1" "$ROOT/vmt/s1/k1" "$cell"; do
		sc=$(cat "$CG/$d/cgroup.subtree_control")
		if has_all "$host" "$sc"; then
			echo "/$d: $sc"
		else
			echo "/$d: subtree_control '$sc' lacks some of '$host'"
			bad=$((bad + 1))
		fi
	done
	leaf=$CG/$cell/s1_k1_nested_inner
	has_all "$host" "$(cat "$leaf/cgroup.controllers")" ||
		die "container leaf offers '$(cat "$leaf/cgroup.controllers")', want '$host'"
	[ $bad -eq 0 ] || die "$bad levels do not delegate every host controller ($host) to the nested cell"

	extra=""
	for c in hugetlb rdma misc; do
		case " $host " in *" $c "*) extra="$extra $c" ;; esac
	done
	[ -n "$extra" ] || die "host offers none of hugetlb rdma misc to take away"
	for d in "$cell" "$control"; do
		for c in $extra; do
			echo "-$c" >"$CG/$d/cgroup.subtree_control" || die "cannot disable $c in /$d"
		done
		echo "by hand: /$d: $(cat "$CG/$d/cgroup.subtree_control")"
	done
	once || die "reconciler --once after disabling controllers by hand exited $?"
	sc=$(cat "$CG/$cell/cgroup.subtree_control")
	echo "after pass: /$cell: $sc"
	has_all "$host" "$sc" || die "nested cell delegates '$sc' after a pass, want every host controller '$host'"
	sc=$(cat "$CG/$control/cgroup.subtree_control")
	echo "after pass: /$control: $sc"
	for c in $extra; do
		case " $sc " in *" $c "*) die "cell limits (not nested) got $c back: it delegates more than cpu io memory pids" ;; esac
	done
}

# A level limit changed in the manifest is rewritten in place: no container
# restarts (same task PIDs before and after).
check_limit_change_in_place() {
	before=$(tasks "$NS")
	[ -n "$before" ] || die "no running tasks in $NS"
	sed -i 's/max: 1000 # stack pids/max: 900 # stack pids/' "$M/stack.yaml"
	grep -q 'max: 900 # stack pids' "$M/stack.yaml" || die "testdata stack.yaml lacks the '# stack pids' marker"
	once || die "reconciler --once after the edit exited $?"
	got=$(cat "$CG/$ROOT/vmt/s1/k1/pids.max")
	[ "$got" = 900 ] || die "stack pids.max = $got after the manifest said 900"
	after=$(tasks "$NS")
	echo "tasks before: $before"
	echo "tasks after:  $after"
	[ "$before" = "$after" ] || die "containers restarted by a level limit change (task PIDs differ)"
}

# A limit edited by hand is put back by the next pass, again without restarts.
check_hand_edit_restored() {
	f=$CG/$ROOT/vmt/s1/k1/limits/memory.high
	before=$(tasks "$NS")
	echo 300000000 >"$f" || die "cannot write $f"
	echo "edited by hand: memory.high = $(cat "$f")"
	once || die "reconciler --once after the hand edit exited $?"
	got=$(cat "$f")
	[ "$got" = 402653184 ] || die "cell memory.high = $got after the pass, want 402653184 (384Mi)"
	[ "$before" = "$(tasks "$NS")" ] || die "containers restarted while restoring a level limit"
	echo "restored: memory.high = $got"
}

check_prune_cell() {
	[ -d "$CG/$ROOT/vmt/s1/k1/nested" ] || die "cell nested was never created, so its prune proves nothing"
	rm -f "$M/cell-nested.yaml"
	once || die "reconciler --once after removing cell-nested.yaml exited $?"
	[ ! -d "$CG/$ROOT/vmt/s1/k1/nested" ] || die "cell nested pruned but its cgroup still exists"
	left=$(ctr -a "$SOCK" -n "$NS" containers ls -q | grep _nested_)
	[ -z "$left" ] || die "containers of pruned cell nested remain: $left"
	[ -d "$CG/$ROOT/vmt/s1/k1/limits" ] || die "pruning cell nested removed its sibling limits"
}

# ---------------------------------------------------------------------------
# Phase C: cell oom (memory.max 48Mi) whose container hog sleeps 5 s and then
# allocates 96 MiB: the kernel OOM-kills it, the cell reports exit code 137,
# and restartPolicy on-failure restarts it (a second OOM kill proves it ran
# again).

check_oom_killed() {
	need_reconciler
	cp "$J/manifests/vmt/cell-oom.yaml" "$M/" || die "copy cell-oom.yaml"
	once || echo "note: reconciler --once with cell oom exited $? (the hog may already have died)"
	ev=$CG/$ROOT/vmt/s1/k1/oom/memory.events
	[ -f "$ev" ] || die "cell cgroup oom missing"
	echo "cell memory.max $(cat "$CG/$ROOT/vmt/s1/k1/oom/memory.max")"
	i=0
	while [ $i -lt 60 ]; do
		n=$(awk '$1 == "oom_kill" { print $2 }' "$ev")
		if [ "${n:-0}" -gt 0 ]; then
			echo "cell memory.events: oom_kill $n"
			return 0
		fi
		sleep 1
		i=$((i + 1))
	done
	die "cell memory.events oom_kill stayed 0: $(tr '\n' ' ' <"$ev")"
}

# The daemon restarts hog after the OOM kill (restartPolicy on-failure) and
# status reports the exit code 137.
check_oom_restarted() {
	need_reconciler
	ev=$CG/$ROOT/vmt/s1/k1/oom/memory.events
	reconciler --manifests "$M" --containerd-address "$SOCK" --cgroup-root "/$ROOT" \
		--state-dir "$STATE" --image-archives "$J/images" --resync 5s >"$LOGS/daemon.log" 2>&1 &
	daemon=$!
	kills=0
	i=0
	while [ $i -lt 90 ]; do
		kills=$(awk '$1 == "oom_kill" { print $2 }' "$ev")
		[ "${kills:-0}" -ge 2 ] && break
		sleep 1
		i=$((i + 1))
	done
	kill -TERM "$daemon" 2>/dev/null || die "daemon $daemon was gone before SIGTERM (see logs/daemon.log)"
	i=0
	while kill -0 "$daemon" 2>/dev/null && [ $i -lt 30 ]; do
		sleep 1
		i=$((i + 1))
	done
	if kill -0 "$daemon" 2>/dev/null; then
		kill -KILL "$daemon"
		wait "$daemon"
		die "daemon ignored SIGTERM for 30 s (README: it finishes its pass within 10 s and exits 0)"
	fi
	wait "$daemon"
	rc=$?
	echo "daemon exited $rc; cell memory.events oom_kill $kills"
	[ "$rc" -eq 0 ] || die "daemon exited $rc on SIGTERM, want 0 (see logs/daemon.log)"
	status_flat /tmp/status-oom
	prefix=$(status_prefix /tmp/status-oom containerdId s1_k1_oom_hog)
	[ -n "$prefix" ] || die "container hog not in status"
	grep -F "$prefix." /tmp/status-oom
	codes=$(status_values /tmp/status-oom "$prefix" exitCode; status_values /tmp/status-oom "$prefix" lastExitCode)
	restarts=$(status_values /tmp/status-oom "$prefix" restartCount)
	case " $(echo $codes) " in *" 137 "*) ;; *) die "status shows no exit code 137 for hog (exitCode/lastExitCode: $codes)" ;; esac
	[ "${kills:-0}" -ge 2 ] || die "hog was not restarted after its OOM kill (oom_kill $kills, restartCount $restarts)"
	[ "${restarts:-0}" -ge 1 ] || die "status restartCount of hog is '${restarts}' after $kills OOM kills"
}

# ---------------------------------------------------------------------------

echo "vm-job: start (uptime $(uptime_s) s), kernel $(uname -r)"
start_containerd
run_check vm-boots check_vm_boots
mark harness-ready

run_check lab-converges check_lab_converges
run_check lab-cgroup-tree check_lab_tree
run_check lab-status-controllers check_lab_status
run_check lab-no-internal-process check_no_internal_process
mark lab-done

run_check vmt-converges check_vmt_converges
run_check prune-realm check_prune_realm
run_check vmt-cgroup-tree check_vmt_tree
run_check vmt-status-controllers check_vmt_status
run_check reconciler-delegates check_reconciler_delegates
run_check level-limits check_level_limits
run_check container-limits check_container_limits
run_check pids-enforced check_pids_enforced
run_check vmt-no-internal-process check_no_internal_process
run_check nested-delegation check_nested_delegation
run_check limit-change-in-place check_limit_change_in_place
run_check hand-edit-restored check_hand_edit_restored
run_check prune-cell check_prune_cell
mark vmt-done

run_check oom-killed check_oom_killed
run_check oom-restarted check_oom_restarted
mark oom-done

# ---------------------------------------------------------------------------
# Phase D (README promises, test/integration/promises*_test.go): "every
# resync rewrites level limits changed by hand", in the daemon. The hybrid
# integration host has no limit to change; this pure v2 guest does. Space s1
# keeps pids.max 1500 from testdata/manifests (level-limits); nothing but the
# resync can put a hand edit back (no event comes from a cgroup file). The
# daemon must also stop on SIGTERM with exit 0, restarting no container but
# cell oom's hog (OOM-killed over and over by design).

check_daemon_resync_restores_limit() {
	need_reconciler
	f=$CG/$ROOT/vmt/s1/pids.max
	want=1500
	[ "$(cat "$f" 2>&1)" = "$want" ] || die "space s1 pids.max = '$(cat "$f" 2>&1)' before the check, want $want"
	before=$(tasks "$NS" | grep -v _oom_)
	log=$LOGS/daemon-resync.json
	reconciler --manifests "$M" --containerd-address "$SOCK" --cgroup-root "/$ROOT" \
		--state-dir "$STATE" --image-archives "$J/images" --resync 5s --log-format json >"$log" 2>&1 &
	daemon=$!
	i=0
	until grep -q '"msg":"first pass done"' "$log"; do
		if ! kill -0 "$daemon" 2>/dev/null || [ $i -ge 240 ]; then
			kill -KILL "$daemon" 2>/dev/null
			die "daemon: no first pass within 120 s: $(tail -n 2 "$log")"
		fi
		sleep 0.5
		i=$((i + 1))
	done
	echo 1234 >"$f" || { kill -KILL "$daemon"; die "cannot write $f"; }
	echo "edited by hand at $(uptime_s): pids.max = $(cat "$f")"
	i=0
	while [ "$(cat "$f")" != "$want" ] && [ $i -lt 120 ]; do
		sleep 0.5
		i=$((i + 1))
	done
	got=$(cat "$f")
	echo "after $((i / 2)) s: pids.max = $got"
	kill -TERM "$daemon"
	i=0
	while kill -0 "$daemon" 2>/dev/null && [ $i -lt 30 ]; do
		sleep 1
		i=$((i + 1))
	done
	kill -0 "$daemon" 2>/dev/null && kill -KILL "$daemon" && die "daemon ignored SIGTERM for 30 s"
	wait "$daemon"
	rc=$?
	[ "$got" = "$want" ] || die "space s1 pids.max = $got 60 s after a hand edit under --resync 5s, want $want"
	[ "$rc" -eq 0 ] || die "daemon exited $rc after SIGTERM, want 0"
	after=$(tasks "$NS" | grep -v _oom_)
	[ "$before" = "$after" ] || die "containers restarted while the daemon restored a level limit (task PIDs differ)"
}

run_check daemon-resync-restores-limit check_daemon_resync_restores_limit
mark promises-done
mark suite-complete
