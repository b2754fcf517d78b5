package hierarchy

import (
	"strings"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// SynthesizedRootID is the container id of a root the manifest does not
// declare (kukeon's choice too).
const SynthesizedRootID = "root"

func (b *builder) addCell(doc *manifest.Document, in *v1beta1.Cell) {
	realm, space, stack, name := in.Spec.RealmID, in.Spec.SpaceID, in.Spec.StackID, in.Metadata.Name
	key := CellKey(realm, space, stack, name)
	if b.reserved(doc, "spec.realmId", realm, space, stack, name) || !b.declare(doc, key) {
		return
	}
	st := b.stack(doc, key, realm, space, stack)
	if st == nil {
		b.skip(realm, lineage(realm, space, stack, name)[1:]...)
		return
	}
	id := v1beta1.CellID(in)
	idField := "metadata.name"
	if in.Spec.ID != "" {
		idField = "spec.id"
	}
	// Two cells of a stack with one spec.id would share every containerd ID.
	idKey := [4]string{realm, space, stack, id}
	if first, ok := b.cellIDs[idKey]; ok {
		b.exclude(b.errorf(doc, key, idField, "cell id %q is already used by %s (declared at %s): their containerd IDs would collide",
			id, first.object, first.pos), key)
		return
	}
	b.cellIDs[idKey] = claim{object: key, pos: doc.Position}

	r := b.realms[realm]
	c := &Cell{
		Meta:                b.meta(doc, in.Metadata, in.Spec.Resources, childPath(st.CgroupPath, name)),
		Realm:               realm,
		Space:               space,
		Stack:               stack,
		ID:                  id,
		Namespace:           r.Namespace,
		AutoDelete:          in.Spec.AutoDelete,
		NestedCgroupRuntime: in.Spec.NestedCgroupRuntime,
	}
	before := len(b.diags)
	c.Containers = b.containers(doc, key, in, c, idField)
	if len(b.diags) > before || len(c.Containers) == 0 {
		var msgs []string
		for _, d := range b.diags[before:] {
			msgs = append(msgs, d.Message)
		}
		b.exclude(strings.Join(msgs, "; "), key)
		return
	}
	c.Root = c.Containers[0]
	for _, ct := range c.Containers {
		ct.SpecHash = SpecHash(c, ct)
	}
	st.Cells = append(st.Cells, c)
}

// containers resolves the root and returns every container of the cell, root
// first, with identities set. The per-cell rules (rootContainerId names a
// container, at most one root: true) belong to the manifest validators; they
// are checked here again only so that a tree is never built on a wrong root.
func (b *builder) containers(doc *manifest.Document, key string, in *v1beta1.Cell, c *Cell, idField string) []*Container {
	decl := in.Spec.Containers
	if len(decl) == 0 {
		b.errorf(doc, key, "spec.containers", "a cell needs at least one container")
		return nil
	}
	rootIdx := -1
	if want := in.Spec.RootContainerID; want != "" {
		for i := range decl {
			if decl[i].ID == want {
				rootIdx = i
				break
			}
		}
		if rootIdx < 0 {
			b.errorf(doc, key, "spec.rootContainerId", "rootContainerId %q names no container of the cell", want)
			return nil
		}
	} else {
		for i := range decl {
			if !decl[i].Root {
				continue
			}
			if rootIdx >= 0 {
				b.errorf(doc, key, containerField(i)+".root",
					"a second root container (the first is spec.containers[%d] %q)", rootIdx, decl[rootIdx].ID)
				return nil
			}
			rootIdx = i
		}
	}

	var out []*Container
	if rootIdx >= 0 {
		out = append(out, b.container(c, copyContainer(&decl[rootIdx]), true, false, containerField(rootIdx)))
	} else {
		out = append(out, b.container(c, synthesizeRoot(decl), true, true, ""))
	}
	for i := range decl {
		if i != rootIdx {
			out = append(out, b.container(c, copyContainer(&decl[i]), false, false, containerField(i)))
		}
	}

	// The root's ID does not involve its own id, so its length problem is
	// the cell's (or its parents') name; a workload's is its id's too.
	used := map[string]string{}
	for _, ct := range out {
		field, owner := ct.Field+".id", ct.Field
		if ct.Root {
			field, owner = idField, "the root container"
		}
		if n := len(ct.ContainerdID); n > MaxContainerdIDLength {
			b.errorf(doc, key, field, "containerd ID %q is %d characters (limit %d): shorten the space, stack, cell or container name",
				ct.ContainerdID, n, MaxContainerdIDLength)
		}
		if first, ok := used[ct.ContainerdID]; ok {
			b.errorf(doc, key, field, "containerd ID %q is already used by %s", ct.ContainerdID, first)
		}
		used[ct.ContainerdID] = owner
	}
	return out
}

// synthesizeRoot is the root of a cell that declares none: it runs on the
// rootfs of the first container's image (pulled with that container's
// policy), and shares the host network when any container of the cell asks
// for it, because workload containers join the root's network namespace.
func synthesizeRoot(decl []v1beta1.Container) v1beta1.Container {
	first := copyContainer(&decl[0])
	v1beta1.SetContainerDefaults(&first)
	root := v1beta1.Container{
		ID:              SynthesizedRootID,
		Root:            true,
		Image:           first.Image,
		ImagePullPolicy: first.ImagePullPolicy,
	}
	for i := range decl {
		root.HostNetwork = root.HostNetwork || decl[i].HostNetwork
	}
	return root
}

func (b *builder) container(c *Cell, spec v1beta1.Container, root, synthesized bool, field string) *Container {
	v1beta1.SetContainerDefaults(&spec)
	id := ContainerdID(c.Space, c.Stack, c.ID, spec.ID)
	if root {
		id = RootContainerdID(c.Space, c.Stack, c.ID)
	}
	return &Container{
		Spec:         spec,
		Root:         root,
		Synthesized:  synthesized,
		ContainerdID: id,
		CgroupPath:   childPath(c.CgroupPath, id),
		Field:        field,
	}
}
