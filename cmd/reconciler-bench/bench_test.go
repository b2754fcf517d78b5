package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPlannerScaleOnAHundredCells(t *testing.T) {
	sc := scenario{kind: planner, n: 100}.result()
	(&env{log: io.Discard}).plannerScale(context.Background(), &sc, 100, params{runs: 2})
	if sc.Error != "" {
		t.Fatalf("planner scenario failed: %s", sc.Error)
	}
	if sc.Name != "planner-scale-100" || sc.Title != "planner, 100 cells in 10 files" || sc.Reconciler == nil || sc.Reconciler.Runs != 2 {
		t.Fatalf("got %q (%q) and reconciler %+v, want planner-scale-100 with 2 runs", sc.Name, sc.Title, sc.Reconciler)
	}
	if _, ok := sc.Ratios["yaml-decode"]; !ok {
		t.Errorf("no ratio against yaml-decode: %+v", sc.Ratios)
	}
	for _, k := range []string{"loadMs", "buildMs", "observeMs", "computePlanMs", "convergeFakeMs"} {
		if _, ok := sc.Counters[k]; !ok {
			t.Errorf("counter %s missing: %v", k, sc.Counters)
		}
	}
	for _, n := range sc.Notes {
		if strings.Contains(n, "has changes") {
			t.Errorf("the plan of a converged fake should be empty: %s", n)
		}
	}
}

func sampleResults() *Results {
	return &Results{
		Version: schemaVersion, Command: "reconciler-bench --quick", Quick: true,
		StartedAt: time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC), ElapsedSeconds: 61.5,
		Host: Host{CPUs: 2, Kernel: "6.1.0", GoVersion: "go1.26", Containerd: "1.6.20", Runc: "1.1.5", Podman: "4.3.1", CgroupMount: "/sys/fs/cgroup/unified"},
		Scenarios: []Scenario{
			{
				Name: "cold-converge-n10", Title: "cold converge, 10 cells", Unit: "ms",
				Reconciler: &Stats{Median: 900, Min: 850, Max: 1000, Runs: 3},
				Baselines:  map[string]Stats{"direct-p4": {Median: 800, Min: 780, Max: 900, Runs: 3}, "podman": {Median: 2000, Min: 1900, Max: 2100, Runs: 3}},
				Ratios:     map[string]float64{"direct-p4": 1.125, "podman": 0.45},
				Target:     "≤ 1.2 × direct-p4; ≤ 0.5 × podman", Verdict: VerdictMet,
				Notes: []string{"a note"},
			},
			{
				Name: "noop-pass-n20", Title: "no-op pass, 20 cells", Unit: "ms",
				Reconciler: &Stats{Median: 12, Min: 11, Max: 13, Runs: 2},
				Target:     "zero writes", Verdict: VerdictMet,
				Counters: map[string]float64{"cgroupWrites": 0, "runtimeCalls": 2},
			},
			{
				Name: "change-latency-n20", Title: "change latency", Unit: "ms", Target: "none set (report)",
				Verdict: VerdictNone, Error: "daemon exited",
			},
		},
	}
}

