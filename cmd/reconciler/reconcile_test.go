package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/manifest"
)

func passWith(changes ...controller.Change) *controller.PassResult {
	return &controller.PassResult{Plan: &controller.Plan{Changes: changes}, Duration: 12 * time.Millisecond}
}

func TestDryRunExitCodes(t *testing.T) {
	tests := []struct {
		name string
		pr   *controller.PassResult
		want int
	}{
		{"an in-sync host exits 0", passWith(controller.Change{Key: "Realm lab", Action: controller.ActionUnchanged}), 0},
		{"a create exits 2", passWith(controller.Change{Key: "Realm lab", Action: controller.ActionCreated}), 2},
		{"a label update exits 2", passWith(controller.Change{Key: "Cell a/b/c/d", Action: controller.ActionUpdated,
			Containers: []controller.ContainerChange{{ID: "web", Action: controller.ContainerRelabel}}}), 2},
		{"a container recreate inside an update exits 3", passWith(controller.Change{Key: "Cell a/b/c/d", Action: controller.ActionUpdated,
			Containers: []controller.ContainerChange{{ID: "web", Action: controller.ContainerRecreate}}}), 3},
		{"a prune exits 3", passWith(controller.Change{Key: "Cell a/b/c/d", Action: controller.ActionDeleted}), 3},
		{"an error exits 1", &controller.PassResult{Err: errors.New("containerd unavailable")}, 1},
		{"a manifest error exits 1 beside a create", func() *controller.PassResult {
			pr := passWith(controller.Change{Key: "Cell a/b/c/good", Action: controller.ActionCreated})
			pr.Diagnostics = []manifest.Diagnostic{{Severity: manifest.SeverityError, Message: "unsupported value"}}
			return pr
		}(), 1},
		{"a manifest warning alone keeps exit 0", func() *controller.PassResult {
			pr := passWith(controller.Change{Key: "Realm lab", Action: controller.ActionUnchanged})
			pr.Diagnostics = []manifest.Diagnostic{{Severity: manifest.SeverityWarning, Message: "not implemented"}}
			return pr
		}(), 0},
		{"a refused change exits 1 beside a prune", passWith(
			controller.Change{Key: "Realm a", Action: controller.ActionUpdated, Refused: "namespace changed"},
			controller.Change{Key: "Cell a/b/c/d", Action: controller.ActionDeleted}), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dryRunCode(tt.pr); got != tt.want {
				t.Errorf("dryRunCode = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPrintResult(t *testing.T) {
	pr := passWith(
		controller.Change{Key: "Realm lab", Action: controller.ActionUnchanged},
		controller.Change{Key: "Cell lab/web/blog/frontend", Action: controller.ActionUpdated,
			Containers: []controller.ContainerChange{{ID: "sidecar", Action: controller.ContainerRecreate, Fields: []string{"env"}}}},
	)
	t.Run("text lists changed objects then a summary", func(t *testing.T) {
		var b bytes.Buffer
		if err := printResult(&b, pr, &reconcileFlags{output: "text"}, true); err != nil {
			t.Fatal(err)
		}
		want := "Cell lab/web/blog/frontend would be updated: container sidecar recreated (env)\n" +
			"0 created, 1 updated, 0 recreated, 0 deleted, 1 unchanged in 12ms (dry run: nothing changed)\n"
		if diff := cmp.Diff(want, b.String()); diff != "" {
			t.Errorf("output (-want +got):\n%s", diff)
		}
	})
	t.Run("-v also lists unchanged objects", func(t *testing.T) {
		var b bytes.Buffer
		if err := printResult(&b, pr, &reconcileFlags{output: "text", verbosity: 1}, false); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(b.String(), "Realm lab unchanged\n") {
			t.Errorf("output does not start with the unchanged realm:\n%s", b.String())
		}
	})
	t.Run("json carries the changes, counts and exit code", func(t *testing.T) {
		var b bytes.Buffer
		if err := printResult(&b, pr, &reconcileFlags{output: "json"}, true); err != nil {
			t.Fatal(err)
		}
		var got jsonResult
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, b.String())
		}
		if got.ExitCode != 3 || got.Counts["updated"] != 1 || len(got.Changes) != 2 || !got.DryRun {
			t.Errorf("json result = %+v", got)
		}
	})
	t.Run("yaml is the json document", func(t *testing.T) {
		failed := passWith(controller.Change{Key: "Cell lab/web/blog/bad", Kind: "Cell", Action: controller.ActionCreated,
			Reasons: []string{"cgroup missing"}, Steps: []controller.Step{controller.StepEnsureCgroup}})
		failed.Plan.Warnings = []string{"Cell lab/web/blog/bad: cpuset not offered"}
		failed.Diagnostics = []manifest.Diagnostic{{Severity: manifest.SeverityError, Position: manifest.Position{File: "bad.yaml", Line: 12, Column: 22},
			Object: "Cell lab/web/blog/bad", Field: "spec.containers[0].restartPolicy", Message: "unsupported value"}}
		for _, tc := range []struct {
			name   string
			pr     *controller.PassResult
			dryRun bool
		}{{"of a dry run", pr, true}, {"of a pass with a manifest error", failed, false}} {
			t.Run(tc.name, func(t *testing.T) {
				var js, ys bytes.Buffer
				if err := printResult(&js, tc.pr, &reconcileFlags{output: "json"}, tc.dryRun); err != nil {
					t.Fatal(err)
				}
				if err := printResult(&ys, tc.pr, &reconcileFlags{output: "yaml"}, tc.dryRun); err != nil {
					t.Fatal(err)
				}
				var fromJSON, fromYAML map[string]any
				if err := json.Unmarshal(js.Bytes(), &fromJSON); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, js.String())
				}
				if err := yaml.Unmarshal(ys.Bytes(), &fromYAML); err != nil {
					t.Fatalf("not YAML: %v\n%s", err, ys.String())
				}
				if diff := cmp.Diff(fromJSON, fromYAML); diff != "" {
					t.Errorf("yaml document (-json +yaml):\n%s\nyaml:\n%s", diff, ys.String())
				}
				var typed jsonResult
				if err := yaml.UnmarshalStrict(ys.Bytes(), &typed); err != nil {
					t.Errorf("yaml does not parse back into the result: %v\n%s", err, ys.String())
				}
				if typed.DryRun != tc.dryRun || len(typed.Changes) != len(tc.pr.Plan.Changes) {
					t.Errorf("yaml result = %+v", typed)
				}
			})
		}
	})
}

func TestOutputFormatIsChecked(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"--once refuses -o table", []string{"--once", "-o", "table"}, `-o "table": want text, json or yaml`},
		{"--once --dry-run refuses -o xml", []string{"--once", "--dry-run", "-o", "xml"}, `-o "xml": want text, json or yaml`},
		{"status refuses -o text", []string{"status", "-o", "text"}, `-o "text": want table, json or yaml`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append(tt.args, "--state-dir", t.TempDir()), nil, &out, &out)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 {
				t.Fatalf("run: %v, want exit 1", err)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}
