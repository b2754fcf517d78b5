package manifest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

const cellsExample = "../../examples/lab/cells.yaml"

// cutAt returns the offset just after the n-th (1-based) occurrence of
// marker in data, failing the test when there is none.
func cutAt(t *testing.T, data []byte, marker string, n int) int {
	t.Helper()
	off := 0
	for i := 0; i < n; i++ {
		j := bytes.Index(data[off:], []byte(marker))
		if j < 0 {
			t.Fatalf("%s: occurrence %d of %q not found", cellsExample, n, marker)
		}
		off += j + len(marker)
	}
	return off
}

// truncationReport renders what a truncated file loaded to: the file row,
// each cell with its container ids, and the diagnostics.
func truncationReport(r *Result, dir string) []string {
	var out []string
	for _, f := range r.Files {
		out = append(out, fmt.Sprintf("file objects=%d failed=%v", f.Objects, f.Failed))
	}
	for _, d := range r.Documents {
		c, ok := d.Object.(*v1beta1.Cell)
		if !ok {
			out = append(out, "document "+d.Kind)
			continue
		}
		var ids []string
		for _, ct := range c.Spec.Containers {
			ids = append(ids, ct.ID)
		}
		out = append(out, fmt.Sprintf("cell %s [%s]", c.Metadata.Name, strings.Join(ids, " ")))
	}
	return append(out, diagStrings(r, dir)...)
}

// TestTruncatedExample loads examples/lab/cells.yaml cut at several offsets,
// as "cat > file" leaves it while it writes: a cut inside a line fails the
// file (its last document ignored); only a cut at the end of a line can
// decode to a valid, smaller set of objects or to smaller objects.
func TestTruncatedExample(t *testing.T) {
	data, err := os.ReadFile(cellsExample)
	if err != nil {
		t.Fatal(err)
	}
	const cut = "the file does not end with a line break: it may be cut short while being written, so its last document (from line %d) is ignored; end the file with a line break"
	// cutMsg is the error of a cut at offset n, at the line and column after
	// the last byte kept, whose last document starts at line.
	cutMsg := func(n, line int) string {
		l := bytes.Count(data[:n], []byte("\n")) + 1
		col := utf8.RuneCount(data[bytes.LastIndexByte(data[:n], '\n')+1:n]) + 1
		return fmt.Sprintf("cells.yaml:%d:%d: "+cut, l, col, line)
	}
	// second is the line of the "---" that starts the second document.
	second := bytes.Count(data[:cutAt(t, data, "\n---", 1)], []byte("\n")) + 1
	tests := []struct {
		name string
		at   int
		want []string
		// cutLine, when set, expects the cut error last, naming the
		// ignored document's first line.
		cutLine int
	}{
		{
			name: "at offset 0 the file is empty: no object",
			at:   0,
			want: []string{"file objects=0 failed=false"},
		},
		{
			name:    "inside the leading comment the file fails",
			at:      cutAt(t, data, "# frontend", 1),
			want:    []string{"file objects=0 failed=true"},
			cutLine: 1,
		},
		{
			name: "after the leading comment lines: no object yet",
			at:   cutAt(t, data, "namespace.\n", 1),
			want: []string{"file objects=0 failed=false"},
		},
		{
			name:    "inside a key the file fails",
			at:      cutAt(t, data, "kin", 1),
			want:    []string{"file objects=0 failed=true"},
			cutLine: 1,
		},
		{
			name: `inside the image "d" (a valid reference) the file fails`,
			at:   cutAt(t, data, "image: d", 1),
			want: []string{"file objects=0 failed=true", "cells.yaml:18:15: " + fmt.Sprintf(cut, 1)},
		},
		{
			name:    "after the tag's colon the file fails",
			at:      cutAt(t, data, "busybox:", 1),
			want:    []string{"file objects=0 failed=true"},
			cutLine: 1,
		},
		{
			name:    `inside the quantity "6" (a valid limit) the file fails`,
			at:      cutAt(t, data, "memoryLimitBytes: 6", 1),
			want:    []string{"file objects=0 failed=true"},
			cutLine: 1,
		},
		{
			name:    "inside a flow sequence the file fails",
			at:      cutAt(t, data, `args: ["-c"`, 1),
			want:    []string{"file objects=0 failed=true"},
			cutLine: 1,
		},
		{
			name:    "inside the indentation of the next container's line the file fails",
			at:      cutAt(t, data, "cpuShares: 512\n  ", 1),
			want:    []string{"file objects=0 failed=true"},
			cutLine: 1,
		},
		{
			name: "HAZARD: at the end of the first image line, a valid cell with one of its two containers",
			at:   cutAt(t, data, "busybox:latest\n", 1),
			want: []string{"file objects=1 failed=false", "cell frontend [httpd]"},
		},
		{
			name: "HAZARD: at the end of the first document, before its ---, the first cell alone",
			at:   cutAt(t, data, "restartPolicy: always\n", 2),
			want: []string{"file objects=1 failed=false", "cell frontend [httpd sidecar]"},
		},
		{
			name:    "on the --- line without its line break the file fails, keeping the complete first cell",
			at:      cutAt(t, data, "\n---", 1),
			want:    []string{"file objects=1 failed=true", "cell frontend [httpd sidecar]"},
			cutLine: second,
		},
		{
			name: "HAZARD: after the --- line, the first cell alone",
			at:   cutAt(t, data, "\n---\n", 1),
			want: []string{"file objects=1 failed=false", "cell frontend [httpd sidecar]"},
		},
		{
			name:    "inside the second document the file fails, keeping the complete first cell",
			at:      cutAt(t, data, "name: work", 1),
			want:    []string{"file objects=1 failed=true", "cell frontend [httpd sidecar]"},
			cutLine: second,
		},
		{
			name: "HAZARD: at the end of the second cell's first container, a valid worker with one of its two containers",
			at:   cutAt(t, data, `sleep 3600 & wait"]`+"\n", 2),
			want: []string{"file objects=2 failed=false", "cell frontend [httpd sidecar]", "cell worker [sandbox]"},
		},
		{
			name:    "without its final line break the file fails, keeping the complete first cell",
			at:      len(data) - 1,
			want:    []string{"file objects=1 failed=true", "cell frontend [httpd sidecar]"},
			cutLine: second,
		},
		{
			name: "the whole file: both cells",
			at:   len(data),
			want: []string{"file objects=2 failed=false", "cell frontend [httpd sidecar]", "cell worker [sandbox job]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cells.yaml"), data[:tt.at], 0o644); err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if tt.cutLine > 0 {
				want = append(want, cutMsg(tt.at, tt.cutLine))
			}
			got := truncationReport(Load([]string{dir}, nil, Options{}), dir)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("cut at %d (-want +got):\n%s", tt.at, diff)
			}
		})
	}
}

