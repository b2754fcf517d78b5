package integration

// Promises of the README's "Running as a service" pinned on the daemon run
// as a real process over a private containerd: a stop signal during a
// pass, restart policies on a clean exit, a root exit, a containerd
// reconnect and drift put back by the resync.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// signal sends sig to the daemon this test started (its PID only) and waits
// up to stopTimeout for it to exit, then SIGKILLs it and fails the test.
func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		d.t.Fatalf("%s daemon %d: %v", sig, d.cmd.Process.Pid, err)
	}
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.kill()
		d.t.Fatalf("daemon %d still running %s after %s; killed", d.cmd.Process.Pid, stopTimeout, sig)
	}
}

// containerLog returns the log the reconciler keeps of container id.
func (h *host) containerLog(id string) string {
	b, err := os.ReadFile(filepath.Join(h.state, "logs", h.ns, id+".log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatal(err)
	}
	return string(b)
}

// TestDaemonStopSignalLetsTheInFlightPassFinish: "SIGTERM or SIGINT lets
// the in-flight pass finish (up to 10 s), writes status and exits 0.
// Containers keep running." The pass in flight prunes cell slow, whose
// workload traps SIGTERM and so holds the delete for its 5 s grace period;
// the signal comes when the workload has logged that SIGTERM.
func TestDaemonStopSignalLetsTheInFlightPassFinish(t *testing.T) {
	for _, sig := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGINT", syscall.SIGINT}} {
		t.Run(sig.name, func(t *testing.T) {
			h := newDaemonHost(t)
			h.writeFile("keep.yaml", cellDoc("keep", "", "s"))
			slowDoc := strings.Replace(cellYAML("slow", "never",
				"trap 'echo got TERM' TERM; while true; do sleep 0.2; done", ""),
				"stopGracePeriodSeconds: 1", "stopGracePeriodSeconds: 5", 1)
			h.writeFile("slow.yaml", slowDoc)
			keep := cellContainerIDs("keep", "s")
			slow := cellContainerIDs("slow", "app")
			d := h.startDaemon()
			d.firstPass()
			before := pick(h.waitRunning(append(keep, slow...)...), keep...)

			if err := os.Remove(filepath.Join(h.manifests, "slow.yaml")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "cell slow's workload got SIGTERM", deadline, func() (bool, string) {
				return strings.Contains(h.containerLog(slow[1]), "got TERM"), "log: " + h.containerLog(slow[1])
			})
			signalled := time.Now()
			d.signal(sig.sig)
			t.Logf("daemon exited %s after %s", time.Since(signalled).Round(time.Millisecond), sig.name)

			if code := d.exitCode(); code != 0 {
				t.Errorf("exit code %d after %s, want 0", code, sig.name)
			}
			if !slices.ContainsFunc(d.lines(), func(l logLine) bool { return l.msg() == "stopping after the in-flight pass" }) {
				t.Errorf("no \"stopping after the in-flight pass\" line: the signal did not catch a pass in flight")
			}
			if got := h.tasks(h.ns); slices.ContainsFunc(slow, func(id string) bool { _, ok := got[id]; return ok }) {
				t.Errorf("the in-flight prune did not finish: cell slow's containers remain: %v", got)
			}
			if h.cgroupExists("lab/web/blog/slow") {
				t.Error("the in-flight prune did not finish: cell slow's cgroup remains")
			}
			st := h.tryStatus()
			switch {
			case st == nil:
				t.Error("no status.json after the stop")
			case !st.GeneratedAt.After(signalled):
				t.Errorf("status.json generated at %s, before the signal (%s): the in-flight pass did not record its status", st.GeneratedAt, signalled)
			case cellStatus(st, "slow") != nil:
				t.Error("status.json still lists the pruned cell slow")
			}
			equalExcept(t, before, pick(h.tasks(h.ns), keep...))
		})
	}
}

// TestDaemonRestartPoliciesOnACleanExit: "always restarts any exit,
// on-failure non-zero exits": both workloads of cell clean exit with code
// 0; loop (always) is restarted, done (on-failure) stays exited and its
// cell is not Failed.
func TestDaemonRestartPoliciesOnACleanExit(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("clean.yaml", `kind: Cell
metadata: {name: clean}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: loop
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", "sleep 1; exit 0"]
      restartPolicy: always
      restartBackoffSeconds: 1
      stopGracePeriodSeconds: 1
    - id: done
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", "exit 0"]
      restartPolicy: on-failure
      restartBackoffSeconds: 1
      stopGracePeriodSeconds: 1
`)
	key := hierarchy.CellKey("lab", "web", "blog", "clean")
	d := h.startDaemon()
	d.firstPass()
	waitFor(t, "loop restarted after its clean exit", deadline, func() (bool, string) {
		cs := containerStatus(h.tryStatus(), "clean", "loop")
		if cs == nil {
			return false, "no status for clean/loop"
		}
		return cs.RestartCount >= 1 && cs.LastExitCode != nil && *cs.LastExitCode == 0,
			fmt.Sprintf("restartCount %d lastExitCode %s", cs.RestartCount, ptrString(cs.LastExitCode))
	})
	d.waitAction(0, "restarted container "+key+" loop")
	h.waitResync()

	st := h.tryStatus()
	cs := containerStatus(st, "clean", "done")
	if cs == nil {
		t.Fatal("no status for clean/done")
	}
	if cs.State != controller.ContainerExited || cs.ExitCode == nil || *cs.ExitCode != 0 || cs.RestartCount != 0 {
		t.Errorf("done: state %s exitCode %s restartCount %d, want Exited with code 0 and no restart", cs.State, ptrString(cs.ExitCode), cs.RestartCount)
	}
	if slices.Contains(actionLines(d.lines()), "restarted container "+key+" done") {
		t.Error("the daemon restarted done (on-failure) after a clean exit")
	}
	if c := cellStatus(st, "clean"); c == nil || c.State == controller.StateFailed {
		t.Errorf("cell clean: %+v, want it not Failed", c)
	}
}

