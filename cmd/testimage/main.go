// Command testimage writes the busybox test image as an OCI archive that
// containerd imports without a registry (used by `make demo` and benchmarks).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kukeon/reconciler/pkg/testimage"
)

const usage = `Usage: testimage -o PATH [--name IMAGE] [--busybox PATH] [--cmd "ARG ..."]

Writes an OCI image archive (oci-layout, index.json, blobs/sha256/...) holding a
single layer: the host's static busybox as /bin/busybox with a symlink per
applet, /etc/passwd and /etc/group with root and nobody, and the usual empty
directories (/tmp, /proc, /sys, /dev, /srv, /var/www). No network is used.
Two runs with the same busybox and flags write byte-identical archives.

Import it with containerd's client.Import, or:
  ctr -n NAMESPACE images import PATH

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "testimage:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("testimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout) // asked-for help is output, not an error
		}
	}
	out := fs.String("o", "", "write the archive to `PATH` (required)")
	name := fs.String("name", testimage.DefaultImageName, "image `reference` recorded in index.json")
	busybox := fs.String("busybox", "", "static busybox `binary` (default: first static one of "+strings.Join(testimage.BusyboxCandidates, ", ")+")")
	cmd := fs.String("cmd", "", "image config Cmd, split on spaces (default \"sh\")")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *out == "" {
		fs.Usage()
		return errors.New("-o PATH is required")
	}
	opts := testimage.Options{ImageName: *name, BusyboxPath: *busybox}
	if *cmd != "" {
		opts.Cmd = strings.Fields(*cmd)
	}
	if err := testimage.BuildFile(*out, opts); err != nil {
		return err
	}
	d, err := testimage.Digest(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s) as %s\n", *out, d, *name)
	return nil
}
