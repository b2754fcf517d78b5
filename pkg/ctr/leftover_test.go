package ctr_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/image-spec/identity"

	"github.com/kukeon/reconciler/pkg/ctr"
)

var ours = map[string]string{ctr.LabelManagedBy: ctr.ManagedByValue}

// byHand makes, with the raw client, what a create that died midway (or
// another tool) leaves in one namespace.
type byHand struct {
	t   *testing.T
	e   *env
	ns  string
	ctx context.Context // scoped to ns
}

func (e *env) byHand(t *testing.T, ns string) *byHand {
	t.Helper()
	if err := e.client.EnsureNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	if err := e.client.EnsureImage(context.Background(), ns, busybox, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}
	return &byHand{t: t, e: e, ns: ns, ctx: namespaces.WithNamespace(context.Background(), ns)}
}

// lease creates lease id (our create lease when id is CreateLeaseID of a
// container) expiring in a day, deleted at the end of the test, and
// returns a context that holds it.
func (h *byHand) lease(id string) context.Context {
	h.t.Helper()
	ls := h.e.raw.LeasesService()
	l, err := ls.Create(h.ctx, leases.WithID(id), leases.WithExpiration(24*time.Hour))
	if err != nil {
		h.t.Fatalf("create lease %s: %v", id, err)
	}
	h.t.Cleanup(func() {
		if err := ls.Delete(h.ctx, l); err != nil && !errdefs.IsNotFound(err) {
			h.t.Errorf("delete lease %s: %v", id, err)
		}
	})
	return leases.WithLease(h.ctx, l.ID)
}

// snapshot prepares snapshot key on the busybox image under the lease of
// lctx, as WithNewSnapshot does, and removes it at the end of the test.
func (h *byHand) snapshot(lctx context.Context, key string, labels map[string]string) {
	h.t.Helper()
	img, err := h.e.raw.GetImage(h.ctx, busybox)
	if err != nil {
		h.t.Fatal(err)
	}
	diffIDs, err := img.RootFS(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	sn := h.e.raw.SnapshotService("")
	if _, err := sn.Prepare(lctx, key, identity.ChainID(diffIDs).String(), snapshots.WithLabels(labels)); err != nil {
		h.t.Fatalf("prepare snapshot %s: %v", key, err)
	}
	h.t.Cleanup(func() {
		if err := sn.Remove(h.ctx, key); err != nil && !errdefs.IsNotFound(err) {
			h.t.Errorf("remove snapshot %s: %v", key, err)
		}
	})
}

// container creates container id with labels and a snapshot of its own
// (labelled ours when the container is) under the lease of lctx, and,
// when task is set, a task that is created but not started.
func (h *byHand) container(lctx context.Context, id string, labels map[string]string, task bool) {
	h.t.Helper()
	img, err := h.e.raw.GetImage(h.ctx, busybox)
	if err != nil {
		h.t.Fatal(err)
	}
	var snapLabels map[string]string
	if labels[ctr.LabelManagedBy] == ctr.ManagedByValue {
		snapLabels = ours
	}
	c, err := h.e.raw.NewContainer(lctx, id,
		client.WithNewSnapshot(id, img, snapshots.WithLabels(snapLabels)),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "3600")),
		client.WithContainerLabels(labels))
	if err != nil {
		h.t.Fatalf("create container %s: %v", id, err)
	}
	if task {
		if _, err := c.NewTask(h.ctx, cio.NullIO); err != nil {
			h.t.Fatalf("create task of %s: %v", id, err)
		}
	}
}

func (h *byHand) leaseExists(id string) bool {
	h.t.Helper()
	list, err := h.e.raw.LeasesService().List(h.ctx, "id=="+id)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(list) > 0
}

func (h *byHand) snapshotLabels(key string) (map[string]string, bool) {
	h.t.Helper()
	st, err := h.e.raw.SnapshotService("").Stat(h.ctx, key)
	if errdefs.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return st.Labels, true
}

