package integration

// Promises of the README pinned on the real binary, containerd and cgroup
// tree: every row of the exit-code table, a root exit that recreates its
// cell, and a no-op pass that writes nothing.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// cellYAML is a Cell named name in lab/web/blog with one workload app
// running command (a shell line) under restartPolicy policy. extra is
// appended to app's keys (indented already).
func cellYAML(name, policy, command, extra string) string {
	return fmt.Sprintf(`kind: Cell
metadata: {name: %s}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: app
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", %q]
      restartPolicy: %s
      stopGracePeriodSeconds: 1
%s`, name, command, policy, extra)
}

// TestOnceExitCodes: "--once: 0 converged, 1 anything failed (a manifest
// error, a failed action, …)"; the container not running within --timeout
// is TestOnceWaitsForContainersUpToTimeout.
func TestOnceExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		wantCode int
		// wantOut are lines or parts of lines of the output.
		wantOut []string
	}{
		{
			name:     "0 when every container runs",
			files:    map[string]string{"ok.yaml": cellYAML("ok", "always", "exec sleep 3600", "")},
			wantCode: 0,
			wantOut:  []string{"Cell lab/web/blog/ok created"},
		},
		{
			name: "1 on a manifest error, though the other files converge",
			files: map[string]string{
				"ok.yaml":  cellYAML("ok", "always", "exec sleep 3600", ""),
				"bad.yaml": cellYAML("bad", "sometimes", "exec sleep 3600", ""),
			},
			wantCode: 1,
			wantOut:  []string{"bad.yaml:12:22: Cell lab/web/blog/bad: spec.containers[0].restartPolicy", "Cell lab/web/blog/ok created"},
		},
		{
			name: "1 on a failed action: an image absent under imagePullPolicy Never",
			files: map[string]string{"absent.yaml": strings.Replace(cellYAML("absent", "always", "exec sleep 3600", "      imagePullPolicy: Never\n"),
				"busybox:latest", "absent:latest", 1)},
			wantCode: 1,
			wantOut:  []string{"Cell lab/web/blog/absent failed: ", "docker.io/library/absent:latest", "pull policy Never"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t)
			for name, content := range tt.files {
				h.writeFile(name, content)
			}
			out := h.mustRun(tt.wantCode, "--once")
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
		})
	}
}

// TestOnceWaitsForContainersUpToTimeout: "--once … 1 anything failed (… a
// container not running within --timeout)". Cell crash's workload exits
// at once under restartPolicy always, which --once does not restart: it
// waits out the whole --timeout, then exits 1 naming the container.
// --workers 1 converges the cells one after the other, crash first, so it
// has exited long before the readiness wait starts and is never seen
// running (a container that exits after that first look is ready as far as
// --once can tell).
func TestOnceWaitsForContainersUpToTimeout(t *testing.T) {
	const timeout = 8 * time.Second
	tests := []struct {
		name    string
		command string
		wantOut string
	}{
		{name: "an always container that exited with code 3", command: "exit 3",
			wantOut: "not ready: Cell lab/web/blog/crash: container app is exited with code 3"},
		// Fails today: notReady (wait.go) skips every container exited
		// with code 0, whatever its policy, so --once exits 0 although
		// this always container is not running.
		{name: "an always container that exited with code 0", command: "exit 0",
			wantOut: "not ready: Cell lab/web/blog/crash: container app is exited with code 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &daemonHost{host: newHost(t)}
			h.writeFile("crash.yaml", cellYAML("crash", "always", tt.command, ""))
			var slow []string
			for _, name := range []string{"slow-a", "slow-b", "slow-c"} {
				h.writeFile(name+".yaml", cellYAML(name, "always", "exec sleep 3600", ""))
				slow = append(slow, cellContainerIDs(name, "app")...)
			}
			// The wait starts once the last container is started: from the
			// first time the poller sees them all running to the exit is at
			// least the timeout, less the poller's lag.
			allUp := make(chan time.Time, 1)
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					tasks, err := h.client.ListContainers(context.Background(), h.ns)
					if err != nil {
						continue
					}
					up := 0
					for _, c := range tasks {
						if slices.Contains(slow, c.ID) && c.Task.Status == ctr.TaskRunning {
							up++
						}
					}
					if up == len(slow) {
						allUp <- time.Now()
						return
					}
				}
			}()
			out := h.mustRun(1, "--once", "--workers", "1", "--timeout", timeout.String())
			end := time.Now()
			close(stop)
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q", tt.wantOut)
			}
			select {
			case up := <-allUp:
				// Under 60 s: this --timeout counts, not the helper's.
				if waited := end.Sub(up); waited < timeout-2*time.Second || waited >= 60*time.Second {
					t.Errorf("--once exited %s after its last container started, want about the --timeout %s", waited.Round(time.Millisecond), timeout)
				}
			default:
				t.Error("the poller never saw the slow cells' containers all running")
			}
		})
	}
}

