package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/kukeon/reconciler/pkg/testimage"
)

// installHint is how to get what Require wants on Debian.
const installHint = "run as root on a host with cgroup v2 (unified or hybrid) and install: apt-get install -y containerd runc busybox-static"

// Missing lists, in words, what this host lacks for integration tests: root,
// containerd, runc, a static busybox, a cgroup v2 mount. Empty means ready.
func Missing() []string {
	var out []string
	if os.Geteuid() != 0 {
		out = append(out, "root (euid is "+fmt.Sprint(os.Geteuid())+")")
	}
	if st, err := os.Stat(ContainerdBinary); err != nil || st.Mode()&0o111 == 0 {
		out = append(out, ContainerdBinary)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		out = append(out, "runc on PATH")
	}
	if _, err := testimage.FindBusybox(); err != nil {
		out = append(out, "a static busybox at "+strings.Join(testimage.BusyboxCandidates, " or "))
	}
	if _, err := UnifiedMount(); err != nil {
		out = append(out, "a cgroup v2 mount ("+err.Error()+")")
	}
	return out
}

// Require skips the test when the host lacks what integration tests need,
// naming what is missing and how to install it. Under CI (see InCI) it
// fails the test instead: CI must never pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	if m := Missing(); len(m) > 0 {
		SkipOrFail(t, "missing "+strings.Join(m, ", ")+"; "+installHint)
	}
}

// Start calls Require, then starts a private containerd in a fresh short
// directory under the system temp dir (short, so its socket path fits), and
// registers Stop as a cleanup that fails the test if anything is left behind.
func Start(t testing.TB) *Containerd {
	t.Helper()
	Require(t)
	dir, err := os.MkdirTemp("", "kit-")
	if err != nil {
		t.Fatalf("containerd dir: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := StartContainerd(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
	})
	return c
}

var archive struct {
	once sync.Once
	path string
	err  error
}

// ImageArchive returns the path of the busybox test image archive
// (testimage.Options{}: docker.io/library/busybox:latest), built once per test
// binary. The file is content-addressed under $TMPDIR/kukeon-testimage and
// shared between test binaries, so repeated runs reuse one file instead of
// leaving a new one each time; callers must not modify it.
func ImageArchive(t testing.TB) string {
	t.Helper()
	if _, err := testimage.FindBusybox(); err != nil {
		SkipOrFail(t, err.Error()+"; "+installHint)
	}
	archive.once.Do(func() { archive.path, archive.err = buildArchive() })
	if archive.err != nil {
		t.Fatalf("test image: %v", archive.err)
	}
	return archive.path
}

func buildArchive() (string, error) {
	var buf bytes.Buffer
	if err := testimage.Build(&buf, testimage.Options{}); err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "kukeon-testimage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create image dir: %w", err)
	}
	path := filepath.Join(dir, digest.FromBytes(buf.Bytes()).Encoded()+".tar")
	if st, err := os.Stat(path); err == nil && st.Size() == int64(buf.Len()) {
		return path, nil
	}
	// Another test binary may be writing the same file: write a private
	// temp file and rename it into place, which is atomic and idempotent.
	f, err := os.CreateTemp(dir, ".busybox-*.tar")
	if err != nil {
		return "", fmt.Errorf("write image: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("write image: %w", err)
	}
	return path, nil
}
