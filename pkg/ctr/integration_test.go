package ctr_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/ctr/ctrtest"
	"github.com/kukeon/reconciler/pkg/testenv"
)

// nsSuffix makes this run's namespaces unique. Hazard: runc keeps task
// state under /run/containerd/runc/<namespace>/<id>, shared by every
// containerd on the machine, so fixed names collide with a concurrent run.
var nsSuffix = func() string {
	b := make([]byte, 4)
	rand.Read(b) // never fails (crypto/rand)
	return "it" + hex.EncodeToString(b) + ".kukeon.io"
}()

func TestRuntimeContractIntegration(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	n := 0
	ctrtest.RunRuntimeContract(t, func(t *testing.T) (ctrtest.Runtime, string, string) {
		n++
		ns := fmt.Sprintf("contract-%d.%s", n, nsSuffix)
		e.deleteNamespace(t, ns)
		return e.client, ns, busybox
	}, ctrtest.Hooks{
		ForeignNamespace: e.foreignNamespace,
		ForeignContainer: e.foreignContainer,
		Kill:             killHook,
		HandleSIGTERM:    waitSIGTERMHandler,
		Down: func(t *testing.T) {
			if err := e.cd.Kill(); err != nil {
				t.Fatalf("kill containerd: %v", err)
			}
		},
		Up: func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := e.cd.Restart(ctx); err != nil {
				t.Fatalf("restart containerd: %v", err)
			}
		},
		TagImage:   e.tagImage,
		StoredSpec: e.storedSpec,
		Cgroups: func(t *testing.T) (ctrtest.CgroupFS, string) {
			cg, err := ctr.NewCgroups("")
			if err != nil {
				t.Fatalf("NewCgroups: %v", err)
			}
			return cg, testenv.CgroupRoot(t)
		},
		Mounted: func(t *testing.T, mountpoint, group string) bool {
			st, err := os.Stat(filepath.Join(mountpoint, group, "cgroup.procs"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("stat %s: %v", group, err)
			}
			return err == nil && st.Mode().IsRegular()
		},
	})
}

// waitSIGTERMHandler waits until process pid is the shell of
// ctrtest.TermSpec and catches SIGTERM (SigCgt in /proc/<pid>/status): only
// then is a SIGTERM not dropped by the kernel, as it is for a container's
// PID 1 without a handler. Hazard: runc's init, which execs the shell, is a
// Go program that catches SIGTERM too; a signal it gets is lost.
func waitSIGTERMHandler(t *testing.T, ns, id string, pid, code uint32) {
	t.Helper()
	var name, caught string
	waitFor(t, 20*time.Second, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			name = err.Error()
			return false
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Name:"); ok {
				name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				caught = strings.TrimSpace(v)
			}
		}
		mask, err := strconv.ParseUint(caught, 16, 64)
		return name == "sh" && err == nil && mask&(1<<(uint(syscall.SIGTERM)-1)) != 0
	}, func() string {
		return fmt.Sprintf("container %s (pid %d) never became a shell catching SIGTERM: name %s, SigCgt %s", id, pid, name, caught)
	})
}

// tagImage creates image ref in ns with the target of the present image
// src, as `ctr images tag` does: nothing in the archive directory provides
// ref.
func (e *env) tagImage(t *testing.T, ns, src, ref string) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	img, err := e.raw.ImageService().Get(ctx, ctr.NormalizeImage(src))
	if err != nil {
		t.Fatalf("tag image: %v", err)
	}
	if _, err := e.raw.ImageService().Create(ctx, images.Image{Name: ctr.NormalizeImage(ref), Target: img.Target}); err != nil {
		t.Fatalf("tag image: %v", err)
	}
}

// tmpfsSize parses a tmpfs size= value: bytes, or k, m, g suffixed.
func tmpfsSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "k"):
		mult = 1 << 10
	case strings.HasSuffix(v, "m"):
		mult = 1 << 20
	case strings.HasSuffix(v, "g"):
		mult = 1 << 30
	}
	n, err := strconv.ParseInt(strings.TrimRight(v, "kmg"), 10, 64)
	return n * mult, err
}

