package statedir

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// holdEnv makes the test binary a helper process that holds the lock on
// the state dir it names until its stdin closes (TestHelperProcess).
const holdEnv = "STATEDIR_TEST_HOLD"

func TestLockedErrorReadsAsTheHolder(t *testing.T) {
	since := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	daemon := &Holder{PID: 1234, Name: "reconciler daemon", Since: since}
	tests := []struct {
		name string
		err  *LockedError
		want string
	}{
		{"names the holder's pid, what it is and since when",
			&LockedError{Dir: "/var/lib/x", Holder: daemon},
			"state dir /var/lib/x is locked by pid 1234 (reconciler daemon since 2026-12-01T21:00:00Z)"},
		{"says another process when the lock file names nobody",
			&LockedError{Dir: "/var/lib/x"},
			"state dir /var/lib/x is locked by another process"},
		{"says how long it waited",
			&LockedError{Dir: "/var/lib/x", Holder: daemon, Waited: 5 * time.Second},
			"state dir /var/lib/x is locked by pid 1234 (reconciler daemon since 2026-12-01T21:00:00Z) after waiting 5s"},
		{"ends with the context's error when the wait was cut short",
			&LockedError{Dir: "/var/lib/x", Waited: 1200 * time.Millisecond, Err: context.Canceled},
			"state dir /var/lib/x is locked by another process after waiting 1.2s: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("Error() (-want +got):\n%s", diff)
			}
			if !errors.Is(tt.err, ErrLocked) {
				t.Errorf("%v does not match ErrLocked", tt.err)
			}
		})
	}
}

func TestLockCreatesTheDirAndNamesTheHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "reconciler")
	before := time.Now().UTC().Truncate(time.Second)
	l := mustLock(t, dir, "reconciler --once")
	after := time.Now().UTC()

	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, FileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	h := holderFile(t, dir)
	if h.Since.Before(before) || h.Since.After(after) {
		t.Errorf("lock file says since %s, want between %s and %s", h.Since, before, after)
	}
	want := Holder{PID: os.Getpid(), Name: "reconciler --once", Since: h.Since}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("lock file (-want +got):\n%s", diff)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, filepath.Join(dir, FileName)); b != "" {
		t.Errorf("lock file after Unlock = %q, want it empty", b)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v, want nil", err)
	}
}

func TestSecondTakerFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	first := mustLock(t, dir, "reconciler daemon")
	h := holderFile(t, dir)

	_, err := Lock(context.Background(), dir, "reconciler --once", 0)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock: %v, want an error matching ErrLocked", err)
	}
	want := fmt.Sprintf("state dir %s is locked by pid %d (reconciler daemon since %s)", dir, os.Getpid(), h.Since.Format(time.RFC3339))
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	if got := holderFile(t, dir); got != h {
		t.Errorf("the failed taker rewrote the lock file: %+v, was %+v", got, h)
	}

	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	mustLock(t, dir, "reconciler --once")
	if got := holderFile(t, dir).Name; got != "reconciler --once" {
		t.Errorf("lock file names %q after the first holder released it, want the new holder", got)
	}
}

