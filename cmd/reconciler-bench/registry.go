package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// families are the scenario groups --scenarios selects, in the order the
// results list them.
var families = []string{"cold", "noop", "change", "crash", "planner", "footprint"}

// registry is every scenario of the bench, in the order the results list
// them: by family, then by N. quick and full are what the scenario measures
// in that profile (--quick finishes in well under three minutes on two
// cores); nil leaves it out of the profile.
var registry = []scenario{
	{kind: cold, n: 10, quick: &params{runs: 2}, full: &params{runs: 5}},
	{kind: cold, n: 20, full: &params{runs: 3}},
	{kind: cold, n: 50, full: &params{runs: 3}},
	{kind: noop, n: 20, quick: &params{runs: 2}},
	{kind: noop, n: 50, full: &params{runs: 5}},
	{kind: noop, n: 200, full: &params{runs: 5}},
	{kind: change, n: 20, quick: &params{runs: 2}},
	{kind: change, n: 200, full: &params{runs: 5}},
	{kind: crash, n: 20, quick: &params{runs: 2}},
	{kind: crash, n: 200, full: &params{runs: 5}},
	{kind: planner, n: 1000, quick: &params{runs: 2}},
	{kind: planner, n: 10000, full: &params{runs: 3}},
	{kind: footprintRSS, n: 20, quick: &params{window: 10 * time.Second}},
	{kind: footprintCPU, n: 20, quick: &params{window: 10 * time.Second}},
	{kind: footprintRSS, n: 50, full: &params{window: time.Minute}},
	{kind: footprintCPU, n: 50, full: &params{window: time.Minute}},
}

// The kinds of scenario: how each is named, titled and judged for N cells,
// and the method that measures it.
var (
	cold = &kind{
		family: "cold", name: "cold-converge-n%d", title: perN("cold converge, %d cells"),
		unit: "ms", target: "≤ 1.2 × direct-p4; ≤ 0.5 × podman", stage: stageFresh, run: (*env).coldConverge,
	}
	noop = &kind{
		family: "noop", name: "noop-pass-n%d", title: perN("no-op pass, %d cells"),
		unit: "ms", target: "zero writes", stage: stageSteady, run: (*env).noopPass,
	}
	change = &kind{
		family: "change", name: "change-latency-n%d", title: perN("change latency, 1 of %d cells"),
		unit: "ms", target: "none set (report; floor = direct-recreate)", stage: stageSteady, run: (*env).changeLatency,
	}
	crash = &kind{
		family: "crash", name: "crash-restart-n%d", title: perN("crash to restart, 1 of %d cells"),
		unit: "ms", target: "< direct-restart + 100 ms", stage: stageSteady, run: (*env).crashRestart,
	}
	planner = &kind{
		family: "planner", name: "planner-scale-%d", title: plannerTitle,
		unit: "ms", target: "none set (report)", stage: stageAlone, run: (*env).plannerScale,
	}
	footprintRSS = &kind{
		family: "footprint", name: "footprint-rss-n%d", title: perN("daemon RSS, %d cells idle"),
		unit: "MiB", target: "none set (report)", stage: stageSteady, run: (*env).footprintRSS,
	}
	footprintCPU = &kind{
		family: "footprint", name: "footprint-cpu-n%d", title: perN("daemon CPU, %d cells idle"),
		unit: "% of a core", target: "none set (report)", stage: stageSteady, run: (*env).footprintCPU,
	}
)

// kind is what the scenarios of one sort share.
type kind struct {
	family       string
	name         string // a format of N
	title        func(n int) string
	unit, target string
	stage        stage
	// run measures the scenario into sc, whose name, title, unit and
	// target are set; an error says why it could not (fully) run.
	run func(e *env, ctx context.Context, sc *Scenario, n int, p params) error
}

func perN(format string) func(int) string {
	return func(n int) string { return fmt.Sprintf(format, n) }
}

func plannerTitle(n int) string {
	return fmt.Sprintf("planner, %d cells in %d files", n, n/plannerPerFile)
}

// stage orders the scenarios of a run.
type stage int

const (
	stageAlone  stage = iota // needs no containerd: runs first
	stageFresh               // brings up realms of its own and tears them down
	stageSteady              // over the steady site, which only grows: in growing N
)

// params are how much a scenario measures in one profile.
type params struct {
	runs   int           // repetitions
	window time.Duration // footprint sampling window
}

// scenario is one row of the registry: a kind at one N.
type scenario struct {
	kind        *kind
	n           int
	quick, full *params
}

// result is the scenario's row of the results, before it runs: the one
// place its name is built.
func (s scenario) result() Scenario {
	return Scenario{Name: fmt.Sprintf(s.kind.name, s.n), Title: s.kind.title(s.n), Unit: s.kind.unit, Target: s.kind.target, Verdict: VerdictNone}
}

// params returns what s measures in the profile, or nil when it is not
// part of it.
func (s scenario) params(quick bool) *params {
	if quick {
		return s.quick
	}
	return s.full
}

// selected is the registry rows of the profile whose family want accepts.
func selected(quick bool, want func(family string) bool) []scenario {
	var out []scenario
	for _, s := range registry {
		if s.params(quick) != nil && want(s.kind.family) {
			out = append(out, s)
		}
	}
	return out
}

// measure runs the scenarios, each once, and returns their results in the
// same order; one that could not run carries its error. The environment
// is set up when the first scenario needs it and torn down at the end.
func measure(ctx context.Context, cfg *config, scs []scenario, host *Host) []Scenario {
	e := &env{cfg: cfg, log: cfg.log}
	defer e.close()
	out := make([]Scenario, len(scs))
	for _, i := range runOrder(scs) {
		s, sc := scs[i], &out[i]
		*sc = s.result()
		if s.kind.stage != stageAlone {
			if err := e.up(ctx); err != nil {
				sc.fail(err)
				continue
			}
		}
		sc.fail(s.kind.run(e, ctx, sc, s.n, *s.params(cfg.quick)))
	}
	e.hostInfo(ctx, host)
	return out
}

// runOrder is the order to run scs in, as indices: by stage, and within a
// stage by growing N (the steady site only grows), else as listed.
func runOrder(scs []scenario) []int {
	order := make([]int, len(scs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(scs[a].kind.stage, scs[b].kind.stage), cmp.Compare(scs[a].n, scs[b].n))
	})
	return order
}
