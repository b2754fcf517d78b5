package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// steadyRealm holds the converged cells of scenarios 2, 3, 4 and 6.
const steadyRealm = "steady"

// steady runs the scenarios over converged cells, growing one site: the
// no-op pass at every size, the daemon footprint at the first size, change
// latency and crash-to-restart at the last. The daemon is stopped and
// started again between sizes; it adopts the running cells.
func (e *env) steady(ctx context.Context, p *profile, want func(string) bool) []Scenario {
	var out []Scenario
	if len(p.steadyNames(want)) == 0 {
		return nil
	}
	s, err := e.newSite("steady", steadyRealm)
	if err != nil {
		return failAll(p.steadyNames(want), err)
	}
	have := 0
	for k, n := range p.noopCells {
		if err := writeCells(s.manifests, steadyRealm, have, n); err != nil {
			return append(out, failAll(p.steadyNames(want)[len(out):], err)...)
		}
		e.logf("converging %d cells for the steady scenarios", n)
		took, err := e.once(ctx, s)
		if err != nil {
			return append(out, failAll(p.steadyNames(want)[len(out):], err)...)
		}
		e.logf("converged %d cells (%d new) with --once in %s", n, n-have, took.Round(time.Millisecond))
		have = n
		if want("noop") {
			out = append(out, e.noopPass(ctx, s, n, p.noopRuns))
		}
		if k == 0 && want("footprint") {
			out = append(out, e.footprint(ctx, s, n, p.footprintWindow)...)
		}
	}
	if want("change") || want("crash") {
		out = append(out, e.latencies(ctx, s, have, p.latencyRuns, want)...)
	}
	return out
}

// failAll returns a failed scenario for each name.
func failAll(names []string, err error) []Scenario {
	var out []Scenario
	for _, n := range names {
		sc := Scenario{Name: n, Title: n, Unit: "-", Target: "-", Verdict: VerdictNone}
		sc.fail(err)
		out = append(out, sc)
	}
	return out
}