// storedSpec reads the OCI spec containerd stored for container id back
// into the fields the contract checks.
func (e *env) storedSpec(t *testing.T, ns, id string) ctrtest.StoredSpec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	c, err := e.raw.LoadContainer(ctx, id)
	if err != nil {
		t.Fatalf("load container %s: %v", id, err)
	}
	s, err := c.Spec(ctx)
	if err != nil {
		t.Fatalf("spec of %s: %v", id, err)
	}
	var out ctrtest.StoredSpec
	if s.Process != nil {
		out.Env = s.Process.Env
	}
	for _, m := range s.Mounts {
		if m.Type != "bind" && m.Type != "tmpfs" {
			continue
		}
		cm := ctr.Mount{Kind: m.Type, Target: m.Destination, ReadOnly: slices.Contains(m.Options, "ro")}
		if m.Type == "bind" {
			cm.Source = m.Source
		}
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "size="); ok {
				if cm.SizeBytes, err = tmpfsSize(v); err != nil {
					t.Fatalf("mount %s: option %s: %v", m.Destination, o, err)
				}
			}
		}
		out.Mounts = append(out.Mounts, cm)
	}
	if s.Linux != nil {
		out.CgroupsPath = s.Linux.CgroupsPath
		if r := s.Linux.Resources; r != nil {
			if r.Memory != nil {
				out.Resources.MemoryLimitBytes = r.Memory.Limit
			}
			if r.CPU != nil && r.CPU.Shares != nil {
				shares := int64(*r.CPU.Shares)
				out.Resources.CPUShares = &shares
			}
			if r.Pids != nil {
				out.Resources.PidsLimit = r.Pids.Limit
			}
		}
	}
	return out
}

func TestCgroupContractIntegration(t *testing.T) {
	testenv.Require(t)
	ctrtest.RunCgroupContract(t, func(t *testing.T) (ctrtest.CgroupFS, string) {
		cg, err := ctr.NewCgroups("")
		if err != nil {
			t.Fatalf("NewCgroups: %v", err)
		}
		return cg, testenv.CgroupRoot(t)
	})
}

