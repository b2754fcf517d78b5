package hierarchy

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// Build turns decoded documents into the desired tree. It is pure: docs are
// read, never modified, and the tree shares no memory with them.
//
// Parents are resolved by name (spec.realmId, spec.spaceId, spec.stackId); a
// parent that is named but not declared is implied (Implied, bare spec). The
// returned diagnostics are the cross-object checks, sorted by position:
// duplicates (the first declaration in document order wins), two cells of a
// stack with the same spec.id, two realms with the same namespace, objects in
// the reserved realm kuke-system, and containerd IDs over
// MaxContainerdIDLength. Each is an error.
//
// Hazard: an object with an error is left out of the tree, and so is the
// subtree of a realm left out for its namespace. When Build returns an error
// the tree is therefore incomplete, and a caller must not prune (delete what
// the tree lacks) on it: it would delete the running objects of the very
// manifests that are in error. Tree.Excluded names every object so left out.
func Build(docs []manifest.Document, opts Options) (*Tree, []manifest.Diagnostic) {
	b := &builder{
		root:       opts.cgroupRoot(),
		suffix:     cmp.Or(opts.NamespaceSuffix, v1beta1.DefaultNamespaceSuffix),
		seen:       map[string]manifest.Position{},
		realms:     map[string]*Realm{},
		spaces:     map[[2]string]*Space{},
		stacks:     map[[3]string]*Stack{},
		cellIDs:    map[[4]string]claim{},
		namespaces: map[string]claim{},
		dropped:    map[string]string{},
		excluded:   map[string]string{},
	}
	// Levels are built top-down, so a declared parent is always in place
	// before a child could imply it, whatever the document order.
	for i := range docs {
		if r, ok := docs[i].Object.(*v1beta1.Realm); ok {
			b.addRealm(&docs[i], r)
		}
	}
	for i := range docs {
		if s, ok := docs[i].Object.(*v1beta1.Space); ok {
			b.addSpace(&docs[i], s)
		}
	}
	for i := range docs {
		if s, ok := docs[i].Object.(*v1beta1.Stack); ok {
			b.addStack(&docs[i], s)
		}
	}
	for i := range docs {
		if c, ok := docs[i].Object.(*v1beta1.Cell); ok {
			b.addCell(&docs[i], c)
		}
	}
	return b.tree(), b.sortedDiagnostics()
}

// claim records who first took a unique identity (a namespace, a cell id).
type claim struct {
	object string
	pos    manifest.Position
}

type builder struct {
	root   string
	suffix string
	diags  []manifest.Diagnostic

	// seen maps an object key to where it was first declared.
	seen   map[string]manifest.Position
	realms map[string]*Realm
	spaces map[[2]string]*Space
	stacks map[[3]string]*Stack
	// cellIDs maps realm, space, stack and cell spec.id to its cell.
	cellIDs    map[[4]string]claim
	namespaces map[string]claim
	// dropped maps a realm left out with its subtree to why; children
	// naming it are skipped without a diagnostic of their own.
	dropped map[string]string
	// excluded is Tree.Excluded.
	excluded map[string]string
}

// exclude records that the object key is left out of the tree, and why. The
// first reason given for a key stands.
func (b *builder) exclude(reason string, keys ...string) {
	for _, k := range keys {
		if _, ok := b.excluded[k]; !ok {
			b.excluded[k] = reason
		}
	}
}

// drop leaves realm out with its subtree.
func (b *builder) drop(realm, reason string) {
	b.dropped[realm] = reason
	b.exclude(reason, RealmKey(realm))
}

// skip excludes an object of a dropped realm (its key last) and the parents
// it names, which would have been implied.
func (b *builder) skip(realm string, keys ...string) {
	b.exclude("realm "+realm+" is excluded: "+b.dropped[realm], keys...)
}

// lineage returns the keys of an object and its parents, realm first: names
// are realm, space, stack, cell, as far as the object's level goes.
func lineage(names ...string) []string {
	keys := []string{RealmKey(names[0])}
	if len(names) > 1 {
		keys = append(keys, SpaceKey(names[0], names[1]))
	}
	if len(names) > 2 {
		keys = append(keys, StackKey(names[0], names[1], names[2]))
	}
	if len(names) > 3 {
		keys = append(keys, CellKey(names[0], names[1], names[2], names[3]))
	}
	return keys
}

