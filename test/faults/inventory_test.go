package faults

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// TestInventoryFaults: the inventory is what makes an object ours to prune.
// One that does not read as an inventory stops the pass (exit 1, naming the
// file) and nothing is deleted, not even a cell whose manifest is gone; one
// that is missing while containers run is rebuilt from their labels, and
// nothing is deleted.
func TestInventoryFaults(t *testing.T) {
	t.Run("an unreadable inventory stops the pass and deletes nothing", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		f1, f2 := newCell("lab", "f1"), newCell("lab", "f2")
		h.declareCells(f1)
		inv := filepath.Join(h.State, "inventory.json")
		variants := []struct {
			name    string
			content func(good []byte) []byte
		}{
			{"truncated mid-JSON", func(good []byte) []byte { return good[:len(good)/2] }},
			{"{}", func([]byte) []byte { return []byte("{}\n") }},
			{"null", func([]byte) []byte { return []byte("null\n") }},
			{"an unknown version", func([]byte) []byte { return []byte(`{"version": 99, "objects": {}}` + "\n") }},
		}
		for _, v := range variants {
			t.Run(v.name, func(t *testing.T) {
				h := h.in(t)
				// f2 runs, then its manifest goes: a prune is pending
				// when the pass meets the broken inventory.
				h.declareCells(f2)
				converge(t, h)
				good, err := os.ReadFile(inv)
				if err != nil {
					t.Fatal(err)
				}
				h.undeclare(f2.name + ".yaml")
				before := h.tasks()
				if err := os.WriteFile(inv, v.content(good), 0o644); err != nil {
					t.Fatal(err)
				}
				failingPass(t, h, before, "an inventory that is "+v.name, inv)
				if err := os.WriteFile(inv, good, 0o644); err != nil {
					t.Fatal(err)
				}
				converge(t, h)
			})
		}
	})

	t.Run("a removed inventory is rebuilt from the containers' labels and nothing is deleted", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		h.declare("cells.yaml", decl{cells: []cell{newCell("lab", "g1"), newCell("lab", "g2")}})
		converge(t, h)
		before := h.tasks()
		inv := filepath.Join(h.State, "inventory.json")
		if err := os.Remove(inv); err != nil {
			t.Fatal(err)
		}
		out, code := h.Run("--once")
		rebuilt := regexp.MustCompile(`(?i)rebuil\w*.*inventory|inventory.*rebuil`)
		if code != 0 || !rebuilt.MatchString(out) {
			t.Errorf("--once with %s removed: exit %d, want 0 with output saying the inventory was rebuilt from labels:\n%s", inv, code, out)
		}
		expectUnchanged(t, h, before, "the inventory removed")
		checkInvariant(t, h)
	})
}
