package ctr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// createErr is a task create error as the client returns it: a gRPC status
// from containerd, converted to its native error.
func createErr(code codes.Code, msg string) error {
	return errgrpc.ToNative(status.Error(code, msg))
}

func TestStaleBundle(t *testing.T) {
	const dir = "/var/run/containerd/io.containerd.runtime.v2.task/ns1/web"
	tests := []struct {
		name    string
		err     error
		wantDir string
	}{
		{
			name:    "recognises the mkdir refusal for this container's bundle",
			err:     createErr(codes.Unknown, "failed to start shim: mkdir "+dir+": file exists"),
			wantDir: dir,
		},
		{
			name:    "recognises it wrapped by the caller",
			err:     fmt.Errorf("create task: %w", createErr(codes.Unknown, "failed to start shim: mkdir "+dir+": file exists")),
			wantDir: dir,
		},
		{
			name: "ignores no error",
		},
		{
			name: "ignores another container's bundle",
			err:  createErr(codes.Unknown, "failed to start shim: mkdir /run/io.containerd.runtime.v2.task/ns1/other: file exists"),
		},
		{
			name: "ignores another namespace's bundle",
			err:  createErr(codes.Unknown, "failed to start shim: mkdir /run/io.containerd.runtime.v2.task/ns2/web: file exists"),
		},
		{
			name: "ignores a path outside the v2 runtime's state",
			err:  createErr(codes.Unknown, "failed to start shim: mkdir /run/elsewhere/ns1/web: file exists"),
		},
		{
			name: "ignores a path that is not clean",
			err:  createErr(codes.Unknown, "failed to start shim: mkdir /run/io.containerd.runtime.v2.task/../io.containerd.runtime.v2.task/ns1/web: file exists"),
		},
		{
			name: "ignores the message under another status code",
			err:  createErr(codes.AlreadyExists, "failed to start shim: mkdir "+dir+": file exists"),
		},
		{
			name: "ignores another mkdir failure",
			err:  createErr(codes.Unknown, "failed to start shim: mkdir "+dir+": permission denied"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := staleBundle(tt.err, "ns1", "web")
			if ok != (tt.wantDir != "") || got != tt.wantDir {
				t.Errorf("staleBundle = %q, %v; want %q", got, ok, tt.wantDir)
			}
		})
	}
}

func TestMountsUnder(t *testing.T) {
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	lines := "" +
		"22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n" +
		"30 22 0:40 / /run/b/ns/web/rootfs rw - overlay overlay rw,lowerdir=/x\n" +
		"31 22 0:41 / /run/b/ns/web\\040two rw - tmpfs tmpfs rw\n" +
		"32 22 0:42 / /run/b/ns/webapp rw - tmpfs tmpfs rw\n" +
		"33 22 0:43 / /run/b/ns/web rw - tmpfs tmpfs rw\n"
	if err := os.WriteFile(mountinfo, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want []string
	}{
		{name: "finds mounts at and below the dir, not beside it", dir: "/run/b/ns/web", want: []string{"/run/b/ns/web/rootfs", "/run/b/ns/web"}},
		{name: "unescapes octal escapes in mount points", dir: "/run/b/ns/web two", want: []string{"/run/b/ns/web two"}},
		{name: "finds nothing under an unmounted dir", dir: "/run/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mountsUnder(mountinfo, tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mountsUnder(%q) (-want +got):\n%s", tt.dir, diff)
			}
		})
	}
}

// lateContainer is a container whose task containerd lists only from the
// appear-th query on (never if appear is 0), as while it re-loads shims.
type lateContainer struct {
	client.Container
	appear, calls int
	task          client.Task
}

func (c *lateContainer) Task(context.Context, cio.Attach) (client.Task, error) {
	c.calls++
	if c.appear == 0 || c.calls < c.appear {
		return nil, fmt.Errorf("task web not found: %w", errdefs.ErrNotFound)
	}
	return c.task, nil
}

type namedTask struct{ client.Task }

func TestAwaitTask(t *testing.T) {
	task := &namedTask{}
	t.Run("returns the task once containerd lists it", func(t *testing.T) {
		c := &lateContainer{appear: 3, task: task}
		got, err := awaitTask(context.Background(), c)
		if err != nil || got != task {
			t.Fatalf("awaitTask = %v, %v; want the task", got, err)
		}
		if c.calls != 3 {
			t.Errorf("awaitTask queried %d times, want 3", c.calls)
		}
	})
	t.Run("gives up with not found when the task never appears", func(t *testing.T) {
		c := &lateContainer{task: task}
		if _, err := awaitTask(context.Background(), c); !errdefs.IsNotFound(err) {
			t.Fatalf("awaitTask = %v, want an error matching ErrNotFound", err)
		}
	})
	t.Run("ends with its context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c := &lateContainer{task: task}
		if _, err := awaitTask(ctx, c); !errors.Is(err, context.Canceled) {
			t.Fatalf("awaitTask = %v, want context.Canceled", err)
		}
	})
}
