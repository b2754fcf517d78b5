// Command reconciler-bench measures the reconciler against the floor (the
// containerd client doing the same work) and against what operators would
// use instead (podman kube play), side by side in one run on one machine,
// and writes a table to stdout and a JSON document (--out).
//
// It starts its own containerd, builds the busybox test image and the
// reconciler binary, works under a unique cgroup root
// (/kukeon-bench-<random>) and removes all of it at the end, also after
// SIGINT. Timing targets never fail the run: the exit code is non-zero only
// when a scenario could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "reconciler-bench: %v\n", err)
		os.Exit(1)
	}
}

// families are the scenario groups --scenarios selects, in issue order.
var families = []string{"cold", "noop", "change", "crash", "planner", "footprint"}

type config struct {
	quick         bool
	out           string
	markdown      string
	installPodman bool
	noPodman      bool
	reconciler    string
	scenarios     map[string]bool
	log           io.Writer
}

// profile is how much a run measures.
type profile struct {
	coldCells       []int
	coldRuns        []int
	noopCells       []int // the steady site grows through these sizes
	noopRuns        int
	latencyRuns     int
	footprintWindow time.Duration
	plannerFiles    int
	plannerPerFile  int
	plannerRuns     int
}

// quickProfile finishes in well under three minutes on two cores.
var quickProfile = profile{
	coldCells: []int{10}, coldRuns: []int{2},
	noopCells: []int{20}, noopRuns: 2,
	latencyRuns: 2, footprintWindow: 10 * time.Second,
	plannerFiles: 100, plannerPerFile: 10, plannerRuns: 2,
}

// fullProfile is the issues': N = 10, 20, 50 cold; 50, 200 no-op; 200 for
// change and crash; 50 for the footprint over 60 s; 10,000 cells planned.
var fullProfile = profile{
	coldCells: []int{10, 20, 50}, coldRuns: []int{5, 3, 3},
	noopCells: []int{50, 200}, noopRuns: 5,
	latencyRuns: 5, footprintWindow: 60 * time.Second,
	plannerFiles: 1000, plannerPerFile: 10, plannerRuns: 3,
}

func (p *profile) coldNames() []string {
	var out []string
	for _, n := range p.coldCells {
		out = append(out, fmt.Sprintf("cold-converge-n%d", n))
	}
	return out
}

// steadyNames lists the scenarios steady produces, in its order.
func (p *profile) steadyNames(want func(string) bool) []string {
	var out []string
	for k, n := range p.noopCells {
		if want("noop") {
			out = append(out, fmt.Sprintf("noop-pass-n%d", n))
		}
		if k == 0 && want("footprint") {
			out = append(out, fmt.Sprintf("footprint-rss-n%d", n), fmt.Sprintf("footprint-cpu-n%d", n))
		}
	}
	last := p.noopCells[len(p.noopCells)-1]
	if want("change") {
		out = append(out, fmt.Sprintf("change-latency-n%d", last))
	}
	if want("crash") {
		out = append(out, fmt.Sprintf("crash-restart-n%d", last))
	}
	return out
}