// TestCell brings up a cell the way the controller will: level cgroups
// with delegated controllers, a synthesized root and two workloads sharing
// its namespaces, then takes it down bottom-up.
func TestCell(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := e.client.Events(ctx)
	ns := "lab." + nsSuffix
	e.deleteNamespace(t, ns)
	if err := e.client.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}

	// Image from the archive directory, by its short name.
	if err := e.client.EnsureImage(ctx, ns, "busybox", ctr.PullNever, nil); err != nil {
		t.Fatalf("EnsureImage(busybox from archive): %v", err)
	}

	// Level cgroups.
	cg, err := ctr.NewCgroups("")
	if err != nil {
		t.Fatal(err)
	}
	root := testenv.CgroupRoot(t)
	want := []string{"cpu", "memory", "io", "pids", "hugetlb"}
	avail, err := cg.Available()
	if err != nil {
		t.Fatal(err)
	}
	var wantEff, wantMissing []string
	for _, c := range want {
		if slices.Contains(avail, c) {
			wantEff = append(wantEff, c)
		} else {
			wantMissing = append(wantMissing, c)
		}
	}
	slices.Sort(wantEff)
	slices.Sort(wantMissing)
	levels := []string{root + "/lab", root + "/lab/web", root + "/lab/web/blog", root + "/lab/web/blog/front"}
	for _, lvl := range levels {
		eff, missing, err := cg.Ensure(lvl, want)
		if err != nil {
			t.Fatalf("Ensure(%s): %v", lvl, err)
		}
		if diff := cmp.Diff(wantEff, eff); diff != "" {
			t.Errorf("Ensure(%s) effective (-want +got):\n%s", lvl, diff)
		}
		if diff := cmp.Diff(wantMissing, missing); diff != "" {
			t.Errorf("Ensure(%s) missing (-want +got):\n%s", lvl, diff)
		}
	}
	cell := levels[len(levels)-1]
	// Delegation is real: the cell's children get the files of a delegated
	// controller (hugetlb on a hybrid host, all of them on a pure v2 one).
	if len(wantEff) == 0 {
		testenv.SkipOrFail(t, fmt.Sprintf("the cgroup v2 mount offers none of %v: delegation cannot be shown", want))
	}
	ctrl := wantEff[0]
	probe := cell + "/probe"
	if _, _, err := cg.Ensure(probe, nil); err != nil {
		t.Fatal(err)
	}
	got, err := cg.Read(probe, []string{"cgroup.controllers"})
	if err != nil || !slices.Contains(strings.Fields(got["cgroup.controllers"]), ctrl) {
		t.Errorf("probe controllers = %v, %v; want %s delegated", got, err, ctrl)
	}
	entries, err := os.ReadDir(filepath.Join(cg.Mountpoint(), probe))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(entries, func(d os.DirEntry) bool { return strings.HasPrefix(d.Name(), ctrl+".") }) {
		t.Errorf("no %s.* files in %s", ctrl, probe)
	}
	if err := cg.Remove(probe); err != nil {
		t.Fatal(err)
	}

	labels := func(id, typ string) map[string]string {
		return map[string]string{
			ctr.LabelRealm: "lab", ctr.LabelSpace: "web", ctr.LabelStack: "blog", ctr.LabelCell: "front",
			ctr.LabelContainerType: typ, ctr.LabelSpecHash: "hash-" + id,
		}
	}
	rootID := "web_blog_front_root"
	// StartedAt comes from /proc (boot time in whole seconds plus clock
	// ticks): it may read up to a second before the real start.
	beforeStart := time.Now().Add(-2 * time.Second)
	if err := e.client.CreateContainer(ctx, ns, ctr.ContainerSpec{
		ID: rootID, Image: "busybox", Pause: true, Hostname: "front",
		CgroupsPath: cell + "/" + rootID, Labels: labels(rootID, "root"),
	}); err != nil {
		t.Fatalf("create root: %v", err)
	}
	rootPID, err := e.client.StartContainer(ctx, ns, rootID)
	if err != nil {
		t.Fatalf("start root: %v", err)
	}
	workloads := []ctr.ContainerSpec{
		{
			ID: "web_blog_front_echo", Image: busybox, Command: "sh",
			Args: []string{"-c", `echo "$FOO" "$@"; hostname; exec sleep 3600`, "x", "a", "b"},
			Env:  []string{"FOO=bar"},
		},
		{ID: "web_blog_front_sleep", Image: busybox, Args: []string{"sleep", "3600"}, Env: []string{"PATH=/bin"}},
	}
	pids := map[string]uint32{rootID: rootPID}
	for _, w := range workloads {
		w.JoinPID = rootPID
		w.CgroupsPath = cell + "/" + w.ID
		w.Labels = labels(w.ID, "container")
		if err := e.client.CreateContainer(ctx, ns, w); err != nil {
			t.Fatalf("create %s: %v", w.ID, err)
		}
		pid, err := e.client.StartContainer(ctx, ns, w.ID)
		if err != nil {
			t.Fatalf("start %s: %v", w.ID, err)
		}
		pids[w.ID] = pid
	}

	// Shared net, ipc and uts; own pid namespace.
	for _, kind := range []string{"net", "ipc", "uts", "pid"} {
		rootNS := nsLink(t, rootPID, kind)
		for _, w := range workloads {
			got := nsLink(t, pids[w.ID], kind)
			if shared := got == rootNS; shared != (kind != "pid") {
				t.Errorf("%s of %s = %s, root's %s: shared=%v", kind, w.ID, got, rootNS, shared)
			}
		}
	}
	// Placement in the cell's cgroup, on the unified hierarchy.
	for id, pid := range pids {
		if got, want := unifiedCgroup(t, pid), cell+"/"+id; got != want {
			t.Errorf("cgroup of %s = %s, want %s", id, got, want)
		}
	}
	// Labels, spec hash, task state.
	list, err := e.client.ListContainers(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("listed %d containers, want 3", len(list))
	}
	for _, c := range list {
		if c.Labels[ctr.LabelSpecHash] != "hash-"+c.ID || c.Labels[ctr.LabelManagedBy] != ctr.ManagedByValue || c.Labels[ctr.LabelCell] != "front" {
			t.Errorf("labels of %s = %v", c.ID, c.Labels)
		}
		if c.Task.Status != ctr.TaskRunning || c.Task.PID != pids[c.ID] || c.Task.StartedAt.IsZero() {
			t.Errorf("task of %s = %+v, want running with pid %d", c.ID, c.Task, pids[c.ID])
		}
		if now := time.Now(); c.Task.StartedAt.Before(beforeStart) || c.Task.StartedAt.After(now) {
			t.Errorf("StartedAt of %s = %v, want the task's start, between %v and %v", c.ID, c.Task.StartedAt, beforeStart, now)
		}
	}
	// Argv, env and the root's hostname, through the log file.
	logPath := e.state + "/logs/" + ns + "/web_blog_front_echo.log"
	readLog := func() (string, error) {
		b, err := os.ReadFile(logPath)
		return string(b), err
	}
	waitFor(t, 10*time.Second, func() bool {
		b, err := readLog()
		return err == nil && strings.Contains(b, "bar a b\nfront\n")
	}, func() string { b, err := readLog(); return fmt.Sprintf("log %s = %q (%v)", logPath, b, err) })

	// Take it down: workloads, then the root, then the cgroups bottom-up.
	for _, w := range workloads {
		if err := e.client.DeleteContainer(ctx, ns, w.ID, time.Second); err != nil {
			t.Errorf("delete %s: %v", w.ID, err)
		}
	}
	if err := e.client.DeleteContainer(ctx, ns, rootID, 30*time.Second); err != nil {
		t.Errorf("delete root: %v", err)
	}
	// The pause root exits 0 on SIGTERM; 137 would be the SIGKILL sent when
	// it ignores SIGTERM for the whole grace period.
	exit := ctrtest.WaitEvent(t, events, 30*time.Second, func(ev ctr.Event) bool {
		return ev.Kind == ctr.EventTaskExit && ev.Namespace == ns && ev.ContainerID == rootID
	})
	if exit.ExitCode != 0 {
		t.Errorf("the pause root exited with code %d on delete, want 0: it should exit on SIGTERM", exit.ExitCode)
	}
	if err := cg.Remove(levels[0]); err != nil {
		t.Fatalf("remove %s: %v", levels[0], err)
	}
	for _, lvl := range levels {
		ok, err := cg.Exists(lvl)
		if err != nil {
			t.Errorf("Exists(%s): %v", lvl, err)
		}
		if ok {
			t.Errorf("%s still exists", lvl)
		}
	}
}