func TestResultsRoundTripThroughJSON(t *testing.T) {
	want := sampleResults()
	path := filepath.Join(t.TempDir(), "bench", "results.json")
	if err := want.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Results)
		want   string // substring of the error; "" for valid
	}{
		{"accepts a complete document", func(*Results) {}, ""},
		{"rejects another schema version", func(r *Results) { r.Version = 2 }, "version 2"},
		{"rejects a document without scenarios", func(r *Results) { r.Scenarios = nil }, "no scenarios"},
		{"rejects a scenario without a unit", func(r *Results) { r.Scenarios[0].Unit = "" }, "unit, target and verdict"},
		{"rejects a scenario with neither figure nor error", func(r *Results) { r.Scenarios[1].Reconciler = nil }, "no reconciler figure"},
		{"rejects a ratio for a baseline it does not have", func(r *Results) { r.Scenarios[1].Ratios = map[string]float64{"podman": 1} }, `unknown baseline "podman"`},
		{"rejects duplicate names", func(r *Results) { r.Scenarios[1].Name = r.Scenarios[0].Name }, "duplicate name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleResults()
			tt.change(r)
			err := r.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Stats
	}{
		{"is zero for no runs", nil, Stats{}},
		{"takes the middle of an odd count", []float64{3, 1, 2}, Stats{Median: 2, Min: 1, Max: 3, Runs: 3}},
		{"averages the middle two of an even count", []float64{4, 1, 2, 3}, Stats{Median: 2.5, Min: 1, Max: 4, Runs: 4}},
		{"rounds to microseconds of a millisecond", []float64{1.23456}, Stats{Median: 1.235, Min: 1.235, Max: 1.235, Runs: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, summarize(tt.in)); diff != "" {
				t.Errorf("summarize(%v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestWithDefaultUlimits(t *testing.T) {
	tests := []struct {
		name, in, want string
		changed        bool
	}{
		{"writes the table into a missing file", "", "[containers]\ndefault_ulimits = []\n", true},
		{"adds the key to an existing containers table", "[engine]\nx = 1\n[containers]\ny = 2\n", "[engine]\nx = 1\n[containers]\ndefault_ulimits = []\ny = 2\n", true},
		{"appends the table to a file without one", "[engine]\nx = 1", "[engine]\nx = 1\n[containers]\ndefault_ulimits = []\n", true},
		{"leaves a file that has the setting alone", "[containers]\ndefault_ulimits = [\"nofile=1024:1024\"]\n", "[containers]\ndefault_ulimits = [\"nofile=1024:1024\"]\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := withDefaultUlimits(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" || changed != tt.changed {
				t.Errorf("changed %v, want %v; content (-want +got):\n%s", changed, tt.changed, diff)
			}
		})
	}
}

func TestTableShowsEveryBaselineAndFailure(t *testing.T) {
	r := sampleResults()
	var table, md bytes.Buffer
	r.PrintTable(&table)
	r.PrintMarkdown(&md)
	for _, want := range []string{"cold converge, 10 cells", "900 [850–1000]", "direct-p4", "1.12", "podman", "0.45", "FAILED", "ERROR: daemon exited", "cgroupWrites=0.00"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if lines := strings.Count(md.String(), "\n"); lines != 2+4 {
		t.Errorf("markdown has %d lines, want a header of 2 and 4 rows:\n%s", lines, md.String())
	}
}

func TestRunWritesValidJSONForThePlannerAlone(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results.json")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--quick", "--scenarios", "planner", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	r, err := ReadResults(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Scenarios) != 1 || r.Scenarios[0].Name != "planner-scale-1000" || !r.Quick {
		t.Errorf("got %d scenarios (%+v), want planner-scale-1000 of a quick run", len(r.Scenarios), r.Scenarios)
	}
	if !strings.Contains(stdout.String(), "planner, 1000 cells in 100 files") {
		t.Errorf("stdout lacks the table:\n%s", stdout.String())
	}
}

func TestRunRejectsUnknownScenarios(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--scenarios", "cold,warp"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), `unknown "warp"`) {
		t.Errorf("run: %v, want an error naming warp", err)
	}
}

func names(scs []scenario) []string {
	var out []string
	for _, s := range scs {
		out = append(out, s.result().Name)
	}
	return out
}

func TestProfilesMeasureTheIssuesScenarios(t *testing.T) {
	all := func(string) bool { return true }
	tests := []struct {
		name  string
		quick bool
		want  []string
	}{
		{"the quick profile is one of each at small N", true, []string{
			"cold-converge-n10", "noop-pass-n20", "change-latency-n20", "crash-restart-n20",
			"planner-scale-1000", "footprint-rss-n20", "footprint-cpu-n20",
		}},
		{"the full profile is the issue's sizes", false, []string{
			"cold-converge-n10", "cold-converge-n20", "cold-converge-n50", "noop-pass-n50", "noop-pass-n200",
			"change-latency-n200", "crash-restart-n200", "planner-scale-10000", "footprint-rss-n50", "footprint-cpu-n50",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, names(selected(tt.quick, all))); diff != "" {
				t.Errorf("scenarios (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSelectedKeepsOnlyTheWantedFamilies(t *testing.T) {
	got := names(selected(true, func(f string) bool { return f == "crash" || f == "planner" }))
	if diff := cmp.Diff([]string{"crash-restart-n20", "planner-scale-1000"}, got); diff != "" {
		t.Errorf("quick, crash and planner (-want +got):\n%s", diff)
	}
}

func TestRegistryRows(t *testing.T) {
	seen := map[string]bool{}
	lastFamily := 0
	for i, s := range registry {
		sc := s.result()
		where := fmt.Sprintf("registry[%d] %s", i, sc.Name)
		if seen[sc.Name] {
			t.Errorf("%s: duplicate name", where)
		}
		seen[sc.Name] = true
		f := slices.Index(families, s.kind.family)
		switch {
		case f < 0:
			t.Errorf("%s: family %q is not one of %v", where, s.kind.family, families)
		case f < lastFamily:
			t.Errorf("%s: family %q after %q: rows go in the order of families, the order of the results", where, s.kind.family, families[lastFamily])
		}
		lastFamily = max(lastFamily, f)
		if sc.Title == "" || sc.Unit == "" || sc.Target == "" || s.kind.run == nil {
			t.Errorf("%s: title, unit, target and run are required: %+v", where, sc)
		}
		if s.quick == nil && s.full == nil {
			t.Errorf("%s: in neither profile", where)
		}
		for _, p := range []*params{s.quick, s.full} {
			footprint := s.kind.family == "footprint"
			if p != nil && (footprint && p.window < time.Second || !footprint && p.runs < 1) {
				t.Errorf("%s: measures nothing with %+v", where, *p)
			}
		}
		if s.kind == planner && s.n%plannerPerFile != 0 {
			t.Errorf("%s: %d cells do not fill files of %d", where, s.n, plannerPerFile)
		}
	}
	for _, quick := range []bool{true, false} {
		for _, f := range families {
			if len(selected(quick, func(g string) bool { return g == f })) == 0 {
				t.Errorf("family %s has no scenario in the profile with quick=%v", f, quick)
			}
		}
	}
}

func TestRunOrderGrowsTheSteadySite(t *testing.T) {
	all := func(string) bool { return true }
	tests := []struct {
		name  string
		quick bool
		want  []string
	}{
		{"quick", true, []string{
			"planner-scale-1000", "cold-converge-n10",
			"noop-pass-n20", "change-latency-n20", "crash-restart-n20", "footprint-rss-n20", "footprint-cpu-n20",
		}},
		{"full", false, []string{
			"planner-scale-10000", "cold-converge-n10", "cold-converge-n20", "cold-converge-n50",
			"noop-pass-n50", "footprint-rss-n50", "footprint-cpu-n50", "noop-pass-n200", "change-latency-n200", "crash-restart-n200",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scs := selected(tt.quick, all)
			var got []string
			for _, i := range runOrder(scs) {
				got = append(got, scs[i].result().Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("run order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMeasuredSummarizesWhatWasMeasured(t *testing.T) {
	tests := []struct {
		name      string
		rec       []float64
		baselines map[string][]float64
		want      Scenario
	}{
		{
			"takes ratios of the medians", []float64{2, 4, 6}, map[string][]float64{"a": {2}, "b": {8, 8}},
			Scenario{
				Reconciler: &Stats{Median: 4, Min: 2, Max: 6, Runs: 3},
				Baselines:  map[string]Stats{"a": {Median: 2, Min: 2, Max: 2, Runs: 1}, "b": {Median: 8, Min: 8, Max: 8, Runs: 2}},
				Ratios:     map[string]float64{"a": 2, "b": 0.5},
			},
		},
		{
			"leaves out a baseline without runs", []float64{1}, map[string][]float64{"a": nil},
			Scenario{Reconciler: &Stats{Median: 1, Min: 1, Max: 1, Runs: 1}},
		},
		{
			"keeps the baselines of a scenario whose reconciler never ran", nil, map[string][]float64{"a": {3}},
			Scenario{Baselines: map[string]Stats{"a": {Median: 3, Min: 3, Max: 3, Runs: 1}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Scenario
			got.measured(tt.rec, tt.baselines)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("measured (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSteadySiteRefusesToShrink(t *testing.T) {
	e := &env{log: io.Discard, steady: steadySite{site: &site{}, cells: 50}}
	if _, err := e.steadyAt(context.Background(), 20); err == nil || !strings.Contains(err.Error(), "growing N") {
		t.Errorf("steadyAt(20) of a 50-cell site: %v, want an error about growing N", err)
	}
	s, err := e.steadyAt(context.Background(), 50)
	if err != nil || s != e.steady.site {
		t.Errorf("steadyAt(50) of a 50-cell site: %v, %v; want the site", s, err)
	}
	e.steady.err = errors.New("once failed")
	if _, err := e.steadyAt(context.Background(), 50); !errors.Is(err, e.steady.err) {
		t.Errorf("steadyAt after a failed growth: %v, want that failure", err)
	}
}

func TestFootprintScenariosShareOneSampling(t *testing.T) {
	p := params{window: 10 * time.Second}
	e := &env{log: io.Discard, footprints: map[footprintKey]*footprint{
		{20, p.window}: {rss: []float64{30, 31}, rssContainerd: []float64{50}, cpu: []float64{1}, cpuContainerd: []float64{2}, counters: map[string]float64{"windowSeconds": 10}},
		{50, p.window}: {err: errors.New("daemon exited")},
	}}
	rss, cpu := scenario{kind: footprintRSS, n: 20}.result(), scenario{kind: footprintCPU, n: 20}.result()
	if err := errors.Join(e.footprintRSS(context.Background(), &rss, 20, p), e.footprintCPU(context.Background(), &cpu, 20, p)); err != nil {
		t.Fatal(err)
	}
	if rss.Reconciler.Median != 30.5 || rss.Baselines["containerd"].Median != 50 || cpu.Reconciler.Median != 1 || cpu.Counters["windowSeconds"] != 10 {
		t.Errorf("got rss %+v %+v, cpu %+v %+v: not the one sampling", rss.Reconciler, rss.Baselines, cpu.Reconciler, cpu.Counters)
	}
	failed := scenario{kind: footprintCPU, n: 50}.result()
	if err := e.footprintCPU(context.Background(), &failed, 50, p); err == nil || failed.Reconciler != nil || len(failed.Notes) > 0 {
		t.Errorf("footprint of a failed sampling: %v, %+v; want the error and no figures or notes", err, failed)
	}
}