// TestCreateOverLeftovers: a create clears exactly what an interrupted
// create of ours left under the container's ID, and refuses, untouched,
// anything else there.
func TestCreateOverLeftovers(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	fresh := e.freshNamespaces("leftover")
	const id = "web_blog_front_app"
	labels := func(hash string) map[string]string {
		return map[string]string{ctr.LabelManagedBy: ctr.ManagedByValue, ctr.LabelSpecHash: hash}
	}
	tests := []struct {
		name  string
		setup func(h *byHand)
		// want are the errors the create must match; none: it succeeds.
		want []error
		// kept is the spec hash the container under the ID must still
		// have after a refused create ("" when no container stands there).
		kept string
	}{
		{
			name: "a snapshot of ours prepared by a create that died before the container was made is removed",
			setup: func(h *byHand) {
				h.snapshot(h.lease(ctr.CreateLeaseID(id)), id, ours)
			},
		},
		{
			name: "a snapshot of ours that no container uses is removed even when its lease is gone",
			setup: func(h *byHand) {
				h.snapshot(h.lease("some-other-lease"), id, ours)
			},
		},
		{
			name: "a snapshot without our label is refused as not ours and kept",
			setup: func(h *byHand) {
				h.snapshot(h.lease("someone-elses"), id, map[string]string{"owner": "someone"})
			},
			want: []error{ctr.ErrAlreadyExists, ctr.ErrNotOwned},
		},
		{
			name: "a container of ours made by a create that died before it returned is replaced",
			setup: func(h *byHand) {
				h.container(h.lease(ctr.CreateLeaseID(id)), id, labels("old"), false)
			},
		},
		{
			name: "a container of ours under its create lease that has a task is kept",
			setup: func(h *byHand) {
				h.container(h.lease(ctr.CreateLeaseID(id)), id, labels("old"), true)
			},
			want: []error{ctr.ErrAlreadyExists},
			kept: "old",
		},
		{
			name: "a container of ours whose create returned is kept",
			setup: func(h *byHand) {
				h.container(h.ctx, id, labels("old"), false)
			},
			want: []error{ctr.ErrAlreadyExists},
			kept: "old",
		},
		{
			name: "a container without our label under a create lease of ours is refused as not ours and kept",
			setup: func(h *byHand) {
				h.container(h.lease(ctr.CreateLeaseID(id)), id, map[string]string{ctr.LabelSpecHash: "theirs"}, false)
			},
			want: []error{ctr.ErrAlreadyExists, ctr.ErrNotOwned},
			kept: "theirs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := fresh(t)
			h := e.byHand(t, ns)
			ctx := context.Background()
			tt.setup(h)
			snapBefore, _ := h.snapshotLabels(id)
			err := e.client.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: id, Image: busybox, Command: "sleep", Args: []string{"3600"}, Labels: labels("new")})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CreateContainer over the leftover: %v", err)
				}
				if got := mustHash(t, e, ns, id); got != "new" {
					t.Errorf("spec hash after the create = %q, want new", got)
				}
				if _, err := e.client.StartContainer(ctx, ns, id); err != nil {
					t.Errorf("StartContainer after the create: %v", err)
				}
				if l, ok := h.snapshotLabels(id); !ok || l[ctr.LabelManagedBy] != ctr.ManagedByValue {
					t.Errorf("snapshot %s after the create: labels %v (exists %v), want ours", id, l, ok)
				}
			} else {
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("CreateContainer = %v, want an error matching %v", err, w)
					}
				}
				if err != nil && !strings.Contains(err.Error(), id) {
					t.Errorf("error %q does not name %s", err, id)
				}
				snapAfter, ok := h.snapshotLabels(id)
				if !ok || !maps.Equal(snapBefore, snapAfter) {
					t.Errorf("snapshot %s after the refused create: labels %v (exists %v), want it kept with %v", id, snapAfter, ok, snapBefore)
				}
				if tt.kept != "" {
					if got := mustHash(t, e, ns, id); got != tt.kept {
						t.Errorf("spec hash after the refused create = %q, want %q kept", got, tt.kept)
					}
				}
			}
			if h.leaseExists(ctr.CreateLeaseID(id)) {
				t.Errorf("create lease %s left after the create", ctr.CreateLeaseID(id))
			}
		})
	}
}

// TestStartReleasesCreateLease: a container whose create died after the
// record was made is no leftover once it has run, even stopped.
func TestStartReleasesCreateLease(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ns := e.freshNamespaces("started")(t)
	h := e.byHand(t, ns)
	ctx := context.Background()
	id := "ran"
	h.container(h.lease(ctr.CreateLeaseID(id)), id, map[string]string{ctr.LabelManagedBy: ctr.ManagedByValue, ctr.LabelSpecHash: "old"}, false)
	if _, err := e.client.StartContainer(ctx, ns, id); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if h.leaseExists(ctr.CreateLeaseID(id)) {
		t.Errorf("create lease still there after StartContainer")
	}
	if err := e.client.StopContainer(ctx, ns, id, 0); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	err := e.client.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: id, Image: busybox, Labels: map[string]string{ctr.LabelSpecHash: "new"}})
	if !errors.Is(err, ctr.ErrAlreadyExists) {
		t.Errorf("CreateContainer over a stopped container that has run = %v, want ErrAlreadyExists", err)
	}
	if got := mustHash(t, e, ns, id); got != "old" {
		t.Errorf("spec hash = %q, want old kept", got)
	}
}

// TestFailedCreateLeaksNothing: a create that fails after its snapshot was
// prepared leaves neither the snapshot nor its lease, and can be retried.
func TestFailedCreateLeaksNothing(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ns := e.freshNamespaces("failed")(t)
	h := e.byHand(t, ns)
	ctx := context.Background()
	id := "no-device"
	spec := ctr.ContainerSpec{ID: id, Image: busybox, Devices: []string{"/dev/kukeon-no-such-device"}}
	if err := e.client.CreateContainer(ctx, ns, spec); err == nil {
		t.Fatal("CreateContainer with a missing device succeeded")
	}
	if l, ok := h.snapshotLabels(id); ok {
		t.Errorf("snapshot %s left after the failed create (labels %v)", id, l)
	}
	if h.leaseExists(ctr.CreateLeaseID(id)) {
		t.Errorf("create lease left after the failed create")
	}
	spec.Devices = nil
	if err := e.client.CreateContainer(ctx, ns, spec); err != nil {
		t.Errorf("CreateContainer again without the device: %v", err)
	}
}

func mustHash(t *testing.T, e *env, ns, id string) string {
	t.Helper()
	list, err := e.client.ListContainers(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == id {
			return c.Labels[ctr.LabelSpecHash]
		}
	}
	// Not ours, or gone: the raw record says which.
	c, err := e.raw.ContainerService().Get(namespaces.WithNamespace(context.Background(), ns), id)
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	return c.Labels[ctr.LabelSpecHash]
}
