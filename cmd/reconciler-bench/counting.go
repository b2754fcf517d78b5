package main

import (
	"context"
	"sync"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
)

// tally counts calls by method name.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(method string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[method]++
}

// take returns the counts so far and resets them.
func (t *tally) take() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.n
	t.n = nil
	if out == nil {
		out = map[string]int{}
	}
	return out
}

// Methods that change containerd or cgroup state.
var mutating = map[string]bool{
	"EnsureNamespace": true, "DeleteNamespace": true, "EnsureImage": true,
	"CreateContainer": true, "StartContainer": true, "StopContainer": true,
	"DeleteContainer": true, "UpdateLabels": true,
	"Ensure": true, "Write": true, "Remove": true,
}

// countingRuntime counts every call the controller makes to containerd.
type countingRuntime struct {
	inner controller.Runtime
	calls *tally
}

var _ controller.Runtime = countingRuntime{}

func (r countingRuntime) EnsureNamespace(ctx context.Context, ns string) error {
	r.calls.add("EnsureNamespace")
	return r.inner.EnsureNamespace(ctx, ns)
}

func (r countingRuntime) ListNamespaces(ctx context.Context) ([]string, error) {
	r.calls.add("ListNamespaces")
	return r.inner.ListNamespaces(ctx)
}

func (r countingRuntime) DeleteNamespace(ctx context.Context, ns string) error {
	r.calls.add("DeleteNamespace")
	return r.inner.DeleteNamespace(ctx, ns)
}

func (r countingRuntime) EnsureImage(ctx context.Context, ns, ref, pullPolicy string, creds []ctr.Credential) error {
	r.calls.add("EnsureImage")
	return r.inner.EnsureImage(ctx, ns, ref, pullPolicy, creds)
}

func (r countingRuntime) CreateContainer(ctx context.Context, ns string, spec ctr.ContainerSpec) error {
	r.calls.add("CreateContainer")
	return r.inner.CreateContainer(ctx, ns, spec)
}

func (r countingRuntime) StartContainer(ctx context.Context, ns, id string) (uint32, error) {
	r.calls.add("StartContainer")
	return r.inner.StartContainer(ctx, ns, id)
}

func (r countingRuntime) StopContainer(ctx context.Context, ns, id string, grace time.Duration) error {
	r.calls.add("StopContainer")
	return r.inner.StopContainer(ctx, ns, id, grace)
}

func (r countingRuntime) DeleteContainer(ctx context.Context, ns, id string, grace time.Duration) error {
	r.calls.add("DeleteContainer")
	return r.inner.DeleteContainer(ctx, ns, id, grace)
}

func (r countingRuntime) ListContainers(ctx context.Context, ns string) ([]ctr.Container, error) {
	r.calls.add("ListContainers")
	return r.inner.ListContainers(ctx, ns)
}

func (r countingRuntime) ListCellContainers(ctx context.Context, ns, space, stack, cellID string) ([]ctr.Container, error) {
	r.calls.add("ListCellContainers")
	return r.inner.ListCellContainers(ctx, ns, space, stack, cellID)
}

func (r countingRuntime) UpdateLabels(ctx context.Context, ns, id string, labels map[string]string) error {
	r.calls.add("UpdateLabels")
	return r.inner.UpdateLabels(ctx, ns, id, labels)
}

func (r countingRuntime) Preflight(ctx context.Context, ns string, spec ctr.ContainerSpec) error {
	r.calls.add("Preflight")
	return r.inner.Preflight(ctx, ns, spec)
}

// writeCounter is what both cgroup backends report: interface-file writes.
type writeCounter interface{ Writes() int64 }

// countingCgroups counts every call the controller makes to the cgroup
// tree; file writes come from the backend's own counter.
type countingCgroups struct {
	inner interface {
		controller.Cgroups
		writeCounter
	}
	calls *tally
}

var _ controller.Cgroups = countingCgroups{}

func (g countingCgroups) Available() ([]string, error) {
	g.calls.add("Available")
	return g.inner.Available()
}

func (g countingCgroups) Ensure(group string, want []string) (effective, missing []string, err error) {
	g.calls.add("Ensure")
	return g.inner.Ensure(group, want)
}

func (g countingCgroups) Exists(group string) (bool, error) {
	g.calls.add("Exists")
	return g.inner.Exists(group)
}

func (g countingCgroups) Read(group string, files []string) (map[string]string, error) {
	g.calls.add("Read")
	return g.inner.Read(group, files)
}

func (g countingCgroups) Write(group string, fv []ctr.FileValue) error {
	g.calls.add("Write")
	return g.inner.Write(group, fv)
}

func (g countingCgroups) Remove(group string) error {
	g.calls.add("Remove")
	return g.inner.Remove(group)
}

func (g countingCgroups) Stat(group string) (ctr.Usage, error) {
	g.calls.add("Stat")
	return g.inner.Stat(group)
}

func (g countingCgroups) Writes() int64 { return g.inner.Writes() }

// callSummary reduces a tally to the counters the scenario reports.
func callSummary(rt, cg map[string]int) (runtimeCalls, cgroupCalls, mutatingCalls int) {
	for m, n := range rt {
		runtimeCalls += n
		if mutating[m] {
			mutatingCalls += n
		}
	}
	for m, n := range cg {
		cgroupCalls += n
		if mutating[m] {
			mutatingCalls += n
		}
	}
	return runtimeCalls, cgroupCalls, mutatingCalls
}
