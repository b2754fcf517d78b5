package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kukeon/reconciler/pkg/controller"
)

func runStatus(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconciler status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "/var/lib/kukeon/reconciler", "`DIR` holding status.json")
	output := fs.String("o", "table", "output format: table, json or yaml")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: reconciler status [-o table|json|yaml] [--state-dir DIR]

Prints the status recorded by the last pass (<state-dir>/status.json) as a
tree: every realm, space, stack and cell with its state, and every container
with its state, exit code and restart count.

Flags:
`)
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
		return exitWith(1, fmt.Errorf("unexpected argument %q (see reconciler status --help)", fs.Arg(0)))
	}
	if *output != "table" && *output != "json" && *output != "yaml" {
		return exitWith(1, fmt.Errorf("-o %q: want table, json or yaml", *output))
	}
	st, err := controller.LoadStatus(filepath.Join(*stateDir, "status.json"))
	if err != nil {
		return exitWith(1, err)
	}
	if st == nil {
		return exitWith(1, fmt.Errorf("no status recorded in %s yet: run reconciler --once or the daemon first", *stateDir))
	}
	if *output == "table" {
		printStatusTable(stdout, st)
		return nil
	}
	return writeDocument(stdout, *output, st)
}

func printStatusTable(w io.Writer, st *controller.Status) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT\tSTATE\tCONTROLLERS\tMESSAGE")
	for _, o := range st.Objects {
		depth := map[string]int{"Realm": 0, "Space": 1, "Stack": 2, "Cell": 3}[o.Kind]
		name := o.Key[strings.LastIndexAny(o.Key, " /")+1:]
		label := strings.Repeat("  ", depth) + o.Kind + " " + name
		if o.Implied {
			label += " (implied)"
		}
		ctrls := strings.Join(o.Controllers, ",")
		if ctrls == "" {
			ctrls = "-"
		}
		msg := o.Message
		if o.Reason != "" && msg == "" {
			msg = o.Reason
		}
		if len(o.MissingControllers) > 0 {
			msg = strings.TrimSpace(msg + " (missing controllers: " + strings.Join(o.MissingControllers, ",") + ")")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", label, o.State, ctrls, msg)
		for _, c := range o.Containers {
			detail := fmt.Sprintf("restarts=%d", c.RestartCount)
			if c.PID != 0 {
				detail = fmt.Sprintf("pid=%d %s", c.PID, detail)
			}
			if c.ExitCode != nil {
				detail = fmt.Sprintf("exit=%d %s", *c.ExitCode, detail)
			}
			if c.Message != "" {
				detail += " " + c.Message
			}
			role := ""
			if c.Root {
				role = " (root)"
			}
			fmt.Fprintf(tw, "%s\t%s\t\t%s\n", strings.Repeat("  ", depth+1)+"container "+c.ID+role, c.State, detail)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nlast pass: %s, took %s, ok=%v\n", st.Pass.StartedAt.Format("2006-01-02 15:04:05Z07:00"), st.Pass.Duration, st.Pass.OK)
	for _, e := range st.Pass.Errors {
		fmt.Fprintln(w, "error: "+e)
	}
}
