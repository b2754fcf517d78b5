package ctrtest

import (
	"context"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// runImageChecks pins pull policy Never with the image present: it is used
// as it is, never sourced (the missing case is in RunRuntimeContract).
func runImageChecks(t *testing.T, newRT NewRuntime, hooks Hooks) {
	t.Run("an image that is present is used under policy Never without sourcing it", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustImage(t, rt, ns, image)
		// Nothing can source this reference: only its presence lets
		// EnsureImage succeed.
		ref := "registry.invalid/kukeon/tagged:1"
		hooks.TagImage(t, ns, image, ref)
		for _, p := range []string{ctr.PullNever, ctr.PullIfNotPresent} {
			if err := rt.EnsureImage(ctx, ns, ref, p, nil); err != nil {
				t.Errorf("EnsureImage(%s, present) = %v, want nil", p, err)
			}
		}
		id := "from-tagged"
		if err := rt.CreateContainer(ctx, ns, spec(id, ref, nil)); err != nil {
			t.Fatalf("CreateContainer from the present image: %v", err)
		}
		deleteAtCleanup(t, rt, ns, id)
		if got := mustGet(t, rt, ns, id); got.Image != ref {
			t.Errorf("container image = %q, want %q", got.Image, ref)
		}
		if err := rt.DeleteContainer(ctx, ns, id, time.Second); err != nil {
			t.Errorf("DeleteContainer: %v", err)
		}
	})
}