// TestDryRunExitCodes: "--once --dry-run: 0 in sync, 2 changes that create
// or update in place, 3 changes that delete or recreate anything (prune,
// container recreate, cell recreate), 1 error" — each on one host, one
// change after the other, and a dry run changes nothing.
func TestDryRunExitCodes(t *testing.T) {
	h := newHost(t)
	// Cell pod declares its root: a change to it recreates the cell.
	pod := `kind: Cell
metadata: {name: pod, labels: {tier: one}}
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
      stopGracePeriodSeconds: 1
    - id: app
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["3600"]
      env: ["REV=1"]
      stopGracePeriodSeconds: 1
`
	steps := []struct {
		name string
		// change edits the manifests; the dry run follows, then (when
		// converge) a real pass.
		change   func()
		args     []string
		wantCode int
		wantOut  string
		converge bool
	}{
		{
			name:     "2 for a create",
			change:   func() { h.writeFile("pod.yaml", pod) },
			wantCode: 2, wantOut: "Cell lab/web/blog/pod would be created", converge: true,
		},
		{
			name:     "0 in sync",
			change:   func() {},
			wantCode: 0, wantOut: "0 created, 0 updated, 0 recreated, 0 deleted",
		},
		{
			name:     "2 for a label updated in place",
			change:   func() { h.edit("pod.yaml", "tier: one", "tier: two") },
			wantCode: 2, wantOut: "Cell lab/web/blog/pod would be updated", converge: true,
		},
		{
			name:     "3 for a container recreate",
			change:   func() { h.edit("pod.yaml", "REV=1", "REV=2") },
			wantCode: 3, wantOut: "container app recreated (env REV=1 → REV=2)", converge: true,
		},
		{
			name:     "3 for a cell recreate (its root changed)",
			change:   func() { h.edit("pod.yaml", `args: ["3600"]`, `args: ["7200"]`) },
			wantCode: 3, wantOut: "Cell lab/web/blog/pod would be recreated", converge: true,
		},
		{
			name:     "2 for a second cell",
			change:   func() { h.writeFile("other.yaml", cellYAML("other", "always", "exec sleep 3600", "")) },
			wantCode: 2, wantOut: "Cell lab/web/blog/other would be created", converge: true,
		},
		{
			name: "3 for a prune of the cell whose file was removed",
			change: func() {
				if err := os.Remove(filepath.Join(h.manifests, "other.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			wantCode: 3, wantOut: "Cell lab/web/blog/other would be deleted",
		},
		{
			name:     "1 when containerd does not answer",
			change:   func() {},
			args:     []string{"--containerd-address", filepath.Join(t.TempDir(), "none.sock")},
			wantCode: 1, wantOut: "error: ",
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			// h.run, not h.mustRun: a wrong code fails this step only.
			before := h.tasks(h.ns)
			out, code := h.run(append([]string{"--once", "--dry-run"}, st.args...)...)
			if code != st.wantCode {
				t.Errorf("exit code %d, want %d", code, st.wantCode)
			}
			if !strings.Contains(out, st.wantOut) {
				t.Errorf("dry run output lacks %q", st.wantOut)
			}
			equalExcept(t, before, h.tasks(h.ns))
			if after := h.tasks(h.ns); len(after) != len(before) {
				t.Errorf("the dry run changed the containers: %d before, %d after", len(before), len(after))
			}
			if st.converge {
				if _, code := h.run("--once"); code != 0 {
					t.Fatalf("--once after the dry run: exit %d, want 0", code)
				}
			}
		})
	}
}

// TestValidateExitCodes: "validate: 0 valid (warnings allowed), 1 invalid",
// with no containerd.
func TestValidateExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		wantCode int
		wantOut  string
	}{
		{
			name:     "0 for a valid manifest",
			doc:      cellYAML("ok", "always", "exec sleep 3600", ""),
			wantCode: 0, wantOut: "1 object in 1 file: 0 errors, 0 warnings",
		},
		{
			name:     "0 for a valid manifest with a warning",
			doc:      cellYAML("ok", "always", "exec sleep 3600", "      attachable: true\n"),
			wantCode: 0, wantOut: "0 errors, 1 warning",
		},
		{
			name:     "1 for an invalid manifest",
			doc:      cellYAML("bad", "sometimes", "exec sleep 3600", ""),
			wantCode: 1, wantOut: "cell.yaml:12:22: Cell lab/web/blog/bad: spec.containers[0].restartPolicy",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cell.yaml"), []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "validate", dir)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run reconciler validate: %v", err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

// TestRootExitRecreatesItsCell: "A root exit recreates the cell", by --once:
// the root's process killed, the next pass recreates root and workload.
func TestRootExitRecreatesItsCell(t *testing.T) {
	h := &daemonHost{host: newHost(t)}
	h.writeFile("pod.yaml", cellYAML("pod", "always", "exec sleep 3600", ""))
	h.mustRun(0, "--once")
	ids := cellContainerIDs("pod", "app")
	before := pick(h.waitRunning(ids...), ids...)
	killPID(t, h.taskPID(ids[0]))
	waitFor(t, "the root's task stopped", deadline, func() (bool, string) {
		s := h.tasks(h.ns)[ids[0]]
		return !strings.HasPrefix(s, "running "), s
	})

	out := h.mustRun(3, "--once", "--dry-run")
	if !strings.Contains(out, "Cell lab/web/blog/pod would be recreated") {
		t.Errorf("dry run after the root's exit does not recreate the cell:\n%s", out)
	}
	out = h.mustRun(0, "--once")
	if !strings.Contains(out, "Cell lab/web/blog/pod recreated") {
		t.Errorf("--once after the root's exit does not say the cell was recreated:\n%s", out)
	}
	after := h.waitRunning(ids...)
	for _, id := range ids {
		if after[id] == before[id] {
			t.Errorf("%s was not recreated: %s", id, after[id])
		}
	}
}

// nestDoc is cell nest in lab/web/blog with nestedCgroupRuntime: every
// controller the host offers is delegated down to it.
var nestDoc = strings.Replace(cellYAML("nest", "always", "exec sleep 3600", ""),
	"  containers:\n", "  nestedCgroupRuntime: true\n  containers:\n", 1)

// requireRootDelegatesHugetlb fails the test unless the unified mount's root
// already delegates hugetlb. Hazard: else converging a nestedCgroupRuntime
// cell would write the mount root's cgroup.subtree_control, outside the
// test's cgroup root.
func requireRootDelegatesHugetlb(h *host) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.mount, "cgroup.subtree_control"))
	if err != nil {
		h.t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(b)), "hugetlb") {
		h.t.Fatalf("%s/cgroup.subtree_control (%q) does not delegate hugetlb: this test would write outside its cgroup root",
			h.mount, strings.TrimSpace(string(b)))
	}
}

