package ctrtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// RunCreateContract runs the behaviour every backend must show when a
// container is created over an ID that is taken. newRT is as for
// RunRuntimeContract; foreign is Hooks.ForeignContainer.
func RunCreateContract(t *testing.T, newRT func(t *testing.T) (rt Runtime, ns string, image string), foreign func(t *testing.T, ns, id, image string)) {
	t.Run("creating over a container we did not create is refused as not ours", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustImage(t, rt, ns, image)
		foreign(t, ns, "foreign", image)
		err := rt.CreateContainer(ctx, ns, spec("foreign", image, nil))
		if !errors.Is(err, ctr.ErrAlreadyExists) || !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("CreateContainer(over a foreign container) = %v, want ErrAlreadyExists and ErrNotOwned", err)
		}
		if list := mustList(t, rt, ns); len(list) != 0 {
			t.Errorf("containers of ours after the refused create = %v, want none", ids(list))
		}
	})

	t.Run("creating over our own container is refused as existing and keeps it", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustImage(t, rt, ns, image)
		id := "twice"
		if err := rt.CreateContainer(ctx, ns, spec(id, image, map[string]string{ctr.LabelSpecHash: "h1"})); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		t.Cleanup(func() { _ = rt.DeleteContainer(context.Background(), ns, id, 0) })
		before := mustGet(t, rt, ns, id)
		err := rt.CreateContainer(ctx, ns, spec(id, image, map[string]string{ctr.LabelSpecHash: "h2"}))
		if !errors.Is(err, ctr.ErrAlreadyExists) || errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("CreateContainer twice = %v, want ErrAlreadyExists and not ErrNotOwned", err)
		}
		after := mustGet(t, rt, ns, id)
		if !after.CreatedAt.Equal(before.CreatedAt) || after.Labels[ctr.LabelSpecHash] != "h1" {
			t.Errorf("container after the refused create: created %v, hash %q; want the first one (created %v, hash h1)",
				after.CreatedAt, after.Labels[ctr.LabelSpecHash], before.CreatedAt)
		}
		if _, err := rt.StartContainer(ctx, ns, id); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		if err := rt.StopContainer(ctx, ns, id, time.Second); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		// Stopped, it has no task again; it has run, so it is no leftover.
		if err := rt.CreateContainer(ctx, ns, spec(id, image, nil)); !errors.Is(err, ctr.ErrAlreadyExists) {
			t.Errorf("CreateContainer over our stopped container = %v, want ErrAlreadyExists", err)
		}
	})
}
