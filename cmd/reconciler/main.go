// Command reconciler makes a Linux host look like a directory of YAML
// manifests: Realm → Space → Stack → Cell, converged onto containerd and the
// cgroup v2 tree. See README.md for the manifest reference and flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries a specific exit code. A nil err inside means the message
// was already printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith returns an error that makes the process exit with code; err may be
// nil when the output already said everything.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// errUsage marks a command-line mistake (exit 1 after the message).
var errUsage = errors.New("usage")

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "reconciler: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "reconciler: %v\n", err)
	return 1
}

// run dispatches the subcommands. It is the whole program but for the
// process exit, so tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "validate":
			return runValidate(ctx, args[1:], stdin, stdout, stderr)
		case "status":
			return runStatus(ctx, args[1:], stdout, stderr)
		case "version":
			if len(args) > 1 && (args[1] == "--help" || args[1] == "-h" || args[1] == "-help") {
				fmt.Fprint(stdout, "Usage: reconciler version\n\nPrints the version of this binary.\n")
				return nil
			}
			fmt.Fprintf(stdout, "reconciler %s\n", version)
			return nil
		case "pause":
			return runPause(ctx)
		case "help":
			printUsage(stdout)
			return nil
		}
	}
	return runReconcile(ctx, args, stdout, stderr)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `reconciler makes this host look like a directory of YAML manifests
(Realm → Space → Stack → Cell), converged onto containerd and cgroup v2.

Usage:
  reconciler [flags]                  daemon: watch --manifests and converge continuously
  reconciler --once [flags]           one pass: converge, wait for readiness, exit
  reconciler --once --dry-run         print the plan; change nothing
  reconciler validate [PATH...]       offline check of manifests (no containerd needed)
  reconciler status [-o FORMAT]       print the last recorded status (table, json or yaml)
  reconciler version                  print the version

Run "reconciler <command> --help" for the flags of a command, and
"reconciler --help" for the flags of the reconcile loop.
`)
}