// TestNoOpPassWritesNothing: "An unchanged host gets an empty plan and no
// writes", on the real backends in-process: ctr.Cgroups counts its file
// writes, and containerd publishes an event for every change (container,
// task, image, snapshot, namespace), so a pass over a converged host must
// leave both silent.
func TestNoOpPassWritesNothing(t *testing.T) {
	h := newHost(t)
	// Cell nest delegates every controller the host offers (hugetlb here),
	// so converging it writes cgroup.subtree_control at each level: the
	// counter is seen counting before it is asked for zero.
	requireRootDelegatesHugetlb(h)
	h.writeFile("nest.yaml", nestDoc)
	h.writeFile("plain.yaml", cellYAML("plain", "always", "exec sleep 3600", ""))
	h.writeFile("empty.yaml", "kind: Stack\nmetadata: {name: empty}\nspec: {realmId: lab, spaceId: web}\n")

	cg, err := ctr.NewCgroups(h.mount)
	if err != nil {
		t.Fatal(err)
	}
	// The synthesized roots run the static reconciler, not this test binary.
	client := ctr.New(ctr.Config{Address: h.ctd.Address, StateDir: h.state, ImageArchives: h.archives, PauseBinary: binary})
	defer client.Close()
	rc := &controller.Reconciler{
		Runtime: client,
		Cgroups: cg,
		Loader:  manifest.NewLoader(manifest.Options{}),
		Opts: controller.Options{
			Manifests: []string{h.manifests},
			StateDir:  h.state,
			Hierarchy: hierarchy.Options{CgroupRoot: h.cgroupRoot, NamespaceSuffix: h.suffix},
			Prune:     true,
			Workers:   4,
			Timeout:   60 * time.Second,
		},
	}
	ctx := context.Background()
	pr := rc.Pass(ctx)
	if !pr.OK() {
		t.Fatalf("first pass not OK: %v", pr.Errors())
	}
	if cg.Writes() == 0 {
		t.Fatal("the first pass made no cgroup write: the counter proves nothing")
	}
	converged := h.tasks(h.ns)

	events := h.watchEvents()
	writes := cg.Writes()
	pr = rc.Pass(ctx)
	if !pr.OK() {
		t.Fatalf("no-op pass not OK: %v", pr.Errors())
	}
	for _, ch := range pr.Plan.Changes {
		if ch.Action != controller.ActionUnchanged {
			t.Errorf("no-op pass planned %s %s", ch.Key, ch.Describe())
		}
	}
	if n := cg.Writes() - writes; n != 0 {
		t.Errorf("no-op pass made %d cgroup writes, want 0", n)
	}
	if got := events(); len(got) > 0 {
		t.Errorf("no-op pass changed containerd (events):\n%s", strings.Join(got, "\n"))
	}
	equalExcept(t, converged, h.tasks(h.ns))
}

// watchEvents subscribes to every containerd event and returns a function
// that waits a second for stragglers (shims publish task events on their
// own), stops the subscription and returns what was seen as "namespace
// topic" lines.
func (h *host) watchEvents() func() []string {
	h.t.Helper()
	cl, err := h.client.Raw()
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), h.ns))
	envs, errs := cl.Subscribe(ctx)
	var (
		mu   sync.Mutex
		seen []string
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case env, ok := <-envs:
				if !ok {
					return
				}
				mu.Lock()
				seen = append(seen, env.Namespace+" "+env.Topic)
				mu.Unlock()
			case <-errs:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() []string {
		time.Sleep(time.Second)
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}
