package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/google/go-cmp/cmp"
)

const testNamespace = "testenv-it"

// startIn starts a containerd in a fresh dir of the given path length (0 for
// a short one) and stops it at cleanup. Unlike Start, the test can call Stop
// itself and then look at what is left.
func startIn(t *testing.T, pathLen int) *Containerd {
	t.Helper()
	Require(t)
	dir, err := os.MkdirTemp("", "kit-")
	if err != nil {
		t.Fatal(err)
	}
	if pathLen > len(dir) {
		parent := dir
		t.Cleanup(func() { os.Remove(parent) })
		dir = filepath.Join(dir, strings.Repeat("d", pathLen-len(dir)-1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	c, err := StartContainerd(ctx, dir)
	if err != nil {
		t.Fatalf("StartContainerd: %v", err)
	}
	t.Logf("containerd %d ready in %v at %s", c.PID, time.Since(began).Round(time.Millisecond), c.Address)
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, c *Containerd) (*client.Client, context.Context) {
	t.Helper()
	cl, err := client.New(c.Address, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to %s: %v", c.Address, err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), testNamespace), time.Minute)
	t.Cleanup(cancel)
	return cl, ctx
}

// task is a running container of the test image.
type task struct {
	container client.Container
	task      client.Task
	pid       int
}

// runImage imports the test image and starts a container of it running args
// in cgroup cgroupPath ("" for containerd's default).
// With stdout set, the task's stdout goes there and its stderr is dropped;
// read stdout only after the task's IO is done.
func runImage(ctx context.Context, t *testing.T, c *Containerd, cl *client.Client, id, cgroupPath string, stdout *bytes.Buffer, opts ...oci.SpecOpts) task {
	t.Helper()
	f, err := os.Open(ImageArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	began := time.Now()
	imgs, err := cl.Import(ctx, f)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if got := len(imgs); got != 1 || imgs[0].Name != "docker.io/library/busybox:latest" {
		t.Fatalf("imported %+v, want docker.io/library/busybox:latest", imgs)
	}
	img := client.NewImage(cl, imgs[0])
	if err := img.Unpack(ctx, ""); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	t.Logf("import and unpack took %v", time.Since(began).Round(time.Millisecond))

	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(img)}, opts...)
	if cgroupPath != "" {
		specOpts = append(specOpts, oci.WithCgroup(cgroupPath))
	}
	ctr, err := cl.NewContainer(ctx, id,
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(specOpts...))
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	creator := cio.NullIO
	if stdout != nil {
		creator = cio.NewCreator(cio.WithStreams(nil, stdout, io.Discard), cio.WithFIFODir(filepath.Join(c.State, "fifo")))
	}
	tk, err := ctr.NewTask(ctx, creator)
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	if err := tk.Start(ctx); err != nil {
		t.Fatalf("start task: %v", err)
	}
	return task{container: ctr, task: tk, pid: int(tk.Pid())}
}

func alive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.state != 'Z' && p.state != 'X'
}

// assertNothingLeft checks that a stopped instance left no process, mount,
// directory or runc state behind.
func assertNothingLeft(t *testing.T, c *Containerd, pids ...int) {
	t.Helper()
	if alive(c.PID) {
		t.Errorf("containerd %d still running", c.PID)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still running", pid)
		}
	}
	left, err := c.leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("processes referencing %s still running: %v", c.Address, left)
	}
	ms, err := MountsUnder(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) > 0 {
		t.Errorf("mounts left under %s: %v", c.Dir, ms)
	}
	for _, p := range []string{c.Dir, c.Address, filepath.Join(defaultRuncRoot, testNamespace)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", p, err)
		}
	}
}

