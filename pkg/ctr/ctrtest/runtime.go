package ctrtest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Hooks are the test-only operations the runtime contract needs that the
// backend itself must not offer: making objects we do not own, killing a
// task or the whole backend behind its back, and reading back what it
// stored. Every hook is required: a missing one fails the suite, so no
// check can stop running unnoticed.
type Hooks struct {
	// ForeignNamespace creates namespace ns without our label and removes it
	// at the end of the test.
	ForeignNamespace func(t *testing.T, ns string)
	// ForeignContainer creates container id in ns from image without our
	// label (no task) and removes it at the end of the test.
	ForeignContainer func(t *testing.T, ns, id, image string)
	// Kill makes the running task of container id (whose PID is pid) exit
	// behind the backend's back and returns the exit code to expect.
	Kill func(t *testing.T, ns, id string, pid uint32) uint32
	// HandleSIGTERM returns once the task of container id (PID pid), which
	// runs TermSpec(…, code), exits with code on SIGTERM: a real task
	// installs its handler by itself (wait for it); a fake is told.
	HandleSIGTERM func(t *testing.T, ns, id string, pid, code uint32)
	// Down makes the backend unreachable as a containerd crash would (its
	// tasks keep running); Up brings it back on the same address.
	Down, Up func(t *testing.T)
	// TagImage makes image ref present in ns as a copy of the present image
	// src, such that nothing could source ref again (no archive, no
	// registry provides it).
	TagImage func(t *testing.T, ns, src, ref string)
	// StoredSpec reads back what the backend stored of container id's spec
	// (the real one from containerd's OCI spec of the container).
	StoredSpec func(t *testing.T, ns, id string) StoredSpec
	// Cgroups returns the cgroup tree the backend of the same test (the one
	// newRT returned last) places tasks in, and a fresh group under which
	// the suite may create anything; the hook removes it at the end.
	Cgroups func(t *testing.T) (fs CgroupFS, root string)
	// Mounted reports whether group is a cgroup directory under mountpoint:
	// a real backend stats it, a fake answers from its tree.
	Mounted func(t *testing.T, mountpoint, group string) bool
}

// StoredSpec is what a backend kept of the ContainerSpec fields that a fake
// could ignore unnoticed, as read back after CreateContainer.
type StoredSpec struct {
	Env         []string
	Mounts      []ctr.Mount // Kind, Target, ReadOnly; Source of binds; SizeBytes of tmpfs
	Resources   ctr.Resources
	CgroupsPath string
}

