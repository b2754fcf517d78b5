package ctr_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// TestDeleteContainerRemovesItsLog: the log file under the state dir goes
// with its container; a missing one is fine; one the caller put elsewhere
// is the caller's.
func TestDeleteContainerRemovesItsLog(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	ns := e.freshNamespaces("logs")(t)
	e.byHand(t, ns)
	elsewhere := filepath.Join(t.TempDir(), "kept.log")
	echo := func(id, logPath string) ctr.ContainerSpec {
		return ctr.ContainerSpec{ID: id, Image: busybox, Command: "sh", Args: []string{"-c", "echo hello; exec sleep 3600"}, LogPath: logPath}
	}
	tests := []struct {
		name  string
		spec  ctr.ContainerSpec
		start bool
		path  string // the log file to look at
		kept  bool   // it must still be there after the delete
	}{
		{
			name:  "the log of a container that ran is removed with it",
			spec:  echo("ran", ""),
			start: true,
			path:  filepath.Join(e.state, "logs", ns, "ran.log"),
		},
		{
			name:  "a log path under the state dir given in the spec is removed too",
			spec:  echo("given", filepath.Join(e.state, "logs", ns, "given.log")),
			start: true,
			path:  filepath.Join(e.state, "logs", ns, "given.log"),
		},
		{
			name: "a container that never ran has no log, which is fine",
			spec: echo("never", ""),
			path: filepath.Join(e.state, "logs", ns, "never.log"),
		},
		{
			name:  "a log path the caller chose outside the state dir is kept",
			spec:  echo("elsewhere", elsewhere),
			start: true,
			path:  elsewhere,
			kept:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if err := e.client.CreateContainer(ctx, ns, tt.spec); err != nil {
				t.Fatalf("CreateContainer: %v", err)
			}
			t.Cleanup(func() { _ = e.client.DeleteContainer(context.Background(), ns, tt.spec.ID, 0) })
			if tt.start {
				if _, err := e.client.StartContainer(ctx, ns, tt.spec.ID); err != nil {
					t.Fatalf("StartContainer: %v", err)
				}
				waitFor(t, 10*time.Second, func() bool {
					b, _ := os.ReadFile(tt.path)
					return strings.Contains(string(b), "hello")
				}, func() string { b, err := os.ReadFile(tt.path); return string(b) + " " + errString(err) })
			}
			if err := e.client.DeleteContainer(ctx, ns, tt.spec.ID, 0); err != nil {
				t.Fatalf("DeleteContainer: %v", err)
			}
			_, err := os.Stat(tt.path)
			switch {
			case tt.kept && err != nil:
				t.Errorf("log %s after the delete: %v, want it kept", tt.path, err)
			case !tt.kept && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("log %s after the delete: stat = %v, want it gone", tt.path, err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