// errorf reports an error and returns its message.
func (b *builder) errorf(doc *manifest.Document, object, field, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	b.diags = append(b.diags, manifest.Diagnostic{
		Severity: manifest.SeverityError,
		Position: doc.FieldPosition(field),
		Object:   object,
		Field:    field,
		Message:  msg,
	})
	return msg
}

// declare reports whether key is declared for the first time, and reports a
// duplicate otherwise.
func (b *builder) declare(doc *manifest.Document, key string) bool {
	if first, ok := b.seen[key]; ok {
		b.errorf(doc, key, "metadata.name", "duplicate %s (first declared at %s)", key, first)
		return false
	}
	b.seen[key] = doc.Position
	return true
}

// reserved reports (once per object) whether the object is in kukeon's own
// realm, and excludes it and the parents it names. names are the object's
// lineage (see lineage).
func (b *builder) reserved(doc *manifest.Document, field string, names ...string) bool {
	realm := names[0]
	if realm != v1beta1.SystemRealm {
		return false
	}
	keys := lineage(names...)
	msg := b.errorf(doc, keys[len(keys)-1], field, "realm %q is reserved for kukeon and never managed by the reconciler", realm)
	b.exclude(msg, keys...)
	return true
}

func (b *builder) addRealm(doc *manifest.Document, in *v1beta1.Realm) {
	name := in.Metadata.Name
	key := RealmKey(name)
	if b.reserved(doc, "metadata.name", name) || !b.declare(doc, key) {
		return
	}
	ns := v1beta1.NamespaceFor(in, b.suffix)
	field := "metadata.name"
	if in.Spec.Namespace != "" {
		field = "spec.namespace"
	}
	if ns == v1beta1.DefaultNamespace(v1beta1.SystemRealm, b.suffix) {
		b.drop(name, b.errorf(doc, key, field, "namespace %q belongs to the reserved realm %q", ns, v1beta1.SystemRealm))
		return
	}
	if first, ok := b.namespaces[ns]; ok {
		b.drop(name, b.errorf(doc, key, field, "namespace %q is already used by %s (declared at %s)", ns, first.object, first.pos))
		return
	}
	b.namespaces[ns] = claim{object: key, pos: doc.Position}
	b.realms[name] = &Realm{
		Meta:                b.meta(doc, in.Metadata, in.Spec.Resources, childPath(b.root, name)),
		Namespace:           ns,
		RegistryCredentials: copyCredentials(in.Spec.RegistryCredentials),
	}
}

// realm returns the realm a child names, implying it when undeclared. It
// returns nil when the child must be skipped (its realm is left out).
//
// An implied realm gets its default namespace only now, after every
// declared realm took its own (Build adds all realms first): so a declared
// realm whose spec.namespace is that default always wins, whatever the
// document order, and the implied realm is dropped with its subtree.
func (b *builder) realm(doc *manifest.Document, key, name string) *Realm {
	if _, ok := b.dropped[name]; ok {
		return nil
	}
	if r := b.realms[name]; r != nil {
		return r
	}
	ns := v1beta1.DefaultNamespace(name, b.suffix)
	if first, ok := b.namespaces[ns]; ok {
		b.drop(name, b.errorf(doc, key, "spec.realmId", "implied %s would use namespace %q, which %s already uses (declared at %s)",
			RealmKey(name), ns, first.object, first.pos))
		return nil
	}
	b.namespaces[ns] = claim{object: RealmKey(name)}
	r := &Realm{
		Meta:      Meta{Name: name, Implied: true, CgroupPath: childPath(b.root, name)},
		Namespace: ns,
	}
	b.realms[name] = r
	return r
}

// space returns the space a child names, implying it (and its realm) when
// undeclared; nil when the child must be skipped.
func (b *builder) space(doc *manifest.Document, key, realm, name string) *Space {
	if s := b.spaces[[2]string{realm, name}]; s != nil {
		return s
	}
	r := b.realm(doc, key, realm)
	if r == nil {
		return nil
	}
	s := &Space{
		Meta:  Meta{Name: name, Implied: true, CgroupPath: childPath(r.CgroupPath, name)},
		Realm: realm,
	}
	b.spaces[[2]string{realm, name}] = s
	r.Spaces = append(r.Spaces, s)
	return s
}

