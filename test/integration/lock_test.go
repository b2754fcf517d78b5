package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/statedir"
)

// lockCell is a cell lab/web/blog/<name> whose container app runs the
// shell command given.
const lockCell = `kind: Cell
metadata: {name: %s}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: app
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", %q]
      restartPolicy: always
      stopGracePeriodSeconds: 1
`

// TestLockOnceBesideOnce holds the state dir lock from the test as a
// --once in the middle of its pass would (a real one that takes a while
// cannot be timed: its cell may get ready at any moment) and runs other
// reconcilers beside it.
func TestLockOnceBesideOnce(t *testing.T) {
	h := newHost(t)
	h.writeFile("app.yaml", fmt.Sprintf(lockCell, "app", "exec sleep 3600"))
	lock, err := statedir.Lock(context.Background(), h.state, "reconciler --once", 0)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			if err := lock.Unlock(); err != nil {
				t.Errorf("unlock: %v", err)
			}
		}
	})
	holder := h.waitHolder(os.Getpid())

	// A second --once fails at once, naming the holder, and changes nothing.
	out := h.mustRun(1, "--once")
	want := fmt.Sprintf("reconciler: state dir %s is locked by pid %d (reconciler --once since %s)\n",
		h.state, os.Getpid(), holder.Since.Format(time.RFC3339))
	if out != want {
		t.Errorf("second --once: output = %q, want %q", out, want)
	}
	// A dry run plans beside it.
	h.mustRun(2, "--once", "--dry-run")

	// --wait-lock waits for the holder, touching nothing, then converges.
	waiter := h.start("--once", "--wait-lock", "90s")
	h.waitOpened(waiter.pid(), filepath.Join(h.state, statedir.FileName))
	if got := h.tasks(h.ns); len(got) != 0 {
		t.Errorf("containers created before the lock was released: %v", got)
	}
	released = true
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	if out, code := waiter.wait(); code != 0 {
		t.Fatalf("--once --wait-lock: exit %d, want 0\n%s", code, out)
	}
	if st := cellStatus(h.status(), "app"); st == nil || st.State != controller.StateReady {
		t.Errorf("cell app after the waiter: %+v, want Ready", st)
	}
	again, err := statedir.Lock(context.Background(), h.state, "test", 0)
	if err != nil {
		t.Fatalf("lock after the waiter ended: %v", err)
	}
	if err := again.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestLockOnceBesideTheDaemon: the daemon holds the state dir while it
// runs; --once beside it fails at once, or waits for it to stop.
func TestLockOnceBesideTheDaemon(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("app.yaml", fmt.Sprintf(lockCell, "app", "exec sleep 3600"))
	d := h.startDaemon()
	d.firstPass()
	holder := h.waitHolder(d.cmd.Process.Pid)
	if holder.Name != "reconciler daemon" {
		t.Errorf("lock file names %q, want reconciler daemon", holder.Name)
	}
	waitFor(t, "cell app ready", deadline, func() (bool, string) {
		st := cellStatus(h.tryStatus(), "app")
		return st != nil && st.State == controller.StateReady, fmt.Sprintf("%+v", st)
	})

	out := h.mustRun(1, "--once")
	want := fmt.Sprintf("reconciler: state dir %s is locked by pid %d (reconciler daemon since %s)\n",
		h.state, d.cmd.Process.Pid, holder.Since.Format(time.RFC3339))
	if out != want {
		t.Errorf("--once beside the daemon: output = %q, want %q", out, want)
	}
	h.mustRun(0, "--once", "--dry-run")

	waiter := h.start("--once", "--wait-lock", "60s")
	h.waitOpened(waiter.pid(), filepath.Join(h.state, statedir.FileName))
	if code, err := d.stop(); err != nil || code != 0 {
		t.Fatalf("stop daemon: exit %d, %v", code, err)
	}
	if out, code := waiter.wait(); code != 0 {
		t.Errorf("--once --wait-lock after the daemon stopped: exit %d, want 0\n%s", code, out)
	}
}

// background is a reconciler run as a subprocess while the test goes on.
type background struct {
	t    *testing.T
	args []string // the test's own, for the log
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

// start runs the reconciler with the host's flags and args in the
// background. A cleanup kills it if the test did not wait for it.
func (h *host) start(args ...string) *background {
	h.t.Helper()
	b := &background{t: h.t, args: args, cmd: exec.Command(binary, h.args(args...)...), done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		h.t.Fatalf("start reconciler: %v", err)
	}
	go func() {
		// The exit status is read from ProcessState in wait.
		_ = b.cmd.Wait()
		close(b.done)
	}()
	h.t.Cleanup(func() {
		select {
		case <-b.done:
			return
		default:
		}
		if err := b.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			h.t.Errorf("kill reconciler %d: %v", b.pid(), err)
		}
		<-b.done
	})
	return b
}

func (b *background) pid() int { return b.cmd.Process.Pid }

// wait waits up to 3 minutes for the run to end and returns its output and
// exit code.
func (b *background) wait() (string, int) {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(3 * time.Minute):
		b.t.Fatalf("reconciler %d still running after 3m", b.pid())
	}
	code := b.cmd.ProcessState.ExitCode()
	b.t.Logf("reconciler %s → exit %d\n%s", strings.Join(b.args, " "), code, b.out.String())
	return b.out.String(), code
}

// waitHolder waits until the state dir's lock file names pid and returns
// what it says.
func (h *host) waitHolder(pid int) statedir.Holder {
	h.t.Helper()
	var got statedir.Holder
	waitFor(h.t, fmt.Sprintf("pid %d holds the state dir lock", pid), deadline, func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(h.state, statedir.FileName))
		if err != nil {
			return false, err.Error()
		}
		got = statedir.Holder{}
		if err := json.Unmarshal(b, &got); err != nil {
			return false, fmt.Sprintf("lock file %q: %v", b, err)
		}
		return got.PID == pid, fmt.Sprintf("lock file %q", b)
	})
	return got
}

// waitOpened waits until process pid has path open: a reconciler waiting
// for the lock keeps its lock file open while it retries.
func (h *host) waitOpened(pid int, path string) {
	h.t.Helper()
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		h.t.Fatal(err)
	}
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	waitFor(h.t, fmt.Sprintf("pid %d opened %s", pid, path), deadline, func() (bool, string) {
		entries, err := os.ReadDir(fds)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && target == path {
				return true, ""
			}
		}
		return false, "not among its open files"
	})
}
