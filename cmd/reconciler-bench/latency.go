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

// latencies runs change latency and crash-to-restart against the daemon
// over n converged cells. Each run is paired with its direct-client floor
// on a cell of a separate realm, interleaved so both see the same machine.
func (e *env) latencies(ctx context.Context, s *site, n, runs int, want func(string) bool) []Scenario {
	change := Scenario{
		Name: fmt.Sprintf("change-latency-n%d", n), Title: fmt.Sprintf("change latency, 1 of %d cells", n),
		Unit: "ms", Target: "none set (report; floor = direct-recreate)", Verdict: VerdictNone,
	}
	change.note("one env edit (write a dotfile, rename it over the cell's file) → containerd's start event of the recreated workload; the workload ignores SIGTERM, so both include the 1 s grace period")
	change.note("direct-recreate = SIGTERM, 1 s grace, SIGKILL, delete task and container, create and start the new revision with the containerd client, on a cell of another realm")
	crash := Scenario{
		Name: fmt.Sprintf("crash-restart-n%d", n), Title: fmt.Sprintf("crash to restart, 1 of %d cells", n),
		Unit: "ms", Target: "< direct-restart + 100 ms", Verdict: VerdictNone,
	}
	crash.note("SIGKILL of a workload task (restartPolicy always, a different cell each run, so every restart is a first one without backoff) → containerd's start event of its new task")
	crash.note("direct-restart = the runtime's own restart: wait for the exit, delete the task, create and start a new one, with the containerd client")
	var out []*Scenario
	if want("change") {
		out = append(out, &change)
	}
	if want("crash") {
		out = append(out, &crash)
	}
	result := func() []Scenario {
		var r []Scenario
		for _, sc := range out {
			r = append(r, *sc)
		}
		return r
	}
	fail := func(err error) []Scenario {
		for _, sc := range out {
			sc.fail(err)
		}
		return result()
	}

	dl, err := e.newDirect(ctx, "dlat")
	if err != nil {
		return fail(err)
	}
	if err := dl.cell(0); err != nil {
		return fail(err)
	}
	defer func() {
		if err := e.teardownRealm(ctx, "dlat"); err != nil {
			e.logf("%v", err)
		}
	}()
	e.logf("starting the daemon over %d cells", n)
	d, err := e.startDaemon(ctx, s)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := d.stop(); err != nil {
			e.logf("%v", err)
		}
	}()
	d.settle(ctx, time.Second, time.Minute)
	ns := namespaceOf(s.realm)
	nctx := namespaces.WithNamespace(ctx, ns)

	if want("change") {
		var rec, base []float64
		for r := range runs {
			e.logf("%s run %d/%d", change.Name, r+1, runs)
			start := time.Now()
			if err := dl.recreate(0, r+1, grace); err != nil {
				change.fail(fmt.Errorf("direct-recreate: %w", err))
				break
			}
			at, err := e.starts.wait(ctx, dl.ns, workloadContainerdID(0), start, latencyTimeout)
			if err != nil {
				change.fail(fmt.Errorf("direct-recreate: %w", err))
				break
			}
			base = append(base, ms(at.Sub(start)))

			i := (r*37 + 3) % n
			rename, err := replaceCell(s.manifests, s.realm, i, r+1)
			if err != nil {
				change.fail(err)
				break
			}
			start = time.Now()
			if err := rename(); err != nil {
				change.fail(err)
				break
			}
			at, err = e.starts.wait(ctx, ns, workloadContainerdID(i), start, latencyTimeout)
			if err != nil {
				change.fail(fmt.Errorf("reconciler: %w\n%s", err, d.logTail(10)))
				break
			}
			rec = append(rec, ms(at.Sub(start)))
			d.settle(ctx, 500*time.Millisecond, 30*time.Second)
			if others := len(e.starts.since(ns, start)) - 1; others > 0 {
				change.note("run %d: %d other container(s) of the realm started too", r+1, others)
			}
		}
		finishLatency(&change, rec, base, "direct-recreate")
	}
	if want("crash") {
		var rec, base []float64
		for r := range runs {
			e.logf("%s run %d/%d", crash.Name, r+1, runs)
			start := time.Now()
			exited, task, err := killTask(dl.ctx, e.raw, workloadContainerdID(0))
			if err == nil {
				err = dl.restart(0, exited, task)
			}
			if err != nil {
				crash.fail(fmt.Errorf("direct-restart: %w", err))
				break
			}
			at, err := e.starts.wait(ctx, dl.ns, workloadContainerdID(0), start, latencyTimeout)
			if err != nil {
				crash.fail(fmt.Errorf("direct-restart: %w", err))
				break
			}
			base = append(base, ms(at.Sub(start)))

			i := n - 1 - (r*17)%n
			start = time.Now()
			if _, _, err := killTask(nctx, e.raw, workloadContainerdID(i)); err != nil {
				crash.fail(err)
				break
			}
			at, err = e.starts.wait(ctx, ns, workloadContainerdID(i), start, latencyTimeout)
			if err != nil {
				crash.fail(fmt.Errorf("reconciler: %w\n%s", err, d.logTail(10)))
				break
			}
			rec = append(rec, ms(at.Sub(start)))
			d.settle(ctx, 500*time.Millisecond, 30*time.Second)
		}
		finishLatency(&crash, rec, base, "direct-restart")
		if crash.Reconciler != nil && crash.Error == "" {
			over := crash.Reconciler.Median - crash.Baselines["direct-restart"].Median
			crash.Counters = map[string]float64{"overheadMs": round(over)}
			crash.Verdict = VerdictMet
			if over >= 100 {
				crash.Verdict = VerdictMissed
			}
		}
	}
	return result()
}

func finishLatency(sc *Scenario, rec, base []float64, baseline string) {
	if len(rec) > 0 {
		r := summarize(rec)
		sc.Reconciler = &r
	}
	if len(base) > 0 {
		sc.Baselines = map[string]Stats{baseline: summarize(base)}
	}
	sc.setRatios()
}
