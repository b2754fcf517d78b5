package ctr_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/testenv"
)

// TestPreflight: what a create and start of a spec need is checked on the
// host, every problem at once, and nothing is changed.
func TestPreflight(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ns := e.freshNamespaces("preflight-host")(t)
	h := e.byHand(t, ns)
	pause := pauseBinary(t)
	notExecutable := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const id = "web_blog_front_app"
	app := ctr.ContainerSpec{ID: id, Image: busybox, Command: "sleep", Args: []string{"3600"}}
	root := ctr.ContainerSpec{ID: "web_blog_front_root", Image: busybox, Pause: true}
	with := func(s ctr.ContainerSpec, f func(*ctr.ContainerSpec)) ctr.ContainerSpec {
		f(&s)
		return s
	}
	tests := []struct {
		name     string
		stateDir func(t *testing.T) string // default: a new empty directory
		pause    string                    // default: the built pause binary
		setup    func(t *testing.T)
		spec     ctr.ContainerSpec
		// want are the errors the preflight must match, and wantText what
		// its message must say; neither: it passes.
		want     []error
		wantText []string
	}{
		{
			name: "a workload passes in a writable state dir that has no log dir yet",
			spec: app,
		},
		{
			name: "a synthesized root passes when the pause binary is there",
			spec: root,
		},
		{
			name:     "a read-only state dir fails",
			stateDir: func(t *testing.T) string { return mountTmpfs(t, unix.MS_RDONLY, "") },
			spec:     app,
			want:     []error{syscall.EROFS},
			wantText: []string{"log file"},
		},
		{
			name:     "a full state dir fails",
			stateDir: fullTmpfs,
			spec:     app,
			want:     []error{syscall.ENOSPC},
			wantText: []string{"log file"},
		},
		{
			name:     "a synthesized root fails without the pause binary",
			pause:    "/nonexistent/reconciler",
			spec:     root,
			want:     []error{fs.ErrNotExist},
			wantText: []string{"pause binary", "/nonexistent/reconciler"},
		},
		{
			name:     "a synthesized root fails when the pause binary is not executable",
			pause:    notExecutable,
			spec:     root,
			wantText: []string{"pause binary", "not executable"},
		},
		{
			name:  "a workload does not need the pause binary",
			pause: "/nonexistent/reconciler",
			spec:  app,
		},
		{
			name: "a bind mount whose source is missing fails, a tmpfs needs none",
			spec: with(app, func(s *ctr.ContainerSpec) {
				s.Mounts = []ctr.Mount{{Kind: "bind", Source: "/nonexistent/data", Target: "/data"}, {Kind: "tmpfs", Target: "/tmp"}}
			}),
			want:     []error{fs.ErrNotExist},
			wantText: []string{"/nonexistent/data", "/data"},
		},
		{
			name: "a device that does not exist, or is no device, fails",
			spec: with(app, func(s *ctr.ContainerSpec) {
				s.Devices = []string{"/dev/null", "/dev/kukeon-no-such-device", "/etc/hostname"}
			}),
			want:     []error{fs.ErrNotExist},
			wantText: []string{"/dev/kukeon-no-such-device", "/etc/hostname: not a device node"},
		},
		{
			name:     "a snapshot without our label under the ID fails as not ours",
			setup:    func(t *testing.T) { h.snapshot(h.lease("someone-elses"), id, map[string]string{"owner": "someone"}) },
			spec:     app,
			want:     []error{ctr.ErrAlreadyExists, ctr.ErrNotOwned},
			wantText: []string{"snapshot " + id},
		},
		{
			name:     "every problem is reported at once",
			stateDir: func(t *testing.T) string { return mountTmpfs(t, unix.MS_RDONLY, "") },
			pause:    "/nonexistent/reconciler",
			spec:     with(root, func(s *ctr.ContainerSpec) { s.Image = "registry.invalid/nothing:1" }),
			want:     []error{syscall.EROFS, fs.ErrNotExist, ctr.ErrImageNotPresent},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ctr.Config{Address: e.cd.Address, StateDir: t.TempDir(), PauseBinary: pause}
			if tt.stateDir != nil {
				cfg.StateDir = tt.stateDir(t)
			}
			if tt.pause != "" {
				cfg.PauseBinary = tt.pause
			}
			if tt.setup != nil {
				tt.setup(t)
			}
			c := ctr.New(cfg)
			t.Cleanup(func() { c.Close() })
			before := tree(t, cfg.StateDir)

			err := c.Preflight(context.Background(), ns, tt.spec)
			if len(tt.want) == 0 && len(tt.wantText) == 0 && err != nil {
				t.Errorf("Preflight = %v, want nil", err)
			}
			if (len(tt.want) > 0 || len(tt.wantText) > 0) && err == nil {
				t.Errorf("Preflight = nil, want an error")
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Preflight = %v, want an error matching %v", err, w)
				}
			}
			for _, w := range tt.wantText {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("Preflight error %q does not say %q", err, w)
				}
			}
			if diff := cmp.Diff(before, tree(t, cfg.StateDir)); diff != "" {
				t.Errorf("state dir changed by preflight (-before +after):\n%s", diff)
			}
			if list := mustListIn(t, c, ns); len(list) != 0 {
				t.Errorf("containers after preflight: %v", list)
			}
		})
	}
}

// TestPreflightWantsAnUnpackedImage: an image in the store that is not
// unpacked (imported by another tool) fails; preflight does not unpack it.
func TestPreflightWantsAnUnpackedImage(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ns := e.freshNamespaces("packed")(t)
	ctx := context.Background()
	if err := e.client.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(testenv.ImageArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := e.raw.Import(namespaces.WithNamespace(ctx, ns), f); err != nil {
		t.Fatalf("import without unpack: %v", err)
	}
	spec := ctr.ContainerSpec{ID: "app", Image: busybox}
	for range 2 {
		err := e.client.Preflight(ctx, ns, spec)
		if !errors.Is(err, ctr.ErrImageNotPresent) || !strings.Contains(err.Error(), "not unpacked") {
			t.Fatalf("Preflight(image not unpacked) = %v, want ErrImageNotPresent saying it is not unpacked", err)
		}
	}
	if err := e.client.EnsureImage(ctx, ns, busybox, ctr.PullNever, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Preflight(ctx, ns, spec); err != nil {
		t.Errorf("Preflight after EnsureImage unpacked the image: %v", err)
	}
}

// mountTmpfs mounts a tmpfs with flags and data on a new temp dir, unmounted
// at the end of the test.
func mountTmpfs(t *testing.T, flags uintptr, data string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, data); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fullTmpfs is a 16 KiB tmpfs filled by one file until it has no space.
func fullTmpfs(t *testing.T) string {
	t.Helper()
	dir := mountTmpfs(t, 0, "size=16k")
	err := os.WriteFile(filepath.Join(dir, "fill"), make([]byte, 1<<20), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s = %v, want ENOSPC", dir, err)
	}
	return dir
}

// tree lists every path under dir with its mode, and its size when it is a
// file, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		entry := p + " " + info.Mode().String()
		if info.Mode().IsRegular() {
			entry += " " + strconv.FormatInt(info.Size(), 10)
		}
		out = append(out, entry)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func mustListIn(t *testing.T, c *ctr.Client, ns string) []string {
	t.Helper()
	list, err := c.ListContainers(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	return ids
}
