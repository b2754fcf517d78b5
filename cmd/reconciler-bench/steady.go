package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// steadyRealm holds the converged cells of the no-op, change, crash and
// footprint scenarios.
const steadyRealm = "steady"

// steadySite is the one site those scenarios share. It only grows, so they
// run in growing N; a daemon started on it adopts the running cells.
type steadySite struct {
	site  *site
	cells int
	err   error // a failed growth: every later scenario reports it
}

// steadyAt returns the steady site converged with n cells, growing it
// with `reconciler --once` when it has fewer.
func (e *env) steadyAt(ctx context.Context, n int) (*site, error) {
	st := &e.steady
	if st.err == nil && n < st.cells {
		return nil, fmt.Errorf("the steady site has %d cells, more than %d: scenarios over it must run in growing N", st.cells, n)
	}
	if st.err == nil && (st.site == nil || n > st.cells) {
		if st.err = e.growSteady(ctx, n); st.err != nil {
			st.err = fmt.Errorf("steady site of %d cells: %w", n, st.err)
		}
	}
	if st.err != nil {
		return nil, st.err
	}
	return st.site, nil
}

func (e *env) growSteady(ctx context.Context, n int) (err error) {
	st := &e.steady
	if st.site == nil {
		if st.site, err = e.newSite("steady", steadyRealm); err != nil {
			return err
		}
	}
	e.logf("converging %d cells for the steady scenarios", n)
	if err := writeCells(st.site.manifests, steadyRealm, st.cells, n); err != nil {
		return err
	}
	took, err := e.once(ctx, st.site)
	if err != nil {
		return err
	}
	e.logf("converged %d cells (%d new) with --once in %s", n, n-st.cells, took.Round(time.Millisecond))
	st.cells = n
	return nil
}

// noopPass measures passes over n converged cells: wall time, containerd
// calls and cgroup writes. The reconciler runs in this process, wired as
// cmd/reconciler wires it, with counting decorators around the runtime
// and the cgroup tree.
func (e *env) noopPass(ctx context.Context, sc *Scenario, n int, p params) error {
	sc.note("reconciler = one full pass (load, build, observe, plan, status) in-process with the loader cache warm, as the daemon's resync; direct-list = the containerd reads a pass cannot avoid (list our containers + list tasks, 2 RPCs)")
	sc.note("calls are counted at the controller's Runtime and Cgroups interfaces; mutatingCalls counts EnsureNamespace/EnsureImage/Create/Start/Stop/Delete/UpdateLabels and cgroup Ensure/Write/Remove; cgroupWrites counts interface-file writes")
	s, err := e.steadyAt(ctx, n)
	if err != nil {
		return err
	}
	cg, err := ctr.NewCgroups(e.mount)
	if err != nil {
		return err
	}
	client := ctr.New(ctr.Config{Address: e.ctd.Address, StateDir: s.state, ImageArchives: e.archives, PauseBinary: e.binary})
	defer client.Close()
	rt, ct := &tally{}, &tally{}
	rc := &controller.Reconciler{
		Runtime: countingRuntime{inner: client, t: rt},
		Cgroups: countingCgroups{inner: cg, t: ct},
		Loader:  manifest.NewLoader(manifest.Options{}),
		Opts: controller.Options{
			Manifests: []string{s.manifests}, StateDir: s.state, Hierarchy: e.hierarchy(),
			Prune: true, Workers: coldParallelism, Timeout: 2 * time.Minute,
		},
	}
	if pr := rc.Pass(ctx); !pr.OK() {
		return fmt.Errorf("warm-up pass: %v", pr.Errors())
	}
	rt.take()
	ct.take()

	var wall, rtCalls, cgCalls, onceMs, direct []float64
	maxWrites, maxMut := 0, 0
	for r := range p.runs {
		e.logf("%s run %d/%d", sc.Name, r+1, p.runs)
		w0 := cg.Writes()
		start := time.Now()
		pr := rc.Pass(ctx)
		took := time.Since(start)
		nr, mr := rt.take()
		nc, mc := ct.take()
		if !pr.OK() {
			return fmt.Errorf("pass %d: %v", r+1, pr.Errors())
		}
		if pr.Plan.HasChanges() {
			sc.note("run %d planned changes: %v", r+1, pr.Plan.Counts())
		}
		wall = append(wall, ms(took))
		rtCalls, cgCalls = append(rtCalls, float64(nr)), append(cgCalls, float64(nc))
		maxWrites, maxMut = max(maxWrites, int(cg.Writes()-w0)), max(maxMut, mr+mc)

		d, err := e.directList(ctx, e.namespace(s.realm), 2*n)
		if err != nil {
			return err
		}
		once, err := e.once(ctx, s)
		if err != nil {
			return err
		}
		direct, onceMs = append(direct, ms(d)), append(onceMs, ms(once))
	}
	sc.measured(wall, map[string][]float64{"direct-list": direct})
	sc.Counters = map[string]float64{
		"runtimeCalls":  summarize(rtCalls).Median,
		"cgroupCalls":   summarize(cgCalls).Median,
		"cgroupWrites":  float64(maxWrites),
		"mutatingCalls": float64(maxMut),
		"onceProcessMs": summarize(onceMs).Median,
	}
	sc.note("cgroupWrites and mutatingCalls are the maximum over the runs; onceProcessMs is a whole `reconciler --once` process on the converged host (cold loader, connection set-up)")
	sc.Verdict = VerdictMet
	if maxWrites > 0 || maxMut > 0 {
		sc.Verdict = VerdictMissed
	}
	return nil
}

// directList is the floor of observing ns: list the containers carrying
// our label and all tasks, as ctr.Client.ListContainers does.
func (e *env) directList(ctx context.Context, ns string, want int) (time.Duration, error) {
	start := time.Now()
	cs, err := e.client.ListContainers(ctx, ns)
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("direct list: %w", err)
	}
	if len(cs) != want {
		return 0, fmt.Errorf("direct list: %d containers in %s, want %d", len(cs), ns, want)
	}
	return took, nil
}
