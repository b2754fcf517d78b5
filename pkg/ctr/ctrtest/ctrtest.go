// Package ctrtest holds the contract suites that the real runtime backends
// (pkg/ctr) and their in-memory fake (pkg/ctr/ctrfake) must both pass, so
// the fake cannot drift from the real thing.
package ctrtest

import (
	"context"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Runtime is the containerd side of the backend, as *ctr.Client and
// *ctrfake.Runtime implement it.
type Runtime interface {
	Ping(ctx context.Context) error
	EnsureNamespace(ctx context.Context, ns string) error
	ListNamespaces(ctx context.Context) ([]string, error)
	DeleteNamespace(ctx context.Context, ns string) error
	EnsureImage(ctx context.Context, ns, ref, pullPolicy string, creds []ctr.Credential) error
	CreateContainer(ctx context.Context, ns string, spec ctr.ContainerSpec) error
	StartContainer(ctx context.Context, ns, id string) (uint32, error)
	StopContainer(ctx context.Context, ns, id string, grace time.Duration) error
	DeleteContainer(ctx context.Context, ns, id string, grace time.Duration) error
	ListContainers(ctx context.Context, ns string) ([]ctr.Container, error)
	ListContainersWithLabels(ctx context.Context, ns string, selector map[string]string) ([]ctr.Container, error)
	UpdateLabels(ctx context.Context, ns, id string, labels map[string]string) error
	Events(ctx context.Context) <-chan ctr.Event
}

// CgroupFS is the cgroup v2 side of the backend, as *ctr.Cgroups and
// *ctrfake.Cgroups implement it.
type CgroupFS interface {
	Mountpoint() string
	Available() ([]string, error)
	Ensure(group string, want []string) (effective, missing []string, err error)
	Exists(group string) (bool, error)
	Read(group string, files []string) (map[string]string, error)
	Write(group string, fv []ctr.FileValue) error
	Procs(group string) ([]int, error)
	Remove(group string) error
	Stat(group string) (ctr.Usage, error)
	Writes() int64
}

var (
	_ Runtime  = (*ctr.Client)(nil)
	_ CgroupFS = (*ctr.Cgroups)(nil)
)