// check fails the suite when a hook is missing.
func (h Hooks) check(t *testing.T) {
	t.Helper()
	missing := map[string]bool{
		"ForeignNamespace": h.ForeignNamespace == nil, "ForeignContainer": h.ForeignContainer == nil,
		"Kill": h.Kill == nil, "HandleSIGTERM": h.HandleSIGTERM == nil, "Down": h.Down == nil, "Up": h.Up == nil,
		"TagImage": h.TagImage == nil, "StoredSpec": h.StoredSpec == nil, "Cgroups": h.Cgroups == nil,
		"Mounted": h.Mounted == nil,
	}
	for _, name := range slices.Sorted(maps.Keys(missing)) {
		if missing[name] {
			t.Errorf("ctrtest: hook %s missing: the checks that need it cannot run", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// NewRuntime returns a backend, a namespace it may use (created by the
// suite) and an image reference that EnsureImage can source there.
type NewRuntime func(t *testing.T) (rt Runtime, ns string, image string)

// RunRuntimeContract runs the behaviour every Runtime must show.
func RunRuntimeContract(t *testing.T, newRT NewRuntime, hooks Hooks) {
	hooks.check(t)
	t.Run("namespaces are created once, listed, and deleted only when ours and empty", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		for range 2 {
			if err := rt.EnsureNamespace(ctx, ns); err != nil {
				t.Fatalf("EnsureNamespace(%s): %v", ns, err)
			}
		}
		mustListNamespace(t, rt, ns, true)

		foreign := ns + "-foreign"
		hooks.ForeignNamespace(t, foreign)
		if err := rt.EnsureNamespace(ctx, foreign); err != nil {
			t.Fatalf("EnsureNamespace(%s) on an existing foreign namespace: %v", foreign, err)
		}
		if err := rt.DeleteNamespace(ctx, foreign); !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("DeleteNamespace(foreign) = %v, want ErrNotOwned", err)
		}
		mustListNamespace(t, rt, foreign, true)

		if err := rt.DeleteNamespace(ctx, ns+"-missing"); !errors.Is(err, ctr.ErrNotFound) {
			t.Errorf("DeleteNamespace(missing) = %v, want ErrNotFound", err)
		}

		if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
			t.Fatalf("EnsureImage: %v", err)
		}
		id := "ns-holder"
		if err := rt.CreateContainer(ctx, ns, spec(id, image, nil)); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		if err := rt.DeleteNamespace(ctx, ns); !errors.Is(err, ctr.ErrNotEmpty) {
			t.Errorf("DeleteNamespace(with a container) = %v, want ErrNotEmpty", err)
		}
		if err := rt.DeleteContainer(ctx, ns, id, time.Second); err != nil {
			t.Fatalf("DeleteContainer: %v", err)
		}
		if err := rt.DeleteNamespace(ctx, ns); err != nil {
			t.Fatalf("DeleteNamespace(ours, empty): %v", err)
		}
		mustListNamespace(t, rt, ns, false)
	})

	t.Run("an image that is missing under policy Never is a clear error", func(t *testing.T) {
		rt, ns, _ := newRT(t)
		ctx := context.Background()
		mustNamespace(t, rt, ns)
		ref := "registry.invalid/nothing/here:1"
		err := rt.EnsureImage(ctx, ns, ref, ctr.PullNever, nil)
		if !errors.Is(err, ctr.ErrImageNotPresent) {
			t.Fatalf("EnsureImage(Never, missing) = %v, want ErrImageNotPresent", err)
		}
		if !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), ns) {
			t.Errorf("error %q does not name the image %s and the namespace %s", err, ref, ns)
		}
		if err := rt.CreateContainer(ctx, ns, spec("no-image", ref, nil)); !errors.Is(err, ctr.ErrImageNotPresent) {
			t.Errorf("CreateContainer(missing image) = %v, want ErrImageNotPresent", err)
		}
	})

	t.Run("a container goes through create, start, exit, restart, stop and delete", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := rt.Events(ctx)
		mustNamespace(t, rt, ns)
		for _, p := range []string{ctr.PullIfNotPresent, ctr.PullIfNotPresent, ctr.PullAlways} {
			if err := rt.EnsureImage(ctx, ns, image, p, nil); err != nil {
				t.Fatalf("EnsureImage(%s): %v", p, err)
			}
		}
		id := "lifecycle"
		labels := map[string]string{ctr.LabelCell: "c", ctr.LabelSpecHash: "h1"}
		if err := rt.CreateContainer(ctx, ns, spec(id, image, labels)); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		deleteAtCleanup(t, rt, ns, id)
		if err := rt.CreateContainer(ctx, ns, spec(id, image, labels)); !errors.Is(err, ctr.ErrAlreadyExists) {
			t.Errorf("CreateContainer twice = %v, want ErrAlreadyExists", err)
		}

		got := mustGet(t, rt, ns, id)
		wantLabels := map[string]string{ctr.LabelCell: "c", ctr.LabelSpecHash: "h1", ctr.LabelManagedBy: ctr.ManagedByValue}
		if diff := cmp.Diff(wantLabels, ourLabels(got.Labels)); diff != "" {
			t.Errorf("labels after create (-want +got):\n%s", diff)
		}
		if got.Task.Status != ctr.TaskNone {
			t.Errorf("task after create = %q, want none", got.Task.Status)
		}

		pid, err := rt.StartContainer(ctx, ns, id)
		if err != nil || pid == 0 {
			t.Fatalf("StartContainer = %d, %v", pid, err)
		}
		got = mustGet(t, rt, ns, id)
		if got.Task.Status != ctr.TaskRunning || got.Task.PID != pid || got.Task.StartedAt.IsZero() {
			t.Fatalf("task after start = %+v, want running with pid %d and a start time", got.Task, pid)
		}
		started := got.Task.StartedAt
		pid2, err := rt.StartContainer(ctx, ns, id)
		if err != nil || pid2 != pid {
			t.Fatalf("StartContainer again = %d, %v; want the same pid %d", pid2, err, pid)
		}
		if again := mustGet(t, rt, ns, id); !again.Task.StartedAt.Equal(started) {
			t.Errorf("StartedAt changed on an idempotent start: %v → %v", started, again.Task.StartedAt)
		}

		code := hooks.Kill(t, ns, id, pid)
		ev := waitEvent(t, events, func(e ctr.Event) bool {
			return e.Kind == ctr.EventTaskExit && e.Namespace == ns && e.ContainerID == id
		})
		if ev.ExitCode != code {
			t.Errorf("exit event code = %d, want %d", ev.ExitCode, code)
		}
		got = waitContainer(t, rt, ns, id, func(c ctr.Container) bool { return c.Task.Status == ctr.TaskStopped })
		if got.Task.ExitCode != code || got.Task.ExitedAt.IsZero() {
			t.Errorf("task after exit = %+v, want stopped with code %d and an exit time", got.Task, code)
		}

		pid3, err := rt.StartContainer(ctx, ns, id)
		if err != nil || pid3 == 0 {
			t.Fatalf("StartContainer after exit = %d, %v", pid3, err)
		}
		if got = mustGet(t, rt, ns, id); got.Task.Status != ctr.TaskRunning || got.Task.PID != pid3 {
			t.Errorf("task after restart = %+v, want running with pid %d", got.Task, pid3)
		}

		if err := rt.StopContainer(ctx, ns, id, 2*time.Second); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		if got = mustGet(t, rt, ns, id); got.Task.Status == ctr.TaskRunning {
			t.Errorf("task after stop = %+v, want not running", got.Task)
		}
		if err := rt.StopContainer(ctx, ns, id, time.Second); err != nil {
			t.Errorf("StopContainer without a task = %v, want nil", err)
		}

		if err := rt.DeleteContainer(ctx, ns, id, time.Second); err != nil {
			t.Fatalf("DeleteContainer: %v", err)
		}
		if list := mustList(t, rt, ns); len(list) != 0 {
			t.Errorf("containers after delete = %v, want none", ids(list))
		}
		if err := rt.DeleteContainer(ctx, ns, id, time.Second); !errors.Is(err, ctr.ErrNotFound) {
			t.Errorf("DeleteContainer(missing) = %v, want ErrNotFound", err)
		}
		if _, err := rt.StartContainer(ctx, ns, id); !errors.Is(err, ctr.ErrNotFound) {
			t.Errorf("StartContainer(missing) = %v, want ErrNotFound", err)
		}
	})

	t.Run("labels are updated in place and the others kept", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustNamespace(t, rt, ns)
		if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
			t.Fatalf("EnsureImage: %v", err)
		}
		id := "labelled"
		if err := rt.CreateContainer(ctx, ns, spec(id, image, map[string]string{ctr.LabelCell: "c", ctr.LabelSpecHash: "h1"})); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		deleteAtCleanup(t, rt, ns, id)
		if err := rt.UpdateLabels(ctx, ns, id, map[string]string{ctr.LabelSpecHash: "h2", "kukeon.io/extra": "x"}); err != nil {
			t.Fatalf("UpdateLabels: %v", err)
		}
		want := map[string]string{ctr.LabelCell: "c", ctr.LabelSpecHash: "h2", "kukeon.io/extra": "x", ctr.LabelManagedBy: ctr.ManagedByValue}
		if diff := cmp.Diff(want, ourLabels(mustGet(t, rt, ns, id).Labels)); diff != "" {
			t.Errorf("labels after update (-want +got):\n%s", diff)
		}
		if err := rt.UpdateLabels(ctx, ns, "missing", map[string]string{"a": "b"}); !errors.Is(err, ctr.ErrNotFound) {
			t.Errorf("UpdateLabels(missing) = %v, want ErrNotFound", err)
		}
	})

	t.Run("a cell's containers are listed by its labels, with their tasks", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustNamespace(t, rt, ns)
		if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
			t.Fatalf("EnsureImage: %v", err)
		}
		cell := func(c string) map[string]string {
			return map[string]string{ctr.LabelSpace: "s", ctr.LabelStack: "t", ctr.LabelCell: c}
		}
		for _, c := range []struct{ id, cell string }{{"s_t_a_x", "a"}, {"s_t_a_y", "a"}, {"s_t_b_x", "b"}} {
			if err := rt.CreateContainer(ctx, ns, spec(c.id, image, cell(c.cell))); err != nil {
				t.Fatalf("CreateContainer(%s): %v", c.id, err)
			}
			deleteAtCleanup(t, rt, ns, c.id)
		}
		if _, err := rt.StartContainer(ctx, ns, "s_t_a_x"); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		got, err := rt.ListContainersWithLabels(ctx, ns, map[string]string{ctr.LabelSpace: "s", ctr.LabelStack: "t", ctr.LabelCell: "a"})
		if err != nil {
			t.Fatalf("ListContainersWithLabels: %v", err)
		}
		var ids []string
		for _, c := range got {
			ids = append(ids, c.ID+"="+string(c.Task.Status))
		}
		want := []string{"s_t_a_x=" + string(ctr.TaskRunning), "s_t_a_y=" + string(ctr.TaskNone)}
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Errorf("cell a (-want +got):\n%s", diff)
		}
		none, err := rt.ListContainersWithLabels(ctx, ns, map[string]string{ctr.LabelSpace: "s", ctr.LabelStack: "t", ctr.LabelCell: "nope"})
		if err != nil {
			t.Fatalf("ListContainersWithLabels(a cell without containers): %v", err)
		}
		if len(none) != 0 {
			t.Errorf("a cell without containers lists %+v", none)
		}
	})

	t.Run("a container we did not create is never listed nor touched", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustNamespace(t, rt, ns)
		if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
			t.Fatalf("EnsureImage: %v", err)
		}
		hooks.ForeignContainer(t, ns, "foreign", image)
		if list := mustList(t, rt, ns); len(list) != 0 {
			t.Errorf("ListContainers = %v, want the foreign container not listed", ids(list))
		}
		if err := rt.DeleteContainer(ctx, ns, "foreign", time.Second); !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("DeleteContainer(foreign) = %v, want ErrNotOwned", err)
		}
		if _, err := rt.StartContainer(ctx, ns, "foreign"); !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("StartContainer(foreign) = %v, want ErrNotOwned", err)
		}
		if err := rt.StopContainer(ctx, ns, "foreign", time.Second); !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("StopContainer(foreign) = %v, want ErrNotOwned", err)
		}
		if err := rt.UpdateLabels(ctx, ns, "foreign", map[string]string{"a": "b"}); !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("UpdateLabels(foreign) = %v, want ErrNotOwned", err)
		}
		if err := rt.CreateContainer(ctx, ns, spec("foreign", image, nil)); !errors.Is(err, ctr.ErrAlreadyExists) {
			t.Errorf("CreateContainer over a foreign ID = %v, want ErrAlreadyExists", err)
		}
		if err := rt.DeleteNamespace(ctx, ns); !errors.Is(err, ctr.ErrNotEmpty) {
			t.Errorf("DeleteNamespace(holding a foreign container) = %v, want ErrNotEmpty", err)
		}
	})

	runStopChecks(t, newRT, hooks)
	runEventChecks(t, newRT, hooks)
	runImageChecks(t, newRT, hooks)
	runSpecChecks(t, newRT, hooks)
	runPlacementChecks(t, newRT, hooks)
}

