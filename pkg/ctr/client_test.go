package ctr_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

func TestUnreachableDaemon(t *testing.T) {
	c := ctr.New(ctr.Config{Address: filepath.Join(t.TempDir(), "none.sock"), DialTimeout: time.Second})
	defer c.Close()
	ctx := context.Background()
	start := time.Now()
	if err := c.Ping(ctx); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	t.Logf("ping failed after %v", time.Since(start))
	if _, err := c.ListContainers(ctx, "x"); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("ListContainers = %v, want ErrUnavailable", err)
	}
	t.Logf("list failed after %v", time.Since(start))
	if err := c.EnsureNamespace(ctx, "x"); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("EnsureNamespace = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing took %v", d)
	}

	// The event stream keeps retrying and ends with its context.
	ectx, cancel := context.WithCancel(ctx)
	events := c.Events(ectx)
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case _, open := <-events:
		for open {
			_, open = <-events
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event channel not closed after cancel")
	}

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("Ping after Close = %v, want ErrUnavailable", err)
	}
}

func TestNewCgroupsRejectsANonCgroup2Path(t *testing.T) {
	if _, err := ctr.NewCgroups(t.TempDir()); err == nil {
		t.Error("NewCgroups(tmpdir) succeeded, want an error")
	}
}
