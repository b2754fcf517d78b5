package ctr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// EnsureNamespace creates containerd namespace ns if it is missing and then
// labels it managed-by=reconciler; an existing namespace is left as it is
// (so one we did not create stays not ours). Idempotent.
func (c *Client) EnsureNamespace(ctx context.Context, ns string) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	store := cc.NamespaceService()
	// containerd 1.6 publishes the create event in the namespace of ctx.
	err = store.Create(nsCtx(ctx, ns), ns, map[string]string{LabelManagedBy: ManagedByValue})
	if err == nil || errdefs.IsAlreadyExists(err) {
		return nil
	}
	return c.fail(cc, "create namespace "+ns, err)
}

// ListNamespaces returns every containerd namespace, ours or not, sorted.
func (c *Client) ListNamespaces(ctx context.Context) ([]string, error) {
	cc, err := c.conn()
	if err != nil {
		return nil, err
	}
	list, err := cc.NamespaceService().List(ctx)
	if err != nil {
		return nil, c.fail(cc, "list namespaces", err)
	}
	sort.Strings(list)
	return list, nil
}

// DeleteNamespace removes namespace ns with the images and leases in it.
// It returns an error matching ErrNotFound if ns does not exist, ErrNotOwned
// if we did not create it (it lacks our label) and ErrNotEmpty if it still
// holds containers (ours or not). Hazard: containerd refuses to delete a
// namespace while its snapshots or content are only scheduled for garbage
// collection, so image deletion is synchronous and the delete is retried
// (removing leftover snapshots) for a few seconds.
func (c *Client) DeleteNamespace(ctx context.Context, ns string) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	store := cc.NamespaceService()
	nctx := nsCtx(ctx, ns)
	// Labels of a missing namespace are empty, not an error: list first.
	all, err := store.List(ctx)
	if err != nil {
		return c.fail(cc, "list namespaces", err)
	}
	if !slices.Contains(all, ns) {
		return fmt.Errorf("delete namespace %s: %w", ns, ErrNotFound)
	}
	labels, err := store.Labels(nctx, ns)
	if err != nil {
		return c.fail(cc, "namespace "+ns, err)
	}
	if labels[LabelManagedBy] != ManagedByValue {
		return fmt.Errorf("delete namespace %s: %w", ns, ErrNotOwned)
	}
	conts, err := cc.ContainerService().List(nctx)
	if err != nil {
		return c.fail(cc, "list containers in "+ns, err)
	}
	if len(conts) > 0 {
		return fmt.Errorf("delete namespace %s: %d containers left: %w", ns, len(conts), ErrNotEmpty)
	}

	ls, err := cc.LeasesService().List(nctx)
	if err != nil {
		return c.fail(cc, "list leases in "+ns, err)
	}
	for _, l := range ls {
		if err := cc.LeasesService().Delete(nctx, l); err != nil && !errdefs.IsNotFound(err) {
			return c.fail(cc, "delete lease "+l.ID, err)
		}
	}
	imgs, err := cc.ImageService().List(nctx)
	if err != nil {
		return c.fail(cc, "list images in "+ns, err)
	}
	for i, img := range imgs {
		var opts []images.DeleteOpt
		if i == len(imgs)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := cc.ImageService().Delete(nctx, img.Name, opts...); err != nil && !errdefs.IsNotFound(err) {
			return c.fail(cc, "delete image "+img.Name, err)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		err := store.Delete(nctx, ns)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if !errdefs.IsFailedPrecondition(err) || time.Now().After(deadline) {
			return c.fail(cc, "delete namespace "+ns, err)
		}
		if err := c.removeSnapshots(nctx, ns); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete namespace %s: %w", ns, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeSnapshots removes the snapshots left in the default snapshotter of
// the namespace in nctx, children before parents, and then forces a
// synchronous garbage collection through a throwaway lease.
func (c *Client) removeSnapshots(nctx context.Context, ns string) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	sn := cc.SnapshotService("")
	for pass := 0; pass < 16; pass++ {
		var infos []snapshots.Info
		err := sn.Walk(nctx, func(_ context.Context, info snapshots.Info) error {
			infos = append(infos, info)
			return nil
		})
		if err != nil {
			return c.fail(cc, "walk snapshots in "+ns, err)
		}
		if len(infos) == 0 {
			break
		}
		parents := map[string]bool{}
		for _, info := range infos {
			parents[info.Parent] = true
		}
		for _, info := range infos {
			if parents[info.Name] {
				continue // a child still refers to it: next pass
			}
			if err := sn.Remove(nctx, info.Name); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
				return c.fail(cc, "remove snapshot "+info.Name, err)
			}
		}
	}
	// Deleting a lease synchronously runs the garbage collector now.
	l, err := cc.LeasesService().Create(nctx, leases.WithRandomID())
	if err != nil {
		return c.fail(cc, "create lease", err)
	}
	if err := cc.LeasesService().Delete(nctx, l, leases.SynchronousDelete); err != nil && !errors.Is(err, context.Canceled) {
		return c.fail(cc, "delete lease", err)
	}
	return nil
}
