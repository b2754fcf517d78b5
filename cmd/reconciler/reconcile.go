package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
	"github.com/kukeon/reconciler/pkg/statedir"
)

// reconcileFlags are the flags of the reconcile loop (daemon and --once).
type reconcileFlags struct {
	manifests         string
	containerdAddress string
	cgroupRoot        string
	cgroupMountpoint  string
	stateDir          string
	imageArchives     string
	namespaceSuffix   string
	resync            time.Duration
	timeout           time.Duration
	waitLock          time.Duration
	prune             bool
	allowEmpty        bool
	once              bool
	dryRun            bool
	output            string
	logFormat         string
	verbosity         int
	workers           int
	listen            string
	debounce          time.Duration
	groupShims        bool
	pruneGrace        time.Duration
}

func (f *reconcileFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.manifests, "manifests", "/etc/kukeon/manifests", "manifest `DIR` (or file) to converge the host onto")
	fs.StringVar(&f.containerdAddress, "containerd-address", "/run/containerd/containerd.sock", "containerd socket `PATH`")
	fs.StringVar(&f.cgroupRoot, "cgroup-root", "/kukeon", "cgroup group `PATH` under which realms live")
	fs.StringVar(&f.cgroupMountpoint, "cgroup-mountpoint", "", "cgroup v2 mountpoint `PATH` (default: detected, /sys/fs/cgroup or /sys/fs/cgroup/unified)")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/kukeon/reconciler", "`DIR` for inventory.json, status.json and container logs")
	fs.StringVar(&f.imageArchives, "image-archives", "", "`DIR` of OCI or docker image archives imported instead of pulling (air-gapped hosts)")
	fs.StringVar(&f.namespaceSuffix, "namespace-suffix", "kukeon.io", "suffix `S` of a realm's default containerd namespace <realm>.<S>")
	fs.DurationVar(&f.resync, "resync", 30*time.Second, "daemon: full relist and converge every `DURATION`")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "--once: how long to wait for containers to run (the daemon never waits)")
	fs.DurationVar(&f.waitLock, "wait-lock", 0, "daemon and --once: how long to wait for another reconciler to release <state-dir>/lock (0: fail at once)")
	fs.BoolVar(&f.prune, "prune", true, "delete recorded objects that are no longer declared")
	fs.BoolVar(&f.allowEmpty, "allow-empty", false, "let an empty manifest set prune everything")
	fs.BoolVar(&f.once, "once", false, "run one pass, wait for readiness and exit (0 converged, 1 failed)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "with --once: print the plan and change nothing (exit 0 in sync, 2 changes, 3 deletes or recreates, 1 error)")
	fs.StringVar(&f.output, "o", "text", "output format of --once: text, json or yaml")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&f.verbosity, "v", 0, "log verbosity `N` (1: every action and unchanged objects, 2: diffs, 4: loop tracing)")
	fs.IntVar(&f.workers, "workers", 4, "how many sibling objects are converged at once")
	fs.StringVar(&f.listen, "listen", "", "daemon: serve /healthz, /readyz and /metrics on `ADDR` (off by default)")
	fs.BoolVar(&f.groupShims, "group-shims", false, "run all containers of a cell under one containerd shim (fewer processes; no faster in make bench)")
	fs.DurationVar(&f.pruneGrace, "prune-grace", 2*time.Second, "delete objects that are no longer declared only once no manifest has changed for `DURATION` (creates and updates are not delayed)")
	fs.DurationVar(&f.debounce, "debounce", 200*time.Millisecond, "daemon: quiet period after a manifest change before converging")
}

