package ctr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// createLeaseTTL is how long the lease of a create protects what the create
// made from containerd's garbage collector. A create takes well under a
// second (the image is unpacked before, outside the lease); the margin is
// for a host under heavy load.
//
// Hazard: if the process dies mid-create (SIGKILL, OOM kill, power loss),
// the lease stays behind and keeps the prepared snapshot from collection
// until it expires; containerd's first garbage collection after that drops
// the lease and the snapshot (a container record, had the create got that
// far, is a root of its own and stays). Nothing waits for that: the next
// CreateContainer of the same ID finds the lease by its name, treats what it
// guards as leftovers and clears them at once (clearLeftovers).
const createLeaseTTL = time.Hour

// labelLeaseContainer names, on a create lease, the container it is for
// (the lease ID is a digest: containerd IDs may be too long to embed).
const labelLeaseContainer = "kukeon.io/container-id"

// createLeaseID is the lease of a create of container id. It is a pure
// function of the ID so that a later create finds an interrupted one's.
func createLeaseID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "kukeon-create-" + hex.EncodeToString(sum[:10])
}

// claimCreate marks a create of ns/id in flight in this process and returns
// its release. A second concurrent create of the same ID fails with
// ErrAlreadyExists: it would otherwise take the first one's lease for an
// interrupted create's and clear what the first is making.
func (c *Client) claimCreate(ns, id string) (func(), error) {
	key := ns + "/" + id
	c.createMu.Lock()
	defer c.createMu.Unlock()
	if c.creating[key] {
		return nil, fmt.Errorf("create container %s in %s: another create of it is in progress: %w", id, ns, ErrAlreadyExists)
	}
	if c.creating == nil {
		c.creating = map[string]bool{}
	}
	c.creating[key] = true
	return func() {
		c.createMu.Lock()
		defer c.createMu.Unlock()
		delete(c.creating, key)
	}, nil
}

// openCreateLease creates the lease a create of container id in ns runs
// under. interrupted reports that the lease was already there: an earlier
// create of this ID never finished (claimCreate rules out one in flight
// here). That lease is replaced by a fresh one, so the new create gets the
// full createLeaseTTL.
func (c *Client) openCreateLease(nctx context.Context, cc *client.Client, ns, id string) (leases.Lease, bool, error) {
	ls := cc.LeasesService()
	opts := []leases.Opt{
		leases.WithID(createLeaseID(id)),
		leases.WithExpiration(createLeaseTTL),
		leases.WithLabels(map[string]string{LabelManagedBy: ManagedByValue, labelLeaseContainer: id}),
	}
	l, err := ls.Create(nctx, opts...)
	if !errdefs.IsAlreadyExists(err) {
		return l, false, c.fail(cc, "create container "+id+" in "+ns+": create lease", err)
	}
	if err := c.releaseCreateLease(nctx, cc, ns, id); err != nil {
		return leases.Lease{}, true, err
	}
	l, err = ls.Create(nctx, opts...)
	return l, true, c.fail(cc, "create container "+id+" in "+ns+": create lease", err)
}

// closeCreateLease ends the lease of a create that returned err and returns
// err, joined with a failure to end the lease. After a failed create the
// lease is deleted synchronously: containerd collects what the create made
// (the prepared snapshot) before this returns. The deletion does not
// follow ctx's cancellation, so a cancelled create still cleans up.
//
// After a successful create a lease that cannot be deleted is an error
// too: a retry of the create then finds the lease, takes the container
// (ours, never started) for a leftover and replaces it.
func (c *Client) closeCreateLease(nctx context.Context, cc *client.Client, ns, id string, l leases.Lease, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(nctx), c.cfg.DialTimeout)
	defer cancel()
	var opts []leases.DeleteOpt
	if err != nil {
		opts = append(opts, leases.SynchronousDelete)
	}
	if derr := cc.LeasesService().Delete(ctx, l, opts...); derr != nil && !errdefs.IsNotFound(derr) {
		return errors.Join(err, c.fail(cc, "create container "+id+" in "+ns+": delete lease "+l.ID, derr))
	}
	return err
}