// noopPass measures passes over n converged cells: wall time, containerd
// calls and cgroup writes. The reconciler runs in this process, wired as
// cmd/reconciler wires it, with counting decorators around the runtime
// and the cgroup tree.
func (e *env) noopPass(ctx context.Context, s *site, n, runs int) Scenario {
	sc := Scenario{
		Name:    fmt.Sprintf("noop-pass-n%d", n),
		Title:   fmt.Sprintf("no-op pass, %d cells", n),
		Unit:    "ms",
		Target:  "zero writes",
		Verdict: VerdictNone,
	}
	sc.note("reconciler = one full pass (load, build, observe, plan, status) in-process with the loader cache warm, as the daemon's resync; direct-list = the containerd reads a pass cannot avoid (list our containers + list tasks, 2 RPCs)")
	sc.note("calls are counted at the controller's Runtime and Cgroups interfaces; mutatingCalls counts EnsureNamespace/EnsureImage/Create/Start/Stop/Delete/UpdateLabels and cgroup Ensure/Write/Remove; cgroupWrites counts interface-file writes")
	cg, err := ctr.NewCgroups(e.mount)
	if err != nil {
		sc.fail(err)
		return sc
	}
	client := ctr.New(ctr.Config{Address: e.ctd.Address, StateDir: s.state, ImageArchives: e.archives, PauseBinary: e.binary})
	defer client.Close()
	rt, ct := &tally{}, &tally{}
	rc := &controller.Reconciler{
		Runtime: countingRuntime{inner: client, calls: rt},
		Cgroups: countingCgroups{inner: cg, calls: ct},
		Loader:  manifest.NewLoader(manifest.Options{}),
		Opts: controller.Options{
			Manifests: []string{s.manifests}, StateDir: s.state,
			Hierarchy: hierarchy.Options{CgroupRoot: e.cgroupRoot},
			Prune:     true, Workers: coldParallelism, Timeout: 2 * time.Minute,
		},
	}
	if pr := rc.Pass(ctx); !pr.OK() {
		sc.fail(fmt.Errorf("warm-up pass: %v", pr.Errors()))
		return sc
	}
	rt.take()
	ct.take()

	var wall, rtCalls, cgCalls, writes, mut, onceMs, direct []float64
	maxWrites, maxMut := 0.0, 0.0
	for r := range runs {
		e.logf("%s run %d/%d", sc.Name, r+1, runs)
		w0 := cg.Writes()
		start := time.Now()
		pr := rc.Pass(ctx)
		took := time.Since(start)
		w := float64(cg.Writes() - w0)
		nr, nc, nm := callSummary(rt.take(), ct.take())
		if !pr.OK() {
			sc.fail(fmt.Errorf("pass %d: %v", r+1, pr.Errors()))
			return sc
		}
		if pr.Plan.HasChanges() {
			sc.note("run %d planned changes: %v", r+1, pr.Plan.Counts())
		}
		wall = append(wall, ms(took))
		rtCalls, cgCalls = append(rtCalls, float64(nr)), append(cgCalls, float64(nc))
		writes, mut = append(writes, w), append(mut, float64(nm))
		maxWrites, maxMut = max(maxWrites, w), max(maxMut, float64(nm))

		d, err := e.directList(ctx, namespaceOf(s.realm), 2*n)
		if err != nil {
			sc.fail(err)
			return sc
		}
		direct = append(direct, ms(d))
		once, err := e.once(ctx, s)
		if err != nil {
			sc.fail(err)
			return sc
		}
		onceMs = append(onceMs, ms(once))
	}
	rec := summarize(wall)
	sc.Reconciler = &rec
	sc.Baselines = map[string]Stats{"direct-list": summarize(direct)}
	sc.setRatios()
	sc.Counters = map[string]float64{
		"runtimeCalls":  summarize(rtCalls).Median,
		"cgroupCalls":   summarize(cgCalls).Median,
		"cgroupWrites":  maxWrites,
		"mutatingCalls": maxMut,
		"onceProcessMs": summarize(onceMs).Median,
	}
	sc.note("cgroupWrites and mutatingCalls are the maximum over the runs; onceProcessMs is a whole `reconciler --once` process on the converged host (cold loader, connection set-up)")
	sc.Verdict = VerdictMet
	if maxWrites > 0 || maxMut > 0 {
		sc.Verdict = VerdictMissed
	}
	return sc
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

// footprint samples the daemon and containerd once a second for window
// while n cells sit converged and nothing changes.
func (e *env) footprint(ctx context.Context, s *site, n int, window time.Duration) []Scenario {
	rss := Scenario{
		Name: fmt.Sprintf("footprint-rss-n%d", n), Title: fmt.Sprintf("daemon RSS, %d cells idle", n),
		Unit: "MiB", Target: "none set (report)", Verdict: VerdictNone,
	}
	cpu := Scenario{
		Name: fmt.Sprintf("footprint-cpu-n%d", n), Title: fmt.Sprintf("daemon CPU, %d cells idle", n),
		Unit: "% of a core", Target: "none set (report)", Verdict: VerdictNone,
	}
	fail := func(err error) []Scenario { rss.fail(err); cpu.fail(err); return []Scenario{rss, cpu} }
	d, err := e.startDaemon(ctx, s)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := d.stop(); err != nil {
			e.logf("%v", err)
		}
	}()
	d.settle(ctx, 2*time.Second, time.Minute)
	e.logf("sampling the idle daemon and containerd for %s", window)
	var rd, rc, cd, cc []float64
	firstD, err := sampleProc(d.pid())
	if err != nil {
		return fail(err)
	}
	firstC, err := sampleProc(e.ctd.PID)
	if err != nil {
		return fail(err)
	}
	// RSS is read every second; CPU time (10 ms resolution) over six equal
	// slices of the window, so an idle slice is not all zeros.
	seconds := int(window / time.Second)
	slice := max(seconds/cpuSlices, 1)
	lastD, lastC, prevD, prevC := firstD, firstC, firstD, firstC
	for k := 1; k <= seconds; k++ {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(time.Until(firstD.At.Add(time.Duration(k) * time.Second))):
		}
		sd, err := sampleProc(d.pid())
		if err != nil {
			return fail(fmt.Errorf("daemon: %w\n%s", err, d.logTail(10)))
		}
		sc, err := sampleProc(e.ctd.PID)
		if err != nil {
			return fail(err)
		}
		rd, rc = append(rd, float64(sd.RSSKiB)/1024), append(rc, float64(sc.RSSKiB)/1024)
		if k%slice == 0 {
			cd = append(cd, cpuPercent(prevD, sd))
			cc = append(cc, cpuPercent(prevC, sc))
			prevD, prevC = sd, sc
		}
		lastD, lastC = sd, sc
	}
	if len(rd) == 0 {
		return fail(errors.New("window shorter than one sample"))
	}
	r, c := summarize(rd), summarize(cd)
	rss.Reconciler, cpu.Reconciler = &r, &c
	rss.Baselines = map[string]Stats{"containerd": summarize(rc)}
	cpu.Baselines = map[string]Stats{"containerd": summarize(cc)}
	rss.setRatios()
	cpu.setRatios()
	cpu.Counters = map[string]float64{
		"daemonCPUSeconds":      round((lastD.CPU - firstD.CPU).Seconds()),
		"containerdCPUSeconds":  round((lastC.CPU - firstC.CPU).Seconds()),
		"daemonMeanPercent":     round(cpuPercent(firstD, lastD)),
		"containerdMeanPercent": round(cpuPercent(firstC, lastC)),
		"windowSeconds":         window.Seconds(),
	}
	for _, sc := range []*Scenario{&rss, &cpu} {
		sc.note("one sample per second over %s of idle (default --resync 30s) after the daemon adopted %d running cells; containerd (the private daemon, without its shims) sampled in the same window", window, n)
	}
	cpu.note("CPU (user+system, 10 ms resolution) as %% of one core over %d equal slices of the window; the mean over the whole window is in the counters", cpuSlices)
	return []Scenario{rss, cpu}
}

// cpuSlices is how many parts the footprint window's CPU is measured in.
const cpuSlices = 6

func cpuPercent(a, b procSample) float64 {
	dt := b.At.Sub(a.At)
	if dt <= 0 {
		return 0
	}
	return 100 * float64(b.CPU-a.CPU) / float64(dt)
}
