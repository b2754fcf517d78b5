package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPlannerScaleOnAHundredCells(t *testing.T) {
	sc := plannerScale(context.Background(), t.TempDir(), 10, 10, 2, t.Logf)
	if sc.Error != "" {
		t.Fatalf("planner scenario failed: %s", sc.Error)
	}
	if sc.Name != "planner-scale-100" || sc.Reconciler == nil || sc.Reconciler.Runs != 2 {
		t.Fatalf("got name %q and reconciler %+v, want planner-scale-100 with 2 runs", sc.Name, sc.Reconciler)
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

func TestSteadyNamesFollowTheProfile(t *testing.T) {
	all := func(string) bool { return true }
	want := []string{"noop-pass-n50", "footprint-rss-n50", "footprint-cpu-n50", "noop-pass-n200", "change-latency-n200", "crash-restart-n200"}
	if diff := cmp.Diff(want, fullProfile.steadyNames(all)); diff != "" {
		t.Errorf("full profile (-want +got):\n%s", diff)
	}
	crashOnly := func(f string) bool { return f == "crash" }
	if diff := cmp.Diff([]string{"crash-restart-n20"}, quickProfile.steadyNames(crashOnly)); diff != "" {
		t.Errorf("quick profile, crash only (-want +got):\n%s", diff)
	}
}
