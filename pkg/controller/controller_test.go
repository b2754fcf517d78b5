package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
	"github.com/kukeon/reconciler/pkg/testenv"
)

const busybox = "docker.io/library/busybox:latest"

// env is a reconciler over the in-memory runtime and cgroup tree, linked
// so that running tasks are processes of their container cgroups and the
// kernel's rules (no internal processes, EBUSY on rmdir) hold; it reads
// manifests from a temp dir.
type env struct {
	t     *testing.T
	rt    *ctrfake.Runtime
	cg    *ctrfake.Cgroups
	dir   string
	state string
	rc    *Reconciler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cg := ctrfake.NewCgroups("cpu", "cpuset", "hugetlb", "io", "memory", "pids")
	e := &env{
		t:     t,
		rt:    ctrfake.NewRuntime(ctrfake.WithImages(busybox), ctrfake.WithCgroups(cg)),
		cg:    cg,
		dir:   t.TempDir(),
		state: t.TempDir(),
	}
	e.rc = &Reconciler{
		Runtime: e.rt,
		Cgroups: e.cg,
		Loader:  manifest.NewLoader(manifest.Options{}),
		Opts: Options{
			Manifests: []string{e.dir},
			StateDir:  e.state,
			Hierarchy: hierarchy.Options{CgroupRoot: "/kukeon"},
			Prune:     true,
			Workers:   4,
		},
	}
	return e
}

