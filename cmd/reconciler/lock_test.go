package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/statedir"
)

// TestStateDirLock runs the reconcile loop against a state dir this test
// holds locked. The context is cancelled, so a command that goes past the
// lock ends at its first containerd call instead of dialling for seconds.
func TestStateDirLock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	reconcile := func(t *testing.T, stateDir string, args ...string) error {
		t.Helper()
		full := append([]string{"--manifests", t.TempDir(), "--state-dir", stateDir,
			"--containerd-address", filepath.Join(t.TempDir(), "containerd.sock")}, args...)
		var out bytes.Buffer
		err := run(ctx, full, nil, &out, &out)
		t.Logf("reconciler %v: %v\n%s", args, err, out.String())
		return err
	}
	hold := func(t *testing.T) (string, statedir.Holder) {
		t.Helper()
		dir := t.TempDir()
		l, err := statedir.Lock(context.Background(), dir, "reconciler daemon", 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := l.Unlock(); err != nil {
				t.Errorf("unlock: %v", err)
			}
		})
		b, err := os.ReadFile(filepath.Join(dir, statedir.FileName))
		if err != nil {
			t.Fatal(err)
		}
		var h statedir.Holder
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatalf("lock file %q: %v", b, err)
		}
		return dir, h
	}

	for _, tt := range []struct {
		name string
		args []string
	}{
		{"--once fails at once naming the holder", []string{"--once"}},
		{"the daemon fails at once naming the holder", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, h := hold(t)
			err := reconcile(t, dir, tt.args...)
			var ee *exitError
			var le *statedir.LockedError
			if !errors.As(err, &ee) || ee.code != 1 || !errors.As(err, &le) || le.Holder == nil {
				t.Fatalf("got %v, want exit 1 with a *statedir.LockedError naming the holder", err)
			}
			want := fmt.Sprintf("state dir %s is locked by pid %d (reconciler daemon since %s)", dir, os.Getpid(), h.Since.Format(time.RFC3339))
			if diff := cmp.Diff(want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("--once --dry-run does not take the lock", func(t *testing.T) {
		dir, _ := hold(t)
		if err := reconcile(t, dir, "--once", "--dry-run"); errors.Is(err, statedir.ErrLocked) {
			t.Errorf("dry run: %v, want it past the lock", err)
		}
	})
	t.Run("--once releases the lock when it ends", func(t *testing.T) {
		dir := t.TempDir()
		if err := reconcile(t, dir, "--once"); err == nil || errors.Is(err, statedir.ErrLocked) {
			t.Fatalf("--once with a cancelled context: %v, want it to fail past the lock", err)
		}
		l, err := statedir.Lock(context.Background(), dir, "test", 0)
		if err != nil {
			t.Fatalf("lock after --once: %v", err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"--wait-lock is refused with --dry-run", []string{"--once", "--dry-run", "--wait-lock", "5s"},
			"--wait-lock with --dry-run: a dry run never takes the state dir lock"},
		{"a negative --wait-lock is refused", []string{"--once", "--wait-lock", "-1s"}, "--wait-lock -1s: want 0 or more"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := reconcile(t, t.TempDir(), tt.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 {
				t.Fatalf("got %v, want exit 1", err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}
