package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// TestManifestFaultsKeepCells: running cells survive manifests that stop
// declaring them by accident — a namespace clash between realms, an emptied
// file, a file caught half written by the daemon, a symlinked directory
// that dangles. Each case converges cells first, breaks the manifests,
// checks that nothing was deleted and how the fault is reported, repairs
// the manifests and ends with one --once and the invariant.
func TestManifestFaultsKeepCells(t *testing.T) {
	t.Run("a realm set to another realm's namespace keeps its cells, orphaned", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		b := []cell{newCell("b", "b1"), newCell("b", "b2")}
		h.declare("realm-a.yaml", decl{realms: []realm{{name: "a"}}})
		h.declare("realm-b.yaml", decl{realms: []realm{{name: "b"}}})
		h.declare("cells-a.yaml", decl{cells: []cell{newCell("a", "a1")}})
		h.declare("cells-b.yaml", decl{cells: b})
		converge(t, h)
		h.plantForeign(h.Namespace("a"), "web_blog_a1_foreign", newCell("a", "a1"))

		before := h.tasks()
		h.writeRaw("realm-b.yaml", realm{name: "b", namespace: h.Namespace("a")}.doc())
		failingPass(t, h, before, "realm b on realm a's namespace", "")
		expectOrphaned(t, h, b...)
		h.restore("realm-b.yaml")
		converge(t, h)
	})

	t.Run("a new realm claiming an implied realm's namespace keeps its cells, orphaned", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		imp := []cell{newCell("imp", "i1"), newCell("imp", "i2")}
		h.declare("cells.yaml", decl{cells: imp})
		converge(t, h)

		before := h.tasks()
		h.writeRaw("claim.yaml", realm{name: "claim", namespace: h.Namespace("imp")}.doc())
		failingPass(t, h, before, "realm claim on implied realm imp's namespace", "")
		expectOrphaned(t, h, imp...)
		if err := os.Remove(h.path("claim.yaml")); err != nil {
			t.Fatal(err)
		}
		converge(t, h)
	})

	t.Run("an emptied file and one holding only --- keep their cells, with a warning", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		h.declare("keeper.yaml", decl{cells: []cell{newCell("lab", "keeper")}})
		h.declare("cells-x.yaml", decl{cells: []cell{newCell("lab", "x1"), newCell("lab", "x2")}})
		h.declare("cells-y.yaml", decl{cells: []cell{newCell("lab", "y1")}})
		converge(t, h)

		before := h.tasks()
		for file, content := range map[string]string{"cells-x.yaml": "", "cells-y.yaml": "---\n"} {
			if err := os.WriteFile(h.path(file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, code := h.Run("--once")
		t.Logf("--once with an emptied file and a --- file: exit %d", code)
		expectUnchanged(t, h, before, "an emptied file and a --- file")
		for _, file := range []string{"cells-x.yaml", "cells-y.yaml"} {
			if !hasLine(out, h.path(file), "warning") {
				t.Errorf("--once output has no warning naming %s:\n%s", h.path(file), out)
			}
		}
		h.restore("cells-x.yaml")
		h.restore("cells-y.yaml")
		converge(t, h)
	})

	t.Run("a slow in-place rewrite under the daemon deletes nothing", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		h.declare("keeper.yaml", decl{cells: []cell{newCell("lab", "keeper")}})
		d4 := decl{cells: []cell{newCell("lab", "d1"), newCell("lab", "d2"), newCell("lab", "d3"), newCell("lab", "d4")}}
		h.declare("cells.yaml", d4)
		converge(t, h)
		d := h.StartDaemon()
		waitReady(t, d, 200)

		before := h.tasks()
		full := d4.render()
		// The first half is two whole documents: valid YAML declaring
		// d1 and d2 only, as a reader sees it between the writes.
		cut := len(newCell("lab", "d1").doc()+"---\n") + len(newCell("lab", "d2").doc())
		f, err := os.OpenFile(h.path("cells.yaml"), os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(full[:cut]); err != nil {
			t.Fatal(err)
		}
		// Longer than the daemon's 200 ms debounce, shorter than its 2 s
		// prune grace.
		changes := watchTasks(h, before, 700*time.Millisecond)
		if _, err := f.WriteString(full[cut:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// Past the prune grace and a pass after it.
		changes = append(changes, watchTasks(h, before, 4*time.Second)...)
		if len(changes) > 0 {
			t.Errorf("containers changed during and after a slow rewrite of %s (container IDs and task PIDs must not):\n%s",
				h.path("cells.yaml"), strings.Join(changes, "\n"))
		}
		if _, err := d.Stop(); err != nil {
			t.Errorf("stop daemon: %v", err)
		}
		checkInvariant(t, h)
	})

	t.Run("a symlinked directory that dangles keeps its cells, with an error", func(t *testing.T) {
		h := newHost(t, testenv.HostOptions{})
		target := filepath.Join(t.TempDir(), "target")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, h.path("sub")); err != nil {
			t.Fatal(err)
		}
		h.declare("keeper.yaml", decl{cells: []cell{newCell("lab", "keeper")}})
		h.declare("sub/cells.yaml", decl{cells: []cell{newCell("lab", "e1"), newCell("lab", "e2")}})
		converge(t, h)

		before := h.tasks()
		if err := os.Rename(target, target+".away"); err != nil {
			t.Fatal(err)
		}
		failingPass(t, h, before, h.path("sub")+" dangling", h.path("sub"))
		if err := os.Rename(target+".away", target); err != nil {
			t.Fatal(err)
		}
		converge(t, h)
	})
}

// expectOrphaned checks that status shows every cell Orphaned with a
// message starting "kept:".
func expectOrphaned(t *testing.T, h *host, cells ...cell) {
	t.Helper()
	st := h.status()
	for _, c := range cells {
		found := false
		for _, o := range st.Objects {
			if o.Key != c.key() {
				continue
			}
			found = true
			if o.State != "Orphaned" || !strings.HasPrefix(o.Message, "kept:") {
				t.Errorf("status of %s: state %q, message %q; want Orphaned with a message starting \"kept:\"", c.key(), o.State, o.Message)
			}
		}
		if !found {
			t.Errorf("status does not list %s; want it Orphaned with a message starting \"kept:\"", c.key())
		}
	}
}

// watchTasks samples the containers every 50 ms for d and returns the
// first three differences from before it saw, and how many more there were.
func watchTasks(h *host, before map[string]string, d time.Duration) []string {
	var out []string
	seen := map[string]bool{}
	more := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		diff := cmp.Diff(before, h.tasks())
		switch {
		case diff == "" || seen[diff]:
		case len(out) < 3:
			out = append(out, time.Now().Format("15:04:05.000")+" (-before +now):\n"+diff)
		default:
			more++
		}
		seen[diff] = true
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("… and %d more different states", more))
	}
	return out
}

// hasLine reports whether some line of out contains every one of parts.
func hasLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