// releaseCreateLease deletes the create lease of container id in ns, if
// any. StartContainer calls it before a container's first task, so that a
// lease left by a create interrupted after the container record was made
// cannot later make a container that has run look like a leftover.
func (c *Client) releaseCreateLease(nctx context.Context, cc *client.Client, ns, id string) error {
	err := cc.LeasesService().Delete(nctx, leases.Lease{ID: createLeaseID(id)})
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	return c.fail(cc, "container "+id+" in "+ns+": delete create lease", err)
}

// clearLeftovers removes what an interrupted create of container id left in
// ns, so that the create can be done again. Exactly two things count as
// leftovers, and only when they carry our managed-by label:
//
//   - the container id itself, when it has no task and interrupted is set
//     (its create lease was still there): the create that made it never
//     returned, so nothing ever started it — StartContainer releases such a
//     lease before it creates a task. Its record is deleted.
//   - the snapshot with key id (default snapshotter) when no container uses
//     it as its root: a create prepared it and died before the container
//     record was made. It is removed.
//
// Anything else under the ID is left untouched and reported, matching
// ErrAlreadyExists: a container without our label, or a snapshot without
// it (both also ErrNotOwned); our container when it was fully created or
// has a task (the caller decides whether to replace it); our snapshot when
// another container uses it.
func (c *Client) clearLeftovers(nctx context.Context, cc *client.Client, ns, id string, interrupted bool) error {
	op := "create container " + id + " in " + ns
	info, err := cc.ContainerService().Get(nctx, id)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return c.fail(cc, op, err)
	case info.Labels[LabelManagedBy] != ManagedByValue:
		return fmt.Errorf("create container %s: %w", id, errForeignContainer(ns, id))
	case !interrupted:
		return fmt.Errorf("%s: %w", op, ErrAlreadyExists)
	default:
		_, err := cc.TaskService().Get(nctx, &tasksapi.GetRequest{ContainerID: id})
		err = errgrpc.ToNative(err) // the raw service speaks gRPC statuses
		switch {
		case err == nil:
			return fmt.Errorf("%s: it has a task: %w", op, ErrAlreadyExists)
		case !errdefs.IsNotFound(err):
			return c.fail(cc, op+": task", err)
		}
		if err := cc.ContainerService().Delete(nctx, id); err != nil && !errdefs.IsNotFound(err) {
			return c.fail(cc, op+": delete the container of an interrupted create", err)
		}
	}

	sn := cc.SnapshotService("")
	st, err := sn.Stat(nctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return c.fail(cc, op+": snapshot "+id, err)
	}
	if st.Labels[LabelManagedBy] != ManagedByValue {
		return fmt.Errorf("create container %s: %w", id, errForeignSnapshot(ns, id))
	}
	all, err := cc.ContainerService().List(nctx)
	if err != nil {
		return c.fail(cc, op+": list containers", err)
	}
	for _, o := range all {
		if o.SnapshotKey == id {
			return fmt.Errorf("%s: snapshot %s is the root filesystem of container %s: %w", op, id, o.ID, ErrAlreadyExists)
		}
	}
	if err := sn.Remove(nctx, id); err != nil && !errdefs.IsNotFound(err) {
		return c.fail(cc, op+": remove the snapshot of an interrupted create", err)
	}
	return nil
}

// errForeignContainer says that a container we did not create holds id.
func errForeignContainer(ns, id string) error {
	return fmt.Errorf("container %s in %s exists without the %s=%s label: %w (%w)",
		id, ns, LabelManagedBy, ManagedByValue, ErrAlreadyExists, ErrNotOwned)
}

// errForeignSnapshot says that a snapshot we did not prepare holds key id.
func errForeignSnapshot(ns, id string) error {
	return fmt.Errorf("snapshot %s in %s exists without the %s=%s label (if nothing needs it: ctr -n %s snapshots rm %s): %w (%w)",
		id, ns, LabelManagedBy, ManagedByValue, ns, id, ErrAlreadyExists, ErrNotOwned)
}
