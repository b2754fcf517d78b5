package ctrfake_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
)

// The contract suite (TestRuntimeContract) pins what the linked fakes share
// with the real backend; these pin what only the fake can show.

// TestLinkedStartRefusesAGroupThatDelegates: the kernel refuses a process in
// a non-root cgroup that enables controllers for its children. On a pure v2
// host runc's start fails; on a hybrid host runc does not report it, so the
// real backend cannot pin this, and the fake keeps the pure v2 rule for the
// controller's tests.
func TestLinkedStartRefusesAGroupThatDelegates(t *testing.T) {
	ctx := context.Background()
	cg := ctrfake.NewCgroups("memory", "pids")
	rt := ctrfake.NewRuntime(ctrfake.WithImages(image), ctrfake.WithCgroups(cg))
	ns := "a.kukeon.io"
	if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cg.Ensure("/r/cell", []string{"memory"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, group string
		wantErr   bool
	}{
		{"in-the-cell", "/r/cell", true},
		{"in-a-leaf", "/r/cell/leaf", false},
	} {
		if err := rt.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: c.id, Image: image, CgroupsPath: c.group}); err != nil {
			t.Fatal(err)
		}
		pid, err := rt.StartContainer(ctx, ns, c.id)
		if (err != nil) != c.wantErr {
			t.Errorf("StartContainer(%s in %s) = %d, %v; want an error: %v", c.id, c.group, pid, err, c.wantErr)
		}
		if err != nil {
			if list, lerr := rt.ListContainers(ctx, ns); lerr != nil || slices.ContainsFunc(list, func(x ctr.Container) bool {
				return x.ID == c.id && x.Task.Status != ctr.TaskNone
			}) {
				t.Errorf("a refused start left a task: %+v, %v", list, lerr)
			}
		}
	}
}

// TestLinkedExitLeavesTheCgroup: a task that exits leaves its cgroup empty
// (the group stays until the task is deleted); a restart puts the new PID
// there.
func TestLinkedExitLeavesTheCgroup(t *testing.T) {
	ctx := context.Background()
	cg := ctrfake.NewCgroups("pids")
	rt := ctrfake.NewRuntime(ctrfake.WithImages(image), ctrfake.WithCgroups(cg))
	ns := "a.kukeon.io"
	if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}
	group := "/r/cell/c"
	if err := rt.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: "c", Image: image, CgroupsPath: group}); err != nil {
		t.Fatal(err)
	}
	procs := func() []int {
		t.Helper()
		p, err := cg.Procs(group)
		if err != nil {
			t.Fatalf("Procs(%s): %v", group, err)
		}
		return p
	}
	pid, err := rt.StartContainer(ctx, ns, "c")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{int(pid)}, procs()); diff != "" {
		t.Errorf("procs of a running task (-want +got):\n%s", diff)
	}
	rt.Exit(ns, "c", 1)
	if got := procs(); len(got) != 0 {
		t.Errorf("procs after the task exited = %v, want none", got)
	}
	if err := cg.Remove("/r/cell"); err != nil {
		t.Errorf("Remove of a cell whose task exited: %v", err)
	}
	if _, _, err := cg.Ensure("/r/cell", nil); err != nil {
		t.Fatal(err)
	}
	pid2, err := rt.StartContainer(ctx, ns, "c")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{int(pid2)}, procs()); diff != "" {
		t.Errorf("procs after a restart (-want +got):\n%s", diff)
	}
	if err := cg.Remove("/r"); !errors.Is(err, ctr.ErrNotEmpty) {
		t.Errorf("Remove(/r) with a running task below = %v, want ErrNotEmpty", err)
	}
	rt.DeleteBehindBack(ns, "c")
	if err := cg.Remove("/r"); err != nil {
		t.Errorf("Remove(/r) once the container was deleted behind our back: %v", err)
	}
}

// TestStopsRecordTheGrace: every stop of a running task is recorded with
// its grace period and whether SIGKILL ended it, for controller tests that
// check stopGracePeriodSeconds reaches the runtime.
func TestStopsRecordTheGrace(t *testing.T) {
	ctx := context.Background()
	rt := ctrfake.NewRuntime(ctrfake.WithImages(image))
	ns := "a.kukeon.io"
	if err := rt.EnsureImage(ctx, ns, image, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ignores", "handles", "root"} {
		if err := rt.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: id, Image: image, Pause: id == "root"}); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, ns, id); err != nil {
			t.Fatal(err)
		}
	}
	rt.HandleSIGTERM(ns, "handles", 0)
	if err := rt.StopContainer(ctx, ns, "ignores", 7*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rt.DeleteContainer(ctx, ns, "handles", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rt.DeleteContainer(ctx, ns, "root", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rt.StopContainer(ctx, ns, "ignores", time.Second); err != nil {
		t.Fatal(err) // no task left: not a stop
	}
	want := []ctrfake.Stop{
		{Namespace: ns, ID: "ignores", Grace: 7 * time.Second, Killed: true},
		{Namespace: ns, ID: "handles", Grace: 3 * time.Second},
		{Namespace: ns, ID: "root", Grace: time.Second},
	}
	if diff := cmp.Diff(want, rt.Stops()); diff != "" {
		t.Errorf("stops (-want +got):\n%s", diff)
	}
}
