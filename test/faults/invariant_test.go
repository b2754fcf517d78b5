package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kukeon/reconciler/pkg/controller"
)

// checkInvariant checks what every case must end with, against the model of
// what the test's manifests declare:
//
//   - every declared container exists exactly once, in its realm's
//     namespace, with a running task in its declared cgroup;
//   - no other container exists, except the foreign ones the test planted,
//     which are untouched;
//   - the inventory (state-dir/inventory.json) lists exactly the declared
//     objects (implied parents included) with their namespace, cgroup and
//     containers;
//   - no cgroup exists under the test's cgroup root outside the declared
//     tree (level dirs and container leaves), and all of it exists;
//   - no snapshot is left in any namespace: the active snapshots are
//     exactly the containers' snapshot keys (committed ones are image
//     layers).
func checkInvariant(t *testing.T, h *host) {
	t.Helper()
	m := h.model()
	cl := h.client()
	defer cl.Close()
	nss := h.namespaces(cl)
	checkContainers(t, h, cl, m, nss)
	checkInventory(t, h, m)
	checkCgroups(t, h, m)
	checkSnapshots(t, h, cl, nss)
}

func checkContainers(t *testing.T, h *host, cl *containerd.Client, m model, nss []string) {
	t.Helper()
	planted := map[string]foreign{}
	for _, f := range h.foreign {
		planted[f.ns+"/"+f.id] = f
	}
	all := slices.Sorted(maps.Keys(m.containers))
	for _, ns := range nss {
		if !slices.Contains(all, ns) {
			all = append(all, ns)
		}
	}
	for _, ns := range all {
		got := map[string]observed{}
		if slices.Contains(nss, ns) {
			got = h.containersIn(cl, ns)
		}
		want := m.containers[ns]
		for _, id := range slices.Sorted(maps.Keys(want)) {
			o, ok := got[id]
			switch {
			case !ok:
				t.Errorf("invariant: declared container %s/%s does not exist", ns, id)
			case o.status != tasktypes.Status_RUNNING:
				t.Errorf("invariant: declared container %s/%s has %s, want a running task", ns, id, taskState(o))
			default:
				if g, err := procCgroup(o.pid); err != nil {
					t.Errorf("invariant: declared container %s/%s: %v", ns, id, err)
				} else if g != want[id] {
					t.Errorf("invariant: declared container %s/%s runs in cgroup %s, want %s", ns, id, g, want[id])
				}
			}
		}
		for _, id := range slices.Sorted(maps.Keys(got)) {
			o := got[id]
			if _, ok := want[id]; ok {
				continue
			}
			f, ok := planted[ns+"/"+id]
			if !ok {
				t.Errorf("invariant: container %s/%s is not declared (%s, labels %v)", ns, id, taskState(o), o.info.Labels)
				continue
			}
			if diff := cmp.Diff(f.labels, o.info.Labels); diff != "" {
				t.Errorf("invariant: foreign container %s/%s was relabelled (-planted +now):\n%s", ns, id, diff)
			}
			if !o.info.UpdatedAt.Equal(f.updatedAt) || o.pid != 0 {
				t.Errorf("invariant: foreign container %s/%s was touched: updated %s (planted %s), %s",
					ns, id, o.info.UpdatedAt, f.updatedAt, taskState(o))
			}
		}
		for _, f := range h.foreign {
			if _, ok := got[f.id]; f.ns == ns && !ok {
				t.Errorf("invariant: foreign container %s/%s was deleted", ns, f.id)
			}
		}
	}
}

// procCgroup returns the unified-hierarchy cgroup of pid ("0::<path>").
func procCgroup(pid uint32) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("read cgroup of task %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "0::"); ok {
			return g, nil
		}
	}
	return "", fmt.Errorf("task %d has no unified cgroup in /proc/%d/cgroup", pid, pid)
}

func checkInventory(t *testing.T, h *host, m model) {
	t.Helper()
	p := filepath.Join(h.State, "inventory.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("invariant: inventory: %v", err)
		return
	}
	var inv controller.Inventory
	if err := json.Unmarshal(b, &inv); err != nil {
		t.Errorf("invariant: inventory %s does not parse: %v\n%s", p, err, b)
		return
	}
	got := map[string]record{}
	for key, r := range inv.Objects {
		if r == nil {
			got[key] = record{Namespace: "(null record)"}
			continue
		}
		rec := record{Namespace: r.Namespace, Cgroup: r.Cgroup}
		for id := range r.Containers {
			rec.Containers = append(rec.Containers, id)
		}
		sort.Strings(rec.Containers)
		got[key] = rec
	}
	if diff := cmp.Diff(m.objects, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("invariant: inventory %s does not list exactly the declared objects (-declared +inventory):\n%s", p, diff)
	}
}

func checkCgroups(t *testing.T, h *host, m model) {
	t.Helper()
	root := filepath.Join(h.Mount, h.CgroupRoot)
	dirs, err := h.CgroupDirs()
	if err != nil {
		t.Errorf("invariant: %v", err)
		return
	}
	var extra []string
	for _, d := range dirs {
		if !m.cgroups[d] {
			extra = append(extra, d)
		}
	}
	if len(extra) > 0 {
		t.Errorf("invariant: cgroups under %s outside the declared tree:\n  %s", root, strings.Join(extra, "\n  "))
	}
	var missing []string
	for _, d := range slices.Sorted(maps.Keys(m.cgroups)) {
		if !slices.Contains(dirs, d) {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		t.Errorf("invariant: declared cgroups missing under %s:\n  %s", root, strings.Join(missing, "\n  "))
	}
}

func checkSnapshots(t *testing.T, h *host, cl *containerd.Client, nss []string) {
	t.Helper()
	for _, ns := range nss {
		keys := map[string][]string{defaults.DefaultSnapshotter: nil} // snapshotter → keys
		for _, o := range h.containersIn(cl, ns) {
			if o.info.SnapshotKey == "" {
				continue
			}
			sn := o.info.Snapshotter
			if sn == "" {
				sn = defaults.DefaultSnapshotter
			}
			keys[sn] = append(keys[sn], o.info.SnapshotKey)
		}
		for _, sn := range slices.Sorted(maps.Keys(keys)) {
			want := keys[sn]
			sort.Strings(want)
			active, err := activeSnapshots(cl, ns, sn)
			if err != nil {
				t.Errorf("invariant: %v", err)
				continue
			}
			if diff := cmp.Diff(want, active, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("invariant: %s snapshots in %s are not the containers' snapshot keys (-container keys +active snapshots):\n%s", sn, ns, diff)
			}
		}
	}
}

// activeSnapshots lists the snapshots of snapshotter sn in ns that are not
// committed (image layers are), sorted.
func activeSnapshots(cl *containerd.Client, ns, sn string) ([]string, error) {
	ctx, cancel := nsContext(ns)
	defer cancel()
	var out []string
	err := cl.SnapshotService(sn).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			out = append(out, info.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s snapshots in %s: %w", sn, ns, err)
	}
	sort.Strings(out)
	return out, nil
}
