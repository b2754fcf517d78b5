// Package controller converges the host onto the desired tree. A pass is
// load → build → observe → assess → plan → apply → status: each level's
// controller (level.go for realms, spaces and stacks; cell.go and
// cell_apply.go for cells) assesses desired against observed once
// (assess.go), plans changes that carry everything the executor will do,
// and the executor (apply.go) applies the plan through the small write
// interfaces declared here, deletes bottom-up, then creates and updates
// top-down. The observer reads through the read interfaces only.
package controller

import (
	"context"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// RuntimeReader is what observation reads of containerd.
type RuntimeReader interface {
	ListNamespaces(ctx context.Context) ([]string, error)
	// ListContainers returns the containers in ns that carry our
	// managed-by label, with their tasks.
	ListContainers(ctx context.Context, ns string) ([]ctr.Container, error)
	// ListContainersWithLabels is ListContainers narrowed to a label
	// selector, cheaper than a whole namespace: event-driven reconciles
	// read one cell's containers with it (cellSelector).
	ListContainersWithLabels(ctx context.Context, ns string, selector map[string]string) ([]ctr.Container, error)
}

// RuntimeWriter is what the executor changes in containerd.
type RuntimeWriter interface {
	EnsureNamespace(ctx context.Context, ns string) error
	// DeleteNamespace returns ErrNotOwned or ErrNotEmpty when the namespace
	// must be kept; both are expected during prune.
	DeleteNamespace(ctx context.Context, ns string) error
	EnsureImage(ctx context.Context, ns, ref, pullPolicy string, creds []ctr.Credential) error
	// Preflight checks, changing nothing, what creating spec needs: the
	// image present and unpacked, the log path writable, no foreign object
	// under the ID. A recreate calls it before it stops the old container.
	Preflight(ctx context.Context, ns string, spec ctr.ContainerSpec) error
	CreateContainer(ctx context.Context, ns string, spec ctr.ContainerSpec) error
	StartContainer(ctx context.Context, ns, id string) (uint32, error)
	// DeleteContainer stops the task (SIGTERM, SIGKILL after grace) and
	// removes the container, its snapshot and its log.
	DeleteContainer(ctx context.Context, ns, id string, grace time.Duration) error
	UpdateLabels(ctx context.Context, ns, id string, labels map[string]string) error
}

// Runtime is what the controller needs of containerd. *ctr.Client implements
// it; ctrfake.Runtime is the in-memory twin held to the same contract.
type Runtime interface {
	RuntimeReader
	RuntimeWriter
}

// CgroupReader is what observation reads of the cgroup v2 tree.
type CgroupReader interface {
	Available() ([]string, error)
	Exists(group string) (bool, error)
	Read(group string, files []string) (map[string]string, error)
	// Stat returns the group's usage; ErrNotFound when it does not exist.
	Stat(group string) (ctr.Usage, error)
}

// CgroupWriter is what the executor changes in the cgroup v2 tree.
type CgroupWriter interface {
	Ensure(group string, want []string) (effective, missing []string, err error)
	Write(group string, fv []ctr.FileValue) error
	// Remove deletes group and its children bottom-up; ErrNotEmpty when a
	// process still lives there.
	Remove(group string) error
}

// Cgroups is what the controller needs of the cgroup v2 tree. *ctr.Cgroups
// implements it; ctrfake.Cgroups is its in-memory twin.
type Cgroups interface {
	CgroupReader
	CgroupWriter
}