const usage = `Usage: reconciler-bench [--quick] [--out FILE] [--install-podman] [flags]

Measures, in one run on this machine: cold converge (vs the direct containerd
client sequentially and 4 at a time, and podman kube play), no-op pass (time,
containerd calls, cgroup writes), change latency, crash-to-restart, planner
scale (no runtime) and daemon footprint. Needs root, containerd, runc,
busybox-static and a cgroup v2 mount; run from the repository (it builds
./cmd/reconciler) or pass --reconciler.

The full run takes about 10 minutes on 2 cores; --quick under 3.
Exit status: 0 when every scenario ran (whatever the figures), 1 otherwise.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := &config{log: stderr, scenarios: map[string]bool{}}
	fs := flag.NewFlagSet("reconciler-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&cfg.quick, "quick", false, "small N and 1–2 runs (CI smoke, under 3 minutes)")
	fs.StringVar(&cfg.out, "out", "bench/results.json", "write the results as JSON to `FILE`")
	fs.StringVar(&cfg.markdown, "markdown", "", "also write the table as Markdown to `FILE` (for the README)")
	fs.BoolVar(&cfg.installPodman, "install-podman", false, "apt-get install podman if missing and add `default_ulimits = []` to "+systemContainersConf+" if it lacks it")
	fs.BoolVar(&cfg.noPodman, "no-podman", false, "skip the podman baseline even if podman is installed")
	fs.StringVar(&cfg.reconciler, "reconciler", "", "use this static reconciler `BINARY` instead of building ./cmd/reconciler")
	only := fs.String("scenarios", strings.Join(families, ","), "comma-separated `LIST` of "+strings.Join(families, ", "))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if !contains(families, s) {
			return fmt.Errorf("--scenarios: unknown %q (want %s)", s, strings.Join(families, ", "))
		}
		cfg.scenarios[s] = true
	}
	want := func(f string) bool { return cfg.scenarios[f] }
	p := fullProfile
	if cfg.quick {
		p = quickProfile
	}

	res := &Results{
		Version: schemaVersion, Command: strings.TrimSpace("reconciler-bench " + strings.Join(args, " ")),
		Quick: cfg.quick, StartedAt: time.Now().UTC().Truncate(time.Second), Host: baseHost(),
	}
	started := time.Now()
	res.Scenarios = measure(ctx, cfg, &p, want, &res.Host)
	sortScenarios(res.Scenarios)
	res.ElapsedSeconds = round(time.Since(started).Seconds())

	if err := res.Validate(); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := res.WriteFile(cfg.out); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	res.PrintTable(stdout)
	fmt.Fprintf(stdout, "\n%d scenarios in %s; JSON in %s\n", len(res.Scenarios), time.Since(started).Round(time.Second), cfg.out)
	if cfg.markdown != "" {
		f, err := os.Create(cfg.markdown)
		if err != nil {
			return fmt.Errorf("markdown: %w", err)
		}
		res.PrintMarkdown(f)
		if err := f.Close(); err != nil {
			return fmt.Errorf("markdown: %w", err)
		}
	}
	if failed := res.Failed(); len(failed) > 0 {
		return fmt.Errorf("%d scenario(s) could not run:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// measure runs the selected scenarios and always returns one Scenario per
// selected name (failed ones carry their error).
func measure(ctx context.Context, cfg *config, p *profile, want func(string) bool, host *Host) []Scenario {
	var out []Scenario
	logf := func(format string, args ...any) { logTo(cfg.log, format, args...) }
	if want("planner") {
		dir, err := os.MkdirTemp("", "rbench-plan-")
		if err != nil {
			out = append(out, failAll([]string{fmt.Sprintf("planner-scale-%d", p.plannerFiles*p.plannerPerFile)}, err)...)
		} else {
			out = append(out, plannerScale(ctx, dir, p.plannerFiles, p.plannerPerFile, p.plannerRuns, logf))
			os.RemoveAll(dir)
		}
	}
	var names []string
	if want("cold") {
		names = p.coldNames()
	}
	names = append(names, p.steadyNames(want)...)
	if len(names) == 0 {
		return out
	}
	e, err := newEnv(ctx, cfg)
	if err != nil {
		return append(out, failAll(names, err)...)
	}
	defer e.close()
	if want("cold") {
		notes := e.preparePodman(ctx, cfg)
		for k, n := range p.coldCells {
			out = append(out, e.coldConverge(ctx, n, p.coldRuns[k], notes))
		}
	}
	out = append(out, e.steady(ctx, p, want)...)
	e.hostInfo(ctx, host)
	return out
}

// preparePodman sets up the podman baseline, or explains in notes why it
// is skipped.
func (e *env) preparePodman(ctx context.Context, cfg *config) []string {
	if cfg.noPodman {
		return []string{"podman baseline skipped (--no-podman)"}
	}
	p, notes, err := setupPodman(ctx, e, cfg.installPodman)
	if err != nil {
		return append(notes, "podman baseline skipped: "+err.Error())
	}
	if p == nil {
		e.logf("%s", strings.Join(notes, "; "))
		return notes
	}
	if err := p.load(ctx, e.archive); err != nil {
		return append(notes, "podman baseline skipped: "+err.Error())
	}
	e.podman = p
	return append(notes, "podman = `podman kube play --network none` of N one-container pods (each also gets podman's infra container), image loaded with `podman load`; kube play has no parallelism setting")
}

// sortScenarios orders scenarios as the issue lists them, by family and
// then by size (insertion order within a family is by size already).
func sortScenarios(scs []Scenario) {
	rank := func(name string) int {
		for i, prefix := range []string{"cold-", "noop-", "change-", "crash-", "planner-", "footprint-"} {
			if strings.HasPrefix(name, prefix) {
				return i
			}
		}
		return len(families)
	}
	sort.SliceStable(scs, func(i, j int) bool { return rank(scs[i].Name) < rank(scs[j].Name) })
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
