package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Daemon keeps the host converged: a full pass at start, after every
// manifest change and every Resync, and an event-driven reconcile of the
// owning cell on every containerd task exit or container delete. Work goes
// through a keyed queue with per-key retry; one pass runs at a time (its
// executor converges siblings in parallel), so no object is ever worked on
// by two workers at once.
type Daemon struct {
	Reconciler *Reconciler
	// Changes signals that the manifests may have changed (the watcher).
	Changes <-chan struct{}
	// Events are containerd events (task exit, container delete,
	// reconnected).
	Events <-chan ctr.Event
	// Resync is the period of the full relist (default 30s).
	Resync time.Duration
	// ShutdownGrace bounds how long an in-flight pass may run after the
	// daemon is asked to stop (default 10s).
	ShutdownGrace time.Duration
	// OnPass, when set, is called after every pass (metrics, health).
	OnPass func(pr *PassResult, full bool, queueDepth int)
	// OnConnection, when set, is called from the event feed as soon as
	// Events says containerd's connection was lost (false) or is back
	// (true); a pass may be running meanwhile.
	OnConnection func(up bool)

	q     *queue
	mu    sync.Mutex
	index map[string]string // namespace/containerdID → cell key
	// indexed is the tree index was built from (only the pass loop uses it).
	indexed *hierarchy.Tree
	// terminal is what was last logged of each object whose change is
	// refused (or blocked by a refused parent): logged once, not retried.
	terminal map[string]string
}

// Run converges until ctx ends, then lets the in-flight pass finish
// (bounded by ShutdownGrace) and returns nil. Containers keep running.
func (d *Daemon) Run(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	d.q = newQueue(time.Now)
	d.terminal = map[string]string{}
	d.Reconciler.onTree = d.setIndex
	defer func() { d.Reconciler.onTree = nil }()
	resync := d.Resync
	if resync <= 0 {
		resync = 30 * time.Second
	}
	grace := d.ShutdownGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}

	// Passes run on their own context, cancelled only ShutdownGrace after
	// ctx ends, so a stop request lets the current pass finish.
	passCtx, cancelPass := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPass()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-passCtx.Done():
			return
		}
		select {
		case <-time.After(grace):
			cancelPass()
		case <-passCtx.Done():
		}
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		d.feed(ctx, resync)
	}()

	d.q.Add(FullPass)
	for {
		keys := d.q.Wait(ctx)
		if keys == nil {
			log.Info("stopping: no new work is taken")
			cancelPass()
			return nil
		}
		d.runPass(passCtx, keys)
		if ctx.Err() != nil {
			log.Info("stopping after the in-flight pass")
			cancelPass()
			return nil
		}
	}
}

// feed turns watcher changes, containerd events and the resync tick into
// queue keys until ctx ends.
func (d *Daemon) feed(ctx context.Context, resync time.Duration) {
	log := logr.FromContextOrDiscard(ctx)
	tick := time.NewTicker(resync)
	defer tick.Stop()
	changes, events := d.Changes, d.Events
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.q.Add(FullPass)
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			log.V(1).Info("manifests changed")
			d.q.Add(FullPass)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Kind == ctr.EventDisconnected || ev.Kind == ctr.EventReconnected {
				up := ev.Kind == ctr.EventReconnected
				if d.OnConnection != nil {
					d.OnConnection(up)
				}
				if up {
					log.Info("containerd connection re-established")
					d.q.Add(FullPass)
				}
				continue
			}
			// The index is set before a pass applies anything (setIndex),
			// so an exit of a container the pass is starting finds its
			// cell; a key the index lacks is a foreign container.
			d.mu.Lock()
			key := d.index[ev.Namespace+"/"+ev.ContainerID]
			d.mu.Unlock()
			if key != "" {
				log.V(1).Info("container event", "kind", string(ev.Kind), "container", ev.ContainerID, "exitCode", ev.ExitCode, "object", key)
				d.q.Add(key)
			}
		}
	}
}

// setIndex maps every desired container to its cell, before the pass that
// built tree applies anything: an exit event of a container the pass starts
// must find its cell.
func (d *Daemon) setIndex(tree *hierarchy.Tree) {
	if tree == d.indexed {
		return // an event-driven pass reuses the last tree
	}
	d.indexed = tree
	idx := map[string]string{}
	for _, c := range tree.Cells() {
		for _, dc := range c.Containers {
			idx[c.Namespace+"/"+dc.ContainerdID] = c.Key()
		}
	}
	d.mu.Lock()
	d.index = idx
	d.mu.Unlock()
}

func (d *Daemon) runPass(ctx context.Context, keys map[string]bool) {
	log := logr.FromContextOrDiscard(ctx)
	full := keys[FullPass]
	scope := PassScope{Backoff: true}
	if !full {
		scope.Only = keys
	}
	pr := d.Reconciler.Reconcile(ctx, scope)
	switch {
	case pr.Err != nil:
		if errors.Is(pr.Err, ctr.ErrUnavailable) {
			log.Error(pr.Err, "containerd unavailable; retrying")
		} else {
			log.Error(pr.Err, "pass failed")
		}
		for k := range keys {
			d.q.AddRateLimited(k)
		}
	default:
		for _, o := range pr.Outcomes {
			ch := o.Change
			if ch == nil {
				continue
			}
			if !o.Terminal {
				delete(d.terminal, ch.Key)
			}
			switch {
			case o.Terminal:
				// Retrying cannot help until the manifests change, and a
				// manifest change triggers a full pass anyway.
				msg := "blocked by " + o.Blocked
				if o.Err != nil {
					msg = o.Err.Error()
				}
				if d.terminal[ch.Key] != msg {
					d.terminal[ch.Key] = msg
					log.Error(nil, "change refused; not retried until the manifests change", "object", ch.Key, "reason", msg, "source", ch.source())
				}
				d.q.Forget(ch.Key)
			case o.Err != nil:
				log.Error(o.Err, "reconcile failed", "object", ch.Key, "action", string(ch.Action), "source", ch.source())
				d.q.AddRateLimited(ch.Key)
			case o.Blocked != "":
				log.Info("reconcile blocked", "object", ch.Key, "parent", o.Blocked)
				d.q.AddRateLimited(ch.Key)
			case ch.Action == ActionCreated && ch.Implied:
				log.Info(string(ch.Action), "object", ch.Key, "implied", true)
				d.q.Forget(ch.Key)
			case ch.Action == ActionCreated:
				log.Info(string(ch.Action), "object", ch.Key, "source", ch.source())
				d.q.Forget(ch.Key)
			case ch.Action != ActionUnchanged:
				log.Info(string(ch.Action), "object", ch.Key, "detail", ch.Describe())
				d.q.Forget(ch.Key)
			default:
				d.q.Forget(ch.Key)
			}
		}
		for _, r := range pr.Restarts {
			log.Info("restarted container", "object", r.Cell, "container", r.Container, "policy", r.Policy)
		}
		d.q.Forget(FullPass)
		if pr.Plan != nil && pr.Plan.RequeueAfter > 0 {
			d.q.AddAfter(FullPass, pr.Plan.RequeueAfter)
		}
	}
	if d.OnPass != nil {
		d.OnPass(pr, full, d.q.Len())
	}
}
