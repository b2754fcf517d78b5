package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Inventory is the record of what the reconciler created. An object is ours
// to prune only when it is in the inventory (and, for containers, carries our
// managed-by label). It is written before an object is created, so a crash
// mid-create leaves a record that lets the next pass finish or clean up.
type Inventory struct {
	Version int `json:"version"`
	// Objects are keyed by object key ("Cell lab/web/blog/frontend").
	Objects map[string]*Record `json:"objects"`

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

// LoadInventory reads path; a missing file is an empty inventory.
func LoadInventory(path string) (*Inventory, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewInventory(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	inv := NewInventory()
	if err := json.Unmarshal(b, inv); err != nil {
		return nil, fmt.Errorf("parse inventory %s: %w", path, err)
	}
	if inv.Objects == nil {
		inv.Objects = map[string]*Record{}
	}
	inv.saved = b
	return inv, nil
}

// Save writes the inventory atomically.
func (inv *Inventory) Save(path string) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if bytes.Equal(b, inv.saved) {
		return nil
	}
	if err := writeFileAtomic(path, b); err != nil {
		return err
	}
	inv.saved = b
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
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
