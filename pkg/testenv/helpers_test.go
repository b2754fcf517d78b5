package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recorder is a testing.TB that keeps what a helper reports, and its
// cleanups, so a test can check that the helper fails (or skips) the test
// it serves. Fatal and Skip end the helper's goroutine, as they do in a
// test: call helpers through run.
type recorder struct {
	testing.TB
	errors   []string
	fatal    bool
	skipped  bool
	cleanups []func()
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.fatal = true
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = true
	runtime.Goexit()
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run calls f on its own goroutine, as a test body, and waits for it.
func (r *recorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// cleanup runs the registered cleanups, last first, as testing does.
func (r *recorder) cleanup() {
	r.run(func() {
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
	})
}

func TestInCI(t *testing.T) {
	tests := []struct {
		name  string
		value string
		unset bool
		want  bool
	}{
		{name: "an unset CI is a local run", unset: true, want: false},
		{name: "an empty CI is a local run", value: "", want: false},
		{name: "CI=false is a local run", value: "false", want: false},
		{name: "CI=0 is a local run", value: "0", want: false},
		{name: "CI=F is a local run", value: "F", want: false},
		{name: "CI=true is CI", value: "true", want: true},
		{name: "CI=TRUE is CI", value: "TRUE", want: true},
		{name: "CI=True is CI", value: "True", want: true},
		{name: "CI=1 is CI", value: "1", want: true},
		{name: "CI=t is CI", value: "t", want: true},
		{name: "a value ParseBool rejects counts as CI, never as a reason to skip", value: "yes", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.value)
			if tt.unset {
				os.Unsetenv("CI") // t.Setenv restores the old value at cleanup
			}
			if got := InCI(); got != tt.want {
				t.Errorf("InCI() with CI=%q (unset %v) = %v, want %v", tt.value, tt.unset, got, tt.want)
			}
		})
	}
}

func TestSkipOrFail(t *testing.T) {
	tests := []struct {
		name      string
		ci        string
		wantSkip  bool
		wantFatal bool
	}{
		{name: "skips on a local run", ci: "false", wantSkip: true},
		{name: "fails under CI=1", ci: "1", wantFatal: true},
		{name: "fails under CI=true", ci: "true", wantFatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			r.run(func() { SkipOrFail(r, "no qemu") })
			if r.skipped != tt.wantSkip || r.fatal != tt.wantFatal {
				t.Errorf("SkipOrFail under CI=%q: skipped %v, failed %v; want skipped %v, failed %v",
					tt.ci, r.skipped, r.fatal, tt.wantSkip, tt.wantFatal)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name       string
		file       string // golden content; "" means no file
		got        string
		update     bool
		wantErrors []string // substrings of the one reported error; none: no error
		wantFatal  bool
		wantFile   string // content after the call; "" means no file
	}{
		{name: "a matching file passes", file: "a\n", got: "a\n", wantFile: "a\n"},
		{name: "a difference fails with a diff", file: "a\n", got: "b\n", wantErrors: []string{"(-want +got)"}, wantFile: "a\n"},
		{name: "a missing file fails and says how to create it", got: "b\n", wantErrors: []string{"-update"}, wantFatal: true},
		{name: "-update writes the file and still fails", file: "old\n", got: "b\n", update: true,
			wantErrors: []string{"updated golden file", "rerun without -update"}, wantFile: "b\n"},
		{name: "-update of a matching file still fails", file: "b\n", got: "b\n", update: true,
			wantErrors: []string{"updated golden file"}, wantFile: "b\n"},
		{name: "-update creates a missing file and its directory, and fails", got: "b\n", update: true,
			wantErrors: []string{"updated golden file"}, wantFile: "b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "x.golden")
			if tt.file != "" {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			old := *update
			*update = tt.update
			defer func() { *update = old }()
			r := &recorder{TB: t}
			r.run(func() { Golden(r, path, tt.got) })

			switch {
			case len(tt.wantErrors) == 0 && len(r.errors) != 0:
				t.Errorf("errors = %q, want none", r.errors)
			case len(tt.wantErrors) > 0 && len(r.errors) != 1:
				t.Errorf("errors = %q, want one with %q", r.errors, tt.wantErrors)
			case len(tt.wantErrors) > 0:
				for _, w := range tt.wantErrors {
					if !strings.Contains(r.errors[0], w) {
						t.Errorf("error %q lacks %q", r.errors[0], w)
					}
				}
			}
			if r.fatal != tt.wantFatal {
				t.Errorf("fatal = %v, want %v", r.fatal, tt.wantFatal)
			}
			b, err := os.ReadFile(path)
			if tt.wantFile == "" {
				if !os.IsNotExist(err) {
					t.Errorf("golden file exists after the call (%v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantFile, string(b)); diff != "" {
				t.Errorf("golden file after the call (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCgroupRootLeakFailsTheTest(t *testing.T) {
	Require(t)
	unified, err := UnifiedMount()
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	root := CgroupRoot(r)
	busy := filepath.Join(unified, root, "leak")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleep.Process.Kill()
		sleep.Wait()
		if err := RemoveCgroupTree(root); err != nil {
			t.Errorf("RemoveCgroupTree once the process is gone: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(busy, "cgroup.procs"), []byte(fmt.Sprint(sleep.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cleanup()
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], root+" left behind") {
		t.Errorf("CgroupRoot's cleanup with a process left in %s reported %q, want one error naming %s", busy, r.errors, root)
	}
}