// TestTruncationMidLineFails cuts every example at every offset: a cut that
// is not at the end of a line (nor at offset 0) always fails the file, and
// never yields a document the whole file does not hold. Cuts at the end of a
// line are counted, not judged: they are the hazard of TestTruncatedExample.
func TestTruncationMidLineFails(t *testing.T) {
	examples, err := filepath.Glob("../../examples/*/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, ex := range examples {
		data, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		whole := decodeSource(ex, data)
		lineEnds := 0
		for n := 1; n < len(data); n++ {
			if data[n-1] == '\n' {
				lineEnds++
				continue
			}
			d := decodeSource(ex, data[:n])
			if !d.failed {
				t.Errorf("%s cut at %d (%q) decodes without failing", ex, n, tail(data[:n]))
				continue
			}
			for i, doc := range d.docs {
				if i >= len(whole.docs) || !cmp.Equal(doc.Object, whole.docs[i].Object) {
					t.Errorf("%s cut at %d (%q): document %d is not the whole file's", ex, n, tail(data[:n]), i)
				}
			}
		}
		t.Logf("%s: %d bytes, %d cuts at a line end not judged", ex, len(data), lineEnds)
	}
}

func tail(b []byte) string { return string(b[max(0, len(b)-20):]) }

// TestTruncatedJSON checks that JSON, which needs no final line break, fails
// on every cut by syntax alone.
func TestTruncatedJSON(t *testing.T) {
	data := []byte(`{"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "lab"}}`)
	if d := decodeSource("r.json", data); d.failed || len(d.docs) != 1 {
		t.Fatalf("the whole JSON without a final line break: failed=%v documents=%d, want a valid realm", d.failed, len(d.docs))
	}
	for n := 1; n < len(data); n++ {
		d := decodeSource("r.json", data[:n])
		if !d.failed || len(d.docs) != 0 {
			t.Errorf("JSON cut at %d (%q): failed=%v documents=%d, want a failure", n, tail(data[:n]), d.failed, len(d.docs))
		}
		for _, diag := range d.diags {
			if strings.Contains(diag.Message, "line break") {
				t.Errorf("JSON cut at %d reports the missing line break: %s", n, diag)
			}
		}
	}
}
