package testenv

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// update is the -update flag of every test binary that imports testenv,
// registered here once (a second registration would panic) and only in test
// binaries, so programs that import testenv keep their own flags.
var update = func() *bool {
	if !testing.Testing() {
		return new(bool)
	}
	return flag.Bool("update", false, "rewrite golden files instead of comparing with them (the run then fails)")
}()

// Golden compares got with the golden file at path and reports a difference
// as (-want +got). With -update it writes got to path (creating its
// directory) and fails the test anyway, naming the file: a run with -update
// never passes, so a stale golden cannot be blessed by a green run.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		t.Errorf("updated golden file %s; rerun without -update", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}