// stack returns the stack a cell names, implying it (and its parents) when
// undeclared; nil when the cell must be skipped.
func (b *builder) stack(doc *manifest.Document, key, realm, space, name string) *Stack {
	if st := b.stacks[[3]string{realm, space, name}]; st != nil {
		return st
	}
	s := b.space(doc, key, realm, space)
	if s == nil {
		return nil
	}
	st := &Stack{
		Meta:  Meta{Name: name, Implied: true, CgroupPath: childPath(s.CgroupPath, name)},
		Realm: realm, Space: space, ID: name,
	}
	b.stacks[[3]string{realm, space, name}] = st
	s.Stacks = append(s.Stacks, st)
	return st
}

func (b *builder) addSpace(doc *manifest.Document, in *v1beta1.Space) {
	realm, name := in.Spec.RealmID, in.Metadata.Name
	key := SpaceKey(realm, name)
	if b.reserved(doc, "spec.realmId", realm, name) || !b.declare(doc, key) {
		return
	}
	r := b.realm(doc, key, realm)
	if r == nil {
		b.skip(realm, lineage(realm, name)[1:]...)
		return
	}
	s := &Space{
		Meta:  b.meta(doc, in.Metadata, in.Spec.Resources, childPath(r.CgroupPath, name)),
		Realm: realm,
	}
	b.spaces[[2]string{realm, name}] = s
	r.Spaces = append(r.Spaces, s)
}

func (b *builder) addStack(doc *manifest.Document, in *v1beta1.Stack) {
	realm, space, name := in.Spec.RealmID, in.Spec.SpaceID, in.Metadata.Name
	key := StackKey(realm, space, name)
	if b.reserved(doc, "spec.realmId", realm, space, name) || !b.declare(doc, key) {
		return
	}
	s := b.space(doc, key, realm, space)
	if s == nil {
		b.skip(realm, lineage(realm, space, name)[1:]...)
		return
	}
	st := &Stack{
		Meta:  b.meta(doc, in.Metadata, in.Spec.Resources, childPath(s.CgroupPath, name)),
		Realm: realm, Space: space, ID: cmp.Or(in.Spec.ID, name),
	}
	b.stacks[[3]string{realm, space, name}] = st
	s.Stacks = append(s.Stacks, st)
}

func (b *builder) meta(doc *manifest.Document, m v1beta1.ObjectMeta, res *v1beta1.Resources, cgroup string) Meta {
	return Meta{
		Name:        m.Name,
		Labels:      copyMap(m.Labels),
		Annotations: copyMap(m.Annotations),
		Source:      doc.Position,
		CgroupPath:  cgroup,
		Resources:   copyResources(res),
	}
}

func (b *builder) tree() *Tree {
	t := &Tree{Excluded: b.excluded}
	for _, r := range b.realms {
		t.Realms = append(t.Realms, r)
	}
	byName := func(a, b string) int { return cmp.Compare(a, b) }
	slices.SortFunc(t.Realms, func(x, y *Realm) int { return byName(x.Name, y.Name) })
	for _, r := range t.Realms {
		slices.SortFunc(r.Spaces, func(x, y *Space) int { return byName(x.Name, y.Name) })
		for _, s := range r.Spaces {
			slices.SortFunc(s.Stacks, func(x, y *Stack) int { return byName(x.Name, y.Name) })
			for _, st := range s.Stacks {
				slices.SortFunc(st.Cells, func(x, y *Cell) int { return byName(x.Name, y.Name) })
			}
		}
	}
	return t
}

// sortedDiagnostics orders diagnostics by file, line and column; the sort is
// stable, so diagnostics at one place keep the order they were found in.
func (b *builder) sortedDiagnostics() []manifest.Diagnostic {
	slices.SortStableFunc(b.diags, func(x, y manifest.Diagnostic) int {
		return cmp.Or(
			cmp.Compare(x.Position.File, y.Position.File),
			cmp.Compare(x.Position.Line, y.Position.Line),
			cmp.Compare(x.Position.Column, y.Position.Column),
		)
	})
	return b.diags
}
