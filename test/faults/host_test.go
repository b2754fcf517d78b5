package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/google/go-cmp/cmp"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/testenv"
)

// binary is the reconciler built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reconciler-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = testenv.BuildReconciler(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// deadline bounds every wait for the reconciler to get somewhere.
const deadline = 60 * time.Second

// Labels of the containers the reconciler creates (SPEC §3), spelled out
// here rather than imported: the suite checks the contract, not the code.
const (
	labelRealm     = "kukeon.io/realm"
	labelSpace     = "kukeon.io/space"
	labelStack     = "kukeon.io/stack"
	labelCell      = "kukeon.io/cell"
	labelManagedBy = "kukeon.io/managed-by"
)

// cell is one declared Cell: its place, its workload container ids (a root
// is synthesized) and the env of its first workload.
type cell struct {
	realm, space, stack, name string
	containers                []string
	env                       string
}

// newCell is a cell in realm/web/blog with one workload, app.
func newCell(realm, name string) cell {
	return cell{realm: realm, space: "web", stack: "blog", name: name, containers: []string{"app"}}
}

func (c cell) key() string {
	return "Cell " + c.realm + "/" + c.space + "/" + c.stack + "/" + c.name
}

// containerdIDs are the root's and the workloads' containerd IDs.
func (c cell) containerdIDs() []string {
	prefix := c.space + "_" + c.stack + "_" + c.name + "_"
	out := []string{prefix + "root"}
	for _, id := range c.containers {
		out = append(out, prefix+id)
	}
	return out
}

// doc renders the cell. Its workloads trap SIGTERM: a shell or sleep as
// PID 1 ignores it, and every delete would wait out the grace period.
func (c cell) doc() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kind: Cell\nmetadata: {name: %s}\nspec:\n  realmId: %s\n  spaceId: %s\n  stackId: %s\n  containers:\n",
		c.name, c.realm, c.space, c.stack)
	for i, id := range c.containers {
		fmt.Fprintf(&b, "    - id: %s\n      image: docker.io/library/busybox:latest\n      command: /bin/sh\n", id)
		b.WriteString("      args: [\"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n      restartPolicy: always\n")
		if i == 0 && c.env != "" {
			fmt.Fprintf(&b, "      env: [%q]\n", c.env)
		}
	}
	return b.String()
}

// realm is one declared Realm; namespace "" is the default <name>.<suffix>.
type realm struct{ name, namespace string }

func (r realm) doc() string {
	if r.namespace == "" {
		return fmt.Sprintf("kind: Realm\nmetadata: {name: %s}\n", r.name)
	}
	return fmt.Sprintf("kind: Realm\nmetadata: {name: %s}\nspec: {namespace: %s}\n", r.name, r.namespace)
}

// decl is what one manifest file declares.
type decl struct {
	realms []realm
	cells  []cell
}

func (d decl) render() string {
	var docs []string
	for _, r := range d.realms {
		docs = append(docs, r.doc())
	}
	for _, c := range d.cells {
		docs = append(docs, c.doc())
	}
	return strings.Join(docs, "---\n")
}

// foreign is a container the test planted in a realm's namespace: labelled
// like one of ours but without the managed-by label. The reconciler must
// never touch it.
type foreign struct {
	ns, id    string
	labels    map[string]string
	updatedAt time.Time
}

// host is a testenv.Host plus the model of what its manifests declare,
// kept by the test as it writes them.
type host struct {
	*testenv.Host
	t *testing.T
	*world
}

// world is what the test put on the host: the manifest files with what
// each declares, and the foreign containers it planted.
type world struct {
	files   map[string]decl
	foreign []foreign
}

func newHost(t *testing.T, opts testenv.HostOptions) *host {
	t.Helper()
	return &host{Host: testenv.NewHost(t, binary, opts), t: t, world: &world{files: map[string]decl{}}}
}

// in returns the host reporting to t, for use inside a subtest.
func (h *host) in(t *testing.T) *host {
	return &host{Host: h.Host.For(t), t: t, world: h.world}
}

// path is the absolute path of a manifest file.
func (h *host) path(file string) string { return filepath.Join(h.Manifests, file) }

// declare writes file with d's documents (through a temp file and a
// rename, as editors and sync tools do) and records it in the model.
func (h *host) declare(file string, d decl) {
	h.t.Helper()
	h.files[file] = d
	h.writeRaw(file, d.render())
}

// declareCells declares cells, one file each, named <cell>.yaml.
func (h *host) declareCells(cells ...cell) {
	h.t.Helper()
	for _, c := range cells {
		h.declare(c.name+".yaml", decl{cells: []cell{c}})
	}
}

