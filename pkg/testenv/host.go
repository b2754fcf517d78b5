package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ReconcilerPackage is the import path of the reconciler command.
const ReconcilerPackage = "github.com/kukeon/reconciler/cmd/reconciler"

// BuildReconciler builds the reconciler binary into dir and returns its path.
// It is static (CGO_ENABLED=0), as it must be to run as the pause process of
// synthesized roots. Call it from TestMain, inside the module.
func BuildReconciler(dir string) (string, error) {
	bin := filepath.Join(dir, "reconciler")
	build := exec.Command("go", "build", "-o", bin, ReconcilerPackage)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", ReconcilerPackage, err, out)
	}
	return bin, nil
}

// HostOptions configure NewHost.
type HostOptions struct {
	// StateTmpfsSize, when set ("16m"), mounts a tmpfs of that size at the
	// state dir, so a test can fill it or remount it read-only, and a second
	// one at its logs/ subdir for container logs. Hazard: the kernel refuses
	// a read-only remount (EBUSY) while a file on that file system is open
	// for writing, and every shim keeps its container's log open. Both are
	// unmounted at cleanup after containerd and its shims are gone.
	StateTmpfsSize string
}

// Host is one test's private world for the reconciler binary: its own
// containerd, manifest, state and image-archive dirs, a unique cgroup root
// and a unique containerd namespace suffix. Cleanups stop everything it
// started, even when the test fails.
type Host struct {
	T          testing.TB
	Binary     string
	Containerd *Containerd
	Manifests  string
	State      string
	Archives   string
	// CgroupRoot is the test's unique cgroup root (/kukeon-it-<hex>), Mount
	// the unified hierarchy it lives in.
	CgroupRoot string
	Mount      string
	// Suffix is the --namespace-suffix: realm r lives in r.<Suffix>.
	// Hazard: runc keeps task state in /run/containerd/runc/<ns>/<id>,
	// shared by every containerd on the machine, so a fixed namespace
	// would collide with a concurrent run.
	Suffix string
	// Timeout is the --timeout every command gets (a test's own wins).
	Timeout time.Duration

	stateMounted bool
}

