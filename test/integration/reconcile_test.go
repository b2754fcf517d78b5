// Package integration runs the reconciler binary end to end against a
// private containerd and the host's unified cgroup tree. Each test gets its
// own containerd (temp root, state and socket) and a unique cgroup root
// (/kukeon-it-<random>), removed at the end even when the test fails.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/testenv"
)

// binary is the reconciler built once for the package (static, as it must
// be to run as the pause process of synthesized roots).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reconciler-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "reconciler")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/reconciler")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build reconciler:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// host is one test's private world.
type host struct {
	t          *testing.T
	ctd        *testenv.Containerd
	manifests  string
	state      string
	archives   string
	cgroupRoot string
	mount      string
	client     *ctr.Client
	// suffix is this test's --namespace-suffix, so the realm lab lives in
	// lab.<suffix>. Hazard: runc keeps task state under
	// /run/containerd/runc/<namespace>/<id>, shared by every containerd on
	// the machine; a fixed namespace would collide with a concurrent run.
	suffix string
	ns     string
}

func newHost(t *testing.T) *host {
	t.Helper()
	// The cgroup root first: cleanups run last-in first-out, and the tree
	// can only be removed after containerd and its containers are gone.
	cgroupRoot := testenv.CgroupRoot(t)
	ctd := testenv.Start(t)
	rnd := make([]byte, 4)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	suffix := "it" + hex.EncodeToString(rnd) + ".kukeon.io"
	h := &host{
		t:          t,
		ctd:        ctd,
		manifests:  t.TempDir(),
		state:      t.TempDir(),
		archives:   t.TempDir(),
		cgroupRoot: cgroupRoot,
		suffix:     suffix,
		ns:         "lab." + suffix,
	}
	mount, err := testenv.UnifiedMount()
	if err != nil {
		t.Fatal(err)
	}
	h.mount = mount
	if err := os.Symlink(testenv.ImageArchive(t), filepath.Join(h.archives, "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	h.client = ctr.New(ctr.Config{Address: ctd.Address, StateDir: h.state})
	t.Cleanup(func() {
		// Delete what the test left, so containerd stops without live shims.
		ctx := context.Background()
		nss, err := h.client.ListNamespaces(ctx)
		if err != nil {
			t.Errorf("clean up: %v", err)
		}
		for _, ns := range nss {
			cs, err := h.client.ListContainers(ctx, ns)
			if err != nil {
				t.Errorf("clean up: %v", err)
			}
			for _, c := range cs {
				if err := h.client.DeleteContainer(ctx, ns, c.ID, 0); err != nil && !errors.Is(err, ctr.ErrNotFound) {
					t.Errorf("clean up %s/%s: %v", ns, c.ID, err)
				}
			}
		}
		if err := h.client.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return h
}

// copyExample copies examples/<name> into the manifest dir.
func (h *host) copyExample(name string) {
	h.t.Helper()
	src := filepath.Join("..", "..", "examples", name)
	entries, err := os.ReadDir(src)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			h.t.Fatal(err)
		}
		h.writeFile(e.Name(), string(b))
	}
}

func (h *host) writeFile(name, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.manifests, name), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) edit(name, old, new string) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.manifests, name))
	if err != nil {
		h.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		h.t.Fatalf("%s does not contain %q", name, old)
	}
	h.writeFile(name, strings.Replace(string(b), old, new, 1))
}

