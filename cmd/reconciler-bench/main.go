// Command reconciler-bench measures the reconciler against the floor (the
// containerd client doing the same work) and against what operators would
// use instead (podman kube play), side by side in one run on one machine,
// and writes a table to stdout and a JSON document (--out).
//
// It starts its own containerd, builds the busybox test image and the
// reconciler binary, works under a unique cgroup root
// (/kukeon-bench-<random>) with namespaces of its own
// (<realm>.bench-<random>.kukeon.io) and removes all of it at the end, also
// after SIGINT. The scenarios are one table (registry.go). Timing targets
// never fail the run: the exit code is non-zero only when a scenario could
// not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
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

type config struct {
	quick         bool
	out           string
	markdown      string
	installPodman bool
	noPodman      bool
	reconciler    string
	log           io.Writer
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
	cfg := &config{log: stderr}
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
	want := map[string]bool{}
	for _, f := range strings.Split(*only, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(families, f) {
			return fmt.Errorf("--scenarios: unknown %q (want %s)", f, strings.Join(families, ", "))
		}
		want[f] = true
	}
	scs := selected(cfg.quick, func(f string) bool { return want[f] })

	res := &Results{
		Version: schemaVersion, Command: strings.TrimSpace("reconciler-bench " + strings.Join(args, " ")),
		Quick: cfg.quick, StartedAt: time.Now().UTC().Truncate(time.Second), Host: baseHost(),
	}
	started := time.Now()
	res.Scenarios = measure(ctx, cfg, scs, &res.Host)
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
