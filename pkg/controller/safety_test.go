package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

func TestAStateFileThatIsNotAnInventoryStopsThePass(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"torn JSON", `{"version": 1, "objects": {"Cell a`, "unexpected end of JSON input"},
		{"null", `null`, "unknown version 0"},
		{"an empty object", `{}`, "unknown version 0"},
		{"an unknown version", `{"version": 99, "objects": {}}`, "unknown version 99"},
		{"no objects map", `{"version": 1}`, `no "objects" map`},
		{"a null object", `{"version": 1, "objects": {"Realm lab": null}}`, `object "Realm lab" is null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.lab()
			e.pass()
			if err := os.WriteFile(e.rc.inventoryPath(), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			e.write("worker.yaml", "") // a prune would be planned on an empty inventory... or not at all
			before := e.mutations()
			pr := e.rc.Pass(context.Background())
			if pr.Err == nil || !strings.Contains(pr.Err.Error(), e.rc.inventoryPath()) || !strings.Contains(pr.Err.Error(), tt.want) {
				t.Fatalf("pass error = %v, want one naming %s and %q", pr.Err, e.rc.inventoryPath(), tt.want)
			}
			if pr.OK() {
				t.Error("the pass is OK")
			}
			if n := e.mutations() - before; n != 0 {
				t.Errorf("the pass made %d mutating calls on an unreadable inventory", n)
			}
			if dr := e.rc.Plan(context.Background()); dr.Err == nil {
				t.Error("--dry-run planned on an unreadable inventory")
			}
		})
	}
}

// failWrites makes every state file write fail with err until the returned
// func is called.
func failWrites(t *testing.T, err error) (restore func()) {
	t.Helper()
	orig := writeStateFile
	writeStateFile = func(path string, _ []byte) error { return &os.PathError{Op: "write", Path: path, Err: err} }
	restore = func() { writeStateFile = orig }
	t.Cleanup(restore)
	return restore
}

func TestAnUnwritableStateDirStopsThePhaseBeforeItActs(t *testing.T) {
	t.Run("nothing is created when the inventory cannot be written", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		failWrites(t, syscall.ENOSPC)
		pr := e.rc.Pass(context.Background())
		if pr.Err == nil || !strings.Contains(pr.Err.Error(), e.rc.inventoryPath()) || !errors.Is(pr.Err, syscall.ENOSPC) {
			t.Fatalf("pass error = %v, want ENOSPC naming %s", pr.Err, e.rc.inventoryPath())
		}
		if cs, err := e.rt.ListContainers(context.Background(), "lab.kukeon.io"); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Fatal(err)
		} else if len(cs) != 0 {
			t.Errorf("%d containers created without a record", len(cs))
		}
		if ok, err := e.cg.Exists("/kukeon/lab"); err != nil || ok {
			t.Errorf("realm cgroup exists = %v (%v), want nothing created", ok, err)
		}
	})

	t.Run("nothing is pruned when the inventory cannot be written", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		e.pass()
		e.write("worker.yaml", "")
		failWrites(t, syscall.EROFS)
		pr := e.rc.Pass(context.Background())
		if pr.Err == nil || !errors.Is(pr.Err, syscall.EROFS) {
			t.Fatalf("pass error = %v, want EROFS", pr.Err)
		}
		if _, ok := e.rt.Spec("lab.kukeon.io", "web_blog_worker_job"); !ok {
			t.Error("the worker was pruned while its deletion could not be recorded")
		}
	})

	t.Run("the next pass after the disk is fixed converges", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		restore := failWrites(t, syscall.ENOSPC)
		if pr := e.rc.Pass(context.Background()); pr.Err == nil {
			t.Fatal("pass on a full disk succeeded")
		}
		restore()
		e.pass()
		e.assertConverged()
	})
}

func TestARefusedChangeIsReportedOnceAndNotRetried(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	e.write("realm.yaml", strings.Replace(labRealm, "metadata: {name: lab}\nspec:\n", "metadata: {name: lab}\nspec:\n  namespace: elsewhere\n", 1))
	for i := range 3 {
		pr := e.rc.Pass(context.Background())
		var realm, cell *Outcome
		for j := range pr.Outcomes {
			switch pr.Outcomes[j].Change.Key {
			case "Realm lab":
				realm = &pr.Outcomes[j]
			case "Cell lab/web/blog/frontend":
				cell = &pr.Outcomes[j]
			}
		}
		if realm == nil || !IsRefused(realm.Err) || !realm.Terminal {
			t.Fatalf("resync %d: realm outcome = %+v, want a terminal refusal", i, realm)
		}
		if cell == nil || cell.Blocked == "" || !cell.Terminal {
			t.Fatalf("resync %d: cell outcome = %+v, want blocked by the refused realm, terminal", i, cell)
		}
		if st := cellOf(pr.Status, "Realm lab"); st.State != StateFailed || !strings.Contains(st.Message, "namespace changed") {
			t.Errorf("resync %d: realm status = %s %q", i, st.State, st.Message)
		}
	}
}

func TestTheDaemonLogsARefusedChangeOnceOverResyncs(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	e.write("realm.yaml", strings.Replace(labRealm, "metadata: {name: lab}\nspec:\n", "metadata: {name: lab}\nspec:\n  namespace: elsewhere\n", 1))
	var mu sync.Mutex
	var lines []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		lines = append(lines, args)
		mu.Unlock()
	}, funcr.Options{})
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), log))
	passes := make(chan bool, 100)
	d := &Daemon{Reconciler: e.rc, Resync: 20 * time.Millisecond,
		OnPass: func(pr *PassResult, full bool, _ int) {
			if full {
				passes <- true
			}
		}}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for range 4 {
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatal("no full pass within 10s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	refused, failed := 0, 0
	for _, l := range lines {
		if strings.Contains(l, "change refused") && strings.Contains(l, `"Realm lab"`) {
			refused++
		}
		if strings.Contains(l, "reconcile failed") || strings.Contains(l, "reconcile blocked") {
			failed++
		}
	}
	if refused != 1 || failed != 0 {
		t.Errorf("over 4 passes: %d 'change refused' lines for the realm (want 1) and %d retry lines (want 0):\n%s", refused, failed, strings.Join(lines, "\n"))
	}
}

// keptOf returns the plan's kept entry for key.
func keptOf(p *Plan, key string) (Kept, bool) {
	for _, k := range p.Kept {
		if k.Key == key {
			return k, true
		}
	}
	return Kept{}, false
}

func TestOnlyPositivelyUndeclaredObjectsArePruned(t *testing.T) {
	const worker = "Cell lab/web/blog/worker"
	workerRuns := func(e *env) bool {
		_, ok := e.rt.Spec("lab.kukeon.io", "web_blog_worker_job")
		return ok
	}
	for _, content := range []string{"", "---\n", "# all commented out\n"} {
		t.Run(fmt.Sprintf("a file emptied to %q keeps its cells until it is deleted", content), func(t *testing.T) {
			e := newEnv(t)
			e.lab()
			e.pass()
			if err := os.WriteFile(filepath.Join(e.dir, "worker.yaml"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			pr := e.rc.Pass(context.Background())
			if !workerRuns(e) {
				t.Fatal("the worker was pruned because its file was emptied")
			}
			k, ok := keptOf(pr.Plan, worker)
			if !ok || k.Why != KeptUnsafe || !strings.Contains(k.Reason, "worker.yaml declares no objects") {
				t.Errorf("kept = %+v, want the worker kept for its emptied file", k)
			}
			if pr.OK() {
				t.Error("a pass that keeps an orphan for safety is OK")
			}
			if st := cellOf(pr.Status, worker); st.State != StateOrphaned || !strings.HasPrefix(st.Message, "kept: ") || len(st.Containers) != 2 {
				t.Errorf("status = %s %q with %d containers, want Orphaned, kept: …, both containers", st.State, st.Message, len(st.Containers))
			}
			if !slices.ContainsFunc(pr.Plan.Warnings, func(w string) bool { return strings.Contains(w, "worker.yaml declares no objects") }) {
				t.Errorf("warnings %q do not name the emptied file", pr.Plan.Warnings)
			}
			e.write("worker.yaml", "")
			e.pass()
			if workerRuns(e) {
				t.Error("the worker was not pruned after its file was deleted")
			}
		})
	}

	t.Run("cells under a refused realm are kept", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		e.pass()
		e.write("realm.yaml", strings.Replace(labRealm, "metadata: {name: lab}\nspec:\n", "metadata: {name: lab}\nspec:\n  namespace: elsewhere\n", 1))
		e.write("worker.yaml", "")
		pr := e.rc.Pass(context.Background())
		if !workerRuns(e) {
			t.Fatal("the worker was pruned under a refused realm")
		}
		if k, _ := keptOf(pr.Plan, worker); !strings.Contains(k.Reason, "Realm lab is refused") {
			t.Errorf("kept reason = %q, want the refused realm", k.Reason)
		}
	})

	t.Run("objects under a failed directory or an excluded parent are kept", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		e.pass()
		e.write("worker.yaml", "")
		pr := e.rc.Plan(context.Background())
		inv, err := LoadInventory(e.rc.inventoryPath())
		if err != nil {
			t.Fatal(err)
		}
		obs, err := (&Observer{Runtime: e.rt, Cgroups: e.cg, Workers: 1}).Observe(context.Background(), pr.Tree, inv)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name string
			in   func(*PlanInput)
			want string
		}{
			{"failed dir", func(in *PlanInput) { in.Sources.Failed = map[string]bool{e.dir: true} }, "failed to load"},
			{"excluded stack", func(in *PlanInput) { in.Excluded = map[string]string{"Stack lab/web/blog": "duplicate"} }, "Stack lab/web/blog is excluded: duplicate"},
			{"excluded realm", func(in *PlanInput) { in.Excluded = map[string]string{"Realm lab": "namespace clash"} }, "Realm lab is excluded: namespace clash"},
		} {
			in := PlanInput{Desired: pr.Tree, Observed: obs, Inventory: inv, Prune: true, Now: time.Now()}
			tt.in(&in)
			p := ComputePlan(in)
			if k, ok := keptOf(p, worker); !ok || !strings.Contains(k.Reason, tt.want) {
				t.Errorf("%s: kept = %+v, want a reason with %q", tt.name, k, tt.want)
			}
			for _, ch := range p.Changes {
				if ch.Action == ActionDeleted {
					t.Errorf("%s: %s planned for deletion", tt.name, ch.Key)
				}
			}
		}
	})

	t.Run("deletions wait for the prune grace; creates do not", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		e.pass()
		e.rc.Opts.PruneGrace = time.Hour
		e.write("worker.yaml", "")
		e.write("hello.yaml", helloCell)
		pr := e.rc.Reconcile(context.Background(), PassScope{})
		if !workerRuns(e) {
			t.Fatal("the worker was pruned within the grace")
		}
		if _, ok := e.rt.Spec("default.kukeon.io", "default_default_hello_web"); !ok {
			t.Error("a new cell waited for the prune grace")
		}
		if k, _ := keptOf(pr.Plan, worker); k.Why != KeptDeferred || pr.Plan.RequeueAfter <= 0 || !pr.OK() {
			t.Errorf("kept = %+v, requeue %s, ok %v: want deferred, a requeue, and an OK pass", k, pr.Plan.RequeueAfter, pr.OK())
		}
		if dr := e.rc.Plan(context.Background()); !slices.ContainsFunc(dr.Plan.Changes, func(c Change) bool { return c.Key == worker && c.Action == ActionDeleted }) {
			t.Error("--dry-run does not predict the deferred deletion")
		}
		later := time.Now().Add(2 * time.Hour)
		e.rc.Opts.Now = func() time.Time { return later }
		e.rc.Reconcile(context.Background(), PassScope{})
		if workerRuns(e) {
			t.Error("the worker survived once the manifests were quiet")
		}
	})

	t.Run("a lost inventory is rebuilt from labels, so undeclared cells are still pruned", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		e.pass()
		if err := os.Remove(e.rc.inventoryPath()); err != nil {
			t.Fatal(err)
		}
		e.write("worker.yaml", "")
		pr := e.pass()
		if workerRuns(e) {
			t.Error("an undeclared cell survived a lost inventory")
		}
		if !slices.ContainsFunc(pr.Plan.Warnings, func(w string) bool { return strings.Contains(w, "rebuilt from the labels of 5 containers") }) {
			t.Errorf("warnings %q do not say the inventory was rebuilt", pr.Plan.Warnings)
		}
		e.assertConverged()
	})
}

func TestStatusCarriesEachLevelsCgroupUsage(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.rc.Opts.Usage = true
	e.pass()
	e.cg.SetFile("/kukeon/lab/web/blog/frontend", "memory.current", "8192")
	pr := e.pass()
	st := cellOf(pr.Status, "Cell lab/web/blog/frontend")
	if st.Usage == nil || st.Usage.MemoryBytes != 8192 {
		t.Fatalf("frontend usage = %+v, want memory 8192", st.Usage)
	}
	if st := cellOf(pr.Status, "Realm lab"); st.Usage == nil {
		t.Error("the realm has no usage")
	}
	e.rc.Opts.Usage = false
	if st := cellOf(e.pass().Status, "Cell lab/web/blog/frontend"); st.Usage != nil {
		t.Error("usage read with Options.Usage off")
	}
}

func TestFieldDiffsShowOldAndNewValues(t *testing.T) {
	for _, tt := range []struct {
		name     string
		old, cur []string
		want     [2]string
	}{
		{"a changed entry", []string{"A=1", "B=2"}, []string{"A=2", "B=2"}, [2]string{"A=1", "A=2"}},
		{"an added entry", []string{"A=1"}, []string{"A=1", "C=3"}, [2]string{"", "C=3"}},
		{"a reorder", []string{"a", "b"}, []string{"b", "a"}, [2]string{"a b", "b a"}},
	} {
		if o, n := listDelta(tt.old, tt.cur); o != tt.want[0] || n != tt.want[1] {
			t.Errorf("%s: listDelta = %q → %q, want %q → %q", tt.name, o, n, tt.want[0], tt.want[1])
		}
	}
	for _, f := range []string{"password", "registryPassword", "secrets", "apiToken"} {
		if !sensitive(f) {
			t.Errorf("%s is not redacted", f)
		}
	}
	if sensitive("env") || sensitive("image") {
		t.Error("env or image is redacted")
	}
}
