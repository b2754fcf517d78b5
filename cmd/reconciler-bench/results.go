package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// schemaVersion is bumped when a field of Results changes meaning.
const schemaVersion = 1

// Verdicts of a scenario against its target.
const (
	VerdictMet    = "met"
	VerdictMissed = "missed"
	VerdictNone   = "n/a" // no target, or nothing to compare with
)

// Results is the JSON document the program writes (--out).
type Results struct {
	Version   int       `json:"version"`
	Command   string    `json:"command"`
	Quick     bool      `json:"quick"`
	StartedAt time.Time `json:"startedAt"`
	// ElapsedSeconds is the wall time of the whole run.
	ElapsedSeconds float64    `json:"elapsedSeconds"`
	Host           Host       `json:"host"`
	Scenarios      []Scenario `json:"scenarios"`
}

// Host describes the machine and the runtimes measured.
type Host struct {
	CPUs        int    `json:"cpus"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"goVersion"`
	Containerd  string `json:"containerd,omitempty"`
	Runc        string `json:"runc,omitempty"`
	Podman      string `json:"podman,omitempty"`
	CgroupMount string `json:"cgroupMount,omitempty"`
}

// Stats summarizes repeated measurements of one figure.
type Stats struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Runs   int     `json:"runs"`
}

// Scenario is one row of the results: the reconciler's figure, each
// baseline's figure measured in the same run, and their ratios.
type Scenario struct {
	// Name is a stable key, e.g. "cold-converge-n10".
	Name  string `json:"name"`
	Title string `json:"title"`
	// Unit of every Stats in the scenario: "ms", "MiB", "%cpu".
	Unit       string           `json:"unit"`
	Reconciler *Stats           `json:"reconciler,omitempty"`
	Baselines  map[string]Stats `json:"baselines,omitempty"`
	// Ratios are reconciler median / baseline median, by baseline name.
	Ratios  map[string]float64 `json:"ratios,omitempty"`
	Target  string             `json:"target"`
	Verdict string             `json:"verdict"`
	// Counters are figures that are not times (calls, writes), medians
	// over the runs.
	Counters map[string]float64 `json:"counters,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
	// Error says why the scenario could not run; the figures may then be
	// missing or partial.
	Error string `json:"error,omitempty"`
}

// summarize returns median, min and max of xs (zero Stats for none).
func summarize(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	s := slices.Sorted(slices.Values(xs))
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{Median: round(med), Min: round(s[0]), Max: round(s[len(s)-1]), Runs: len(s)}
}

// round keeps three significant decimals, enough for milliseconds.
func round(x float64) float64 { return math.Round(x*1000) / 1000 }

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// measured records the summaries of the reconciler's and each baseline's
// measurements (those without any are left out) and the ratios of their
// medians.
func (s *Scenario) measured(rec []float64, baselines map[string][]float64) {
	if len(rec) > 0 {
		r := summarize(rec)
		s.Reconciler = &r
	}
	for name, xs := range baselines {
		if len(xs) == 0 {
			continue
		}
		if s.Baselines == nil {
			s.Baselines = map[string]Stats{}
		}
		b := summarize(xs)
		s.Baselines[name] = b
		if s.Reconciler != nil && b.Median != 0 {
			if s.Ratios == nil {
				s.Ratios = map[string]float64{}
			}
			s.Ratios[name] = round(s.Reconciler.Median / b.Median)
		}
	}
}

// fail records err as the reason the scenario could not (fully) run.
func (s *Scenario) fail(err error) {
	if err == nil {
		return
	}
	if s.Error != "" {
		s.Error += "; "
	}
	s.Error += err.Error()
}

func (s *Scenario) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Validate checks the invariants consumers (CI, README tooling) rely on:
// every scenario has a name, unit, target and verdict, either figures or
// an error, and ratios only for baselines it has.
func (r *Results) Validate() error {
	var errs []error
	if r.Version != schemaVersion {
		errs = append(errs, fmt.Errorf("version %d, want %d", r.Version, schemaVersion))
	}
	if len(r.Scenarios) == 0 {
		errs = append(errs, errors.New("no scenarios"))
	}
	seen := map[string]bool{}
	for i, s := range r.Scenarios {
		where := fmt.Sprintf("scenarios[%d] %s", i, s.Name)
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("%s: empty name", where))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("%s: duplicate name", where))
		}
		seen[s.Name] = true
		if s.Unit == "" || s.Target == "" || s.Verdict == "" {
			errs = append(errs, fmt.Errorf("%s: unit, target and verdict are required", where))
		}
		if s.Error == "" && (s.Reconciler == nil || s.Reconciler.Runs == 0) {
			errs = append(errs, fmt.Errorf("%s: no reconciler figure and no error", where))
		}
		for name := range s.Ratios {
			if _, ok := s.Baselines[name]; !ok {
				errs = append(errs, fmt.Errorf("%s: ratio for unknown baseline %q", where, name))
			}
		}
	}
	return errors.Join(errs...)
}

// Failed lists the scenarios that could not run.
func (r *Results) Failed() []string {
	var out []string
	for _, s := range r.Scenarios {
		if s.Error != "" {
			out = append(out, s.Name+": "+s.Error)
		}
	}
	return out
}

// WriteFile writes r as indented JSON to path (parents created), through a
// temporary file so a reader never sees half a document.
func (r *Results) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// ReadResults reads and validates a results file.
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode results %s: %w", path, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	return &r, nil
}

// row is one printed line: a scenario's reconciler figure with one of its
// baselines (or none).
type row struct {
	scenario, unit, reconciler, baseline, figure, ratio, target, verdict string
}

func (r *Results) rows() []row {
	var out []row
	for _, s := range r.Scenarios {
		rec := "-"
		if s.Reconciler != nil && s.Reconciler.Runs > 0 {
			rec = fmtStats(*s.Reconciler)
		}
		if s.Error != "" && rec == "-" {
			rec = "FAILED"
		}
		names := slices.Sorted(maps.Keys(s.Baselines))
		if len(names) == 0 {
			names = []string{""}
		}
		for i, name := range names {
			rw := row{baseline: "-", figure: "-", ratio: "-"}
			if i == 0 {
				rw.scenario, rw.unit, rw.reconciler, rw.target, rw.verdict = s.Title, s.Unit, rec, s.Target, s.Verdict
			}
			if name != "" {
				rw.baseline = name
				rw.figure = fmtStats(s.Baselines[name])
				if ratio, ok := s.Ratios[name]; ok {
					rw.ratio = fmtRatio(ratio)
				}
			}
			out = append(out, rw)
		}
	}
	return out
}

// fmtStats renders "median [min–max]" with precision suited to the size.
func fmtStats(s Stats) string {
	if s.Runs == 0 {
		return "-"
	}
	if s.Runs == 1 {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

// fmtRatio shows three significant digits, so a ratio just over a target
// (0.503 against 0.5) does not print as the target itself.
func fmtRatio(x float64) string {
	if math.Abs(x) >= 100 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

func fmtNum(x float64) string {
	switch a := math.Abs(x); {
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// PrintTable writes the human table, then the counters, notes and errors
// of every scenario.
func (r *Results) PrintTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tUNIT\tRECONCILER median [min–max]\tBASELINE\tBASELINE median [min–max]\tRATIO\tTARGET\tVERDICT")
	for _, rw := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rw.scenario, rw.unit, rw.reconciler, rw.baseline, rw.figure, rw.ratio, rw.target, rw.verdict)
	}
	tw.Flush()
	for _, s := range r.Scenarios {
		if len(s.Counters) == 0 && len(s.Notes) == 0 && s.Error == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", s.Title, s.Name)
		if len(s.Counters) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(s.Counters)) {
				parts = append(parts, fmt.Sprintf("%s=%s", k, fmtNum(s.Counters[k])))
			}
			fmt.Fprintf(w, "  counters: %s\n", strings.Join(parts, " "))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "  ERROR: %s\n", s.Error)
		}
	}
}

// PrintMarkdown writes the table as GitHub Markdown, for the README.
func (r *Results) PrintMarkdown(w io.Writer) {
	fmt.Fprintln(w, "| Scenario | Unit | Reconciler median [min–max] | Baseline | Baseline median [min–max] | Ratio | Target | Verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, rw := range r.rows() {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", rw.scenario, rw.unit, rw.reconciler, rw.baseline, rw.figure, rw.ratio, rw.target, rw.verdict)
	}
}
