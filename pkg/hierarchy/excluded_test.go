package hierarchy

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

func excludedLines(t *Tree) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(t.Excluded)) {
		out = append(out, k+": "+t.Excluded[k])
	}
	return out
}

func TestBuildExcluded(t *testing.T) {
	bb := ctr("a", "busybox")
	withNS := func(r *v1beta1.Realm, ns string) *v1beta1.Realm { r.Spec.Namespace = ns; return r }
	const reserved = `realm "kuke-system" is reserved for kukeon and never managed by the reconciler`
	tests := []struct {
		name string
		docs []manifest.Document
		// wantKeys are the tree's keys.
		wantKeys     []string
		wantExcluded []string
		wantDiags    []string
	}{
		{
			name:     "a valid tree excludes nothing",
			docs:     []manifest.Document{doc("a.yaml", 1, cell("lab", "web", "blog", "c", bb))},
			wantKeys: []string{"Realm lab", "Space lab/web", "Stack lab/web/blog", "Cell lab/web/blog/c"},
		},
		{
			name: "a realm dropped for its namespace excludes everything under it, declared in other files or implied",
			docs: []manifest.Document{
				doc("f.yaml", 1, realm("a", "")),
				doc("f.yaml", 10, withNS(realm("b", ""), "a.kukeon.io")),
				doc("g.yaml", 1, space("b", "web")),
				doc("g.yaml", 10, stack("b", "web", "blog")),
				doc("g.yaml", 20, space("b", "lonely")),
				doc("g.yaml", 30, stack("b", "web", "lonely")),
				doc("h.yaml", 1, cell("b", "web", "blog", "c", bb)),
				doc("h.yaml", 40, cell("b", "other", "x", "d", bb)),
			},
			wantKeys: []string{"Realm a"},
			wantExcluded: []string{
				`Cell b/other/x/d: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Cell b/web/blog/c: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Realm b: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Space b/lonely: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Space b/other: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Space b/web: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Stack b/other/x: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Stack b/web/blog: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
				`Stack b/web/lonely: realm b is excluded: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
			},
			wantDiags: []string{
				`f.yaml:13:14: Realm b: spec.namespace: namespace "a.kukeon.io" is already used by Realm a (declared at f.yaml:1:1)`,
			},
		},
		{
			name: "two declared realms with one namespace: the second in document order is dropped, naming both places",
			docs: []manifest.Document{
				doc("a.yaml", 1, realm("first", "shared")),
				doc("b.yaml", 1, realm("second", "shared")),
			},
			wantKeys:     []string{"Realm first"},
			wantExcluded: []string{`Realm second: namespace "shared" is already used by Realm first (declared at a.yaml:1:1)`},
			wantDiags:    []string{`b.yaml:4:14: Realm second: spec.namespace: namespace "shared" is already used by Realm first (declared at a.yaml:1:1)`},
		},
		{
			name: "a declared realm taking an implied realm's default namespace wins, though the child comes first; the implied subtree is excluded",
			docs: []manifest.Document{
				doc("a.yaml", 1, cell("b", "web", "blog", "c", bb)),
				doc("c.yaml", 1, space("b", "other")),
				doc("x.yaml", 1, withNS(realm("x", ""), "b.kukeon.io")),
			},
			wantKeys: []string{"Realm x"},
			wantExcluded: []string{
				`Cell b/web/blog/c: realm b is excluded: implied Realm b would use namespace "b.kukeon.io", which Realm x already uses (declared at x.yaml:1:1)`,
				`Realm b: implied Realm b would use namespace "b.kukeon.io", which Realm x already uses (declared at x.yaml:1:1)`,
				`Space b/other: realm b is excluded: implied Realm b would use namespace "b.kukeon.io", which Realm x already uses (declared at x.yaml:1:1)`,
				`Space b/web: realm b is excluded: implied Realm b would use namespace "b.kukeon.io", which Realm x already uses (declared at x.yaml:1:1)`,
				`Stack b/web/blog: realm b is excluded: implied Realm b would use namespace "b.kukeon.io", which Realm x already uses (declared at x.yaml:1:1)`,
			},
			// Spaces are built before cells: the space in c.yaml implies b first.
			wantDiags: []string{
				`c.yaml:5:12: Space b/other: spec.realmId: implied Realm b would use namespace "b.kukeon.io", which Realm x already uses (declared at x.yaml:1:1)`,
			},
		},
		{
			name: "a realm taking kuke-system's namespace is excluded with its subtree",
			docs: []manifest.Document{
				doc("a.yaml", 1, realm("sneaky", "kuke-system.kukeon.io")),
				doc("a.yaml", 10, cell("sneaky", "web", "blog", "c", bb)),
			},
			wantExcluded: []string{
				`Cell sneaky/web/blog/c: realm sneaky is excluded: namespace "kuke-system.kukeon.io" belongs to the reserved realm "kuke-system"`,
				`Realm sneaky: namespace "kuke-system.kukeon.io" belongs to the reserved realm "kuke-system"`,
				`Space sneaky/web: realm sneaky is excluded: namespace "kuke-system.kukeon.io" belongs to the reserved realm "kuke-system"`,
				`Stack sneaky/web/blog: realm sneaky is excluded: namespace "kuke-system.kukeon.io" belongs to the reserved realm "kuke-system"`,
			},
			wantDiags: []string{
				`a.yaml:4:14: Realm sneaky: spec.namespace: namespace "kuke-system.kukeon.io" belongs to the reserved realm "kuke-system"`,
			},
		},
		{
			name: "objects in the reserved realm are excluded with the parents they name",
			docs: []manifest.Document{
				doc("sys.yaml", 1, stack("kuke-system", "kukeon", "kukeon")),
				doc("sys.yaml", 30, cell("kuke-system", "other", "x", "kukeond", bb)),
			},
			wantExcluded: []string{
				"Cell kuke-system/other/x/kukeond: " + reserved,
				"Realm kuke-system: " + reserved,
				"Space kuke-system/kukeon: " + reserved,
				"Space kuke-system/other: " + reserved,
				"Stack kuke-system/kukeon/kukeon: " + reserved,
				"Stack kuke-system/other/x: " + reserved,
			},
			wantDiags: []string{
				"sys.yaml:5:12: Stack kuke-system/kukeon/kukeon: spec.realmId: " + reserved,
				"sys.yaml:34:12: Cell kuke-system/other/x/kukeond: spec.realmId: " + reserved,
			},
		},
		{
			name: "a cell with its own errors is excluded, its parents stay",
			docs: []manifest.Document{
				doc("a.yaml", 1, cell("lab", "web", "blog", "one", bb)),
				doc("a.yaml", 40, func() *v1beta1.Cell { c := cell("lab", "web", "blog", "two", bb); c.Spec.ID = "one"; return c }()),
				doc("a.yaml", 80, cell("lab", "web", "blog", "three", ctr("root", "busybox"), ctr("x", "busybox"))),
				doc("a.yaml", 120, cell("lab", "web", "blog", "four")),
			},
			wantKeys: []string{"Realm lab", "Space lab/web", "Stack lab/web/blog", "Cell lab/web/blog/one"},
			wantExcluded: []string{
				"Cell lab/web/blog/four: a cell needs at least one container",
				`Cell lab/web/blog/three: containerd ID "web_blog_three_root" is already used by the root container`,
				`Cell lab/web/blog/two: cell id "one" is already used by Cell lab/web/blog/one (declared at a.yaml:1:1): their containerd IDs would collide`,
			},
			wantDiags: []string{
				`a.yaml:43:7: Cell lab/web/blog/two: spec.id: cell id "one" is already used by Cell lab/web/blog/one (declared at a.yaml:1:1): their containerd IDs would collide`,
				`a.yaml:90:11: Cell lab/web/blog/three: spec.containers[0].id: containerd ID "web_blog_three_root" is already used by the root container`,
				`a.yaml:128:3: Cell lab/web/blog/four: spec.containers: a cell needs at least one container`,
			},
		},
		{
			name: "a duplicate of an object in the tree excludes nothing; one of an excluded object keeps the first reason",
			docs: []manifest.Document{
				doc("a.yaml", 1, cell("lab", "web", "blog", "ok", bb)),
				doc("a.yaml", 40, cell("lab", "web", "blog", "bad")),
				doc("b.yaml", 1, cell("lab", "web", "blog", "ok", bb)),
				doc("b.yaml", 40, cell("lab", "web", "blog", "bad", bb)),
			},
			wantKeys:     []string{"Realm lab", "Space lab/web", "Stack lab/web/blog", "Cell lab/web/blog/ok"},
			wantExcluded: []string{"Cell lab/web/blog/bad: a cell needs at least one container"},
			wantDiags: []string{
				"a.yaml:48:3: Cell lab/web/blog/bad: spec.containers: a cell needs at least one container",
				"b.yaml:3:9: Cell lab/web/blog/ok: metadata.name: duplicate Cell lab/web/blog/ok (first declared at a.yaml:1:1)",
				"b.yaml:42:9: Cell lab/web/blog/bad: metadata.name: duplicate Cell lab/web/blog/bad (first declared at a.yaml:40:1)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, diags := Build(tt.docs, Options{})
			if tree.Excluded == nil {
				t.Fatal("Excluded is nil")
			}
			keys := tree.Keys()
			if diff := cmp.Diff(tt.wantKeys, keys); diff != "" {
				t.Errorf("tree keys (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantExcluded, excludedLines(tree)); diff != "" {
				t.Errorf("excluded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDiags, diagStrings(diags)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			for _, k := range keys {
				if why, ok := tree.Excluded[k]; ok {
					t.Errorf("%s is in the tree and excluded (%s)", k, why)
				}
			}
		})
	}
}
