// Package hierarchy turns decoded manifests into the desired tree
// Realm → Space → Stack → Cell → Container, with every identity the runtime
// needs (containerd namespace, containerd IDs, cgroup group paths) resolved,
// parents implied where a child names one that is not declared, and the
// cross-object rules (duplicates, ID length, the reserved realm) checked.
package hierarchy

import (
	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// Options are the host-dependent parts of identities.
type Options struct {
	// CgroupRoot is the group path under which realms live, e.g. "/kukeon".
	CgroupRoot string
	// NamespaceSuffix forms a realm's default containerd namespace
	// "<realm>.<suffix>"; empty means v1beta1.DefaultNamespaceSuffix.
	NamespaceSuffix string
}

// Tree is the desired state of the host. Slices are sorted by name, so the
// tree and everything derived from it is deterministic.
type Tree struct {
	Realms []*Realm
	// Excluded maps the key (RealmKey, SpaceKey, StackKey, CellKey) of every
	// object that is declared, or would be implied, but is left out of the
	// tree because of an error to why, one line: its own error (the cell's
	// containers, a cell id or a namespace already used, the reserved
	// realm), or "realm R is excluded: <why>" for everything under a realm
	// left out, in whatever file it is declared. A duplicate adds nothing:
	// its key is the first declaration's, in the tree or excluded. No key of
	// Excluded is in the tree. Build never returns it nil.
	//
	// Objects whose documents failed to decode never reach Build: their
	// files are failed (manifest.Result.FailedSource).
	Excluded map[string]string
}

// Meta is what every level has.
type Meta struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	// Implied is true for a parent that no manifest declares but a child
	// names; it has a bare spec.
	Implied bool
	// Source is where the object was declared (zero when Implied).
	Source manifest.Position
	// CgroupPath is the group path of the level, e.g. "/kukeon/lab/web".
	CgroupPath string
	// Resources are the level's cgroup limits (nil: none).
	Resources *v1beta1.Resources
}

// Realm is a desired realm.
type Realm struct {
	Meta
	// Namespace is the containerd namespace (spec.namespace or <name>.<suffix>).
	Namespace           string
	RegistryCredentials []v1beta1.RegistryCredential
	Spaces              []*Space
}

// Space is a desired space.
type Space struct {
	Meta
	Realm  string
	Stacks []*Stack
}

// Stack is a desired stack.
type Stack struct {
	Meta
	Realm, Space string
	// ID is the cosmetic spec.id.
	ID    string
	Cells []*Cell
}

// Cell is a desired cell.
type Cell struct {
	Meta
	Realm, Space, Stack string
	// ID is spec.id, defaulted to the name; it is part of containerd IDs.
	ID                  string
	Namespace           string
	AutoDelete          bool
	NestedCgroupRuntime bool
	// Root is the root container (declared or synthesized). It is also
	// Containers[0].
	Root *Container
	// Containers are all containers, root first, then workloads in
	// declaration order.
	Containers []*Container
}

// Container is a desired container with its identities resolved.
type Container struct {
	// Spec is the manifest spec with defaults applied (restart policy,
	// backoff, retries, pull policy, grace period).
	Spec v1beta1.Container
	// Root is true for the cell's root container.
	Root bool
	// Synthesized is true for a root the manifest does not declare: it runs
	// the reconciler's own binary as "reconciler pause" on the rootfs of the
	// cell's first image.
	Synthesized bool
	// ContainerdID is <space>_<stack>_<cellId>_<id>.
	ContainerdID string
	// CgroupPath is <cell cgroup>/<ContainerdID>.
	CgroupPath string
	// SpecHash is the hash of everything that requires a recreate when it
	// changes (see SpecHash).
	SpecHash string
	// Field is the field path of the container in its cell manifest
	// ("spec.containers[1]"), empty when synthesized.
	Field string
}
