package main

import (
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

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/testenv"
	"github.com/kukeon/reconciler/pkg/testimage"
)

// env is one run's private world: a temporary directory, the reconciler
// binary built from this checkout, the busybox image archive, a private
// containerd, a unique cgroup root and namespace suffix, and the fixtures
// scenarios share. up sets it up on first need; close undoes all of it.
type env struct {
	cfg *config
	log io.Writer

	upDone     bool
	upErr      error
	dir        string
	binary     string
	archives   string // directory holding the archive, for --image-archives
	archive    string
	id         string // random, in the cgroup root and the namespace suffix
	cgroupRoot string // "/kukeon-bench-<id>"
	nsSuffix   string // "bench-<id>.kukeon.io": every namespace is ours
	mount      string // unified cgroup mount
	ctd        *testenv.Containerd
	client     *ctr.Client    // teardown and adoption checks
	raw        *client.Client // the direct-client baselines (client's own connection)
	starts     *startWatcher
	daemons    []*daemon

	podmanDone  bool
	podman      *podman // nil when the podman baseline is skipped
	podmanNotes []string
	steady      steadySite
	footprints  map[footprintKey]*footprint
}

// up prepares the world once; a failure is remembered, so every scenario
// that needs it reports the same error. close undoes what up did.
func (e *env) up(ctx context.Context) error {
	if !e.upDone {
		e.upDone = true
		e.upErr = e.setUp(ctx)
	}
	return e.upErr
}

func (e *env) setUp(ctx context.Context) (err error) {
	if m := testenv.Missing(); len(m) > 0 {
		return fmt.Errorf("missing %s (apt-get install -y containerd runc busybox-static, run as root)", strings.Join(m, ", "))
	}
	if e.dir, err = os.MkdirTemp("", "rbench-"); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if e.mount, err = testenv.UnifiedMount(); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("cgroup root: %w", err)
	}
	e.id = hex.EncodeToString(b)
	e.cgroupRoot, e.nsSuffix = "/kukeon-bench-"+e.id, "bench-"+e.id+".kukeon.io"

	if e.binary = e.cfg.reconciler; e.binary == "" {
		e.logf("building ./cmd/reconciler (CGO_ENABLED=0)")
		if e.binary, err = buildReconciler(ctx, e.dir); err != nil {
			return err
		}
	}
	e.archives = e.path("images")
	e.archive = filepath.Join(e.archives, "busybox.tar")
	if err := os.MkdirAll(e.archives, 0o755); err != nil {
		return fmt.Errorf("image dir: %w", err)
	}
	if err := testimage.BuildFile(e.archive, testimage.Options{}); err != nil {
		return fmt.Errorf("test image: %w", err)
	}

	e.logf("starting a private containerd, cgroup root %s", e.cgroupRoot)
	if e.ctd, err = testenv.StartContainerd(ctx, e.path("ctd")); err != nil {
		return err
	}
	e.client = ctr.New(ctr.Config{
		Address: e.ctd.Address, StateDir: e.path("ctr-state"),
		ImageArchives: e.archives, PauseBinary: e.binary, CgroupParent: e.cgroupRoot,
	})
	if e.raw, err = e.client.Raw(); err != nil {
		return fmt.Errorf("connect containerd: %w", err)
	}
	e.starts = watchStarts(e.raw)
	return nil
}

func (e *env) logf(format string, args ...any) { logTo(e.log, format, args...) }

// processStart is when the program started, for the elapsed time in
// progress lines.
var processStart = time.Now()

func logTo(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "bench %6.1fs: "+format+"\n", append([]any{time.Since(processStart).Seconds()}, args...)...)
}

// path returns a path inside the work dir.
func (e *env) path(elem ...string) string { return filepath.Join(append([]string{e.dir}, elem...)...) }

// hierarchy is how every reconciler of the run lays out identities.
func (e *env) hierarchy() hierarchy.Options {
	return hierarchy.Options{CgroupRoot: e.cgroupRoot, NamespaceSuffix: e.nsSuffix}
}

// namespace is a realm's containerd namespace.
func (e *env) namespace(realm string) string { return v1beta1.DefaultNamespace(realm, e.nsSuffix) }

// buildReconciler builds the static binary that the daemon scenarios run
// and that synthesized roots run as "reconciler pause", from the module
// the working directory is in.
func buildReconciler(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "reconciler")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/kukeon/reconciler/cmd/reconciler")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build reconciler (run from inside the checkout, or pass --reconciler): %w\n%s", err, b)
	}
	return out, nil
}

// teardown deletes every container of namespace ns (grace 0, four at a
// time) and the namespace with its images. It is not timed.
func (e *env) teardown(ctx context.Context, ns string) error {
	cs, err := e.client.ListContainers(ctx, ns)
	if errors.Is(err, ctr.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("teardown %s: %w", ns, err)
	}
	err = parallel(len(cs), 4, func(i int) error {
		if err := e.client.DeleteContainer(ctx, ns, cs[i].ID, 0); err != nil && !errors.Is(err, ctr.ErrNotFound) {
			return err
		}
		return nil
	})
	if err == nil {
		if err = e.client.DeleteNamespace(ctx, ns); errors.Is(err, ctr.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("teardown %s: %w", ns, err)
	}
	return nil
}

// teardownRealm is teardown of the realm's namespace, then its cgroup tree.
func (e *env) teardownRealm(ctx context.Context, realm string) error {
	return errors.Join(e.teardown(ctx, e.namespace(realm)), testenv.RemoveCgroupTree(path.Join(e.cgroupRoot, realm)))
}

// close stops the daemons, removes podman pods, deletes our namespaces
// with their containers, stops containerd (which reaps whatever is left),
// removes the cgroup root, the empty runc state directories of our
// namespaces and the work dir. It runs on its own deadline, so it also
// cleans up after SIGINT.
func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	for _, d := range e.daemons {
		errs = append(errs, d.stop())
	}
	if e.podman != nil {
		errs = append(errs, e.podman.cleanup(ctx))
	}
	if e.starts != nil {
		e.starts.stop()
	}
	if e.client != nil && e.ctd.Running() {
		nss, err := e.client.ListNamespaces(ctx)
		errs = append(errs, err)
		for _, ns := range nss {
			if strings.HasSuffix(ns, "."+e.nsSuffix) {
				errs = append(errs, e.teardown(ctx, ns))
			}
		}
	}
	if e.client != nil {
		errs = append(errs, e.client.Close())
	}
	if e.ctd != nil {
		errs = append(errs, e.ctd.Stop())
	}
	if e.id != "" {
		errs = append(errs, testenv.RemoveCgroupTree(e.cgroupRoot), testenv.RemoveEmptyRuncDirs("."+e.nsSuffix))
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	if err := errors.Join(errs...); err != nil {
		e.logf("cleanup: %v", err)
	}
}

// hostInfo describes the machine; versions it cannot read stay empty.
func (e *env) hostInfo(ctx context.Context, h *Host) {
	if !e.upDone {
		return
	}
	h.CgroupMount = e.mount
	if e.raw != nil {
		if v, err := e.raw.Version(ctx); err == nil {
			h.Containerd = v.Version
		}
	}
	if out, err := exec.CommandContext(ctx, "runc", "--version").Output(); err == nil {
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		h.Runc = strings.TrimPrefix(line, "runc version ")
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
