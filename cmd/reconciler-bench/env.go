package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/testenv"
	"github.com/kukeon/reconciler/pkg/testimage"
)

// env is one run's private world: a temporary directory, the reconciler
// binary built from this checkout, the busybox image archive, a private
// containerd and a unique cgroup root. close undoes all of it.
type env struct {
	dir        string
	binary     string
	archives   string // directory holding the archive, for --image-archives
	archive    string
	cgroupRoot string // "/kukeon-bench-<8 hex>"
	mount      string // unified cgroup mount
	ctd        *testenv.Containerd
	client     *ctr.Client    // teardown and adoption checks
	raw        *client.Client // the direct-client baselines
	starts     *startWatcher
	podman     *podman // nil when the podman baseline is skipped
	daemons    []*daemon
	log        io.Writer
}

// newEnv prepares the world; on error it has already undone what it did.
func newEnv(ctx context.Context, cfg *config) (e *env, err error) {
	if m := testenv.Missing(); len(m) > 0 {
		return nil, fmt.Errorf("missing %s (apt-get install -y containerd runc busybox-static, run as root)", strings.Join(m, ", "))
	}
	dir, err := os.MkdirTemp("", "rbench-")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	e = &env{dir: dir, log: cfg.log}
	defer func() {
		if err != nil {
			e.close()
			e = nil
		}
	}()
	if e.mount, err = testenv.UnifiedMount(); err != nil {
		return e, err
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return e, fmt.Errorf("cgroup root: %w", err)
	}
	e.cgroupRoot = "/kukeon-bench-" + hex.EncodeToString(b)

	e.binary = cfg.reconciler
	if e.binary == "" {
		e.logf("building ./cmd/reconciler (CGO_ENABLED=0)")
		if e.binary, err = buildReconciler(ctx, dir); err != nil {
			return e, err
		}
	}
	e.archives = filepath.Join(dir, "images")
	e.archive = filepath.Join(e.archives, "busybox.tar")
	if err := os.MkdirAll(e.archives, 0o755); err != nil {
		return e, fmt.Errorf("image dir: %w", err)
	}
	if err := testimage.BuildFile(e.archive, testimage.Options{}); err != nil {
		return e, fmt.Errorf("test image: %w", err)
	}

	e.logf("starting a private containerd, cgroup root %s", e.cgroupRoot)
	if e.ctd, err = testenv.StartContainerd(ctx, filepath.Join(dir, "ctd")); err != nil {
		return e, err
	}
	e.client = ctr.New(ctr.Config{
		Address: e.ctd.Address, StateDir: filepath.Join(dir, "ctr-state"),
		ImageArchives: e.archives, PauseBinary: e.binary, CgroupParent: e.cgroupRoot,
	})
	if e.raw, err = client.New(e.ctd.Address); err != nil {
		return e, fmt.Errorf("connect containerd: %w", err)
	}
	if e.starts, err = watchStarts(e.raw); err != nil {
		return e, err
	}
	return e, nil
}

func (e *env) logf(format string, args ...any) {
	if e.log != nil {
		logTo(e.log, format, args...)
	}
}

// processStart is when the program started, for the elapsed time in
// progress lines.
var processStart = time.Now()

func logTo(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "bench %6.1fs: "+format+"\n", append([]any{time.Since(processStart).Seconds()}, args...)...)
}

// path returns a path inside the work dir.
func (e *env) path(elem ...string) string { return filepath.Join(append([]string{e.dir}, elem...)...) }

// cellCgroup is the cgroup group of cell i of realm, as the reconciler
// lays it out.
func (e *env) cellCgroup(realm string, i int) string {
	return path.Join(e.cgroupRoot, realm, benchSpace, benchStack, cellName(i))
}

// moduleRoot finds the directory of this module's go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/kukeon/reconciler\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the reconciler checkout (no go.mod of github.com/kukeon/reconciler above the working directory), or pass --reconciler")
		}
		dir = parent
	}
}

// buildReconciler builds the static binary that the daemon scenarios run
// and that synthesized roots run as "reconciler pause".
func buildReconciler(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "reconciler")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/reconciler")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build reconciler: %w\n%s", err, b)
	}
	return out, nil
}

// teardownRealm deletes every container of namespace ns (grace 0, four at
// a time), the namespace with its images, and the realm's cgroup tree. It
// is not timed.
func (e *env) teardownRealm(ctx context.Context, realm string) error {
	ns := namespaceOf(realm)
	var errs []error
	cs, err := e.client.ListContainers(ctx, ns)
	if err != nil && !errors.Is(err, ctr.ErrNotFound) {
		errs = append(errs, err)
	}
	err = parallel(len(cs), 4, func(i int) error {
		err := e.client.DeleteContainer(ctx, ns, cs[i].ID, 0)
		if errors.Is(err, ctr.ErrNotFound) {
			return nil
		}
		return err
	})
	errs = append(errs, err)
	if err := e.client.DeleteNamespace(ctx, ns); err != nil && !errors.Is(err, ctr.ErrNotFound) {
		errs = append(errs, err)
	}
	if err := testenv.RemoveCgroupTree(path.Join(e.cgroupRoot, realm)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("teardown %s: %w", realm, err)
	}
	return nil
}

// close stops the daemons, removes podman pods, deletes every container,
// stops containerd (which reaps whatever is left), removes the cgroup root
// and the work dir. It runs on its own deadline, so it also cleans up after
// SIGINT.
func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, d := range e.daemons {
		if err := d.stop(); err != nil {
			e.logf("cleanup: %v", err)
		}
	}
	if e.podman != nil {
		e.podman.cleanup(ctx)
	}
	if e.starts != nil {
		e.starts.stop()
	}
	if e.client != nil && e.ctd != nil && e.ctd.Running() {
		nss, _ := e.client.ListNamespaces(ctx)
		for _, ns := range nss {
			cs, _ := e.client.ListContainers(ctx, ns)
			_ = parallel(len(cs), 4, func(i int) error { return e.client.DeleteContainer(ctx, ns, cs[i].ID, 0) })
		}
	}
	if e.raw != nil {
		e.raw.Close()
	}
	if e.client != nil {
		e.client.Close()
	}
	if e.ctd != nil {
		if err := e.ctd.Stop(); err != nil {
			e.logf("cleanup: %v", err)
		}
	}
	if e.cgroupRoot != "" {
		if err := testenv.RemoveCgroupTree(e.cgroupRoot); err != nil {
			e.logf("cleanup: cgroup root %s: %v", e.cgroupRoot, err)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		e.logf("cleanup: %v", err)
	}
}

// hostInfo describes the machine; versions it cannot read stay empty.
func (e *env) hostInfo(ctx context.Context, h *Host) {
	if e == nil {
		return
	}
	h.CgroupMount = e.mount
	if e.raw != nil {
		if v, err := e.raw.Version(ctx); err == nil {
			h.Containerd = v.Version
		}
	}
	if out, err := exec.CommandContext(ctx, "runc", "--version").Output(); err == nil {
		h.Runc = strings.TrimPrefix(firstLine(string(out)), "runc version ")
	}
	if e.podman != nil {
		h.Podman = e.podman.version
	}
}

func baseHost() Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
