package main

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// Latency waits give up after this long: a daemon that only converges on
// its resync (30 s) still finishes every run.
const latencyTimeout = 90 * time.Second

// grace is the cells' stopGracePeriodSeconds.
const grace = time.Second

// latencyRealm holds the direct-client cell of the latency floors.
const latencyRealm = "dlat"

// rig is what a latency scenario runs against: the daemon over n cells of
// the steady site and, in another realm, one cell the direct client
// brought up, for the floor measured run by run beside it.
type rig struct {
	s  *site
	ns string // the steady site's namespace
	d  *daemon
	dl *direct
}

// withRig sets up the rig, runs measure and takes the rig down.
func (e *env) withRig(ctx context.Context, n int, measure func(r *rig) error) error {
	s, err := e.steadyAt(ctx, n)
	if err != nil {
		return err
	}
	defer func() {
		if err := e.teardownRealm(ctx, latencyRealm); err != nil {
			e.logf("%v", err)
		}
	}()
	dl, err := e.newDirect(ctx, latencyRealm, 1)
	if err == nil {
		err = dl.up()
	}
	if err == nil {
		err = dl.cell(0)
	}
	if err != nil {
		return err
	}
	e.logf("starting the daemon over %d cells", n)
	return e.withDaemon(ctx, s, time.Second, func(d *daemon) error {
		return measure(&rig{s: s, ns: e.namespace(s.realm), d: d, dl: dl})
	})
}

// untilStart runs act and returns the milliseconds from just before it to
// containerd's start event of container id in ns.
func (e *env) untilStart(ctx context.Context, ns, id string, act func() error) (float64, error) {
	start := time.Now()
	if err := act(); err != nil {
		return 0, err
	}
	at, err := e.starts.wait(ctx, ns, id, start, latencyTimeout)
	if err != nil {
		return 0, err
	}
	return ms(at.Sub(start)), nil
}

// changeLatency times one env edit of a cell file to the start of the
// recreated workload, against the direct client's recreate.
func (e *env) changeLatency(ctx context.Context, sc *Scenario, n int, p params) error {
	sc.note("one env edit (write a dotfile, rename it over the cell's file) → containerd's start event of the recreated workload; the workload ignores SIGTERM, so both include the 1 s grace period")
	sc.note("direct-recreate = SIGTERM, 1 s grace, SIGKILL, delete task and container, create and start the new revision with the containerd client, on a cell of another realm")
	var rec, base []float64
	err := e.withRig(ctx, n, func(r *rig) error {
		for k := range p.runs {
			e.logf("%s run %d/%d", sc.Name, k+1, p.runs)
			t, err := e.untilStart(ctx, r.dl.ns, workloadContainerdID(0), func() error { return r.dl.recreate(0, k+1, grace) })
			if err != nil {
				return fmt.Errorf("direct-recreate: %w", err)
			}
			base = append(base, t)

			i := (k*37 + 3) % n
			rename, err := replaceCell(r.s.manifests, r.s.realm, i, k+1)
			if err != nil {
				return err
			}
			before := time.Now()
			if t, err = e.untilStart(ctx, r.ns, workloadContainerdID(i), rename); err != nil {
				return fmt.Errorf("reconciler: %w\n%s", err, r.d.logTail(10))
			}
			rec = append(rec, t)
			r.d.settle(ctx, 500*time.Millisecond, 30*time.Second)
			if others := len(e.starts.since(r.ns, before)) - 1; others > 0 {
				sc.note("run %d: %d other container(s) of the realm started too", k+1, others)
			}
		}
		return nil
	})
	sc.measured(rec, map[string][]float64{"direct-recreate": base})
	return err
}

// crashRestart times a SIGKILL of a workload task to the start of its new
// task, against the runtime's own restart done with the direct client.
func (e *env) crashRestart(ctx context.Context, sc *Scenario, n int, p params) error {
	sc.note("SIGKILL of a workload task (restartPolicy always, a different cell each run, so every restart is a first one without backoff) → containerd's start event of its new task")
	sc.note("direct-restart = the runtime's own restart: wait for the exit, delete the task, create and start a new one, with the containerd client")
	var rec, base []float64
	err := e.withRig(ctx, n, func(r *rig) error {
		nctx := namespaces.WithNamespace(ctx, r.ns)
		for k := range p.runs {
			e.logf("%s run %d/%d", sc.Name, k+1, p.runs)
			t, err := e.untilStart(ctx, r.dl.ns, workloadContainerdID(0), func() error { return r.dl.crash(0) })
			if err != nil {
				return fmt.Errorf("direct-restart: %w", err)
			}
			base = append(base, t)

			id := workloadContainerdID(n - 1 - (k*17)%n)
			t, err = e.untilStart(ctx, r.ns, id, func() error { return killTask(nctx, e.raw, id) })
			if err != nil {
				return fmt.Errorf("reconciler: %w\n%s", err, r.d.logTail(10))
			}
			rec = append(rec, t)
			r.d.settle(ctx, 500*time.Millisecond, 30*time.Second)
		}
		return nil
	})
	sc.measured(rec, map[string][]float64{"direct-restart": base})
	if err != nil {
		return err
	}
	over := sc.Reconciler.Median - sc.Baselines["direct-restart"].Median
	sc.Counters = map[string]float64{"overheadMs": round(over)}
	sc.Verdict = VerdictMet
	if over >= 100 {
		sc.Verdict = VerdictMissed
	}
	return nil
}
