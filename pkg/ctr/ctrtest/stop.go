package ctrtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// stopDeadline bounds a stop whose grace is longer than the test should
// ever wait: a functional deadline, not a timing assertion.
const stopDeadline = 60 * time.Second

// TermSpec is a container whose process exits with code on SIGTERM (after
// the second or so its shell needs to notice), and runs until then.
func TermSpec(id, image string, code uint32) ctr.ContainerSpec {
	return ctr.ContainerSpec{
		ID: id, Image: image,
		Command: "sh", Args: []string{"-c", fmt.Sprintf("trap 'exit %d' TERM; while :; do sleep 1; done", code)},
	}
}

// runStopChecks pins StopContainer's and DeleteContainer's grace period:
// SIGTERM first, SIGKILL only for a task that is still there once the grace
// is over. The exit code tells which signal ended the task.
func runStopChecks(t *testing.T, newRT NewRuntime, hooks Hooks) {
	t.Run("a container that ignores SIGTERM is killed once its grace period is over", func(t *testing.T) {
		rt, ns, image, ctx, events := stopEnv(t, newRT)
		// sleep as a container's PID 1 has no SIGTERM handler: the kernel
		// drops the signal.
		id := "ignores-term"
		createStarted(t, rt, ns, spec(id, image, nil))
		if err := rt.StopContainer(ctx, ns, id, time.Second); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		ev := waitEvent(t, events, func(e ctr.Event) bool {
			return e.Kind == ctr.EventTaskExit && e.Namespace == ns && e.ContainerID == id
		})
		if ev.ExitCode != 137 {
			t.Errorf("exit code = %d, want 137 (SIGKILL after the grace period)", ev.ExitCode)
		}
		if got := mustGet(t, rt, ns, id); got.Task.Status == ctr.TaskRunning {
			t.Errorf("task after stop = %+v, want not running", got.Task)
		}
	})

	t.Run("a container that exits on SIGTERM within its grace period is not killed", func(t *testing.T) {
		rt, ns, image, ctx, events := stopEnv(t, newRT)
		id, code := "handles-term", uint32(3)
		pid := createStarted(t, rt, ns, TermSpec(id, image, code))
		hooks.HandleSIGTERM(t, ns, id, pid, code)
		// A grace far longer than the handler needs: a SIGKILL before it
		// is over would show as 137.
		if err := rt.DeleteContainer(ctx, ns, id, stopDeadline/2); err != nil {
			t.Fatalf("DeleteContainer: %v", err)
		}
		ev := waitEvent(t, events, func(e ctr.Event) bool {
			return e.Kind == ctr.EventTaskExit && e.Namespace == ns && e.ContainerID == id
		})
		if ev.ExitCode != code {
			t.Errorf("exit code = %d, want %d (its own exit on SIGTERM)", ev.ExitCode, code)
		}
		if list := mustList(t, rt, ns); len(list) != 0 {
			t.Errorf("containers after delete = %v, want none", ids(list))
		}
	})
}

// stopEnv is a backend with the suite's namespace and image in place, a
// context that ends with the test or at stopDeadline, and its events.
func stopEnv(t *testing.T, newRT NewRuntime) (rt Runtime, ns, image string, ctx context.Context, events <-chan ctr.Event) {
	t.Helper()
	rt, ns, image = newRT(t)
	ctx, cancel := context.WithTimeout(t.Context(), stopDeadline)
	t.Cleanup(cancel)
	events = rt.Events(ctx)
	mustImage(t, rt, ns, image)
	return rt, ns, image, ctx, events
}