// TestDaemonRecreatesACellWhoseRootExited: "A root container exit recreates
// its cell", at the exit event: the root's process killed by its PID as
// containerd reports it.
func TestDaemonRecreatesACellWhoseRootExited(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("pod.yaml", cellDoc("pod", "", "s"))
	h.writeFile("keep.yaml", cellDoc("keep", "", "s"))
	pod := cellContainerIDs("pod", "s")
	keep := cellContainerIDs("keep", "s")
	key := hierarchy.CellKey("lab", "web", "blog", "pod")
	d := h.startDaemon()
	d.firstPass()
	before := h.waitRunning(append(pod, keep...)...)

	mark := d.mark()
	killPID(t, h.taskPID(pod[0]))
	waitFor(t, "cell pod's root and workload recreated", deadline, func() (bool, string) {
		tasks := h.tasks(h.ns)
		for _, id := range pod {
			if !strings.HasPrefix(tasks[id], "running ") || tasks[id] == before[id] {
				return false, fmt.Sprintf("%s is %q (was %q)", id, tasks[id], before[id])
			}
		}
		return true, ""
	})
	waitFor(t, "the recreate logged", deadline, func() (bool, string) {
		got := actionLines(d.since(mark))
		return slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "recreated "+key+" ") }),
			"logged so far:\n" + strings.Join(got, "\n")
	})
	equalExcept(t, pick(before, keep...), pick(h.tasks(h.ns), keep...))
}

// TestDaemonReconnectRunsAFullPass: "a reconnect to containerd (after it
// restarted) triggers a full pass". With a one-hour resync, only that pass
// can notice what changed while containerd was down: stack idle's cgroup,
// removed by hand meanwhile, comes back.
func TestDaemonReconnectRunsAFullPass(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("one.yaml", cellDoc("one", "", "s"))
	h.writeFile("idle.yaml", "kind: Stack\nmetadata: {name: idle}\nspec: {realmId: lab, spaceId: web}\n")
	one := cellContainerIDs("one", "s")
	d := h.startDaemon("--resync", "1h")
	d.firstPass()
	before := pick(h.waitRunning(one...), one...)
	if !h.cgroupExists("lab/web/idle") {
		t.Fatal("stack idle's cgroup was not created")
	}

	mark := d.mark()
	if err := h.ctd.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(filepath.Join(h.mount, h.cgroupRoot, "lab/web/idle")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := h.ctd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the daemon reconnected", deadline, func() (bool, string) {
		return slices.ContainsFunc(d.since(mark), func(l logLine) bool { return l.msg() == "containerd connection re-established" }), "not yet"
	})
	waitFor(t, "stack idle's cgroup recreated", deadline, func() (bool, string) {
		return h.cgroupExists("lab/web/idle"), "lab/web/idle is missing"
	})
	equalExcept(t, before, pick(h.tasks(h.ns), one...))
}

// TestDaemonResyncPutsBackDrift: "every resync … recreates a missing
// cgroup", and gives back a controller taken away by hand from a cell that
// delegates them (nestedCgroupRuntime; hugetlb is the one controller this
// hybrid host's unified hierarchy offers, so the level limits themselves
// are the VM suite's daemon-resync-restores-limit).
func TestDaemonResyncPutsBackDrift(t *testing.T) {
	h := newDaemonHost(t)
	requireRootDelegatesHugetlb(h.host)
	h.writeFile("nest.yaml", nestDoc)
	h.writeFile("idle.yaml", "kind: Stack\nmetadata: {name: idle}\nspec: {realmId: lab, spaceId: web}\n")
	nest := cellContainerIDs("nest", "app")
	d := h.startDaemon()
	d.firstPass()
	before := pick(h.waitRunning(nest...), nest...)
	control := filepath.Join(h.mount, h.cgroupRoot, "lab/web/blog/nest/cgroup.subtree_control")
	delegated := func() (bool, string) {
		b, err := os.ReadFile(control)
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(strings.Fields(string(b)), "hugetlb"), "cell nest delegates " + strings.TrimSpace(string(b))
	}
	if ok, why := delegated(); !ok {
		t.Fatalf("before the drift: %s, want hugetlb", why)
	}

	if err := syscall.Rmdir(filepath.Join(h.mount, h.cgroupRoot, "lab/web/idle")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(control, []byte("-hugetlb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, why := delegated(); ok {
		t.Fatalf("after -hugetlb by hand: %s", why)
	}
	waitFor(t, "stack idle's cgroup recreated", deadline, func() (bool, string) {
		return h.cgroupExists("lab/web/idle"), "lab/web/idle is missing"
	})
	waitFor(t, "hugetlb delegated again to cell nest", deadline, delegated)
	equalExcept(t, before, pick(h.tasks(h.ns), nest...))
}
