package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// The daemon tests run `reconciler` without --once as a subprocess. They do
// not cover the rewrite of level cgroup limits changed by hand (pids.max,
// hugetlb): this hybrid host's unified hierarchy offers only hugetlb, and the
// VM suite (test/vm) covers it on a pure cgroup v2 host.

// cellDoc is a Cell named name in lab/web/blog whose containers ids run
// sleep with restart policy always; env goes to the first one. The grace
// period is 1 s because sleep, as PID 1, ignores SIGTERM and every recreate
// or prune would otherwise wait out the default 10 s.
func cellDoc(name, env string, ids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kind: Cell\nmetadata: {name: %s}\nspec:\n  realmId: lab\n  spaceId: web\n  stackId: blog\n  containers:\n", name)
	for i, id := range ids {
		fmt.Fprintf(&b, "    - id: %s\n      image: docker.io/library/busybox:latest\n      command: sleep\n      args: [\"3600\"]\n      restartPolicy: always\n      stopGracePeriodSeconds: 1\n", id)
		if i == 0 && env != "" {
			fmt.Fprintf(&b, "      env: [%q]\n", env)
		}
	}
	return b.String()
}

// TestDaemonFollowsManifestDir: the daemon converges on what the manifest
// directory holds as it changes, through editor saves, half-written files, a
// symlink swap and a removal, touching only what changed.
func TestDaemonFollowsManifestDir(t *testing.T) {
	h := newDaemonHost(t)
	// The manifest directory is a symlink, as git-sync and ConfigMap
	// mounts make it: v1 now, swapped to v2 below.
	base := t.TempDir()
	for _, d := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.manifests = filepath.Join(base, "manifests")
	if err := os.Symlink("v1", h.manifests); err != nil {
		t.Fatal(err)
	}
	alpha := cellContainerIDs("alpha", "a", "b")
	old := cellContainerIDs("old", "s")
	fresh := cellContainerIDs("fresh", "s")
	alphaDoc := cellDoc("alpha", "REV=1", "a", "b")

	d := h.startDaemon()
	var alphaTasks map[string]string

	t.Run("a dropped manifest's containers run and the daemon turns ready", func(t *testing.T) {
		h.writeFile("alpha.yaml", alphaDoc)
		h.writeFile("old.yaml", cellDoc("old", "", "s"))
		tasks := h.waitRunning(append(alpha, old...)...)
		alphaTasks = pick(tasks, alpha...)
		d.waitAction(0, "created "+hierarchy.CellKey("lab", "web", "blog", "alpha"), "created "+hierarchy.CellKey("lab", "web", "blog", "old"))
		waitFor(t, "/readyz 200", deadline, func() (bool, string) {
			code, body := d.get("/readyz")
			return code == 200, fmt.Sprintf("%d %s", code, body)
		})
		code, body := d.get("/metrics")
		if code != 200 || !strings.Contains(body, "reconciler_objects{") {
			t.Errorf("/metrics: %d, want 200 with reconciler_objects:\n%.2000s", code, body)
		}
		if code, body := d.get("/healthz"); code != 200 {
			t.Errorf("/healthz: %d %s, want 200", code, body)
		}
	})

	t.Run("a rename-save through a temp file recreates the changed container once", func(t *testing.T) {
		mark := d.mark()
		alphaDoc = strings.Replace(alphaDoc, "REV=1", "REV=2", 1)
		writeAtomic(t, filepath.Join(h.manifests, "alpha.yaml"), alphaDoc)
		a := alpha[1]
		waitFor(t, "container a recreated", deadline, func() (bool, string) {
			tasks := h.tasks(h.ns)
			return strings.HasPrefix(tasks[a], "running ") && tasks[a] != alphaTasks[a], tasks[a]
		})
		h.waitResync()
		after := pick(h.tasks(h.ns), alpha...)
		equalExcept(t, alphaTasks, after, a)
		alphaTasks = after
		got := actionLines(d.since(mark))
		want := []string{"updated " + hierarchy.CellKey("lab", "web", "blog", "alpha") + " updated: container a recreated (env REV=1 → REV=2)"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("actions after the save (-want +got):\n%s", diff)
		}
	})

	t.Run("a half-written file deletes nothing until it is complete", func(t *testing.T) {
		mark := d.mark()
		path := filepath.Join(h.manifests, "alpha.yaml")
		// Cut inside the first args flow sequence: a syntax error, never a
		// valid document with fewer containers.
		cut := strings.Index(alphaDoc, `["3600"`) + len(`["36`)
		if err := os.WriteFile(path, []byte(alphaDoc[:cut]), 0o644); err != nil {
			t.Fatal(err)
		}
		// The edit is seen within debounce; give it a moment, then a resync.
		time.Sleep(5 * debounce)
		equalExcept(t, alphaTasks, pick(h.tasks(h.ns), alpha...))
		h.waitResync()
		equalExcept(t, alphaTasks, pick(h.tasks(h.ns), alpha...))
		if st := h.tryStatus(); st == nil || !slices.ContainsFunc(st.Diagnostics, func(s string) bool { return strings.Contains(s, "alpha.yaml") }) {
			t.Errorf("status diagnostics do not name alpha.yaml: %v", st)
		}
		if err := os.WriteFile(path, []byte(alphaDoc), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the diagnostic cleared", deadline, func() (bool, string) {
			st := h.tryStatus()
			return st != nil && len(st.Diagnostics) == 0, fmt.Sprint(st)
		})
		equalExcept(t, alphaTasks, pick(h.tasks(h.ns), alpha...))
		if got := actionLines(d.since(mark)); len(got) > 0 {
			t.Errorf("actions during the half write, want none:\n%s", strings.Join(got, "\n"))
		}
	})

	t.Run("swapping the symlinked directory converges to the new target", func(t *testing.T) {
		v2 := filepath.Join(base, "v2")
		for name, doc := range map[string]string{"alpha.yaml": alphaDoc, "fresh.yaml": cellDoc("fresh", "", "s")} {
			if err := os.WriteFile(filepath.Join(v2, name), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(base, "manifests.tmp")
		if err := os.Symlink("v2", tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, h.manifests); err != nil {
			t.Fatal(err)
		}
		h.waitRunning(fresh...)
		h.waitGone(old...)
		waitFor(t, "cell old's cgroup removed", deadline, func() (bool, string) {
			return !h.cgroupExists("lab/web/blog/old"), "lab/web/blog/old exists"
		})
		equalExcept(t, alphaTasks, pick(h.tasks(h.ns), alpha...))
	})

	t.Run("removing a file prunes its cell's containers and cgroup", func(t *testing.T) {
		if err := os.Remove(filepath.Join(h.manifests, "fresh.yaml")); err != nil {
			t.Fatal(err)
		}
		h.waitGone(fresh...)
		waitFor(t, "cell fresh's cgroup removed", deadline, func() (bool, string) {
			return !h.cgroupExists("lab/web/blog/fresh"), "lab/web/blog/fresh exists"
		})
		waitFor(t, "cell fresh gone from status", deadline, func() (bool, string) {
			st := cellStatus(h.tryStatus(), "fresh")
			return st == nil, fmt.Sprintf("%+v", st)
		})
		equalExcept(t, alphaTasks, pick(h.tasks(h.ns), alpha...))
	})
}

// TestDaemonRestartsContainers: the daemon applies restart policies on
// task exits and recreates what is deleted behind its back.
func TestDaemonRestartsContainers(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("keep.yaml", cellDoc("keep", "", "s"))
	h.writeFile("crash.yaml", `kind: Cell
metadata: {name: crash}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: boom
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", "exit 3"]
      restartPolicy: on-failure
      restartMaxRetries: 2
      restartBackoffSeconds: 1
      stopGracePeriodSeconds: 1
`)
	keep := cellContainerIDs("keep", "s")
	s := keep[1]
	d := h.startDaemon()
	// The first pass creates both cells; crash's container exits at once.
	// A pass must not wait for it to run: the daemon has restarts to do.
	d.firstPass()
	before := pick(h.waitRunning(keep...), keep...)

	t.Run("a task killed by SIGKILL is restarted once", func(t *testing.T) {
		mark := d.mark()
		killPID(t, h.taskPID(s))
		waitFor(t, "s restarted with restartCount 1", deadline, func() (bool, string) {
			cs := containerStatus(h.tryStatus(), "keep", "s")
			if cs == nil {
				return false, "no status for keep/s"
			}
			tasks := h.tasks(h.ns)
			return cs.State == controller.ContainerRunning && cs.RestartCount == 1 &&
					strings.HasPrefix(tasks[s], "running ") && tasks[s] != before[s],
				fmt.Sprintf("status %s restartCount %d; task %s", cs.State, cs.RestartCount, tasks[s])
		})
		cs := containerStatus(h.tryStatus(), "keep", "s")
		if cs.LastExitCode == nil || *cs.LastExitCode != 137 {
			t.Errorf("lastExitCode %s, want 137 (SIGKILL)", ptrString(cs.LastExitCode))
		}
		equalExcept(t, before, pick(h.tasks(h.ns), keep...), s)
		d.waitAction(mark, "restarted container "+hierarchy.CellKey("lab", "web", "blog", "keep")+" s")
		before = pick(h.tasks(h.ns), keep...)
	})

	t.Run("on-failure gives up after the max retries with exit code 3", func(t *testing.T) {
		waitFor(t, "cell crash Failed", deadline, func() (bool, string) {
			st := h.tryStatus()
			c := cellStatus(st, "crash")
			cs := containerStatus(st, "crash", "boom")
			if c == nil || cs == nil {
				return false, "no status for crash/boom"
			}
			return c.State == controller.StateFailed && cs.State == controller.ContainerFailed,
				fmt.Sprintf("cell %s, boom %s restartCount %d", c.State, cs.State, cs.RestartCount)
		})
		h.waitResync()
		st := h.tryStatus()
		c, cs := cellStatus(st, "crash"), containerStatus(st, "crash", "boom")
		if c == nil || cs == nil {
			t.Fatalf("crash/boom gone from status after a resync")
		}
		if c.State != controller.StateFailed {
			t.Errorf("cell crash is %s after a resync, want Failed", c.State)
		}
		if cs.ExitCode == nil || *cs.ExitCode != 3 {
			t.Errorf("exitCode %s, want 3", ptrString(cs.ExitCode))
		}
		if cs.RestartCount != 2 {
			t.Errorf("restartCount %d, want 2", cs.RestartCount)
		}
	})

	t.Run("a container deleted behind the daemon's back is recreated", func(t *testing.T) {
		if err := h.client.DeleteContainer(context.Background(), h.ns, s, time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "s recreated", deadline, func() (bool, string) {
			tasks := h.tasks(h.ns)
			return strings.HasPrefix(tasks[s], "running ") && tasks[s] != before[s], tasks[s]
		})
		equalExcept(t, before, pick(h.tasks(h.ns), keep...), s)
	})
}

// containerStatus returns the status of container id of cell (in
// lab/web/blog), or nil.
func containerStatus(st *controller.Status, cell, id string) *controller.ContainerStatus {
	c := cellStatus(st, cell)
	if c == nil {
		return nil
	}
	for i := range c.Containers {
		if c.Containers[i].ID == id {
			return &c.Containers[i]
		}
	}
	return nil
}

func ptrString(p *uint32) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// TestDaemonStopsAndAdopts: SIGTERM stops the daemon cleanly and leaves
// containers running; a new daemon adopts them without restarting any, and
// keeps the restart counts of the last one.
func TestDaemonStopsAndAdopts(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("one.yaml", cellDoc("one", "", "s"))
	h.writeFile("two.yaml", cellDoc("two", "", "s", "t"))
	ids := append(cellContainerIDs("one", "s"), cellContainerIDs("two", "s", "t")...)
	d := h.startDaemon()
	h.waitRunning(ids...)
	// One restart, to see the count survive the daemon's restart.
	s := ids[1]
	killPID(t, h.taskPID(s))
	waitFor(t, "one/s restarted", deadline, func() (bool, string) {
		cs := containerStatus(h.tryStatus(), "one", "s")
		return cs != nil && cs.State == controller.ContainerRunning && cs.RestartCount == 1, fmt.Sprintf("%+v", cs)
	})
	before := pick(h.waitRunning(ids...), ids...)

	t.Run("SIGTERM exits 0 and leaves containers running", func(t *testing.T) {
		start := time.Now()
		code, err := d.stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("daemon stopped in %s", time.Since(start).Round(time.Millisecond))
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		equalExcept(t, before, pick(h.tasks(h.ns), ids...))
	})

	t.Run("a new daemon adopts the host and restarts nothing", func(t *testing.T) {
		d := h.startDaemon()
		first := d.firstPass()
		// Nothing but start-up and "first pass done": no action at any
		// verbosity, no restart, no error.
		quiet := []string{"serving health and metrics", "reconciler started", "first pass done"}
		for _, l := range first {
			if l.isAction() || (l.str("level") != "DEBUG+3" && !slices.Contains(quiet, l.msg())) {
				t.Errorf("first pass over a converged host logged %s", l.raw)
			}
		}
		if l := first[len(first)-1]; l.str("ok") != "true" {
			t.Errorf("first pass not ok: %s", l.raw)
		}
		h.waitResync()
		equalExcept(t, before, pick(h.tasks(h.ns), ids...))
		if got := actionLines(d.lines()); len(got) > 0 {
			t.Errorf("actions after adoption, want none:\n%s", strings.Join(got, "\n"))
		}
		if cs := containerStatus(h.tryStatus(), "one", "s"); cs == nil || cs.RestartCount != 1 {
			t.Errorf("one/s after the daemon's restart: %+v, want restartCount 1", cs)
		}
	})
}

// TestDaemonKilledMidConverge: a daemon killed while it creates 20 cells
// leaves nothing a new daemon cannot finish: every cell converges, with no
// duplicate, orphaned or half-created container and no stray cgroup.
func TestDaemonKilledMidConverge(t *testing.T) {
	h := newDaemonHost(t)
	var want []string
	for i := range 20 {
		name := fmt.Sprintf("c%02d", i)
		h.writeFile(name+".yaml", cellDoc(name, "", "s"))
		want = append(want, cellContainerIDs(name, "s")...)
	}
	slices.Sort(want)

	d := h.startDaemon()
	var seen []string
	waitFor(t, "the first container created", deadline, func() (bool, string) {
		seen = h.containerIDs()
		return len(seen) > 0, "none yet"
	})
	d.kill()
	t.Logf("killed the daemon with %d of %d containers created", len(h.containerIDs()), len(want))

	h.startDaemon()
	h.waitRunning(want...)
	h.waitResync()
	if diff := cmp.Diff(want, h.containerIDs()); diff != "" {
		t.Errorf("containers in %s (-want +got):\n%s", h.ns, diff)
	}
	tasks := h.tasks(h.ns)
	for _, id := range want {
		if !strings.HasPrefix(tasks[id], "running ") {
			t.Errorf("%s is %q, want running", id, tasks[id])
		}
	}
	st := h.tryStatus()
	for i := range 20 {
		name := fmt.Sprintf("c%02d", i)
		if c := cellStatus(st, name); c == nil || c.State != controller.StateReady {
			t.Errorf("cell %s: %+v, want Ready", name, c)
		}
	}
	wantDirs := []string{"lab", "lab/web", "lab/web/blog"}
	for i := range 20 {
		name := fmt.Sprintf("c%02d", i)
		wantDirs = append(wantDirs, "lab/web/blog/"+name)
		for _, id := range cellContainerIDs(name, "s") {
			wantDirs = append(wantDirs, "lab/web/blog/"+name+"/"+id)
		}
	}
	slices.Sort(wantDirs)
	if diff := cmp.Diff(wantDirs, h.cgroupDirs()); diff != "" {
		t.Errorf("cgroups under %s (-want +got):\n%s", h.cgroupRoot, diff)
	}
}

// TestDaemonSurvivesContainerdOutage: while containerd is down the daemon
// stays alive (/healthz 200), reports not ready and logs the error; once
// containerd is back it is ready again and converges what changed meanwhile.
func TestDaemonSurvivesContainerdOutage(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("one.yaml", cellDoc("one", "", "s"))
	one := cellContainerIDs("one", "s")
	late := cellContainerIDs("late", "s")
	d := h.startDaemon()
	before := pick(h.waitRunning(one...), one...)
	waitFor(t, "/readyz 200", deadline, func() (bool, string) {
		code, body := d.get("/readyz")
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})

	mark := d.mark()
	down := time.Now()
	if err := h.ctd.Kill(); err != nil {
		t.Fatal(err)
	}
	// Probe /healthz all through the outage.
	var unhealthy []string
	probe := func() {
		if code, body := d.get("/healthz"); code != 200 {
			unhealthy = append(unhealthy, fmt.Sprintf("%s: %d %s", time.Since(down).Round(time.Millisecond), code, body))
		}
	}
	waitFor(t, "/readyz 503 while containerd is down", deadline, func() (bool, string) {
		probe()
		code, body := d.get("/readyz")
		return code == 503, fmt.Sprintf("%d %s", code, body)
	})
	t.Logf("/readyz 503 %s after containerd went down", time.Since(down).Round(time.Millisecond))
	if _, body := d.get("/metrics"); !strings.Contains(body, "\nreconciler_containerd_up 0\n") {
		t.Errorf("/metrics lacks reconciler_containerd_up 0 while containerd is down:\n%.3000s", body)
	}
	h.writeFile("late.yaml", cellDoc("late", "", "s"))
	for time.Since(down) < 10*time.Second {
		probe()
		time.Sleep(100 * time.Millisecond)
	}
	if len(unhealthy) > 0 {
		t.Errorf("/healthz failed during the outage:\n%s", strings.Join(unhealthy, "\n"))
	}
	if !slices.ContainsFunc(d.since(mark), func(l logLine) bool { return l.str("level") == "ERROR" }) {
		t.Error("no error logged while containerd was down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := h.ctd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	waitFor(t, "/readyz 200 after containerd is back", deadline, func() (bool, string) {
		code, body := d.get("/readyz")
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})
	h.waitRunning(late...)
	t.Logf("ready and converged %s after containerd came back", time.Since(up).Round(time.Millisecond))
	equalExcept(t, before, pick(h.tasks(h.ns), one...))
}
