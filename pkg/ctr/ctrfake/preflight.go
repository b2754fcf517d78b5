package ctrfake

import (
	"context"
	"fmt"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Preflight checks what creating spec in ns needs, without changing
// anything: in the fake, that the image is present in ns and that no
// container without our label holds the ID (the fake has no files, so log
// paths, the pause binary, mounts and devices always pass). FailNext
// ("Preflight") injects any other failure. See ctr.Client.
func (r *Runtime) Preflight(_ context.Context, ns string, spec ctr.ContainerSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("Preflight", false); err != nil {
		return err
	}
	name := ctr.NormalizeImage(spec.Image)
	n, ok := r.nss[ns] // looked up, not created: preflight changes nothing
	if !ok || !n.images[name] {
		return fmt.Errorf("preflight %s in %s: image %s in namespace %s: %w", spec.ID, ns, name, ns, ctr.ErrImageNotPresent)
	}
	if c, ok := n.containers[spec.ID]; ok && c.labels[ctr.LabelManagedBy] != ctr.ManagedByValue {
		return fmt.Errorf("preflight %s in %s: a container without our label has this ID: %w (%w)", spec.ID, ns, ctr.ErrAlreadyExists, ctr.ErrNotOwned)
	}
	return nil
}
