package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Inventory is the record of what the reconciler created. An object is ours
// to prune only when it is in the inventory (and, for containers, carries our
// managed-by label). It is written before an object is created, so a crash
// mid-create leaves a record that lets the next pass finish or clean up.
type Inventory struct {
	Version int `json:"version"`
	// Objects are keyed by object key ("Cell lab/web/blog/frontend").
	Objects map[string]*Record `json:"objects"`

	// Missing is set by LoadInventory when the file did not exist.
	Missing bool `json:"-"`

	// saved is the content last read or written, so that Save skips
	// writing (and fsyncing) an unchanged inventory.
	saved []byte
}

// Record is one inventory entry.
type Record struct {
	Kind      string `json:"kind"`
	Realm     string `json:"realm"`
	Space     string `json:"space,omitempty"`
	Stack     string `json:"stack,omitempty"`
	Cell      string `json:"cell,omitempty"`
	CellID    string `json:"cellId,omitempty"`
	Namespace string `json:"namespace"`
	Cgroup    string `json:"cgroup"`
	// Source is the manifest file the object came from; empty for an
	// implied parent.
	Source string `json:"source,omitempty"`
	// Containers maps containerd IDs of a cell to the spec they were created
	// from, so a recreate can say which fields changed.
	Containers map[string]*ContainerRecord `json:"containers,omitempty"`
	// Completed is set when an autoDelete cell ran to completion and was
	// removed: the fingerprint of the spec that completed. The cell is not
	// started again until its spec changes.
	Completed string `json:"completed,omitempty"`
}

// ContainerRecord is what a container was created from.
type ContainerRecord struct {
	SpecHash string          `json:"specHash"`
	Spec     json.RawMessage `json:"spec,omitempty"`
}

const inventoryVersion = 1

// NewInventory returns an empty inventory.
func NewInventory() *Inventory {
	return &Inventory{Version: inventoryVersion, Objects: map[string]*Record{}}
}

// LoadInventory reads path strictly. A missing file is an empty inventory
// with Missing set: a first start, or a lost state dir, which the caller
// rebuilds from the host's labels. Anything that is not
// an inventory of a known version — torn JSON, "null", "{}", an unknown
// version, no objects map — is an error naming the file: treating it as
// empty would orphan everything it recorded, so no pass may run on it.
func LoadInventory(path string) (*Inventory, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		inv := NewInventory()
		inv.Missing = true
		return inv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	var inv Inventory
	if err := json.Unmarshal(b, &inv); err != nil {
		return nil, fmt.Errorf("inventory %s: %w (fix or restore the file; the reconciler will not guess what it recorded)", path, err)
	}
	switch {
	case inv.Version != inventoryVersion:
		return nil, fmt.Errorf("inventory %s: unknown version %d (want %d; fix or restore the file)", path, inv.Version, inventoryVersion)
	case inv.Objects == nil:
		return nil, fmt.Errorf("inventory %s: no \"objects\" map (fix or restore the file)", path)
	}
	for k, rec := range inv.Objects {
		if rec == nil {
			return nil, fmt.Errorf("inventory %s: object %q is null (fix or restore the file)", path, k)
		}
	}
	inv.saved = b
	return &inv, nil
}

// Save writes the inventory atomically (temp file, fsync, rename, fsync of
// the directory). An inventory equal to the one last read or written is not
// written again unless force is set: the executor forces a write before
// every phase that creates or deletes, so an unwritable state dir stops the
// phase before it acts.
func (inv *Inventory) Save(path string, force bool) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return fmt.Errorf("encode inventory: %w", err)
	}
	b = append(b, '\n')
	if !force && bytes.Equal(b, inv.saved) {
		return nil
	}
	if err := writeStateFile(path, b); err != nil {
		return err
	}
	inv.saved = b
	inv.Missing = false
	return nil
}

// Keys returns the object keys, sorted.
func (inv *Inventory) Keys() []string {
	keys := make([]string, 0, len(inv.Objects))
	for k := range inv.Objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeStateFile is how state files are written; tests replace it to
// inject a full or read-only state dir.
var writeStateFile = writeFileAtomic

// writeFileAtomic writes data to path through a temp file in the same
// directory, fsyncs it and renames it over path, so readers see either the
// old or the new content, never a torn file.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// rebuild fills an inventory whose file was missing from the containers on
// the host that carry our labels: without it, a lost state dir would leave
// every undeclared container an orphan for good (never pruned, never
// shown). Each container records its cell and the cell's parents; names
// and cgroup paths come from the desired tree where it declares the cell,
// else from the labels (a cell's name defaults to its id). It returns how
// many containers it found.
func (inv *Inventory) rebuild(ctx context.Context, rt RuntimeReader, tree *hierarchy.Tree, cgroupRoot string) (int, error) {
	nss, err := rt.ListNamespaces(ctx)
	if err != nil {
		return 0, fmt.Errorf("list namespaces: %w", err)
	}
	byID := map[[4]string]*hierarchy.Cell{}
	for _, c := range tree.Cells() {
		byID[[4]string{c.Realm, c.Space, c.Stack, c.ID}] = c
	}
	root := path.Clean("/" + cgroupRoot)
	if cgroupRoot == "" {
		root = hierarchy.DefaultCgroupRoot
	}
	found := 0
	for _, ns := range nss {
		cs, err := rt.ListContainers(ctx, ns)
		if err != nil {
			return 0, fmt.Errorf("list containers in %s: %w", ns, err)
		}
		for _, c := range cs {
			l := c.Labels
			realm, space, stack, cellID := l[ctr.LabelRealm], l[ctr.LabelSpace], l[ctr.LabelStack], l[ctr.LabelCell]
			if realm == "" || space == "" || stack == "" || cellID == "" || realm == v1beta1.SystemRealm {
				continue
			}
			found++
			name, cg := cellID, path.Join(root, realm, space, stack, cellID)
			if dc := byID[[4]string{realm, space, stack, cellID}]; dc != nil {
				name, cg = dc.Name, dc.CgroupPath
			}
			put := func(key string, r Record) *Record {
				if rec := inv.Objects[key]; rec != nil {
					return rec
				}
				inv.Objects[key] = &r
				return &r
			}
			put(hierarchy.RealmKey(realm), Record{Kind: v1beta1.KindRealm, Realm: realm, Namespace: ns, Cgroup: path.Join(root, realm)})
			put(hierarchy.SpaceKey(realm, space), Record{Kind: v1beta1.KindSpace, Realm: realm, Space: space, Namespace: ns, Cgroup: path.Join(root, realm, space)})
			put(hierarchy.StackKey(realm, space, stack), Record{Kind: v1beta1.KindStack, Realm: realm, Space: space, Stack: stack, Namespace: ns, Cgroup: path.Join(root, realm, space, stack)})
			cell := put(hierarchy.CellKey(realm, space, stack, name), Record{Kind: v1beta1.KindCell, Realm: realm, Space: space, Stack: stack,
				Cell: name, CellID: cellID, Namespace: ns, Cgroup: cg, Containers: map[string]*ContainerRecord{}})
			cell.Containers[c.ID] = &ContainerRecord{SpecHash: l[ctr.LabelSpecHash]}
		}
	}
	return found, nil
}