// write sets manifest file name to content ("" removes it).
func (e *env) write(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if content == "" {
		if err := os.Remove(p); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) pass() *PassResult {
	e.t.Helper()
	pr := e.rc.Pass(context.Background())
	if pr.Err != nil {
		e.t.Fatalf("pass: %v", pr.Err)
	}
	for _, o := range pr.Outcomes {
		if o.Err != nil {
			e.t.Fatalf("pass: %s: %v", o.Change.Key, o.Err)
		}
	}
	return pr
}

func (e *env) plan() *Plan {
	e.t.Helper()
	pr := e.rc.Plan(context.Background())
	if pr.Err != nil {
		e.t.Fatalf("plan: %v", pr.Err)
	}
	return pr.Plan
}

// containers lists our containers in ns.
func (e *env) containers(ns string) []ctr.Container {
	e.t.Helper()
	cs, err := e.rt.ListContainers(context.Background(), ns)
	if err != nil {
		e.t.Fatalf("ListContainers(%s): %v", ns, err)
	}
	return cs
}

// exists reports whether cgroup group exists.
func (e *env) exists(group string) bool {
	e.t.Helper()
	ok, err := e.cg.Exists(group)
	if err != nil {
		e.t.Fatalf("Exists(%s): %v", group, err)
	}
	return ok
}

// mutations counts mutating runtime calls and cgroup writes.
func (e *env) mutations() int {
	n := int(e.cg.Writes())
	for _, c := range e.rt.Calls() {
		n += c
	}
	return n
}

// assertConverged plans again and expects nothing to do, and a pass that
// touches nothing.
func (e *env) assertConverged() {
	e.t.Helper()
	if p := e.plan(); p.HasChanges() {
		e.t.Fatalf("second plan is not empty:\n%s", render(p))
	}
	before := e.mutations()
	e.pass()
	if after := e.mutations(); after != before {
		e.t.Fatalf("a pass over a converged host made %d mutating calls", after-before)
	}
}

// render prints a plan one change per line, with steps and container
// operations, for golden files.
func render(p *Plan) string {
	var b strings.Builder
	for _, ch := range p.Changes {
		fmt.Fprintf(&b, "%s %s", ch.Key, ch.Describe())
		if len(ch.Steps) > 0 {
			fmt.Fprintf(&b, " steps=%v", ch.Steps)
		}
		if len(ch.Delegate) > 0 {
			fmt.Fprintf(&b, " delegate=%v", ch.Delegate)
		}
		for _, w := range ch.Writes {
			fmt.Fprintf(&b, " write %s=%q (was %q)", w.File, w.New, w.Old)
		}
		b.WriteString("\n")
		for _, cc := range ch.Containers {
			fmt.Fprintf(&b, "  %s %s", cc.Action, cc.ContainerdID)
			if cc.Reason != "" {
				fmt.Fprintf(&b, " (%s)", cc.Reason)
			}
			b.WriteString("\n")
		}
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

// golden compares a rendered plan with testdata/plans/<name>.golden.
func golden(t *testing.T, name, got string) {
	t.Helper()
	testenv.Golden(t, filepath.Join("testdata", "plans", name+".golden"), got)
}

const labRealm = `kind: Realm
metadata: {name: lab}
spec:
  resources:
    memory: {max: 1Gi}
---
kind: Space
metadata: {name: web}
spec:
  realmId: lab
  resources:
    pids: {max: 1024}
---
kind: Stack
metadata: {name: blog}
spec: {realmId: lab, spaceId: web}
`

const frontendCell = `kind: Cell
metadata: {name: frontend, labels: {team: web}}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: httpd
      image: docker.io/library/busybox:latest
      command: httpd
      env: ["MODE=prod"]
      restartPolicy: always
    - id: sidecar
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["3600"]
`

const helloCell = `kind: Cell
metadata: {name: hello}
spec:
  realmId: default
  spaceId: default
  stackId: default
  containers:
    - {id: web, image: docker.io/library/busybox:latest, command: httpd, hostNetwork: true}
`

const workerCell = `kind: Cell
metadata: {name: worker}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: sandbox
      root: true
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["3600"]
    - id: job
      image: docker.io/library/busybox:latest
      command: sh
      restartPolicy: on-failure
      restartMaxRetries: 2
`

func (e *env) lab() {
	e.write("realm.yaml", labRealm)
	e.write("frontend.yaml", frontendCell)
	e.write("worker.yaml", workerCell)
}

func TestPlanner(t *testing.T) {
	tests := []struct {
		name string
		// before is applied and converged first (nil: start from nothing).
		before func(e *env)
		// change edits the manifests or the host before the plan under test.
		change func(e *env)
		// check runs after the plan was applied.
		check func(t *testing.T, e *env, pr *PassResult)
	}{
		{
			name:   "creates everything from nothing",
			change: func(e *env) { e.lab() },
			check: func(t *testing.T, e *env, pr *PassResult) {
				if cs := e.containers("lab.kukeon.io"); len(cs) != 5 {
					t.Errorf("got %d containers, want 5 (2 roots, 3 workloads)", len(cs))
				}
			},
		},
		{
			name:   "plans nothing over a converged host",
			before: func(e *env) { e.lab() },
			change: func(e *env) {},
		},
		{
			name:   "recreates only the container whose env changed",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.write("frontend.yaml", strings.Replace(frontendCell, "MODE=prod", "MODE=dev", 1)) },
		},
		{
			name:   "recreates the cell when its root container changes",
			before: func(e *env) { e.lab() },
			change: func(e *env) {
				e.write("worker.yaml", strings.Replace(workerCell, `args: ["3600"]`, `args: ["7200"]`, 1))
			},
		},
		{
			name:   "writes a changed level limit in place",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.write("realm.yaml", strings.Replace(labRealm, "max: 1024", "max: 2048", 1)) },
			check: func(t *testing.T, e *env, pr *PassResult) {
				got, err := e.cg.Read("/kukeon/lab/web", []string{"pids.max"})
				if err != nil {
					t.Fatal(err)
				}
				if got["pids.max"] != "2048" {
					t.Errorf("pids.max = %q, want 2048", got["pids.max"])
				}
			},
		},
		{
			name:   "updates labels in place",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.write("frontend.yaml", strings.Replace(frontendCell, "team: web", "team: blog", 1)) },
		},
		{
			name:   "prunes a cell whose file was removed, bottom-up",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.write("worker.yaml", "") },
			check: func(t *testing.T, e *env, pr *PassResult) {
				if e.exists("/kukeon/lab/web/blog/worker") {
					t.Error("the pruned cell's cgroup still exists")
				}
			},
		},
		{
			name:   "prunes the whole realm when every file is gone but one implied cell",
			before: func(e *env) { e.lab() },
			change: func(e *env) {
				e.write("realm.yaml", "")
				e.write("frontend.yaml", "")
				e.write("worker.yaml", "")
				e.write("hello.yaml", helloCell)
			},
		},
		{
			name:   "keeps the objects of a file that fails to parse",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.write("worker.yaml", workerCell+"\n  bad: [unclosed\n") },
			check: func(t *testing.T, e *env, pr *PassResult) {
				if _, ok := e.rt.Spec("lab.kukeon.io", "web_blog_worker_job"); !ok {
					t.Error("a container of the file that failed to parse was deleted")
				}
				if pr.OK() {
					t.Error("a pass with a manifest error reports OK")
				}
			},
		},
		{
			name:   "refuses to prune when nothing is desired",
			before: func(e *env) { e.lab() },
			change: func(e *env) {
				e.write("realm.yaml", "")
				e.write("frontend.yaml", "")
				e.write("worker.yaml", "")
			},
		},
		{
			name:   "implies undeclared parents",
			change: func(e *env) { e.write("frontend.yaml", frontendCell) },
		},
		{
			name:   "recreates a container deleted behind its back",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.rt.DeleteBehindBack("lab.kukeon.io", "web_blog_frontend_sidecar") },
		},
		{
			name:   "restarts an always container that exited",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.rt.Exit("lab.kukeon.io", "web_blog_frontend_httpd", 137) },
		},
		{
			name:   "leaves a never container that exited",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.rt.Exit("lab.kukeon.io", "web_blog_frontend_sidecar", 0) },
		},
		{
			name:   "recreates the cell when its root exits",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.rt.Exit("lab.kukeon.io", "web_blog_worker_root", 0) },
		},
		{
			name:   "rewrites a limit changed by hand",
			before: func(e *env) { e.lab() },
			change: func(e *env) { e.cg.SetFile("/kukeon/lab", "memory.max", "max") },
		},
		{
			name:   "recreates a level cgroup removed by hand",
			before: func(e *env) { e.write("realm.yaml", labRealm) },
			change: func(e *env) {
				if err := e.cg.Remove("/kukeon/lab/web/blog"); err != nil {
					e.t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.before != nil {
				tt.before(e)
				e.pass()
			}
			tt.change(e)
			p := e.plan()
			golden(t, strings.ReplaceAll(tt.name, " ", "-"), render(p))
			pr := e.pass()
			if tt.check != nil {
				tt.check(t, e, pr)
			}
			e.assertConverged()
		})
	}
}

