package ctrtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// reconnectTimeout bounds how long the event stream may take to notice a
// restarted backend (its backoff reaches 5 s).
const reconnectTimeout = 30 * time.Second

// runEventChecks pins the events other than a task exit, and Ping.
func runEventChecks(t *testing.T, newRT NewRuntime, hooks Hooks) {
	t.Run("deleting a container sends a container-delete event", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := rt.Events(ctx)
		mustImage(t, rt, ns, image)
		id := "deleted"
		if err := rt.CreateContainer(ctx, ns, spec(id, image, nil)); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		deleteAtCleanup(t, rt, ns, id)
		if err := rt.DeleteContainer(ctx, ns, id, time.Second); err != nil {
			t.Fatalf("DeleteContainer: %v", err)
		}
		waitEvent(t, events, func(e ctr.Event) bool {
			return e.Kind == ctr.EventContainerDelete && e.Namespace == ns && e.ContainerID == id
		})
	})

	t.Run("Ping fails while the backend is down; once it is back the event stream says it reconnected", func(t *testing.T) {
		rt, ns, _ := newRT(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := rt.Ping(ctx); err != nil {
			t.Fatalf("Ping on a live backend: %v", err)
		}
		done, stop := context.WithCancel(ctx)
		stop()
		if err := rt.Ping(done); err == nil {
			t.Error("Ping with a cancelled context = nil, want an error")
		}
		events := rt.Events(ctx)
		mustNamespace(t, rt, ns)

		hooks.Down(t)
		up := false
		t.Cleanup(func() {
			if !up {
				hooks.Up(t)
			}
		})
		if err := rt.Ping(ctx); !errors.Is(err, ctr.ErrUnavailable) {
			t.Errorf("Ping while down = %v, want ErrUnavailable", err)
		}
		if _, err := rt.ListContainers(ctx, ns); !errors.Is(err, ctr.ErrUnavailable) {
			t.Errorf("ListContainers while down = %v, want ErrUnavailable", err)
		}
		hooks.Up(t)
		up = true
		WaitEvent(t, events, reconnectTimeout, func(e ctr.Event) bool { return e.Kind == ctr.EventReconnected })
		if err := rt.Ping(ctx); err != nil {
			t.Errorf("Ping after the reconnected event: %v", err)
		}
		if _, err := rt.ListContainers(ctx, ns); err != nil {
			t.Errorf("ListContainers after the reconnected event: %v", err)
		}
	})
}
