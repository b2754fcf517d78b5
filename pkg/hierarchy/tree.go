package hierarchy

import (
	"path"
	"sort"
	"strconv"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

// DefaultCgroupRoot is the group path under which realms live when
// Options.CgroupRoot is empty.
const DefaultCgroupRoot = "/kukeon"

// MaxContainerdIDLength is containerd's limit on an identifier. Longer
// container IDs are rejected by containerd at create time, so Build rejects
// them up front.
const MaxContainerdIDLength = 76

// RealmKey is the object string of a realm: "Realm lab".
func RealmKey(realm string) string { return v1beta1.KindRealm + " " + realm }

// SpaceKey is the object string of a space: "Space lab/web".
func SpaceKey(realm, space string) string { return v1beta1.KindSpace + " " + realm + "/" + space }

// StackKey is the object string of a stack: "Stack lab/web/blog".
func StackKey(realm, space, stack string) string {
	return v1beta1.KindStack + " " + realm + "/" + space + "/" + stack
}

// CellKey is the object string of a cell: "Cell lab/web/blog/frontend". It
// uses the cell's metadata.name, not its spec.id.
func CellKey(realm, space, stack, cell string) string {
	return v1beta1.KindCell + " " + realm + "/" + space + "/" + stack + "/" + cell
}

// Key returns RealmKey of r.
func (r *Realm) Key() string { return RealmKey(r.Name) }

// Key returns SpaceKey of s.
func (s *Space) Key() string { return SpaceKey(s.Realm, s.Name) }

// Key returns StackKey of s.
func (s *Stack) Key() string { return StackKey(s.Realm, s.Space, s.Name) }

// Key returns CellKey of c.
func (c *Cell) Key() string { return CellKey(c.Realm, c.Space, c.Stack, c.Name) }

// ContainerdID is the containerd ID of a workload container,
// "<space>_<stack>_<cellId>_<container>" (kukeon's naming.BuildContainerdID).
// The realm is not part of it: the realm's namespace scopes it.
func ContainerdID(space, stack, cellID, container string) string {
	return space + "_" + stack + "_" + cellID + "_" + container
}

// RootContainerdID is the containerd ID of a cell's root container,
// "<space>_<stack>_<cellId>_root", whatever the root container's own id is
// (kukeon's naming.BuildRootContainerdID). A workload container with id
// "root" therefore collides with it.
func RootContainerdID(space, stack, cellID string) string {
	return ContainerdID(space, stack, cellID, "root")
}

// cgroupRoot returns the cleaned cgroup root of opts.
func (o Options) cgroupRoot() string {
	if o.CgroupRoot == "" {
		return DefaultCgroupRoot
	}
	return path.Clean("/" + o.CgroupRoot)
}

// Realm returns the realm named name, or nil.
func (t *Tree) Realm(name string) *Realm {
	i := sort.Search(len(t.Realms), func(i int) bool { return t.Realms[i].Name >= name })
	if i < len(t.Realms) && t.Realms[i].Name == name {
		return t.Realms[i]
	}
	return nil
}

// Space returns the space realm/name, or nil.
func (t *Tree) Space(realm, name string) *Space {
	r := t.Realm(realm)
	if r == nil {
		return nil
	}
	i := sort.Search(len(r.Spaces), func(i int) bool { return r.Spaces[i].Name >= name })
	if i < len(r.Spaces) && r.Spaces[i].Name == name {
		return r.Spaces[i]
	}
	return nil
}

// Stack returns the stack realm/space/name, or nil.
func (t *Tree) Stack(realm, space, name string) *Stack {
	s := t.Space(realm, space)
	if s == nil {
		return nil
	}
	i := sort.Search(len(s.Stacks), func(i int) bool { return s.Stacks[i].Name >= name })
	if i < len(s.Stacks) && s.Stacks[i].Name == name {
		return s.Stacks[i]
	}
	return nil
}

// Cell returns the cell realm/space/stack/name (metadata.name), or nil.
func (t *Tree) Cell(realm, space, stack, name string) *Cell {
	st := t.Stack(realm, space, stack)
	if st == nil {
		return nil
	}
	i := sort.Search(len(st.Cells), func(i int) bool { return st.Cells[i].Name >= name })
	if i < len(st.Cells) && st.Cells[i].Name == name {
		return st.Cells[i]
	}
	return nil
}

// Cells returns every cell in tree order: by realm, space, stack, then cell
// name. This is the create order of cells; delete order is its reverse.
func (t *Tree) Cells() []*Cell {
	var cells []*Cell
	for _, r := range t.Realms {
		for _, s := range r.Spaces {
			for _, st := range s.Stacks {
				cells = append(cells, st.Cells...)
			}
		}
	}
	return cells
}

// Keys returns the key of every object of the tree (implied ones included)
// in create order: depth first, each parent before its children, siblings by
// name. Its reverse is a valid delete order (children before parents). The
// planner's prune is the set difference between the inventory and these keys.
func (t *Tree) Keys() []string {
	var keys []string
	for _, r := range t.Realms {
		keys = append(keys, r.Key())
		for _, s := range r.Spaces {
			keys = append(keys, s.Key())
			for _, st := range s.Stacks {
				keys = append(keys, st.Key())
				for _, c := range st.Cells {
					keys = append(keys, c.Key())
				}
			}
		}
	}
	return keys
}

// childPath is the group path of a child level. Names are DNS labels (the
// manifest validators see to it), so no cleaning is needed; this is a hot
// path of Build.
func childPath(parent, name string) string {
	if parent == "/" {
		return "/" + name
	}
	return parent + "/" + name
}

// containerField is the field path of the i-th declared container.
func containerField(i int) string { return "spec.containers[" + strconv.Itoa(i) + "]" }
