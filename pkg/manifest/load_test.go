package manifest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/cases")

// report renders a Result the way the golden files hold it.
func report(r *Result) string {
	var b strings.Builder
	for _, f := range r.Files {
		fmt.Fprintf(&b, "file %s objects=%d failed=%v\n", f.Path, f.Objects, f.Failed)
	}
	for _, d := range r.Documents {
		fmt.Fprintf(&b, "document %s %s %s\n", d.Position, d.Kind, objectName(d))
	}
	for _, d := range r.Diagnostics {
		fmt.Fprintln(&b, d.String())
	}
	return b.String()
}

func objectName(d Document) string {
	switch o := d.Object.(type) {
	case *v1beta1.Realm:
		return o.Metadata.Name
	case *v1beta1.Space:
		return o.Spec.RealmID + "/" + o.Metadata.Name
	case *v1beta1.Stack:
		return o.Spec.RealmID + "/" + o.Spec.SpaceID + "/" + o.Metadata.Name
	case *v1beta1.Cell:
		return o.Spec.RealmID + "/" + o.Spec.SpaceID + "/" + o.Spec.StackID + "/" + o.Metadata.Name
	}
	return "?"
}

// TestGolden loads each file of testdata/cases on its own and compares the
// files, documents and diagnostics with <file>.golden.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/cases/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden") {
			continue
		}
		t.Run(filepath.Base(in), func(t *testing.T) {
			got := report(Load([]string{in}, nil, Options{}))
			golden := in + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("report of %s (-want +got):\n%s", in, diff)
			}
		})
	}
}