func TestStartServesAndStopLeavesNothing(t *testing.T) {
	tests := []struct {
		name    string
		pathLen int
	}{
		{name: "a short dir holds its own socket", pathLen: 0},
		{name: "a dir too long for a unix socket gets its socket under /tmp", pathLen: 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startIn(t, tt.pathLen)
			if len(c.Address) > 107 {
				t.Errorf("socket path %q is %d bytes, over the unix limit", c.Address, len(c.Address))
			}
			cl, ctx := connect(t, c)
			v, err := cl.Version(ctx)
			if err != nil {
				t.Fatalf("Version: %v", err)
			}
			t.Logf("containerd %s", v.Version)
			if err := cl.NamespaceService().Create(ctx, testNamespace, nil); err != nil {
				t.Fatalf("create namespace: %v", err)
			}
			if err := c.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			assertNothingLeft(t, c)
			if c.sockDir != "" {
				if _, err := os.Stat(c.sockDir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket dir %s still exists (%v)", c.sockDir, err)
				}
			}
			if err := c.Stop(); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

func TestContainerRunsOnTheTestImage(t *testing.T) {
	root := CgroupRoot(t) // first, so its cleanup runs after Stop
	c := startIn(t, 0)
	unified, err := UnifiedMount()
	if err != nil {
		t.Fatal(err)
	}
	cl, ctx := connect(t, c)

	sleeper := runImage(ctx, t, c, cl, "sleeper", root+"/sleeper", nil, oci.WithProcessArgs("sleep", "600"))
	st, err := sleeper.task.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.Status != client.Running {
		t.Errorf("task status = %s, want running", st.Status)
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", sleeper.pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::" + root + "/sleeper\n"; !strings.Contains(string(cg), want) {
		t.Errorf("/proc/%d/cgroup lacks %q:\n%s", sleeper.pid, want, cg)
	}
	if _, err := os.Stat(filepath.Join(unified, root, "sleeper")); err != nil {
		t.Errorf("container cgroup in the unified mount: %v", err)
	}

	// /etc/passwd in the image makes user nobody resolvable.
	var out bytes.Buffer
	who := runImage(ctx, t, c, cl, "who", root+"/who", &out, oci.WithProcessArgs("id"), oci.WithUser("nobody"))
	wait, err := who.task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status := <-wait
	who.task.IO().Wait()
	if _, err := who.task.Delete(ctx); err != nil {
		t.Errorf("delete task: %v", err)
	}
	if status.ExitCode() != 0 || !strings.HasPrefix(out.String(), "uid=65534(nobody) gid=65534(nobody)") {
		t.Errorf("id as nobody: exit %d, output %q", status.ExitCode(), out.String())
	}
	if err := who.container.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Errorf("delete container: %v", err)
	}

	wait, err = sleeper.task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	<-wait
	if _, err := sleeper.task.Delete(ctx); err != nil {
		t.Fatalf("delete task: %v", err)
	}
	if err := sleeper.container.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatalf("delete container: %v", err)
	}
	if alive(sleeper.pid) {
		t.Errorf("sleep %d still running after delete", sleeper.pid)
	}

	// runc leaves the parents it created in every hierarchy; the tree
	// removal must take them all.
	if err := RemoveCgroupTree(root); err != nil {
		t.Fatalf("RemoveCgroupTree: %v", err)
	}
	mps, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range mps {
		if _, err := os.Stat(filepath.Join(mp, root)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", filepath.Join(mp, root), err)
		}
	}
}

func TestStopEndsWhatTheDaemonLeftRunning(t *testing.T) {
	tests := []struct {
		name string
		// before runs between starting the task and Stop.
		before func(t *testing.T, c *Containerd, sleeper task)
	}{
		{
			name:   "a running task's shim and container end with the daemon",
			before: func(t *testing.T, c *Containerd, sleeper task) {},
		},
		{
			name: "after a kill the shim keeps the task, a restart adopts it, and stop ends it",
			before: func(t *testing.T, c *Containerd, sleeper task) {
				old := c.PID
				if err := c.Kill(); err != nil {
					t.Fatalf("Kill: %v", err)
				}
				if alive(old) {
					t.Fatalf("containerd %d alive after Kill", old)
				}
				if !alive(sleeper.pid) {
					t.Fatalf("sleep %d died with containerd", sleeper.pid)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				began := time.Now()
				if err := c.Restart(ctx); err != nil {
					t.Fatalf("Restart: %v", err)
				}
				t.Logf("restarted in %v", time.Since(began).Round(time.Millisecond))
				cl, ctx := connect(t, c)
				ctr, err := cl.LoadContainer(ctx, "sleeper")
				if err != nil {
					t.Fatalf("load container after restart: %v", err)
				}
				tk, err := ctr.Task(ctx, nil)
				if err != nil {
					t.Fatalf("load task after restart: %v", err)
				}
				st, err := tk.Status(ctx)
				if err != nil || st.Status != client.Running || int(tk.Pid()) != sleeper.pid {
					t.Errorf("task after restart: status %v (%v), pid %d, want running pid %d", st.Status, err, tk.Pid(), sleeper.pid)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := CgroupRoot(t)
			c := startIn(t, 0)
			cl, ctx := connect(t, c)
			sleeper := runImage(ctx, t, c, cl, "sleeper", root+"/sleeper", nil, oci.WithProcessArgs("sleep", "600"))
			shims, err := c.leftovers()
			if err != nil {
				t.Fatal(err)
			}
			if len(shims) == 0 {
				t.Fatal("found no shim process referencing the instance")
			}
			ms, err := MountsUnder(c.Dir)
			if err != nil || len(ms) == 0 {
				t.Errorf("want the container rootfs mounted under %s, got %v (%v)", c.Dir, ms, err)
			}
			tt.before(t, c, sleeper)
			began := time.Now()
			if err := c.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			t.Logf("stop took %v", time.Since(began).Round(time.Millisecond))
			assertNothingLeft(t, c, append(shims, sleeper.pid)...)
			if err := RemoveCgroupTree(root); err != nil {
				t.Errorf("cgroups after Stop: %v", err)
			}
		})
	}
}

func TestRemoveCgroupTree(t *testing.T) {
	Require(t)
	unified, err := UnifiedMount()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// dirs are created under the root in the unified mount; busy gets a
		// sleep process moved into it.
		dirs []string
		busy string
		want func(root string) []string // cgroups left, relative to the unified mount
	}{
		{
			name: "removes a nested tree, children before parents",
			dirs: []string{"a/b/c", "a/d", "e"},
			want: func(string) []string { return nil },
		},
		{
			name: "keeps a cgroup with a process and its ancestors, removes the rest",
			dirs: []string{"a/busy", "a/idle", "b"},
			busy: "a/busy",
			want: func(root string) []string { return []string{root, root + "/a", root + "/a/busy"} },
		},
		{
			name: "a root that exists nowhere is no error",
			want: func(string) []string { return nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := CgroupRoot(t)
			for _, d := range tt.dirs {
				if err := os.MkdirAll(filepath.Join(unified, root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var sleep *exec.Cmd
			if tt.busy != "" {
				sleep = exec.Command("sleep", "600")
				if err := sleep.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() {
					sleep.Process.Kill()
					sleep.Wait()
					if err := RemoveCgroupTree(root); err != nil {
						t.Errorf("RemoveCgroupTree once the process is gone: %v", err)
					}
				}()
				procs := filepath.Join(unified, root, tt.busy, "cgroup.procs")
				if err := os.WriteFile(procs, []byte(fmt.Sprint(sleep.Process.Pid)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := RemoveCgroupTree(root)
			var busy *BusyError
			if tt.busy == "" && err != nil {
				t.Errorf("RemoveCgroupTree: %v", err)
			}
			if tt.busy != "" {
				want := &BusyError{Path: filepath.Join(unified, root, tt.busy), PIDs: []string{fmt.Sprint(sleep.Process.Pid)}}
				if !errors.As(err, &busy) {
					t.Fatalf("RemoveCgroupTree = %v, want a BusyError", err)
				}
				if diff := cmp.Diff(want, busy); diff != "" {
					t.Errorf("BusyError (-want +got):\n%s", diff)
				}
			}
			var left []string
			filepath.WalkDir(filepath.Join(unified, root), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					left = append(left, strings.TrimPrefix(p, unified))
				}
				return nil
			})
			if diff := cmp.Diff(tt.want(root), left); diff != "" {
				t.Errorf("cgroups left (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRemoveCgroupTreeRefusesPathsItDoesNotOwn(t *testing.T) {
	for _, root := range []string{"/", "", "kukeon-it-x", "/kukeon-it-x/../", "/a//b"} {
		if err := RemoveCgroupTree(root); err == nil {
			t.Errorf("RemoveCgroupTree(%q) = nil, want an error", root)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"a plain path is unchanged", "/tmp/a", "/tmp/a"},
		{"an escaped space is decoded", `/tmp/a\040b`, "/tmp/a b"},
		{"an escaped backslash is decoded", `/tmp/a\134b`, `/tmp/a\b`},
		{"a trailing backslash is kept", `/tmp/a\`, `/tmp/a\`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unescapeMount(tt.in); got != tt.want {
				t.Errorf("unescapeMount(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCgroupRootCleanupRemovesItsTree(t *testing.T) {
	Require(t)
	unified, err := UnifiedMount()
	if err != nil {
		t.Fatal(err)
	}
	var root string
	t.Run("a test that makes cgroups under its root", func(t *testing.T) {
		root = CgroupRoot(t)
		if !strings.HasPrefix(root, "/kukeon-it-") || len(root) != len("/kukeon-it-")+8 {
			t.Errorf("CgroupRoot = %q, want /kukeon-it-<8 hex>", root)
		}
		if other := CgroupRoot(t); other == root {
			t.Errorf("two CgroupRoot calls gave the same path %s", root)
		}
		if err := os.MkdirAll(filepath.Join(unified, root, "realm/space/stack"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(filepath.Join(unified, root)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after the test's cleanup (%v)", filepath.Join(unified, root), err)
	}
}