func TestForeignContainersAreNeverTouched(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	e.rt.AddForeignContainer("lab.kukeon.io", "web_blog_frontend_intruder", busybox)
	e.write("frontend.yaml", "")
	e.pass()
	e.assertConverged()
	if _, ok := e.rt.Spec("lab.kukeon.io", "web_blog_frontend_intruder"); !ok {
		t.Fatal("a container without our label was deleted")
	}
}

func TestOnFailureGivesUpAfterMaxRetries(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	id := "web_blog_worker_job"
	for i := 1; i <= 3; i++ {
		e.rt.Exit("lab.kukeon.io", id, 3)
		pr := e.pass()
		st := cellOf(pr.Status, "Cell lab/web/blog/worker")
		c := st.Containers[1]
		if i <= 2 {
			if c.RestartCount != i || c.State != ContainerRunning {
				t.Fatalf("after exit %d: restartCount=%d state=%s, want %d Running", i, c.RestartCount, c.State, i)
			}
			continue
		}
		if st.State != StateFailed || c.State != ContainerFailed || c.ExitCode == nil || *c.ExitCode != 3 {
			t.Fatalf("after exit %d: cell %s container %s exit %v, want Failed with exit code 3", i, st.State, c.State, c.ExitCode)
		}
	}
}

func TestApplyBlocksChildrenOfAFailedParent(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.rt.FailNext("EnsureNamespace", fmt.Errorf("boom: %w", ctr.ErrUnavailable))
	pr := e.rc.Pass(context.Background())
	if pr.OK() {
		t.Fatal("pass is OK although the realm failed")
	}
	got := map[string]string{}
	for _, o := range pr.Status.Objects {
		got[o.Key] = o.State
	}
	want := map[string]string{
		"Realm lab": StateFailed, "Space lab/web": StateBlocked, "Stack lab/web/blog": StateBlocked,
		"Cell lab/web/blog/frontend": StateBlocked, "Cell lab/web/blog/worker": StateBlocked,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	e.pass()
	e.assertConverged()
}

func cellOf(st *Status, key string) ObjectStatus {
	for _, o := range st.Objects {
		if o.Key == key {
			return o
		}
	}
	return ObjectStatus{}
}

func TestAutoDeleteRemovesACompletedCellUntilItsSpecChanges(t *testing.T) {
	e := newEnv(t)
	batch := `kind: Cell
metadata: {name: batch}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  autoDelete: true
  containers:
    - {id: job, image: docker.io/library/busybox:latest, command: /bin/true}
`
	e.write("realm.yaml", labRealm)
	e.write("batch.yaml", batch)
	e.pass()
	e.rt.Exit("lab.kukeon.io", "web_blog_batch_job", 0)
	golden(t, "autodelete-completed", render(e.plan()))
	pr := e.pass()
	if st := cellOf(pr.Status, "Cell lab/web/blog/batch"); st.State != StateCompleted {
		t.Fatalf("cell state %s, want %s", st.State, StateCompleted)
	}
	if !pr.OK() {
		t.Fatalf("a pass that completed an autoDelete cell is not OK: %v", pr.Errors())
	}
	if cs := e.containers("lab.kukeon.io"); len(cs) != 0 {
		t.Fatalf("containers left after autoDelete: %v", cs)
	}
	e.assertConverged()

	e.write("batch.yaml", strings.Replace(batch, "/bin/true", "/bin/false", 1))
	p := e.plan()
	if ch := p.Changes[len(p.Changes)-1]; ch.Key != "Cell lab/web/blog/batch" || ch.Action == ActionUnchanged {
		t.Fatalf("a changed spec does not run the completed cell again:\n%s", render(p))
	}
}

func TestAutoDeleteKeepsACellWhoseJobFailed(t *testing.T) {
	e := newEnv(t)
	e.write("realm.yaml", labRealm)
	e.write("batch.yaml", `kind: Cell
metadata: {name: batch}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  autoDelete: true
  containers:
    - {id: job, image: docker.io/library/busybox:latest, command: /bin/false}
`)
	e.pass()
	e.rt.Exit("lab.kukeon.io", "web_blog_batch_job", 1)
	if p := e.plan(); p.Disruptive() {
		t.Fatalf("a failed job's cell is deleted:\n%s", render(p))
	}
}

func TestRefusesToMoveARealmToAnotherNamespace(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	e.write("realm.yaml", strings.Replace(labRealm, "metadata: {name: lab}\nspec:\n", "metadata: {name: lab}\nspec:\n  namespace: elsewhere\n", 1))
	pr := e.rc.Pass(context.Background())
	if pr.OK() {
		t.Fatal("a namespace change passed")
	}
	got := map[string]string{}
	for _, o := range pr.Status.Objects {
		got[o.Key] = o.State
	}
	if got["Realm lab"] != StateFailed || got["Cell lab/web/blog/frontend"] != StateBlocked {
		t.Fatalf("states = %v, want the realm Failed and its cells Blocked", got)
	}
	inv, err := LoadInventory(e.rc.inventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	if ns := inv.Objects["Cell lab/web/blog/frontend"].Namespace; ns != "lab.kukeon.io" {
		t.Fatalf("the blocked cell's record moved to namespace %q", ns)
	}
	if cs := e.containers("lab.kukeon.io"); len(cs) != 5 {
		t.Fatalf("%d containers left in the old namespace, want all 5 untouched", len(cs))
	}
}

func TestChangingACellIDReplacesItsContainers(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	e.write("worker.yaml", strings.Replace(workerCell, "metadata: {name: worker}\nspec:\n", "metadata: {name: worker}\nspec:\n  id: wk\n", 1))
	if p := e.plan(); !p.Disruptive() {
		t.Fatalf("a cell id change is not a recreate:\n%s", render(p))
	}
	e.pass()
	cs := e.containers("lab.kukeon.io")
	var ids []string
	for _, c := range cs {
		if c.Labels["kukeon.io/cell"] != "frontend" {
			ids = append(ids, c.ID)
		}
	}
	if diff := cmp.Diff([]string{"web_blog_wk_job", "web_blog_wk_root"}, ids); diff != "" {
		t.Errorf("worker containers (-want +got):\n%s", diff)
	}
	e.assertConverged()
}

func TestPruneGuards(t *testing.T) {
	empty := func(e *env) {
		e.write("realm.yaml", "")
		e.write("frontend.yaml", "")
		e.write("worker.yaml", "")
	}
	tests := []struct {
		name       string
		opts       func(o *Options)
		change     func(e *env)
		wantPruned bool
	}{
		{"--allow-empty lets an empty directory prune everything", func(o *Options) { o.AllowEmpty = true }, empty, true},
		{"--prune=false keeps a removed cell", func(o *Options) { o.Prune = false }, func(e *env) { e.write("worker.yaml", "") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.lab()
			e.pass()
			tt.opts(&e.rc.Opts)
			tt.change(e)
			e.pass()
			_, kept := e.rt.Spec("lab.kukeon.io", "web_blog_worker_job")
			if kept == tt.wantPruned {
				t.Errorf("worker kept = %v, want pruned = %v", kept, tt.wantPruned)
			}
			if tt.wantPruned && e.exists("/kukeon/lab") {
				t.Error("the realm cgroup survived a prune of everything")
			}
		})
	}

	t.Run("a recorded kuke-system object is never pruned", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		e.pass()
		inv, err := LoadInventory(e.rc.inventoryPath())
		if err != nil {
			t.Fatal(err)
		}
		inv.Objects["Realm kuke-system"] = &Record{Kind: "Realm", Realm: "kuke-system", Namespace: "kuke-system.kukeon.io", Cgroup: "/kukeon/kuke-system"}
		if err := inv.Save(e.rc.inventoryPath(), false); err != nil {
			t.Fatal(err)
		}
		for _, ch := range e.plan().Changes {
			if ch.Key == "Realm kuke-system" {
				t.Fatalf("plan touches kuke-system: %s %s", ch.Key, ch.Describe())
			}
		}
	})
}

// TestPruneOrderUnderCgroupRules prunes a realm whose tasks are processes of
// their container cgroups, so the fake refuses, as the kernel does, to
// remove a cgroup that still holds one (ErrNotEmpty): the prune must delete
// each cell's workloads, then its root (the workloads live in its
// namespaces), and only then remove the cgroups, deepest first.
func TestPruneOrderUnderCgroupRules(t *testing.T) {
	e := newEnv(t)
	e.lab()
	e.pass()
	const ns = "lab.kukeon.io"

	// The rules are in force: every task is in its container's cgroup,
	// and the realm's cgroup cannot go while they run.
	before := e.containers(ns)
	if len(before) != 5 {
		t.Fatalf("got %d containers before the prune, want 5", len(before))
	}
	for _, c := range before {
		spec, ok := e.rt.Spec(ns, c.ID)
		if !ok || spec.CgroupsPath == "" {
			t.Fatalf("container %s has no cgroups path (spec found: %v)", c.ID, ok)
		}
		procs, err := e.cg.Procs(spec.CgroupsPath)
		if err != nil {
			t.Fatalf("Procs(%s): %v", spec.CgroupsPath, err)
		}
		if !slices.Contains(procs, int(c.Task.PID)) {
			t.Fatalf("cgroup %s holds %v, want the task of %s (pid %d)", spec.CgroupsPath, procs, c.ID, c.Task.PID)
		}
	}
	if err := e.cg.Remove("/kukeon/lab"); !errors.Is(err, ctr.ErrNotEmpty) {
		t.Fatalf("Remove(/kukeon/lab) with running tasks = %v, want ErrNotEmpty", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := e.rt.Events(ctx)
	e.write("realm.yaml", "")
	e.write("frontend.yaml", "")
	e.write("worker.yaml", "")
	e.write("hello.yaml", helloCell) // something is desired: the prune is not refused
	e.pass()                         // fails the test on any error, ErrNotEmpty included

	// Each cell's root is deleted after all its workloads.
	deleted := map[string]int{} // container ID → position among the deletions
	for len(events) > 0 {
		if ev := <-events; ev.Kind == ctr.EventContainerDelete && ev.Namespace == ns {
			deleted[ev.ContainerID] = len(deleted)
		}
	}
	for _, root := range before {
		if root.Labels[ctr.LabelContainerType] != "root" {
			continue
		}
		for _, w := range before {
			if w.Labels[ctr.LabelCell] != root.Labels[ctr.LabelCell] || w.ID == root.ID {
				continue
			}
			if deleted[w.ID] > deleted[root.ID] {
				t.Errorf("cell %s: root %s deleted before its workload %s (deletions %v)", root.Labels[ctr.LabelCell], root.ID, w.ID, deleted)
			}
		}
	}
	if len(deleted) != len(before) {
		t.Errorf("deleted %v, want all %d containers of realm lab", deleted, len(before))
	}
	if e.exists("/kukeon/lab") {
		t.Error("the pruned realm's cgroup still exists")
	}
	e.assertConverged()
}
