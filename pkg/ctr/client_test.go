package ctr_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// TestUnreachableDaemon: every call fails with ErrUnavailable on the
// client's own dial timeout, not by waiting for the caller's context.
func TestUnreachableDaemon(t *testing.T) {
	c := ctr.New(ctr.Config{Address: filepath.Join(t.TempDir(), "none.sock"), DialTimeout: time.Second})
	defer c.Close()
	// A functional deadline far above the dial timeout: a call that
	// returned only because this expired did not honour DialTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	if _, err := c.ListContainers(ctx, "x"); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("ListContainers = %v, want ErrUnavailable", err)
	}
	if err := c.EnsureNamespace(ctx, "x"); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("EnsureNamespace = %v, want ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the calls outlived the caller's deadline: %v; want them to fail on the dial timeout", ctx.Err())
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