// NewHost calls Require, then sets up a Host for binary. The busybox test
// image is linked into Archives as busybox.tar.
func NewHost(t testing.TB, binary string, opts HostOptions) *Host {
	t.Helper()
	Require(t)
	// Cleanups run last-in first-out: the cgroup tree can only go after
	// containerd and its containers, a tmpfs state dir only after the shims
	// that hold its log files, so they are registered in that order.
	cgroupRoot := CgroupRoot(t)
	mount, err := UnifiedMount()
	if err != nil {
		t.Fatal(err)
	}
	rnd := make([]byte, 4)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	h := &Host{
		T: t, Binary: binary,
		Manifests: t.TempDir(), State: t.TempDir(), Archives: t.TempDir(),
		CgroupRoot: cgroupRoot, Mount: mount,
		Suffix:  "ft" + hex.EncodeToString(rnd) + ".kukeon.io",
		Timeout: 60 * time.Second,
	}
	if opts.StateTmpfsSize != "" {
		h.mountStateTmpfs(opts.StateTmpfsSize)
	}
	if err := os.Symlink(ImageArchive(t), filepath.Join(h.Archives, "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	h.Containerd = Start(t)
	return h
}

// For returns a copy of the host that reports to t, for use inside a
// subtest: a failure there must end the subtest, not its parent.
func (h *Host) For(t testing.TB) *Host {
	c := *h
	c.T = t
	return &c
}

// unmountRetry unmounts dir, retrying while it is busy; at the deadline it
// detaches it lazily and reports that it had to.
func unmountRetry(dir string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		err := unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(end) {
			if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: %w (lazy: %v)", dir, err, derr)
			}
			return fmt.Errorf("unmount %s: %w after %s; detached lazily", dir, err, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountStateTmpfs mounts a tmpfs of size at the state dir and another at
// its logs/ subdir, and registers their unmount.
func (h *Host) mountStateTmpfs(size string) {
	t := h.T
	t.Helper()
	logs := filepath.Join(h.State, "logs")
	for _, dir := range []string{h.State, logs} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
			t.Fatalf("mount tmpfs on %s: %v", dir, err)
		}
		t.Cleanup(func() {
			if err := unmountRetry(dir, 10*time.Second); err != nil {
				t.Errorf("unmount: %v", err)
			}
		})
	}
	h.stateMounted = true
}

// SetStateReadOnly remounts the tmpfs state dir read-only (or back to
// read-write); its logs/ mount stays writable. It needs
// HostOptions.StateTmpfsSize.
func (h *Host) SetStateReadOnly(ro bool) error {
	if !h.stateMounted {
		return errors.New("SetStateReadOnly needs HostOptions.StateTmpfsSize")
	}
	flags := uintptr(unix.MS_REMOUNT)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("tmpfs", h.State, "tmpfs", flags, ""); err != nil {
		return fmt.Errorf("remount state dir %s (read-only %v): %w", h.State, ro, err)
	}
	return nil
}

// Namespace is the containerd namespace of realm when its manifest sets no
// spec.namespace.
func (h *Host) Namespace(realm string) string { return realm + "." + h.Suffix }

// Args returns the host's flags followed by args. The host's come first so
// that a test's own (a shorter --timeout) win: the last occurrence counts.
func (h *Host) Args(args ...string) []string {
	return append([]string{
		"--manifests", h.Manifests, "--containerd-address", h.Containerd.Address,
		"--state-dir", h.State, "--image-archives", h.Archives, "--cgroup-root", h.CgroupRoot,
		"--namespace-suffix", h.Suffix, "--timeout", h.Timeout.String(),
	}, args...)
}

// Run runs the reconciler with the host's flags and args, waits for it and
// returns its combined output and exit code. The output is logged.
func (h *Host) Run(args ...string) (string, int) {
	h.T.Helper()
	p := h.Start(args...)
	code, err := p.Wait(h.Timeout + time.Minute)
	if err != nil {
		h.T.Fatalf("reconciler %s: %v\n%s", strings.Join(args, " "), err, p.Output())
	}
	out := p.Output()
	h.T.Logf("reconciler %s → exit %d\n%s", strings.Join(args, " "), code, out)
	return out, code
}

// RunExpect is Run failing the test unless the exit code is want.
func (h *Host) RunExpect(want int, args ...string) string {
	h.T.Helper()
	out, code := h.Run(args...)
	if code != want {
		h.T.Fatalf("reconciler %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// WaitFor polls cond every interval until it holds, failing the test after
// timeout with what and cond's last explanation of why it does not hold.
func WaitFor(t testing.TB, what string, timeout, interval time.Duration, cond func() (bool, string)) {
	t.Helper()
	if ok, why := Eventually(timeout, interval, cond); !ok {
		t.Fatalf("%s: not within %s: %s", what, timeout, why)
	}
}

// Eventually polls cond every interval until it holds or timeout passes,
// and returns whether it held and cond's last explanation.
func Eventually(timeout, interval time.Duration, cond func() (bool, string)) (bool, string) {
	end := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok || time.Now().After(end) {
			return ok, why
		}
		time.Sleep(interval)
	}
}

// CgroupDirs lists every directory below the host's cgroup root in the
// unified hierarchy, relative to it, sorted; none when the root is absent.
func (h *Host) CgroupDirs() ([]string, error) {
	root := filepath.Join(h.Mount, h.CgroupRoot)
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case !d.IsDir() || p == root:
			return nil
		}
		rel, err := filepath.Rel(root, p)
		out = append(out, rel)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("walk cgroups below %s: %w", root, err)
	}
	sort.Strings(out)
	return out, nil
}