// run runs the reconciler with the host's flags and returns its output and
// exit code.
func (h *host) run(args ...string) (string, int) {
	h.t.Helper()
	cmd := exec.Command(binary, h.args(args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("run reconciler: %v", err)
	}
	h.t.Logf("reconciler %s → exit %d\n%s", strings.Join(args, " "), code, out.String())
	return out.String(), code
}

// args returns the reconciler's command line on this host: the host's
// flags, then args. The host's come first so that a test's own (a shorter
// --timeout) wins: the last occurrence of a flag is the one that counts.
func (h *host) args(args ...string) []string {
	return append([]string{"--manifests", h.manifests, "--containerd-address", h.ctd.Address,
		"--state-dir", h.state, "--image-archives", h.archives, "--cgroup-root", h.cgroupRoot,
		"--namespace-suffix", h.suffix, "--timeout", "60s"}, args...)
}

func (h *host) mustRun(want int, args ...string) string {
	h.t.Helper()
	out, code := h.run(args...)
	if code != want {
		h.t.Fatalf("reconciler %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// tasks returns containerd ID → "pid@startedAt" of our running containers.
func (h *host) tasks(ns string) map[string]string {
	h.t.Helper()
	cs, err := h.client.ListContainers(context.Background(), ns)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = fmt.Sprintf("%s pid=%d started=%s", c.Task.Status, c.Task.PID, c.Task.StartedAt.Format(time.RFC3339Nano))
	}
	return out
}

func (h *host) status() *controller.Status {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.state, "status.json"))
	if err != nil {
		h.t.Fatal(err)
	}
	var st controller.Status
	if err := json.Unmarshal(b, &st); err != nil {
		h.t.Fatal(err)
	}
	return &st
}

func (h *host) cgroupExists(group string) bool {
	_, err := os.Stat(filepath.Join(h.mount, h.cgroupRoot, group))
	return err == nil
}

// addForeign creates a container in ns that we did not create, named and
// labelled like one of ours but without the managed-by label.
func (h *host) addForeign(ns, id string) {
	h.t.Helper()
	c, err := containerd.New(h.ctd.Address)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	_, err = c.NewContainer(ctx, id, containerd.WithNewSpec(), containerd.WithContainerLabels(map[string]string{
		ctr.LabelRealm: "lab", ctr.LabelSpace: "web", ctr.LabelStack: "blog", ctr.LabelCell: "frontend",
	}))
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) foreignExists(ns, id string) bool {
	c, err := containerd.New(h.ctd.Address)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	_, err = c.LoadContainer(namespaces.WithNamespace(context.Background(), ns), id)
	return err == nil
}

func equalExcept(t *testing.T, before, after map[string]string, except ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, e := range except {
		skip[e] = true
	}
	for id, b := range before {
		if skip[id] {
			continue
		}
		if a := after[id]; a != b {
			t.Errorf("container %s changed: before %q, after %q", id, b, a)
		}
	}
}

// TestLabConverges walks the main life of a host: converge examples/lab,
// stay idempotent, recreate only what changed, relabel in place, prune a
// removed cell, and never touch a foreign container.
func TestLabConverges(t *testing.T) {
	h := newHost(t)
	h.copyExample("lab")

	h.mustRun(2, "--once", "--dry-run")
	out := h.mustRun(0, "--once")
	for _, want := range []string{"Realm lab created", "Cell lab/web/blog/frontend created", "Cell lab/web/blog/worker created"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	st := h.status()
	for _, o := range st.Objects {
		if o.State != controller.StateReady {
			t.Errorf("%s is %s (%s), want Ready", o.Key, o.State, o.Message)
		}
	}
	for _, g := range []string{"lab", "lab/web", "lab/web/blog", "lab/web/blog/frontend", "lab/web/blog/frontend/web_blog_frontend_httpd"} {
		if !h.cgroupExists(g) {
			t.Errorf("cgroup %s missing", g)
		}
	}
	h.addForeign(h.ns, "web_blog_frontend_foreign")
	converged := h.tasks(h.ns)
	if len(converged) != 5 {
		t.Fatalf("got %d containers, want 5: %v", len(converged), converged)
	}

	t.Run("a second pass plans nothing and restarts nothing", func(t *testing.T) {
		h.mustRun(0, "--once", "--dry-run")
		h.mustRun(0, "--once")
		equalExcept(t, converged, h.tasks(h.ns))
	})

	t.Run("an env edit recreates that container only", func(t *testing.T) {
		h.edit("cells.yaml", "MODE=prod", "MODE=staging")
		out := h.mustRun(3, "--once", "--dry-run")
		if !strings.Contains(out, "container httpd recreated (env MODE=prod → MODE=staging)") {
			t.Errorf("dry run does not name the env change:\n%s", out)
		}
		h.mustRun(0, "--once")
		after := h.tasks(h.ns)
		equalExcept(t, converged, after, "web_blog_frontend_httpd")
		if after["web_blog_frontend_httpd"] == converged["web_blog_frontend_httpd"] {
			t.Error("httpd was not recreated")
		}
		converged = after
	})

	t.Run("a label edit updates in place", func(t *testing.T) {
		h.edit("cells.yaml", "app: blog", "app: journal")
		h.mustRun(2, "--once", "--dry-run")
		h.mustRun(0, "--once")
		equalExcept(t, converged, h.tasks(h.ns))
		cs, err := h.client.ListContainers(context.Background(), h.ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Labels[ctr.LabelCell] == "frontend" && c.Labels["app"] != "journal" {
				t.Errorf("%s has app=%q, want journal", c.ID, c.Labels["app"])
			}
		}
	})

	t.Run("removing a cell's manifest prunes it and nothing else", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(h.manifests, "cells.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(b), "\n---\n")
		if len(docs) != 2 || !strings.Contains(docs[1], "name: worker") {
			t.Fatalf("examples/lab/cells.yaml is not frontend then worker")
		}
		h.writeFile("cells.yaml", docs[0])
		h.mustRun(3, "--once", "--dry-run")
		h.mustRun(0, "--once")
		after := h.tasks(h.ns)
		for id := range after {
			if strings.HasPrefix(id, "web_blog_worker_") {
				t.Errorf("pruned cell's container %s still exists", id)
			}
		}
		if h.cgroupExists("lab/web/blog/worker") {
			t.Error("pruned cell's cgroup still exists")
		}
		equalExcept(t, converged, after, "web_blog_worker_root", "web_blog_worker_job")
		if !h.foreignExists(h.ns, "web_blog_frontend_foreign") {
			t.Error("the foreign container was deleted")
		}
		h.mustRun(0, "--once", "--dry-run")
	})
}

// TestFailingContainerIsReported: --once waits for readiness and reports
// a container that exits, with its exit code and the tail of its log.
func TestFailingContainerIsReported(t *testing.T) {
	h := newHost(t)
	h.writeFile("bad.yaml", `kind: Cell
metadata: {name: crash}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: boom
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", "echo about to fail; exit 3"]
      restartPolicy: never
`)
	out := h.mustRun(1, "--once", "--timeout", "5s")
	for _, want := range []string{"container boom is exited with code 3", "about to fail"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestDryRunExitsOneOnABrokenManifest: a CI gate on --once --dry-run must
// stop on a broken manifest even when other files plan changes.
func TestDryRunExitsOneOnABrokenManifest(t *testing.T) {
	h := newHost(t)
	cell := `kind: Cell
metadata: {name: %s}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: app
      image: docker.io/library/busybox:latest
      command: /bin/sleep
      args: ["3600"]
      restartPolicy: %s
`
	h.writeFile("good.yaml", fmt.Sprintf(cell, "good", "never"))
	h.writeFile("bad.yaml", fmt.Sprintf(cell, "bad", "sometimes"))
	out := h.mustRun(1, "--once", "--dry-run")
	if !strings.Contains(out, "bad.yaml:12:22: Cell lab/web/blog/bad: spec.containers[0].restartPolicy") {
		t.Errorf("dry run does not name the error with its place:\n%s", out)
	}
	out = h.mustRun(1, "--once", "--dry-run", "-o", "json")
	var jr struct {
		OK       bool     `json:"ok"`
		ExitCode int      `json:"exitCode"`
		Errors   []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &jr); err != nil {
		t.Fatalf("dry run -o json is not JSON: %v\n%s", err, out)
	}
	if jr.OK || jr.ExitCode != 1 || len(jr.Errors) != 1 || !strings.Contains(jr.Errors[0], "restartPolicy") {
		t.Errorf("dry run -o json = %+v, want ok=false, exitCode=1 and the manifest error", jr)
	}
	if got := h.tasks(h.ns); len(got) != 0 {
		t.Errorf("dry run created containers: %v", got)
	}
}
