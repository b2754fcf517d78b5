// Package controller converges the host onto the desired tree: per-level
// planners compute a Plan from (desired, observed) without side effects, and
// the executor applies a Plan through the small runtime interfaces declared
// here. A pass is load → build → observe → plan → apply → wait → status.
package controller

import (
	"context"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Runtime is what the controller needs of containerd. *ctr.Client implements
// it; ctrfake.Runtime is the in-memory twin held to the same contract.
type Runtime interface {
	EnsureNamespace(ctx context.Context, ns string) error
	ListNamespaces(ctx context.Context) ([]string, error)
	// DeleteNamespace returns ErrNotOwned or ErrNotEmpty when the namespace
	// must be kept; both are expected during prune.
	DeleteNamespace(ctx context.Context, ns string) error
	EnsureImage(ctx context.Context, ns, ref, pullPolicy string, creds []ctr.Credential) error
	CreateContainer(ctx context.Context, ns string, spec ctr.ContainerSpec) error
	StartContainer(ctx context.Context, ns, id string) (uint32, error)
	StopContainer(ctx context.Context, ns, id string, grace time.Duration) error
	DeleteContainer(ctx context.Context, ns, id string, grace time.Duration) error
	ListContainers(ctx context.Context, ns string) ([]ctr.Container, error)
	// ListCellContainers is ListContainers for one cell's labels, cheaper
	// than a whole namespace: event-driven reconciles use it.
	ListCellContainers(ctx context.Context, ns, space, stack, cellID string) ([]ctr.Container, error)
	UpdateLabels(ctx context.Context, ns, id string, labels map[string]string) error
}

// Cgroups is what the controller needs of the cgroup v2 tree. *ctr.Cgroups
// implements it; ctrfake.Cgroups is its in-memory twin.
type Cgroups interface {
	Available() ([]string, error)
	Ensure(group string, want []string) (effective, missing []string, err error)
	Exists(group string) (bool, error)
	Read(group string, files []string) (map[string]string, error)
	Write(group string, fv []ctr.FileValue) error
	Remove(group string) error
	// Stat returns the group's usage; ErrNotFound when it does not exist.
	Stat(group string) (ctr.Usage, error)
}
