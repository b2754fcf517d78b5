package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/kukeon/reconciler/pkg/controller"
)

func TestStatusOutput(t *testing.T) {
	started := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	exit := uint32(3)
	want := &controller.Status{
		GeneratedAt: started.Add(2 * time.Second),
		Pass: controller.PassSummary{StartedAt: started, Duration: "1.84s", OK: false,
			Counts: map[controller.Action]int{controller.ActionCreated: 2}, Errors: []string{"Cell lab/web/blog/worker: not running"}},
		Objects: []controller.ObjectStatus{
			{Kind: "Realm", Key: "Realm lab", State: controller.StateReady, Namespace: "lab.kukeon.io", Controllers: []string{"cpu", "memory"}},
			{Kind: "Cell", Key: "Cell lab/web/blog/worker", State: "Failed", Message: "exited 3", Controllers: []string{},
				Containers: []controller.ContainerStatus{{ID: "job", ContainerdID: "web_blog_worker_job", State: "exited",
					ExitCode: &exit, StartedAt: &started, RestartCount: 2}}},
		},
		Diagnostics: []string{"warning: cells.yaml:3:1: not implemented"},
	}
	dir := t.TempDir()
	if err := want.Save(filepath.Join(dir, "status.json")); err != nil {
		t.Fatal(err)
	}
	decoders := map[string]func([]byte, any) error{
		"json": json.Unmarshal,
		"yaml": func(b []byte, v any) error { return yaml.Unmarshal(b, v) },
	}
	for _, format := range []string{"json", "yaml"} {
		t.Run("-o "+format+" parses back into the recorded status", func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), []string{"status", "--state-dir", dir, "-o", format}, nil, &out, &out); err != nil {
				t.Fatalf("status -o %s: %v\n%s", format, err, out.String())
			}
			var got controller.Status
			if err := decoders[format](out.Bytes(), &got); err != nil {
				t.Fatalf("status -o %s does not parse: %v\n%s", format, err, out.String())
			}
			if diff := cmp.Diff(want, &got); diff != "" {
				t.Errorf("status -o %s (-want +got):\n%s", format, diff)
			}
		})
	}
	t.Run("-o yaml uses the JSON field names", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"status", "--state-dir", dir, "-o", "yaml"}, nil, &out, &out); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"generatedAt:", "containerdId: web_blog_worker_job", "restartCount: 2"} {
			if !strings.Contains(out.String(), key) {
				t.Errorf("status -o yaml lacks %q:\n%s", key, out.String())
			}
		}
	})
}

func TestStatusRefusesAnUnknownFormat(t *testing.T) {
	// No status.json: the format is checked first.
	var out bytes.Buffer
	err := run(context.Background(), []string{"status", "--state-dir", t.TempDir(), "-o", "xml"}, nil, &out, &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("status -o xml: %v, want exit 1", err)
	}
	if diff := cmp.Diff(`-o "xml": want table, json or yaml`, err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}
