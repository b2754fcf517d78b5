package ctrtest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Preflighter is a Runtime that checks a create before making it, as
// *ctr.Client and *ctrfake.Runtime do.
type Preflighter interface {
	Runtime
	Preflight(ctx context.Context, ns string, spec ctr.ContainerSpec) error
}

var _ Preflighter = (*ctr.Client)(nil)

// RunPreflightContract runs the behaviour of Preflight every backend must
// show. newRT is as for RunRuntimeContract; foreign is Hooks.ForeignContainer.
func RunPreflightContract(t *testing.T, newRT func(t *testing.T) (rt Preflighter, ns string, image string), foreign func(t *testing.T, ns, id, image string)) {
	t.Run("a create that can succeed passes preflight, which changes nothing", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustImage(t, rt, ns, image)
		plain := spec("plain", image, nil)
		root := ctr.ContainerSpec{ID: "root", Image: image, Pause: true}
		for _, s := range []ctr.ContainerSpec{plain, root} {
			if err := rt.Preflight(ctx, ns, s); err != nil {
				t.Errorf("Preflight(%s) = %v, want nil", s.ID, err)
			}
		}
		if list := mustList(t, rt, ns); len(list) != 0 {
			t.Errorf("containers after preflight = %v, want none", ids(list))
		}
		if err := rt.CreateContainer(ctx, ns, plain); err != nil {
			t.Fatalf("CreateContainer after a passed preflight: %v", err)
		}
		t.Cleanup(func() { _ = rt.DeleteContainer(context.Background(), ns, plain.ID, 0) })
		// A recreate checks the new spec while the old container still holds the ID.
		if err := rt.Preflight(ctx, ns, plain); err != nil {
			t.Errorf("Preflight(%s) over our own container = %v, want nil", plain.ID, err)
		}
	})

	t.Run("a missing image fails preflight, named with its namespace, and is not sourced", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		for _, ref := range []string{"registry.invalid/nothing/here:1", image} {
			for range 2 {
				err := rt.Preflight(ctx, ns, spec("x", ref, nil))
				if !errors.Is(err, ctr.ErrImageNotPresent) {
					t.Fatalf("Preflight(image %s not in %s) = %v, want ErrImageNotPresent", ref, ns, err)
				}
				if !strings.Contains(err.Error(), ctr.NormalizeImage(ref)) || !strings.Contains(err.Error(), ns) {
					t.Errorf("error %q does not name the image %s and the namespace %s", err, ref, ns)
				}
			}
		}
		mustListNamespace(t, rt, ns, false)
	})

	t.Run("a container we did not create under the ID fails preflight as not ours", func(t *testing.T) {
		rt, ns, image := newRT(t)
		ctx := context.Background()
		mustImage(t, rt, ns, image)
		foreign(t, ns, "foreign", image)
		err := rt.Preflight(ctx, ns, spec("foreign", image, nil))
		if !errors.Is(err, ctr.ErrAlreadyExists) || !errors.Is(err, ctr.ErrNotOwned) {
			t.Errorf("Preflight(over a foreign container) = %v, want ErrAlreadyExists and ErrNotOwned", err)
		}
	})
}
