package vm

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestExpectedChecksAreTheJobs: the list the VM suite holds results.txt to
// is the list of checks job.sh runs, so neither can change alone.
func TestExpectedChecksAreTheJobs(t *testing.T) {
	script, err := os.ReadFile("job.sh")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(expectedChecks, jobChecks(script)); diff != "" {
		t.Errorf("run_check names in job.sh differ from expectedChecks (-want +got):\n%s", diff)
	}
}

func TestCompareChecks(t *testing.T) {
	want := []string{"a", "b", "c"}
	tests := []struct {
		name        string
		results     string
		wantMissing []string
		wantDiff    bool
	}{
		{name: "every check once, in order, passes", results: "ok a\nFAIL b: x\nok c\n"},
		{name: "a check that did not run is missing", results: "ok a\nok c\n", wantMissing: []string{"b"}, wantDiff: true},
		{name: "an unexpected check fails", results: "ok a\nok b\nok c\nok d\n", wantDiff: true},
		{name: "a check run twice fails", results: "ok a\nok b\nok b\nok c\n", wantDiff: true},
		{name: "checks out of order fail", results: "ok b\nok a\nok c\n", wantDiff: true},
		{name: "a malformed line fails", results: "ok a\nok b\nok c\ngarbage\n", wantDiff: true},
		{name: "no results at all miss everything", results: "", wantMissing: want, wantDiff: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			missing, diff := compareChecks(want, parseResults([]byte(tt.results)))
			if d := cmp.Diff(tt.wantMissing, missing); d != "" {
				t.Errorf("missing (-want +got):\n%s", d)
			}
			if (diff != "") != tt.wantDiff {
				t.Errorf("diff = %q, want a diff: %v", diff, tt.wantDiff)
			}
		})
	}
}
