package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kukeon/reconciler/pkg/testenv"
	"github.com/kukeon/reconciler/pkg/testimage"
)

func TestRun(t *testing.T) {
	if _, err := testimage.FindBusybox(); err != nil {
		testenv.SkipOrFail(t, err.Error())
	}
	out := filepath.Join(t.TempDir(), "img.tar")
	tests := []struct {
		name       string
		args       []string
		wantErr    error  // matched with errors.Is when set
		wantErrMsg string // substring of the error when set
		wantStdout string // substring of stdout
	}{
		{name: "writes the archive and names its digest", args: []string{"-o", out, "--name", "example.com/bb:1"}, wantStdout: "as example.com/bb:1"},
		{name: "help goes to stdout and is not a failure", args: []string{"--help"}, wantErr: flag.ErrHelp, wantStdout: "Usage: testimage -o PATH"},
		{name: "a missing -o is an error", args: nil, wantErrMsg: "-o PATH is required"},
		{name: "stray arguments are an error", args: []string{"-o", out, "extra"}, wantErrMsg: "unexpected arguments: extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("run = %v, want %v", err, tt.wantErr)
				}
			case tt.wantErrMsg != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErrMsg) {
					t.Errorf("run = %v, want an error containing %q", err, tt.wantErrMsg)
				}
			case err != nil:
				t.Errorf("run: %v", err)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantStdout)
			}
		})
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("archive: %v", err)
	}
}