const reconcileUsage = `Usage:
  reconciler [flags]                daemon: watch --manifests and converge continuously
  reconciler --once [flags]         one pass: converge, wait for readiness, exit
  reconciler --once --dry-run       print the plan; change nothing

Exit codes:
  --once             0 converged, 1 anything failed
  --once --dry-run   0 in sync, 2 changes that create or update in place,
                     3 changes that delete or recreate anything, 1 error

State dir lock:
  The daemon and --once hold <state-dir>/lock from start to exit. Another
  one on the same state dir exits 1 at once, naming the holder's pid, or
  with --wait-lock waits for it first. --once --dry-run, validate and status
  never take the lock.

Example:
  reconciler --once --dry-run --manifests ./examples/lab
  reconciler --once --manifests ./examples/lab --image-archives ./images

Other commands: validate, status, version (reconciler help).

Flags:
`

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("reconciler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f reconcileFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), reconcileUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil
		}
		return exitWith(1, nil)
	}
	if fs.NArg() > 0 {
		return exitWith(1, fmt.Errorf("unexpected argument %q (see reconciler --help)", fs.Arg(0)))
	}
	if f.output != "text" && f.output != "json" && f.output != "yaml" {
		return exitWith(1, fmt.Errorf("-o %q: want text, json or yaml", f.output))
	}
	if f.dryRun && !f.once {
		return exitWith(1, errors.New("--dry-run needs --once"))
	}
	if f.waitLock < 0 {
		return exitWith(1, fmt.Errorf("--wait-lock %s: want 0 or more", f.waitLock))
	}
	if f.dryRun && f.waitLock != 0 {
		return exitWith(1, errors.New("--wait-lock with --dry-run: a dry run never takes the state dir lock"))
	}
	if !f.dryRun {
		// Before anything touches the state dir or the host: two passes at
		// once fail each other halfway ("snapshot already exists") and leave
		// half-created cells. The daemon holds it until it exits.
		holder := "reconciler daemon"
		if f.once {
			holder = "reconciler --once"
		}
		lock, lerr := statedir.Lock(ctx, f.stateDir, holder, f.waitLock)
		if lerr != nil {
			return exitWith(1, lerr)
		}
		if lock.WriteErr != nil {
			// Held all the same; the pass reports the state dir.
			fmt.Fprintf(stderr, "reconciler: warning: %v (the lock is held; the state dir is not writable)\n", lock.WriteErr)
		}
		// err is runReconcile's result.
		defer func() {
			uerr := lock.Unlock()
			switch {
			case uerr == nil:
			case err == nil:
				err = exitWith(1, uerr)
			default:
				fmt.Fprintf(stderr, "reconciler: %v\n", uerr)
			}
		}()
	}
	log := newLogger(stderr, f.logFormat, f.verbosity, f.once)
	ctx = logr.NewContext(ctx, log)

	cg, err := ctr.NewCgroups(f.cgroupMountpoint)
	if err != nil {
		return exitWith(1, err)
	}
	client := ctr.New(ctr.Config{
		Address:       f.containerdAddress,
		StateDir:      f.stateDir,
		ImageArchives: f.imageArchives,
		GroupShims:    f.groupShims,
	})
	defer client.Close()

	rc := &controller.Reconciler{
		Runtime: client,
		Cgroups: cg,
		Loader:  manifest.NewLoader(manifest.Options{}),
		Opts: controller.Options{
			Manifests:  []string{f.manifests},
			StateDir:   f.stateDir,
			Hierarchy:  hierarchy.Options{CgroupRoot: f.cgroupRoot, NamespaceSuffix: f.namespaceSuffix},
			Prune:      f.prune,
			AllowEmpty: f.allowEmpty,
			Workers:    f.workers,
			Timeout:    f.timeout,
			PruneGrace: f.pruneGrace,
		},
	}
	if !f.once {
		// The daemon never waits for readiness inside a pass: exits come
		// back as events and are handled by their own reconciles.
		rc.Opts.Timeout = 0
		// Its full passes record each object's cgroup usage (status and
		// the reconciler_cgroup_* gauges).
		rc.Opts.Usage = true
		return runDaemon(ctx, rc, &f, stdout, stderr)
	}
	if f.dryRun {
		pr := rc.Plan(ctx)
		if err := printResult(stdout, pr, &f, true); err != nil {
			return exitWith(1, err)
		}
		return exitWith(dryRunCode(pr), nil)
	}
	stopProgress := progress(stderr, time.Second)
	pr := rc.Pass(ctx)
	stopProgress()
	if err := printResult(stdout, pr, &f, false); err != nil {
		return exitWith(1, err)
	}
	if !pr.OK() {
		return exitWith(1, nil)
	}
	return nil
}

// dryRunCode maps a plan to the exit code of --once --dry-run.
func dryRunCode(pr *controller.PassResult) int {
	switch {
	case pr.PlanFailed():
		// A broken manifest is an error, never "changes to make": a CI
		// gate on the exit code must stop on it.
		return 1
	case pr.Plan.Disruptive():
		return 3
	case pr.Plan.HasChanges():
		return 2
	default:
		return 0
	}
}

