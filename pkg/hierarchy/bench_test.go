package hierarchy

import (
	"fmt"
	"testing"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// BenchmarkBuild10kCells builds the tree of 1,000 stacks of 10 cells with two
// containers each (the shape of the 10,000-cell directory), with the
// realm, spaces and stacks declared.
func BenchmarkBuild10kCells(b *testing.B) {
	docs := []manifest.Document{doc("realm.yaml", 1, realm("lab", ""))}
	for f := range 1000 {
		file := fmt.Sprintf("f%04d.yaml", f)
		sp, st := fmt.Sprintf("space-%d", f%10), fmt.Sprintf("stack-%d", f)
		if f < 10 {
			docs = append(docs, doc(file, 1, space("lab", sp)))
		}
		docs = append(docs, doc(file, 10, stack("lab", sp, st)))
		for c := range 10 {
			app := ctr("app", "docker.io/library/busybox:latest")
			app.Env = []string{"A=1", "B=2"}
			app.Args = []string{"sleep", "3600"}
			side := ctr("sidecar", "docker.io/library/busybox:latest")
			side.Volumes = []v1beta1.Volume{{Source: "/srv", Target: "/srv"}}
			docs = append(docs, doc(file, 20+c*40, cell("lab", sp, st, fmt.Sprintf("cell-%d", c), app, side)))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		tree, diags := Build(docs, Options{})
		if len(diags) != 0 || len(tree.Cells()) != 10000 {
			b.Fatalf("Build: %d cells, diagnostics %v", len(tree.Cells()), diags)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/cell")
}