// undeclare removes file and its objects from the model.
func (h *host) undeclare(file string) {
	h.t.Helper()
	delete(h.files, file)
	if err := os.Remove(h.path(file)); err != nil {
		h.t.Fatal(err)
	}
}

// restore writes file again from the model, after a test broke it.
func (h *host) restore(file string) {
	h.t.Helper()
	d, ok := h.files[file]
	if !ok {
		h.t.Fatalf("restore %s: not declared", file)
	}
	h.writeRaw(file, d.render())
}

// writeRaw replaces file with content atomically; the model is unchanged.
func (h *host) writeRaw(file, content string) {
	h.t.Helper()
	p := h.path(file)
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		h.t.Fatal(err)
	}
}

// model is the declared world: what the invariant expects.
type model struct {
	// objects maps inventory keys ("Cell lab/web/blog/c01") to what their
	// record must say; implied parents included.
	objects map[string]record
	// containers maps namespace → containerd ID → the container's cgroup.
	containers map[string]map[string]string
	// cgroups are the declared groups below the cgroup root, relative to
	// it: level dirs and container leaves.
	cgroups map[string]bool
}

// record is the part of an inventory record the invariant compares.
type record struct {
	Namespace  string
	Cgroup     string
	Containers []string
}

func (h *host) model() model {
	m := model{objects: map[string]record{}, containers: map[string]map[string]string{}, cgroups: map[string]bool{}}
	ns := map[string]string{}
	var realms []string
	var cells []cell
	for _, file := range slices.Sorted(maps.Keys(h.files)) {
		d := h.files[file]
		for _, r := range d.realms {
			ns[r.name] = r.namespace
			realms = append(realms, r.name)
		}
		cells = append(cells, d.cells...)
	}
	nsOf := func(r string) string {
		if ns[r] != "" {
			return ns[r]
		}
		return h.Namespace(r)
	}
	level := func(key, rel, namespace string) {
		m.objects[key] = record{Namespace: namespace, Cgroup: path.Join(h.CgroupRoot, rel)}
		m.cgroups[rel] = true
	}
	for _, r := range realms {
		level("Realm "+r, r, nsOf(r))
	}
	for _, c := range cells {
		n := nsOf(c.realm)
		level("Realm "+c.realm, c.realm, n)
		level("Space "+c.realm+"/"+c.space, path.Join(c.realm, c.space), n)
		level("Stack "+c.realm+"/"+c.space+"/"+c.stack, path.Join(c.realm, c.space, c.stack), n)
		rel := path.Join(c.realm, c.space, c.stack, c.name)
		rec := record{Namespace: n, Cgroup: path.Join(h.CgroupRoot, rel)}
		if m.containers[n] == nil {
			m.containers[n] = map[string]string{}
		}
		for _, id := range c.containerdIDs() {
			rec.Containers = append(rec.Containers, id)
			m.containers[n][id] = path.Join(h.CgroupRoot, rel, id)
			m.cgroups[path.Join(rel, id)] = true
		}
		sort.Strings(rec.Containers)
		m.objects[c.key()] = rec
		m.cgroups[rel] = true
	}
	return m
}

// client connects to the host's containerd; the caller closes it. Dial
// again after containerd restarts.
func (h *host) client() *containerd.Client {
	h.t.Helper()
	cl, err := containerd.New(h.Containerd.Address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		h.t.Fatalf("connect containerd: %v", err)
	}
	return cl
}

func nsContext(ns string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	return namespaces.WithNamespace(ctx, ns), cancel
}

// observed is one container as containerd has it, with its task.
type observed struct {
	info   containers.Container
	status tasktypes.Status // Status_UNKNOWN without a task
	pid    uint32
}

// namespaces lists containerd's namespaces.
func (h *host) namespaces(cl *containerd.Client) []string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		h.t.Fatalf("list namespaces: %v", err)
	}
	sort.Strings(nss)
	return nss
}

// containersIn returns every container of ns, ours or not, by ID.
func (h *host) containersIn(cl *containerd.Client, ns string) map[string]observed {
	h.t.Helper()
	ctx, cancel := nsContext(ns)
	defer cancel()
	list, err := cl.ContainerService().List(ctx)
	if err != nil {
		h.t.Fatalf("list containers in %s: %v", ns, err)
	}
	resp, err := cl.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		h.t.Fatalf("list tasks in %s: %v", ns, err)
	}
	tasks := map[string]*tasktypes.Process{}
	for _, p := range resp.Tasks {
		tasks[p.ID] = p
	}
	out := map[string]observed{}
	for _, c := range list {
		o := observed{info: c}
		if p := tasks[c.ID]; p != nil {
			o.status, o.pid = p.Status, p.Pid
		}
		out[c.ID] = o
	}
	return out
}