// TestContainerdRestart kills containerd under a running container: calls
// fail with ErrUnavailable, then after the restart the same client works
// again, the container was adopted (same PID), the event stream says it
// reconnected and delivers an exit that happens afterwards.
func TestContainerdRestart(t *testing.T) {
	e := newEnv(t, ctr.Config{DialTimeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "restart." + nsSuffix
	e.deleteNamespace(t, ns)
	events := e.client.Events(ctx)
	if err := e.client.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := e.client.EnsureImage(ctx, ns, busybox, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}
	id := "survivor"
	if err := e.client.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: id, Image: busybox, Command: "sleep", Args: []string{"3600"}}); err != nil {
		t.Fatal(err)
	}
	pid, err := e.client.StartContainer(ctx, ns, id)
	if err != nil {
		t.Fatal(err)
	}

	if err := e.cd.Kill(); err != nil {
		t.Fatalf("kill containerd: %v", err)
	}
	if _, err := e.client.ListContainers(ctx, ns); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("ListContainers with containerd down = %v, want ErrUnavailable", err)
	}
	if err := e.client.Ping(ctx); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("Ping with containerd down = %v, want ErrUnavailable", err)
	}
	if err := e.cd.Restart(ctx); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	ctrtest.WaitEvent(t, events, 15*time.Second, func(ev ctr.Event) bool { return ev.Kind == ctr.EventReconnected })

	list, err := e.client.ListContainers(ctx, ns)
	if err != nil {
		t.Fatalf("ListContainers after restart: %v", err)
	}
	if len(list) != 1 || list[0].Task.Status != ctr.TaskRunning || list[0].Task.PID != pid {
		t.Fatalf("after restart: %+v, want %s running with pid %d", list, id, pid)
	}
	code := killHook(t, ns, id, pid)
	ev := ctrtest.WaitEvent(t, events, 10*time.Second, func(ev ctr.Event) bool {
		return ev.Kind == ctr.EventTaskExit && ev.Namespace == ns && ev.ContainerID == id
	})
	if ev.ExitCode != code {
		t.Errorf("exit code after restart = %d, want %d", ev.ExitCode, code)
	}
	if err := e.client.DeleteContainer(ctx, ns, id, time.Second); err != nil {
		t.Fatal(err)
	}
	del := ctrtest.WaitEvent(t, events, 10*time.Second, func(ev ctr.Event) bool {
		return ev.Kind == ctr.EventContainerDelete && ev.ContainerID == id
	})
	if del.Namespace != ns {
		t.Errorf("delete event namespace = %q, want %q", del.Namespace, ns)
	}
}

// TestEnsureImageOnce: concurrent EnsureImage calls for one image import it
// once and all succeed.
func TestEnsureImageConcurrent(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ctx := context.Background()
	ns := "images." + nsSuffix
	e.deleteNamespace(t, ns)
	if err := e.client.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- e.client.EnsureImage(ctx, ns, busybox, ctr.PullIfNotPresent, nil) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("EnsureImage: %v", err)
		}
	}
}

func nsLink(t *testing.T, pid uint32, kind string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// unifiedCgroup returns the "0::" (cgroup v2) path of pid.
func unifiedCgroup(t *testing.T, pid uint32) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no 0:: line in /proc/%d/cgroup:\n%s", pid, b)
	return ""
}

func waitFor(t *testing.T, d time.Duration, ok func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %s: %s", d, state())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