func TestLockedByAProcessThatWroteNoHolder(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"an empty lock file", ""},
		{"a lock file that is not JSON", "1234\n"},
		{"a lock file without a pid", `{"name":"reconciler daemon"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			holdRaw(t, path)
			_, err := Lock(context.Background(), dir, "reconciler --once", 0)
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("Lock: %v, want an error matching ErrLocked", err)
			}
			want := "state dir " + dir + " is locked by another process"
			if diff := cmp.Diff(want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLockWaits(t *testing.T) {
	t.Run("takes the lock once the holder releases it", func(t *testing.T) {
		dir := t.TempDir()
		first := mustLock(t, dir, "reconciler daemon")
		released := make(chan error, 1)
		time.AfterFunc(300*time.Millisecond, func() { released <- first.Unlock() })
		mustLockWaiting(t, dir, "reconciler --once", 30*time.Second)
		if err := <-released; err != nil {
			t.Fatal(err)
		}
		if got := holderFile(t, dir).Name; got != "reconciler --once" {
			t.Errorf("lock file names %q, want the waiter", got)
		}
	})
	t.Run("fails after the wait saying how long it waited", func(t *testing.T) {
		dir := t.TempDir()
		mustLock(t, dir, "reconciler daemon")
		h := holderFile(t, dir)
		_, err := Lock(context.Background(), dir, "reconciler --once", 300*time.Millisecond)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("Lock: %v, want an error matching ErrLocked", err)
		}
		want := fmt.Sprintf("state dir %s is locked by pid %d (reconciler daemon since %s) after waiting 300ms",
			dir, os.Getpid(), h.Since.Format(time.RFC3339))
		if diff := cmp.Diff(want, err.Error()); diff != "" {
			t.Errorf("error (-want +got):\n%s", diff)
		}
	})
	t.Run("stops waiting when the context ends", func(t *testing.T) {
		dir := t.TempDir()
		mustLock(t, dir, "reconciler daemon")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := Lock(ctx, dir, "reconciler --once", time.Hour)
		if !errors.Is(err, ErrLocked) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock: %v, want an error matching ErrLocked and context.Canceled", err)
		}
	})
}

func TestLockRefusesAStateDirThatCannotBeCreated(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "state")
	_, err := Lock(context.Background(), dir, "reconciler --once", 0)
	if err == nil || errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Lock under a file: %v, want an error naming %s that does not match ErrLocked", err, dir)
	}
}

// TestLockIsReleasedWhenTheHolderDies kills a child process holding the
// lock, as a crash or SIGKILL would end the daemon: the kernel releases a
// flock with the last descriptor of its file.
func TestLockIsReleasedWhenTheHolderDies(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			if err := cmd.Process.Kill(); err != nil {
				t.Errorf("kill helper %d: %v", cmd.Process.Pid, err)
			}
			_ = cmd.Wait() // killed: the error is the kill
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q (%v), want \"locked\"", line, err)
	}

	_, err = Lock(context.Background(), dir, "reconciler --once", 0)
	var le *LockedError
	if !errors.As(err, &le) || le.Holder == nil {
		t.Fatalf("Lock beside the helper: %v, want a *LockedError naming the helper", err)
	}
	if le.Holder.PID != cmd.Process.Pid || le.Holder.Name != "reconciler daemon" {
		t.Errorf("holder = %+v, want pid %d, reconciler daemon", *le.Holder, cmd.Process.Pid)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper %d: %v", cmd.Process.Pid, err)
	}
	waited = true
	if err := cmd.Wait(); err == nil {
		t.Fatalf("helper %d exited 0 after SIGKILL", cmd.Process.Pid)
	}
	l, err := Lock(context.Background(), dir, "reconciler --once", 0)
	if err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestHelperProcess is the child of TestLockIsReleasedWhenTheHolderDies:
// it takes the lock, says so and holds it until killed or its stdin closes.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(holdEnv)
	if dir == "" {
		return // not the helper: nothing to test
	}
	l, err := Lock(context.Background(), dir, "reconciler daemon", 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
	}
	if err := l.Unlock(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func mustLock(t *testing.T, dir, holder string) *Held {
	t.Helper()
	return mustLockWaiting(t, dir, holder, 0)
}

// mustLockWaiting takes the lock and releases it when the test ends.
func mustLockWaiting(t *testing.T, dir, holder string, wait time.Duration) *Held {
	t.Helper()
	l, err := Lock(context.Background(), dir, holder, wait)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Unlock(); err != nil {
			t.Errorf("Unlock: %v", err)
		}
	})
	return l
}

// holdRaw locks path as another program would, without writing to it,
// until the test ends.
func holdRaw(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock %s: %v", path, err)
	}
}

func holderFile(t *testing.T, dir string) Holder {
	t.Helper()
	var h Holder
	b := readFile(t, filepath.Join(dir, FileName))
	if err := json.Unmarshal([]byte(b), &h); err != nil {
		t.Fatalf("lock file %q: %v", b, err)
	}
	return h
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