// tasks describes every container of every namespace as "ns/id" →
// "<status> pid=<pid>": two equal results mean nothing was created,
// deleted, stopped or replaced in between.
func (h *host) tasks() map[string]string {
	h.t.Helper()
	cl := h.client()
	defer cl.Close()
	out := map[string]string{}
	for _, ns := range h.namespaces(cl) {
		for id, o := range h.containersIn(cl, ns) {
			out[ns+"/"+id] = fmt.Sprintf("%s pid=%d", taskState(o), o.pid)
		}
	}
	return out
}

func taskState(o observed) string {
	if o.pid == 0 && o.status == tasktypes.Status_UNKNOWN {
		return "no task"
	}
	return strings.ToLower(strings.TrimPrefix(o.status.String(), "Status_"))
}

// ours counts the containers of ns that carry our managed-by label.
func (h *host) ours(cl *containerd.Client, ns string) int {
	ctx, cancel := nsContext(ns)
	defer cancel()
	list, err := cl.ContainerService().List(ctx, fmt.Sprintf("labels.%q==reconciler", labelManagedBy))
	if err != nil {
		return -1 // containerd restarting: the caller polls again
	}
	return len(list)
}

// plantForeign creates a container in ns that the reconciler did not
// create: named and labelled like one of a cell's, without the managed-by
// label, without a task or snapshot. The invariant checks it is untouched.
func (h *host) plantForeign(ns, id string, c cell) {
	h.t.Helper()
	cl := h.client()
	defer cl.Close()
	ctx, cancel := nsContext(ns)
	defer cancel()
	labels := map[string]string{labelRealm: c.realm, labelSpace: c.space, labelStack: c.stack, labelCell: c.name}
	if _, err := cl.NewContainer(ctx, id, containerd.WithNewSpec(), containerd.WithContainerLabels(labels)); err != nil {
		h.t.Fatalf("plant foreign container %s/%s: %v", ns, id, err)
	}
	got, err := cl.ContainerService().Get(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	h.foreign = append(h.foreign, foreign{ns: ns, id: id, labels: got.Labels, updatedAt: got.UpdatedAt})
}

// converge is the "one more --once pass" every case ends with, then the
// invariant. A failing pass is reported, and the invariant still checked:
// it says what the pass left behind.
func converge(t *testing.T, h *host) {
	t.Helper()
	if out, code := h.Run("--once"); code != 0 {
		t.Errorf("the converging --once exited %d, want 0:\n%s", code, out)
	}
	checkInvariant(t, h)
}

// failingPass runs --once on a host the test broke and checks that it
// exits 1, with output naming mention when that is set, and that no
// container was created, deleted, stopped or replaced since before.
func failingPass(t *testing.T, h *host, before map[string]string, what, mention string) {
	t.Helper()
	out, code := h.Run("--once")
	if code != 1 || !strings.Contains(out, mention) {
		want := "1"
		if mention != "" {
			want += " with an error naming " + mention
		}
		t.Errorf("--once with %s: exit %d, want %s:\n%s", what, code, want, out)
	}
	expectUnchanged(t, h, before, what)
}

// expectUnchanged reports every container created, deleted, stopped or
// replaced since before was taken.
func expectUnchanged(t *testing.T, h *host, before map[string]string, what string) {
	t.Helper()
	if diff := cmp.Diff(before, h.tasks()); diff != "" {
		t.Errorf("with %s, containers changed; nothing may be created, deleted or replaced (-before +after):\n%s", what, diff)
	}
}

// status runs `reconciler status -o json` on the host's state dir.
func (h *host) status() *controller.Status {
	h.t.Helper()
	out, err := exec.Command(h.Binary, "status", "-o", "json", "--state-dir", h.State).CombinedOutput()
	if err != nil {
		h.t.Fatalf("reconciler status: %v\n%s", err, out)
	}
	var st controller.Status
	if err := json.Unmarshal(out, &st); err != nil {
		h.t.Fatalf("reconciler status -o json: %v\n%s", err, out)
	}
	return &st
}

// seeded returns a random source seeded from FAULTS_SEED when set, else the
// clock; the seed is logged so a failing run can be repeated.
func seeded(t *testing.T) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (repeat with FAULTS_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed))
}
