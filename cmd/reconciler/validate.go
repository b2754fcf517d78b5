package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

const validateUsage = `Usage: reconciler validate [flags] [PATH...]

Check manifests offline: YAML syntax, fields and their types, names, parents,
duplicates across files, containerd ID lengths and the reserved realm
kuke-system. Nothing on the host is read but the manifests: no containerd, no
cgroups. PATH is a file or a directory (walked recursively); "-" reads stdin.
With no PATH, the --manifests directory is checked. Flags may follow paths.

Each problem is printed as
  file:line:col: Kind realm/space/stack/cell: field.path: message
(warnings prefixed "warning: "), sorted by place, then a summary line
  N objects in M files: E errors, W warnings

Flags:
`

const validateExamples = `
Examples:
  reconciler validate examples/
  reconciler validate -o json /etc/kukeon/manifests
  cat cell.yaml | reconciler validate -

Exit codes:
  0  valid (warnings allowed)
  1  invalid, or a command-line mistake
`

// validateReport is the -o json output.
type validateReport struct {
	Valid       bool                  `json:"valid"`
	Objects     int                   `json:"objects"`
	Files       int                   `json:"files"`
	Errors      int                   `json:"errors"`
	Warnings    int                   `json:"warnings"`
	Diagnostics []manifest.Diagnostic `json:"diagnostics"`
}

// runValidate is "reconciler validate". It returns nil when the manifests are
// valid (warnings allowed) and exitWith(1, nil) after printing the report when
// they are not.
func runValidate(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; --help goes to stdout
	manifests := fs.String("manifests", "/etc/kukeon/manifests", "manifest `DIR` checked when no PATH is given")
	output := fs.String("o", "text", "output `format`: text or json")
	fs.StringVar(output, "output", "text", "same as -o `format`")
	suffix := fs.String("namespace-suffix", "kukeon.io", "realm namespace `suffix`: <realm>.<suffix>")
	cgroupRoot := fs.String("cgroup-root", hierarchy.DefaultCgroupRoot, "cgroup group `PATH` under which realms live")
	quiet := fs.Bool("q", false, "print only the summary line (text output)")

	paths, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, validateUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fmt.Fprint(stdout, validateExamples)
		return nil
	}
	if err != nil {
		return exitWith(1, fmt.Errorf("validate: %w (see reconciler validate --help)", err))
	}
	if *output != "text" && *output != "json" {
		return exitWith(1, fmt.Errorf("validate: -o %q: want text or json", *output))
	}
	if len(paths) == 0 {
		paths = []string{*manifests}
	}

	res := manifest.Load(paths, stdin, manifest.Options{})
	_, diags := hierarchy.Build(res.Documents, hierarchy.Options{CgroupRoot: *cgroupRoot, NamespaceSuffix: *suffix})
	rep := report(res, diags)

	switch *output {
	case "json":
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("validate: encode report: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	default:
		if !*quiet {
			for _, d := range rep.Diagnostics {
				fmt.Fprintln(stdout, d.String())
			}
		}
		fmt.Fprintf(stdout, "%s in %s: %s, %s\n", count(rep.Objects, "object"), count(rep.Files, "file"),
			count(rep.Errors, "error"), count(rep.Warnings, "warning"))
	}
	if !rep.Valid {
		return exitWith(1, nil)
	}
	return nil
}

// report merges the loader's and the hierarchy's diagnostics, sorted by file,
// line and column (stable: problems at one place keep the order they were
// found in), and counts them. Objects are the documents decoded from files;
// implied parents are not objects.
func report(res *manifest.Result, built []manifest.Diagnostic) validateReport {
	rep := validateReport{Diagnostics: []manifest.Diagnostic{}}
	for _, f := range res.Files {
		if !f.Dir { // a source that failed as a directory is not a file
			rep.Files++
		}
		rep.Objects += f.Objects
	}
	rep.Diagnostics = append(rep.Diagnostics, res.Diagnostics...)
	rep.Diagnostics = append(rep.Diagnostics, built...)
	slices.SortStableFunc(rep.Diagnostics, func(x, y manifest.Diagnostic) int {
		return cmp.Or(
			cmp.Compare(x.Position.File, y.Position.File),
			cmp.Compare(x.Position.Line, y.Position.Line),
			cmp.Compare(x.Position.Column, y.Position.Column),
		)
	})
	for _, d := range rep.Diagnostics {
		if d.Severity == manifest.SeverityWarning {
			rep.Warnings++
		} else {
			rep.Errors++
		}
	}
	rep.Valid = rep.Errors == 0
	return rep
}

// parseInterspersed parses flags wherever they appear among the paths, as
// operators type "validate examples/ -o json". Everything after "--" is a path.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(paths, rest...), nil
		}
		if len(rest) == 0 {
			return paths, nil
		}
		paths = append(paths, rest[0])
		args = rest[1:]
	}
}

// count renders "1 error" or "2 errors".
func count(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