func newLogger(w io.Writer, format string, v int, once bool) logr.Logger {
	level := slog.Level(-v)
	if once && v == 0 {
		// --once reports everything in its output; logs are for -v.
		level = slog.LevelError + 4
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return logr.FromSlogHandler(h)
}

// progress prints an elapsed-time line on a terminal when a pass takes
// longer than after; the returned func clears it.
func progress(w io.Writer, after time.Duration) func() {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-done:
				if shown {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
				if el := time.Since(start); el >= after {
					fmt.Fprintf(w, "\rconverging… %s", el.Round(time.Second))
					shown = true
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

type jsonResult struct {
	DryRun      bool                  `json:"dryRun"`
	OK          bool                  `json:"ok"`
	ExitCode    int                   `json:"exitCode"`
	Changes     []controller.Change   `json:"changes"`
	Counts      map[string]int        `json:"counts"`
	Elapsed     string                `json:"elapsed"`
	Warnings    []string              `json:"warnings,omitempty"`
	Kept        []controller.Kept     `json:"kept,omitempty"`
	Errors      []string              `json:"errors,omitempty"`
	Diagnostics []manifest.Diagnostic `json:"diagnostics,omitempty"`
}

// printResult prints the result of --once (dryRun: of --once --dry-run) as
// -o asks. Only json and yaml can fail: encoding or writing the document.
func printResult(w io.Writer, pr *controller.PassResult, f *reconcileFlags, dryRun bool) error {
	counts := map[string]int{}
	var changes []controller.Change
	if pr.Plan != nil {
		for i := range pr.Plan.Changes {
			ch := pr.Plan.Changes[i]
			counts[string(ch.Action)]++
			changes = append(changes, ch)
		}
	}
	failed := map[string]string{}
	for _, o := range pr.Outcomes {
		if o.Change == nil {
			continue
		}
		if o.Err != nil {
			failed[o.Change.Key] = "failed: " + o.Err.Error()
		} else if o.Blocked != "" {
			failed[o.Change.Key] = "blocked: " + o.Blocked + " failed"
		}
	}
	if f.output == "json" || f.output == "yaml" {
		jr := jsonResult{DryRun: dryRun, Changes: changes, Counts: counts, Elapsed: pr.Duration.Round(time.Millisecond).String(),
			Diagnostics: pr.Diagnostics}
		if pr.Plan != nil {
			jr.Warnings, jr.Kept = pr.Plan.Warnings, pr.Plan.Kept
		}
		if dryRun {
			jr.ExitCode = dryRunCode(pr)
			jr.OK = !pr.PlanFailed()
			jr.Errors = pr.PlanErrors()
		} else {
			jr.OK = pr.OK()
			jr.Errors = pr.Errors()
			if !jr.OK {
				jr.ExitCode = 1
			}
		}
		if jr.Changes == nil {
			jr.Changes = []controller.Change{}
		}
		return writeDocument(w, f.output, jr)
	}
	for _, d := range pr.Diagnostics {
		fmt.Fprintln(w, d.String())
	}
	for _, ch := range changes {
		if ch.Action == controller.ActionUnchanged && f.verbosity < 1 {
			continue
		}
		line := ch.Key + " " + ch.Describe()
		if dryRun && ch.Action != controller.ActionUnchanged {
			line = ch.Key + " would be " + ch.Describe()
		}
		if msg, ok := failed[ch.Key]; ok {
			line = ch.Key + " " + msg
		}
		fmt.Fprintln(w, line)
	}
	if pr.Plan != nil {
		for _, k := range pr.Plan.Kept {
			fmt.Fprintf(w, "%s kept: %s\n", k.Key, k.Reason)
		}
		for _, wmsg := range pr.Plan.Warnings {
			fmt.Fprintln(w, "warning: "+wmsg)
		}
	}
	if pr.Err != nil {
		fmt.Fprintln(w, "error: "+pr.Err.Error())
	}
	if !dryRun {
		for _, nr := range pr.NotReady {
			fmt.Fprintln(w, "not ready: "+nr)
		}
	}
	var parts []string
	for _, a := range []controller.Action{controller.ActionCreated, controller.ActionUpdated, controller.ActionRecreated, controller.ActionDeleted, controller.ActionUnchanged} {
		parts = append(parts, fmt.Sprintf("%d %s", counts[string(a)], a))
	}
	suffix := ""
	if dryRun {
		suffix = " (dry run: nothing changed)"
	} else if len(failed) > 0 {
		keys := make([]string, 0, len(failed))
		for k := range failed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		suffix = fmt.Sprintf(", %d failed", len(keys))
	}
	fmt.Fprintf(w, "%s in %s%s\n", strings.Join(parts, ", "), pr.Duration.Round(time.Millisecond), suffix)
	return nil
}

// writeDocument writes v as indented JSON (format "json") or as YAML
// ("yaml"). YAML goes through sigs.k8s.io/yaml, so both carry the same
// field names, the JSON tags, and parse back into the same value.
func writeDocument(w io.Writer, format string, v any) error {
	var b []byte
	var err error
	switch format {
	case "json":
		b, err = json.MarshalIndent(v, "", "  ")
		b = append(b, '\n')
	case "yaml":
		b, err = yaml.Marshal(v)
	default:
		return fmt.Errorf("output format %q: want json or yaml", format)
	}
	if err != nil {
		return fmt.Errorf("encode %s output: %w", format, err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %s output: %w", format, err)
	}
	return nil
}
