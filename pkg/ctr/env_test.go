package ctr_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/ctr/ctrtest"
	"github.com/kukeon/reconciler/pkg/testenv"
)

const busybox = "docker.io/library/busybox:latest"

// env is one private containerd with a ctr.Client on it.
type env struct {
	cd     *testenv.Containerd
	client *ctr.Client
	raw    *client.Client
	state  string
}

// newEnv starts a private containerd (skipping or failing per testenv) and
// a client whose image archive directory holds the busybox test image.
// Cleanups delete every container left in every namespace before the
// daemon stops, so a failing test leaves nothing behind.
func newEnv(t testing.TB, cfg ctr.Config) *env {
	t.Helper()
	// The cgroup root before containerd: cleanups run last-in first-out and
	// the tree can only go once containerd and its containers are gone.
	cgroupParent := testenv.CgroupRoot(t)
	cd := testenv.Start(t)
	archives := t.TempDir()
	if err := os.Symlink(testenv.ImageArchive(t), filepath.Join(archives, "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	cfg.Address = cd.Address
	cfg.StateDir = t.TempDir()
	cfg.ImageArchives = archives
	cfg.PauseBinary = pauseBinary(t)
	cfg.CgroupParent = cgroupParent
	e := &env{cd: cd, client: ctr.New(cfg), state: cfg.StateDir}
	raw, err := client.New(cd.Address)
	if err != nil {
		t.Fatal(err)
	}
	e.raw = raw
	t.Cleanup(func() {
		e.sweep(t)
		raw.Close()
		e.client.Close()
	})
	return e
}

// sweep deletes every container (ours or not) in every namespace.
func (e *env) sweep(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.raw.Reconnect(); err != nil {
		t.Logf("sweep: %v", err)
		return
	}
	nss, err := e.raw.NamespaceService().List(ctx)
	if err != nil {
		t.Logf("sweep: %v", err)
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		conts, _ := e.raw.Containers(nctx)
		for _, c := range conts {
			if task, err := c.Task(nctx, nil); err == nil {
				_, _ = task.Delete(nctx, client.WithProcessKill)
			}
			if err := c.Delete(nctx, client.WithSnapshotCleanup); err != nil {
				t.Logf("sweep %s/%s: %v", ns, c.ID(), err)
			}
		}
	}
}

// foreignContainer creates a container without our label, as another tool
// would.
func (e *env) foreignContainer(t *testing.T, ns, id, image string) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	img, err := e.raw.GetImage(ctx, image)
	if err != nil {
		t.Fatalf("foreign container: %v", err)
	}
	c, err := e.raw.NewContainer(ctx, id, client.WithNewSnapshot(id, img), client.WithNewSpec(oci.WithImageConfig(img)))
	if err != nil {
		t.Fatalf("foreign container: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
			t.Errorf("foreign container %s was touched or cannot be removed: %v", id, err)
		}
	})
}

func (e *env) foreignNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	if err := e.raw.NamespaceService().Create(ctx, ns, nil); err != nil {
		t.Fatalf("foreign namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := e.raw.NamespaceService().Delete(ctx, ns); err != nil {
			t.Errorf("foreign namespace %s: %v", ns, err)
		}
	})
}

// deleteNamespace removes ns at cleanup (our containers first).
func (e *env) deleteNamespace(t *testing.T, ns string) {
	t.Cleanup(func() {
		ctx := context.Background()
		list, err := e.client.ListContainers(ctx, ns)
		if err != nil && !errors.Is(err, ctr.ErrNotFound) {
			t.Errorf("list containers in %s: %v", ns, err)
		}
		for _, c := range list {
			if err := e.client.DeleteContainer(ctx, ns, c.ID, 0); err != nil && !errors.Is(err, ctr.ErrNotFound) {
				t.Errorf("delete container %s/%s: %v", ns, c.ID, err)
			}
		}
		// Foreign containers a test planted may keep the namespace: not ours.
		if err := e.client.DeleteNamespace(ctx, ns); err != nil && !errors.Is(err, ctr.ErrNotFound) && !errors.Is(err, ctr.ErrNotEmpty) {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
}

func killHook(t *testing.T, ns, id string, pid uint32) uint32 {
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	return 128 + uint32(syscall.SIGKILL)
}

var pause struct {
	once sync.Once
	path string
	err  error
}

// pauseBinary builds testdata/pause statically, once per test binary: it
// stands in for "reconciler pause" in synthesized root containers.
func pauseBinary(t testing.TB) string {
	t.Helper()
	pause.once.Do(func() {
		dir, err := os.MkdirTemp("", "ctr-pause-")
		if err != nil {
			pause.err = err
			return
		}
		pause.path = filepath.Join(dir, "pause")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", pause.path, "./testdata/pause")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pause.err = errors.New(string(out))
		}
	})
	if pause.err != nil {
		t.Fatalf("build pause binary: %v", pause.err)
	}
	return pause.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pause.path != "" {
		os.RemoveAll(filepath.Dir(pause.path))
	}
	os.Exit(code)
}

var _ ctrtest.Runtime = (*ctr.Client)(nil)
