package main

import (
	"context"
	"sync"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
)

// tally counts calls through one interface: all of them, and those that
// change containerd or cgroup state.
type tally struct {
	mu              sync.Mutex
	calls, mutating int
}

func (t *tally) add(mutating bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	if mutating {
		t.mutating++
	}
}

// take returns the counts so far and resets them.
func (t *tally) take() (calls, mutating int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	calls, mutating = t.calls, t.mutating
	t.calls, t.mutating = 0, 0
	return calls, mutating
}

// countingRuntime counts every call the controller makes to containerd.
type countingRuntime struct {
	inner controller.Runtime
	t     *tally
}

var _ controller.Runtime = countingRuntime{}

func (r countingRuntime) EnsureNamespace(ctx context.Context, ns string) error {
	r.t.add(true)
	return r.inner.EnsureNamespace(ctx, ns)
}

func (r countingRuntime) ListNamespaces(ctx context.Context) ([]string, error) {
	r.t.add(false)
	return r.inner.ListNamespaces(ctx)
}

func (r countingRuntime) DeleteNamespace(ctx context.Context, ns string) error {
	r.t.add(true)
	return r.inner.DeleteNamespace(ctx, ns)
}

func (r countingRuntime) EnsureImage(ctx context.Context, ns, ref, pullPolicy string, creds []ctr.Credential) error {
	r.t.add(true)
	return r.inner.EnsureImage(ctx, ns, ref, pullPolicy, creds)
}

func (r countingRuntime) CreateContainer(ctx context.Context, ns string, spec ctr.ContainerSpec) error {
	r.t.add(true)
	return r.inner.CreateContainer(ctx, ns, spec)
}

func (r countingRuntime) StartContainer(ctx context.Context, ns, id string) (uint32, error) {
	r.t.add(true)
	return r.inner.StartContainer(ctx, ns, id)
}

func (r countingRuntime) Preflight(ctx context.Context, ns string, spec ctr.ContainerSpec) error {
	r.t.add(false)
	return r.inner.Preflight(ctx, ns, spec)
}

func (r countingRuntime) DeleteContainer(ctx context.Context, ns, id string, grace time.Duration) error {
	r.t.add(true)
	return r.inner.DeleteContainer(ctx, ns, id, grace)
}

func (r countingRuntime) ListContainers(ctx context.Context, ns string) ([]ctr.Container, error) {
	r.t.add(false)
	return r.inner.ListContainers(ctx, ns)
}

func (r countingRuntime) ListContainersWithLabels(ctx context.Context, ns string, selector map[string]string) ([]ctr.Container, error) {
	r.t.add(false)
	return r.inner.ListContainersWithLabels(ctx, ns, selector)
}

func (r countingRuntime) UpdateLabels(ctx context.Context, ns, id string, labels map[string]string) error {
	r.t.add(true)
	return r.inner.UpdateLabels(ctx, ns, id, labels)
}

// countingCgroups counts every call the controller makes to the cgroup
// tree; file writes are counted by ctr.Cgroups itself (Writes).
type countingCgroups struct {
	inner controller.Cgroups
	t     *tally
}

var _ controller.Cgroups = countingCgroups{}

func (g countingCgroups) Available() ([]string, error) {
	g.t.add(false)
	return g.inner.Available()
}

func (g countingCgroups) Ensure(group string, want []string) (effective, missing []string, err error) {
	g.t.add(true)
	return g.inner.Ensure(group, want)
}

func (g countingCgroups) Exists(group string) (bool, error) {
	g.t.add(false)
	return g.inner.Exists(group)
}

func (g countingCgroups) Read(group string, files []string) (map[string]string, error) {
	g.t.add(false)
	return g.inner.Read(group, files)
}

func (g countingCgroups) Write(group string, fv []ctr.FileValue) error {
	g.t.add(true)
	return g.inner.Write(group, fv)
}

func (g countingCgroups) Remove(group string) error {
	g.t.add(true)
	return g.inner.Remove(group)
}

func (g countingCgroups) Stat(group string) (ctr.Usage, error) {
	g.t.add(false)
	return g.inner.Stat(group)
}
