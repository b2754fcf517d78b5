package manifest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes as a manifest file, cut-short check
// included: decoding must not panic, and every position must lie within the
// input.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/cases/*")
	examples, _ := filepath.Glob("../../examples/*/*.yaml")
	for _, p := range append(seeds, examples...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a: &x [*x, *x]\n"))
	f.Add([]byte("---\n---\n...\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := decodeSource("f.yaml", data)
		lines := lineBreaks(data) + 1
		check := func(p Position) {
			if p.File != "f.yaml" {
				t.Fatalf("position %v names another file", p)
			}
			if p.Line < 0 || p.Line > lines || p.Column < 0 {
				t.Fatalf("position %v is outside the input of %d lines", p, lines)
			}
		}
		for _, diag := range d.diags {
			check(diag.Position)
			if diag.Severity == SeverityError && !d.failed {
				t.Fatalf("error %v without the file failing", diag)
			}
		}
		for _, doc := range d.docs {
			check(doc.Position)
			for _, p := range doc.Fields {
				check(p)
			}
		}
	})
}
