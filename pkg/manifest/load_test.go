package manifest

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/testenv"
)

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
			testenv.Golden(t, in+".golden", got)
		})
	}
}
