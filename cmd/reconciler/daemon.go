package main

import (
	"context"
	"io"
	"time"

	"github.com/go-logr/logr"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
)

// runDaemon converges continuously: a pass at start, then after every
// containerd event (task exit, container delete) and every --resync.
func runDaemon(ctx context.Context, rc *controller.Reconciler, f *reconcileFlags, _, _ io.Writer) error {
	log := logr.FromContextOrDiscard(ctx)
	trigger := make(chan struct{}, 1)
	kick := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	if ev, ok := rc.Runtime.(interface {
		Events(context.Context) <-chan ctr.Event
	}); ok {
		go func() {
			for range ev.Events(ctx) {
				kick()
			}
		}()
	}
	kick()
	ticker := time.NewTicker(f.resync)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return nil
		case <-ticker.C:
			kick()
		case <-trigger:
			pr := rc.Pass(ctx)
			c := pr.Plan
			if pr.Err != nil {
				log.Error(pr.Err, "pass failed")
				continue
			}
			log.Info("pass done", "ok", pr.OK(), "duration", pr.Duration.String(), "counts", c.Counts())
		}
	}
}
