package hierarchy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

func TestKeys(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"names a realm", RealmKey("lab"), "Realm lab"},
		{"names a space by realm and name", SpaceKey("lab", "web"), "Space lab/web"},
		{"names a stack by its path", StackKey("lab", "web", "blog"), "Stack lab/web/blog"},
		{"names a cell by its path", CellKey("lab", "web", "blog", "frontend"), "Cell lab/web/blog/frontend"},
		{"builds a workload containerd ID", ContainerdID("web", "blog", "frontend", "httpd"), "web_blog_frontend_httpd"},
		{"builds a root containerd ID", RootContainerdID("web", "blog", "frontend"), "web_blog_frontend_root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestTreeLookups(t *testing.T) {
	tree, diags := Build([]manifest.Document{
		doc("a.yaml", 1, cell("lab", "web", "blog", "b", ctr("x", "busybox"))),
		doc("a.yaml", 40, cell("lab", "web", "blog", "a", ctr("x", "busybox"))),
		doc("a.yaml", 80, cell("default", "default", "default", "hello", ctr("x", "busybox"))),
	}, Options{})
	if len(diags) != 0 {
		t.Fatalf("Build: %v", diags)
	}
	var keys []string
	for _, c := range tree.Cells() {
		keys = append(keys, c.Key())
	}
	want := []string{"Cell default/default/default/hello", "Cell lab/web/blog/a", "Cell lab/web/blog/b"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("Cells() (-want +got):\n%s", diff)
	}
	wantKeys := []string{
		"Realm default", "Space default/default", "Stack default/default/default", "Cell default/default/default/hello",
		"Realm lab", "Space lab/web", "Stack lab/web/blog", "Cell lab/web/blog/a", "Cell lab/web/blog/b",
	}
	if diff := cmp.Diff(wantKeys, tree.Keys()); diff != "" {
		t.Errorf("Keys() (-want +got):\n%s", diff)
	}
	if r := tree.Realm("lab"); r == nil || r.Key() != "Realm lab" {
		t.Errorf("Realm(lab) = %v", r)
	}
	if s := tree.Space("lab", "web"); s == nil || s.Key() != "Space lab/web" {
		t.Errorf("Space(lab, web) = %v", s)
	}
	if s := tree.Stack("lab", "web", "blog"); s == nil || s.Key() != "Stack lab/web/blog" {
		t.Errorf("Stack(lab, web, blog) = %v", s)
	}
	if c := tree.Cell("lab", "web", "blog", "a"); c == nil || c.Key() != "Cell lab/web/blog/a" {
		t.Errorf("Cell(lab, web, blog, a) = %v", c)
	}
	for _, missing := range []any{
		tree.Realm("nope"), tree.Space("lab", "nope"), tree.Space("nope", "web"),
		tree.Stack("lab", "web", "nope"), tree.Cell("lab", "web", "blog", "nope"), tree.Cell("x", "y", "z", "a"),
	} {
		if !isNilPtr(missing) {
			t.Errorf("lookup of a missing object = %v, want nil", missing)
		}
	}
}

func isNilPtr(v any) bool {
	switch p := v.(type) {
	case *Realm:
		return p == nil
	case *Space:
		return p == nil
	case *Stack:
		return p == nil
	case *Cell:
		return p == nil
	}
	return false
}

func TestBuildAppliesDefaultsWithoutTouchingDocuments(t *testing.T) {
	in := cell("lab", "web", "blog", "c", v1beta1.Container{
		ID: "web", Image: "busybox",
		Volumes: []v1beta1.Volume{{Source: "/a", Target: "/b"}},
	})
	in.Metadata.Labels = map[string]string{"app": "web"}
	in.Spec.Resources = &v1beta1.Resources{Pids: &v1beta1.PidsResources{}}
	before := cell("lab", "web", "blog", "c", v1beta1.Container{
		ID: "web", Image: "busybox",
		Volumes: []v1beta1.Volume{{Source: "/a", Target: "/b"}},
	})
	before.Metadata.Labels = map[string]string{"app": "web"}
	before.Spec.Resources = &v1beta1.Resources{Pids: &v1beta1.PidsResources{}}

	tree, diags := Build([]manifest.Document{doc("a.yaml", 1, in)}, Options{})
	if len(diags) != 0 {
		t.Fatalf("Build: %v", diags)
	}
	if diff := cmp.Diff(before, in); diff != "" {
		t.Errorf("Build changed its input (-before +after):\n%s", diff)
	}
	c := tree.Cell("lab", "web", "blog", "c")
	web := c.Containers[1].Spec
	if web.RestartPolicy != v1beta1.RestartNever || web.ImagePullPolicy != v1beta1.PullIfNotPresent ||
		*web.StopGracePeriodSeconds != v1beta1.DefaultStopGracePeriodSeconds || web.Volumes[0].Kind != v1beta1.VolumeBind {
		t.Errorf("defaults not applied: %+v", web)
	}
	root := c.Root.Spec
	if root.RestartPolicy != v1beta1.RestartNever || root.ImagePullPolicy != v1beta1.PullIfNotPresent {
		t.Errorf("defaults not applied to the synthesized root: %+v", root)
	}
	for _, ct := range c.Containers {
		if ct.SpecHash != SpecHash(c, ct) {
			t.Errorf("container %s: SpecHash = %q, want %q", ct.ContainerdID, ct.SpecHash, SpecHash(c, ct))
		}
	}
	// The tree's maps and pointers are its own.
	c.Labels["app"] = "changed"
	c.Resources.Pids.Max = new(int64)
	if in.Metadata.Labels["app"] != "web" || in.Spec.Resources.Pids.Max != nil {
		t.Errorf("tree shares memory with the document")
	}
}

func TestSynthesizedRootTakesTheFirstContainersPullPolicy(t *testing.T) {
	first := ctr("a", "registry.local/app:1")
	first.ImagePullPolicy = v1beta1.PullNever
	tree, diags := Build([]manifest.Document{doc("a.yaml", 1, cell("lab", "web", "blog", "c", first, ctr("b", "busybox")))}, Options{})
	if len(diags) != 0 {
		t.Fatalf("Build: %v", diags)
	}
	root := tree.Cell("lab", "web", "blog", "c").Root
	want := v1beta1.Container{
		ID: "root", Root: true, Image: "registry.local/app:1", ImagePullPolicy: v1beta1.PullNever,
		RestartPolicy:          v1beta1.RestartNever,
		RestartBackoffSeconds:  ptrTo(int64(v1beta1.DefaultRestartBackoffSeconds)),
		RestartMaxRetries:      ptrTo(int64(v1beta1.DefaultRestartMaxRetries)),
		StopGracePeriodSeconds: ptrTo(int64(v1beta1.DefaultStopGracePeriodSeconds)),
	}
	if diff := cmp.Diff(want, root.Spec); diff != "" {
		t.Errorf("synthesized root spec (-want +got):\n%s", diff)
	}
	if !root.Synthesized || !root.Root || root.Field != "" {
		t.Errorf("root = %+v, want a synthesized root without a field", root)
	}
}

func ptrTo[T any](v T) *T { return &v }
