package ctrtest

import (
	"context"
	"errors"
	"path"
	"slices"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// runPlacementChecks pins how the runtime and the cgroup tree meet: a
// running task is a process of its container's cgroup, so the kernel's
// rules (no internal processes, EBUSY on rmdir) hold while it runs, and it
// leaves when stopped.
func runPlacementChecks(t *testing.T, newRT NewRuntime, hooks Hooks) {
	t.Run("a running task is a process of its container's cgroup until it is stopped", func(t *testing.T) {
		rt, ns, image := newRT(t)
		fs, root := hooks.Cgroups(t)
		ctx := context.Background()
		mustImage(t, rt, ns, image)

		mp := fs.Mountpoint()
		if !path.IsAbs(mp) || path.Clean(mp) != mp {
			t.Errorf("Mountpoint() = %q, want a clean absolute path", mp)
		}
		if again := fs.Mountpoint(); again != mp {
			t.Errorf("Mountpoint() changed from %q to %q", mp, again)
		}
		avail, err := fs.Available()
		if err != nil {
			t.Fatalf("Available: %v", err)
		}
		if len(avail) == 0 {
			t.Fatal("the cgroup tree offers no controller: the no-internal-process rule cannot be shown")
		}
		// The cell delegates what the host offers, as the controller's do.
		cell := root + "/cell"
		if _, _, err := fs.Ensure(cell, avail); err != nil {
			t.Fatalf("Ensure(%s): %v", cell, err)
		}
		if !hooks.Mounted(t, mp, cell) {
			t.Errorf("%s is not a cgroup under Mountpoint() %s", cell, mp)
		}

		s := spec("placed", image, nil)
		s.CgroupsPath = cell + "/" + s.ID
		pid := createStarted(t, rt, ns, s)
		procs, err := fs.Procs(s.CgroupsPath)
		if err != nil {
			t.Fatalf("Procs(%s) of a running task: %v", s.CgroupsPath, err)
		}
		if !slices.Contains(procs, int(pid)) {
			t.Errorf("Procs(%s) = %v, want the task's pid %d", s.CgroupsPath, procs, pid)
		}
		if _, _, err := fs.Ensure(s.CgroupsPath, avail); err == nil {
			t.Errorf("Ensure(%s, %v) while the task runs in it = nil, want the no-internal-process error", s.CgroupsPath, avail)
		}
		if err := fs.Remove(cell); !errors.Is(err, ctr.ErrNotEmpty) {
			t.Errorf("Remove(%s) with a running task below = %v, want ErrNotEmpty", cell, err)
		}
		if ok, err := fs.Exists(s.CgroupsPath); err != nil || !ok {
			t.Errorf("Exists(%s) after the refused remove = %v, %v; want true", s.CgroupsPath, ok, err)
		}

		if err := rt.StopContainer(ctx, ns, s.ID, time.Second); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		// The task's cgroup goes with the task, as runc removes it.
		if ok, err := fs.Exists(s.CgroupsPath); err != nil || ok {
			t.Errorf("Exists(%s) after the task was stopped = %v, %v; want false", s.CgroupsPath, ok, err)
		}
		if err := fs.Remove(cell); err != nil {
			t.Fatalf("Remove(%s) once the task is stopped: %v", cell, err)
		}
		if ok, err := fs.Exists(cell); err != nil || ok {
			t.Errorf("Exists(%s) after Remove = %v, %v; want false", cell, ok, err)
		}
		if hooks.Mounted(t, mp, cell) {
			t.Errorf("%s is still a cgroup under %s after Remove", cell, mp)
		}
	})
}