// deleteAtCleanup deletes our container id at the end of the test; one
// the test already deleted is fine, any other failure is reported.
func deleteAtCleanup(t *testing.T, rt Runtime, ns, id string) {
	t.Cleanup(func() {
		if err := rt.DeleteContainer(context.Background(), ns, id, 0); err != nil && !errors.Is(err, ctr.ErrNotFound) {
			t.Errorf("cleanup: DeleteContainer(%s): %v", id, err)
		}
	})
}

// createStarted creates container s in ns (deleted at cleanup) and starts
// it, returning its PID.
func createStarted(t *testing.T, rt Runtime, ns string, s ctr.ContainerSpec) uint32 {
	t.Helper()
	ctx := context.Background()
	if err := rt.CreateContainer(ctx, ns, s); err != nil {
		t.Fatalf("CreateContainer(%s): %v", s.ID, err)
	}
	deleteAtCleanup(t, rt, ns, s.ID)
	pid, err := rt.StartContainer(ctx, ns, s.ID)
	if err != nil || pid == 0 {
		t.Fatalf("StartContainer(%s) = %d, %v", s.ID, pid, err)
	}
	return pid
}

// mustImage makes the suite's namespace and image ready.
func mustImage(t *testing.T, rt Runtime, ns, image string) {
	t.Helper()
	mustNamespace(t, rt, ns)
	if err := rt.EnsureImage(context.Background(), ns, image, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatalf("EnsureImage(%s): %v", image, err)
	}
}

