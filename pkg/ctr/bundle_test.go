package ctr_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// TestStartContainerStaleBundle reproduces what a client killed in the middle
// of a task create leaves in containerd 1.6: the task's bundle directory,
// which makes every later create fail with "mkdir …: file exists". A bundle
// with nothing mounted and no live shim is removed and the task started; one
// with a mount inside, or whose shim answers, is refused and left untouched.
func TestStartContainerStaleBundle(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ctx := context.Background()
	ns := "stale." + nsSuffix
	e.deleteNamespace(t, ns)
	if err := e.client.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := e.client.EnsureImage(ctx, ns, busybox, ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		// leave makes the leftover inside the bundle dir and returns the
		// file that must survive a refusal ("" when the start must succeed).
		leave func(t *testing.T, bundle string) (keep string)
	}{
		{
			name: "removes a bundle whose shim is dead and starts the task",
			leave: func(t *testing.T, bundle string) string {
				mkdirs(t, filepath.Join(bundle, "rootfs"))
				writeFile(t, filepath.Join(bundle, "config.json"), "{}")
				// A socket path nothing listens on: the shim died.
				writeFile(t, filepath.Join(bundle, "address"), "unix://"+filepath.Join(t.TempDir(), "gone.sock"))
				return ""
			},
		},
		{
			name: "unmounts the snapshot left on the rootfs, removes the bundle and starts the task; the snapshot's files survive",
			leave: func(t *testing.T, bundle string) string {
				rootfs := filepath.Join(bundle, "rootfs")
				mkdirs(t, rootfs)
				snap := t.TempDir()
				writeFile(t, filepath.Join(snap, "snapshot-file"), "data")
				if err := syscall.Mount(snap, rootfs, "", syscall.MS_BIND, ""); err != nil {
					t.Fatalf("bind %s on %s: %v", snap, rootfs, err)
				}
				t.Cleanup(func() {
					if err := syscall.Unmount(rootfs, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
						t.Errorf("unmount %s: %v", rootfs, err)
					}
					if _, err := os.Stat(filepath.Join(snap, "snapshot-file")); err != nil {
						t.Errorf("the snapshot's file is gone: %v", err)
					}
				})
				return ""
			},
		},
		{
			name: "refuses a bundle with another mount inside and removes nothing",
			leave: func(t *testing.T, bundle string) string {
				other := filepath.Join(bundle, "other")
				mkdirs(t, other)
				if err := syscall.Mount("tmpfs", other, "tmpfs", 0, "size=1m"); err != nil {
					t.Fatalf("mount tmpfs on %s: %v", other, err)
				}
				t.Cleanup(func() {
					if err := syscall.Unmount(other, 0); err != nil {
						t.Errorf("unmount %s: %v", other, err)
					}
				})
				keep := filepath.Join(other, "some-file")
				writeFile(t, keep, "data")
				return keep
			},
		},
		{
			name: "refuses a bundle whose shim still answers",
			leave: func(t *testing.T, bundle string) string {
				sock := filepath.Join(t.TempDir(), "shim.sock")
				l, err := net.Listen("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				mkdirs(t, bundle)
				keep := filepath.Join(bundle, "address")
				writeFile(t, keep, "unix://"+sock)
				return keep
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "stale" + string(rune('a'+i))
			if err := e.client.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: id, Image: busybox, Command: "sleep", Args: []string{"3600"}}); err != nil {
				t.Fatal(err)
			}
			bundle := filepath.Join(e.cd.State, "io.containerd.runtime.v2.task", ns, id)
			mkdirs(t, filepath.Dir(bundle))
			started := false
			// Registered before leave's clean-ups, so it runs after them
			// (a mount is gone by then). A started task's bundle is
			// containerd's: deleting the container removes it.
			t.Cleanup(func() {
				if started {
					if err := e.client.DeleteContainer(ctx, ns, id, 0); err != nil {
						t.Errorf("delete %s: %v", id, err)
					}
					return
				}
				if err := os.RemoveAll(bundle); err != nil {
					t.Errorf("remove %s: %v", bundle, err)
				}
			})
			keep := tt.leave(t, bundle)

			pid, err := e.client.StartContainer(ctx, ns, id)
			started = err == nil
			if keep == "" {
				if err != nil || pid == 0 {
					t.Fatalf("StartContainer = %d, %v; want a running task", pid, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("StartContainer = %d, nil; want a refusal", pid)
			}
			for _, want := range []string{bundle, "restarting containerd"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("StartContainer error %q does not contain %q", err, want)
				}
			}
			if _, err := os.Stat(keep); err != nil {
				t.Errorf("after the refusal: %v", err)
			}
		})
	}
}

func mkdirs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