// spec is a container that runs until signalled.
func spec(id, image string, labels map[string]string) ctr.ContainerSpec {
	return ctr.ContainerSpec{
		ID: id, Image: image, Labels: labels,
		Command: "sleep", Args: []string{"3600"},
	}
}

// ourLabels keeps the kukeon.io labels (a backend may add its own).
func ourLabels(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if strings.HasPrefix(k, "kukeon.io/") {
			out[k] = v
		}
	}
	return out
}

func mustNamespace(t *testing.T, rt Runtime, ns string) {
	t.Helper()
	if err := rt.EnsureNamespace(context.Background(), ns); err != nil {
		t.Fatalf("EnsureNamespace(%s): %v", ns, err)
	}
}

func mustListNamespace(t *testing.T, rt Runtime, ns string, want bool) {
	t.Helper()
	list, err := rt.ListNamespaces(context.Background())
	if err != nil {
		t.Fatalf("ListNamespaces: %v", err)
	}
	if got := slices.Contains(list, ns); got != want {
		t.Errorf("namespace %s listed = %v, want %v (list %v)", ns, got, want, list)
	}
}

func mustList(t *testing.T, rt Runtime, ns string) []ctr.Container {
	t.Helper()
	list, err := rt.ListContainers(context.Background(), ns)
	if err != nil {
		t.Fatalf("ListContainers(%s): %v", ns, err)
	}
	return list
}

func mustGet(t *testing.T, rt Runtime, ns, id string) ctr.Container {
	t.Helper()
	for _, c := range mustList(t, rt, ns) {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("container %s not listed in %s", id, ns)
	return ctr.Container{}
}

func ids(list []ctr.Container) []string {
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.ID
	}
	return out
}

func waitContainer(t *testing.T, rt Runtime, ns, id string, ok func(ctr.Container) bool) ctr.Container {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := mustGet(t, rt, ns, id)
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never reached the wanted state; last %+v", id, c.Task)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitEvent(t *testing.T, events <-chan ctr.Event, ok func(ctr.Event) bool) ctr.Event {
	t.Helper()
	return WaitEvent(t, events, 10*time.Second, ok)
}

// WaitEvent returns the first event from events that ok accepts, failing
// the test after timeout.
func WaitEvent(t *testing.T, events <-chan ctr.Event, timeout time.Duration, ok func(ctr.Event) bool) ctr.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e, open := <-events:
			if !open {
				t.Fatal("event stream closed")
			}
			if ok(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no matching event within %s", timeout)
		}
	}
}
