package hierarchy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// doc wraps obj as a document starting at file:line:1. Its fields sit on the
// following lines, in the order a manifest would write them, so diagnostics
// have distinct, predictable places: metadata.name at line+2, spec.id +3,
// spec.namespace +3, spec.realmId +4, spec.rootContainerId +7 and container
// i's id at line+10+3i.
func doc(file string, line int, obj any) manifest.Document {
	at := func(l, col int) manifest.Position { return manifest.Position{File: file, Line: line + l, Column: col} }
	d := manifest.Document{
		Position: at(0, 1),
		Object:   obj,
		Fields: map[string]manifest.Position{
			"metadata.name":        at(2, 9),
			"spec.id":              at(3, 7),
			"spec.namespace":       at(3, 14),
			"spec.realmId":         at(4, 12),
			"spec.spaceId":         at(5, 12),
			"spec.stackId":         at(6, 12),
			"spec.rootContainerId": at(7, 20),
			"spec.containers":      at(8, 3),
		},
	}
	switch o := obj.(type) {
	case *v1beta1.Realm:
		d.Kind = v1beta1.KindRealm
	case *v1beta1.Space:
		d.Kind = v1beta1.KindSpace
	case *v1beta1.Stack:
		d.Kind = v1beta1.KindStack
	case *v1beta1.Cell:
		d.Kind = v1beta1.KindCell
		for i := range o.Spec.Containers {
			f := fmt.Sprintf("spec.containers[%d]", i)
			d.Fields[f] = at(10+3*i, 7)
			d.Fields[f+".id"] = at(10+3*i, 11)
			d.Fields[f+".root"] = at(11+3*i, 13)
		}
	}
	return d
}

func realm(name, namespace string) *v1beta1.Realm {
	r := &v1beta1.Realm{Metadata: v1beta1.ObjectMeta{Name: name}}
	r.Spec.Namespace = namespace
	return r
}

func space(realm, name string) *v1beta1.Space {
	return &v1beta1.Space{Metadata: v1beta1.ObjectMeta{Name: name}, Spec: v1beta1.SpaceSpec{RealmID: realm}}
}

func stack(realm, space, name string) *v1beta1.Stack {
	return &v1beta1.Stack{Metadata: v1beta1.ObjectMeta{Name: name}, Spec: v1beta1.StackSpec{RealmID: realm, SpaceID: space}}
}

func cell(realm, space, stack, name string, containers ...v1beta1.Container) *v1beta1.Cell {
	return &v1beta1.Cell{
		Metadata: v1beta1.ObjectMeta{Name: name},
		Spec:     v1beta1.CellSpec{RealmID: realm, SpaceID: space, StackID: stack, Containers: containers},
	}
}

func ctr(id, image string) v1beta1.Container { return v1beta1.Container{ID: id, Image: image} }

// render prints a tree as lines, one per object and container, so that
// table tests compare what matters in a readable diff.
func render(t *Tree) []string {
	var out []string
	mark := func(m Meta) string {
		s := " cgroup=" + m.CgroupPath
		if m.Implied {
			s += " implied"
		} else {
			s += " at=" + m.Source.String()
		}
		return s
	}
	for _, r := range t.Realms {
		out = append(out, r.Key()+" ns="+r.Namespace+mark(r.Meta))
		for _, s := range r.Spaces {
			out = append(out, s.Key()+mark(s.Meta))
			for _, st := range s.Stacks {
				out = append(out, st.Key()+" id="+st.ID+mark(st.Meta))
				for _, c := range st.Cells {
					out = append(out, c.Key()+" id="+c.ID+" ns="+c.Namespace+mark(c.Meta))
					for _, ct := range c.Containers {
						line := "  " + ct.ContainerdID + " id=" + ct.Spec.ID + " image=" + ct.Spec.Image
						if ct.Root {
							line += " root"
						}
						if ct.Synthesized {
							line += " synthesized"
						}
						if ct.Spec.HostNetwork {
							line += " hostNetwork"
						}
						if ct.Field != "" {
							line += " field=" + ct.Field
						}
						out = append(out, line, "    cgroup="+ct.CgroupPath)
					}
				}
			}
		}
	}
	return out
}

func diagStrings(ds []manifest.Diagnostic) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}

func TestBuild(t *testing.T) {
	long := strings.Repeat("a", 30)
	rootTrue := ctr("init", "busybox")
	rootTrue.Root = true
	withHost := ctr("net", "alpine")
	withHost.HostNetwork = true
	byRootID := cell("lab", "web", "blog", "worker", ctr("main", "busybox"), ctr("boot", "alpine"))
	byRootID.Spec.RootContainerID = "boot"
	secondRoot := rootTrue
	secondRoot.ID = "init2"
	withID := func(c *v1beta1.Cell, id string) *v1beta1.Cell { c.Spec.ID = id; return c }

	tests := []struct {
		name      string
		docs      []manifest.Document
		opts      Options
		wantTree  []string
		wantDiags []string
	}{
		{
			name: "implies the realm, space and stack of a lone cell",
			docs: []manifest.Document{doc("hello.yaml", 1, cell("default", "default", "default", "hello", ctr("web", "busybox")))},
			wantTree: []string{
				"Realm default ns=default.kukeon.io cgroup=/kukeon/default implied",
				"Space default/default cgroup=/kukeon/default/default implied",
				"Stack default/default/default id=default cgroup=/kukeon/default/default/default implied",
				"Cell default/default/default/hello id=hello ns=default.kukeon.io cgroup=/kukeon/default/default/default/hello at=hello.yaml:1:1",
				"  default_default_hello_root id=root image=busybox root synthesized",
				"    cgroup=/kukeon/default/default/default/hello/default_default_hello_root",
				"  default_default_hello_web id=web image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/default/default/default/hello/default_default_hello_web",
			},
		},
		{
			name: "attaches children to declared parents whatever the document order, sorted by name",
			docs: []manifest.Document{
				doc("b.yaml", 1, cell("lab", "web", "blog", "zeta", ctr("a", "busybox"))),
				doc("b.yaml", 30, cell("lab", "web", "blog", "alpha", ctr("a", "busybox"))),
				doc("a.yaml", 1, stack("lab", "web", "blog")),
				doc("a.yaml", 10, space("lab", "web")),
				doc("a.yaml", 20, realm("lab", "")),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab at=a.yaml:20:1",
				"Space lab/web cgroup=/kukeon/lab/web at=a.yaml:10:1",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog at=a.yaml:1:1",
				"Cell lab/web/blog/alpha id=alpha ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/alpha at=b.yaml:30:1",
				"  web_blog_alpha_root id=root image=busybox root synthesized",
				"    cgroup=/kukeon/lab/web/blog/alpha/web_blog_alpha_root",
				"  web_blog_alpha_a id=a image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/alpha/web_blog_alpha_a",
				"Cell lab/web/blog/zeta id=zeta ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/zeta at=b.yaml:1:1",
				"  web_blog_zeta_root id=root image=busybox root synthesized",
				"    cgroup=/kukeon/lab/web/blog/zeta/web_blog_zeta_root",
				"  web_blog_zeta_a id=a image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/zeta/web_blog_zeta_a",
			},
		},
		{
			name: "uses spec.namespace, the namespace suffix and the cgroup root",
			docs: []manifest.Document{
				doc("r.yaml", 1, realm("lab", "custom")),
				doc("r.yaml", 10, space("other", "web")),
			},
			opts: Options{CgroupRoot: "/kukeon-it-1/", NamespaceSuffix: "example.org"},
			wantTree: []string{
				"Realm lab ns=custom cgroup=/kukeon-it-1/lab at=r.yaml:1:1",
				"Realm other ns=other.example.org cgroup=/kukeon-it-1/other implied",
				"Space other/web cgroup=/kukeon-it-1/other/web at=r.yaml:10:1",
			},
		},
		{
			name: "reports a duplicate cell across files at the second, naming the first; the first wins",
			docs: []manifest.Document{
				doc("examples/lab/cells.yaml", 3, cell("lab", "web", "blog", "frontend", ctr("a", "busybox"))),
				doc("other.yaml", 1, cell("lab", "web", "blog", "frontend", ctr("b", "alpine"))),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
				"Cell lab/web/blog/frontend id=frontend ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/frontend at=examples/lab/cells.yaml:3:1",
				"  web_blog_frontend_root id=root image=busybox root synthesized",
				"    cgroup=/kukeon/lab/web/blog/frontend/web_blog_frontend_root",
				"  web_blog_frontend_a id=a image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/frontend/web_blog_frontend_a",
			},
			wantDiags: []string{
				"other.yaml:3:9: Cell lab/web/blog/frontend: metadata.name: duplicate Cell lab/web/blog/frontend (first declared at examples/lab/cells.yaml:3:1)",
			},
		},
		{
			name: "reports duplicate realms, spaces and stacks",
			docs: []manifest.Document{
				doc("a.yaml", 1, realm("lab", "")),
				doc("a.yaml", 10, space("lab", "web")),
				doc("a.yaml", 20, stack("lab", "web", "blog")),
				doc("b.yaml", 1, realm("lab", "")),
				doc("b.yaml", 10, space("lab", "web")),
				doc("b.yaml", 20, stack("lab", "web", "blog")),
				doc("b.yaml", 30, space("other", "web")),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab at=a.yaml:1:1",
				"Space lab/web cgroup=/kukeon/lab/web at=a.yaml:10:1",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog at=a.yaml:20:1",
				"Realm other ns=other.kukeon.io cgroup=/kukeon/other implied",
				"Space other/web cgroup=/kukeon/other/web at=b.yaml:30:1",
			},
			wantDiags: []string{
				"b.yaml:3:9: Realm lab: metadata.name: duplicate Realm lab (first declared at a.yaml:1:1)",
				"b.yaml:12:9: Space lab/web: metadata.name: duplicate Space lab/web (first declared at a.yaml:10:1)",
				"b.yaml:22:9: Stack lab/web/blog: metadata.name: duplicate Stack lab/web/blog (first declared at a.yaml:20:1)",
			},
		},
		{
			name: "rejects two cells of a stack with the same spec.id",
			docs: []manifest.Document{
				doc("a.yaml", 1, cell("lab", "web", "blog", "one", ctr("a", "busybox"))),
				doc("a.yaml", 40, withID(cell("lab", "web", "blog", "two", ctr("a", "busybox")), "one")),
				doc("a.yaml", 80, withID(cell("lab", "web", "other", "three", ctr("a", "busybox")), "one")),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
				"Cell lab/web/blog/one id=one ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/one at=a.yaml:1:1",
				"  web_blog_one_root id=root image=busybox root synthesized",
				"    cgroup=/kukeon/lab/web/blog/one/web_blog_one_root",
				"  web_blog_one_a id=a image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/one/web_blog_one_a",
				"Stack lab/web/other id=other cgroup=/kukeon/lab/web/other implied",
				"Cell lab/web/other/three id=one ns=lab.kukeon.io cgroup=/kukeon/lab/web/other/three at=a.yaml:80:1",
				"  web_other_one_root id=root image=busybox root synthesized",
				"    cgroup=/kukeon/lab/web/other/three/web_other_one_root",
				"  web_other_one_a id=a image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/other/three/web_other_one_a",
			},
			wantDiags: []string{
				`a.yaml:43:7: Cell lab/web/blog/two: spec.id: cell id "one" is already used by Cell lab/web/blog/one (declared at a.yaml:1:1): their containerd IDs would collide`,
			},
		},
		{
			name: "rejects two realms with the same namespace and leaves the second out with its subtree",
			docs: []manifest.Document{
				doc("a.yaml", 1, realm("a", "shared")),
				doc("b.yaml", 1, realm("b", "shared")),
				doc("b.yaml", 10, space("b", "web")),
				doc("c.yaml", 1, realm("c", "d.kukeon.io")),
				doc("c.yaml", 10, space("d", "web")),
			},
			wantTree: []string{
				"Realm a ns=shared cgroup=/kukeon/a at=a.yaml:1:1",
				"Realm c ns=d.kukeon.io cgroup=/kukeon/c at=c.yaml:1:1",
			},
			wantDiags: []string{
				`b.yaml:4:14: Realm b: spec.namespace: namespace "shared" is already used by Realm a (declared at a.yaml:1:1)`,
				`c.yaml:14:12: Space d/web: spec.realmId: implied Realm d would use namespace "d.kukeon.io", which Realm c already uses (declared at c.yaml:1:1)`,
			},
		},
		{
			name: "rejects a realm that takes kuke-system's namespace",
			docs: []manifest.Document{doc("a.yaml", 1, realm("sneaky", "kuke-system.kukeon.io"))},
			wantDiags: []string{
				`a.yaml:4:14: Realm sneaky: spec.namespace: namespace "kuke-system.kukeon.io" belongs to the reserved realm "kuke-system"`,
			},
		},
		{
			name: "rejects every object in the reserved realm kuke-system and implies nothing for it",
			docs: []manifest.Document{
				doc("sys.yaml", 1, realm("kuke-system", "")),
				doc("sys.yaml", 10, space("kuke-system", "kukeon")),
				doc("sys.yaml", 20, stack("kuke-system", "kukeon", "kukeon")),
				doc("sys.yaml", 30, cell("kuke-system", "kukeon", "kukeon", "kukeond", ctr("kukeond", "busybox"))),
			},
			wantDiags: []string{
				`sys.yaml:3:9: Realm kuke-system: metadata.name: realm "kuke-system" is reserved for kukeon and never managed by the reconciler`,
				`sys.yaml:14:12: Space kuke-system/kukeon: spec.realmId: realm "kuke-system" is reserved for kukeon and never managed by the reconciler`,
				`sys.yaml:24:12: Stack kuke-system/kukeon/kukeon: spec.realmId: realm "kuke-system" is reserved for kukeon and never managed by the reconciler`,
				`sys.yaml:34:12: Cell kuke-system/kukeon/kukeon/kukeond: spec.realmId: realm "kuke-system" is reserved for kukeon and never managed by the reconciler`,
			},
		},
		{
			name: "rejects a containerd ID over 76 characters at the container id",
			docs: []manifest.Document{
				doc("a.yaml", 1, cell("lab", long, long, "c", ctr("a", "busybox"), ctr("seventeen-char-id", "busybox"))),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/" + long + " cgroup=/kukeon/lab/" + long + " implied",
				"Stack lab/" + long + "/" + long + " id=" + long + " cgroup=/kukeon/lab/" + long + "/" + long + " implied",
			},
			wantDiags: []string{
				`a.yaml:14:11: Cell lab/` + long + `/` + long + `/c: spec.containers[1].id: containerd ID "` + long + `_` + long + `_c_seventeen-char-id" is 81 characters (limit 76): shorten the space, stack, cell or container name`,
			},
		},
		{
			name: "rejects an over-long root ID at the cell's name, or its spec.id when set",
			docs: []manifest.Document{
				doc("a.yaml", 1, cell("lab", long, long, strings.Repeat("c", 10), ctr("a", "busybox"))),
				doc("a.yaml", 40, withID(cell("lab", long, long, "d", ctr("a", "busybox")), strings.Repeat("d", 10))),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/" + long + " cgroup=/kukeon/lab/" + long + " implied",
				"Stack lab/" + long + "/" + long + " id=" + long + " cgroup=/kukeon/lab/" + long + "/" + long + " implied",
			},
			wantDiags: []string{
				`a.yaml:3:9: Cell lab/` + long + `/` + long + `/cccccccccc: metadata.name: containerd ID "` + long + `_` + long + `_cccccccccc_root" is 77 characters (limit 76): shorten the space, stack, cell or container name`,
				`a.yaml:43:7: Cell lab/` + long + `/` + long + `/d: spec.id: containerd ID "` + long + `_` + long + `_dddddddddd_root" is 77 characters (limit 76): shorten the space, stack, cell or container name`,
			},
		},
		{
			name: "synthesizes a root on the first container's image, with hostNetwork when any container has it",
			docs: []manifest.Document{doc("a.yaml", 1, cell("lab", "web", "blog", "c", ctr("a", "busybox"), withHost))},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
				"Cell lab/web/blog/c id=c ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/c at=a.yaml:1:1",
				"  web_blog_c_root id=root image=busybox root synthesized hostNetwork",
				"    cgroup=/kukeon/lab/web/blog/c/web_blog_c_root",
				"  web_blog_c_a id=a image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/c/web_blog_c_a",
				"  web_blog_c_net id=net image=alpine hostNetwork field=spec.containers[1]",
				"    cgroup=/kukeon/lab/web/blog/c/web_blog_c_net",
			},
		},
		{
			name: "takes the root: true container as root and puts it first",
			docs: []manifest.Document{doc("a.yaml", 1, cell("lab", "web", "blog", "c", ctr("a", "alpine"), rootTrue))},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
				"Cell lab/web/blog/c id=c ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/c at=a.yaml:1:1",
				"  web_blog_c_root id=init image=busybox root field=spec.containers[1]",
				"    cgroup=/kukeon/lab/web/blog/c/web_blog_c_root",
				"  web_blog_c_a id=a image=alpine field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/c/web_blog_c_a",
			},
		},
		{
			name: "takes the rootContainerId container as root",
			docs: []manifest.Document{doc("a.yaml", 1, byRootID)},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
				"Cell lab/web/blog/worker id=worker ns=lab.kukeon.io cgroup=/kukeon/lab/web/blog/worker at=a.yaml:1:1",
				"  web_blog_worker_root id=boot image=alpine root field=spec.containers[1]",
				"    cgroup=/kukeon/lab/web/blog/worker/web_blog_worker_root",
				"  web_blog_worker_main id=main image=busybox field=spec.containers[0]",
				"    cgroup=/kukeon/lab/web/blog/worker/web_blog_worker_main",
			},
		},
		{
			name: "rejects a workload whose containerd ID is the root's",
			docs: []manifest.Document{doc("a.yaml", 1, cell("lab", "web", "blog", "c", rootTrue, ctr("root", "busybox")))},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
			},
			wantDiags: []string{
				`a.yaml:14:11: Cell lab/web/blog/c: spec.containers[1].id: containerd ID "web_blog_c_root" is already used by the root container`,
			},
		},
		{
			name: "rejects, as a safety net, the root mistakes the validators catch first",
			docs: []manifest.Document{
				doc("a.yaml", 1, func() *v1beta1.Cell {
					c := cell("lab", "web", "blog", "a", ctr("x", "busybox"))
					c.Spec.RootContainerID = "nope"
					return c
				}()),
				doc("a.yaml", 40, cell("lab", "web", "blog", "b", rootTrue, secondRoot)),
				doc("a.yaml", 80, cell("lab", "web", "blog", "c")),
			},
			wantTree: []string{
				"Realm lab ns=lab.kukeon.io cgroup=/kukeon/lab implied",
				"Space lab/web cgroup=/kukeon/lab/web implied",
				"Stack lab/web/blog id=blog cgroup=/kukeon/lab/web/blog implied",
			},
			wantDiags: []string{
				`a.yaml:8:20: Cell lab/web/blog/a: spec.rootContainerId: rootContainerId "nope" names no container of the cell`,
				`a.yaml:54:13: Cell lab/web/blog/b: spec.containers[1].root: a second root container (the first is spec.containers[0] "init")`,
				`a.yaml:88:3: Cell lab/web/blog/c: spec.containers: a cell needs at least one container`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, diags := Build(tt.docs, tt.opts)
			if diff := cmp.Diff(tt.wantTree, render(tree)); diff != "" {
				t.Errorf("tree (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDiags, diagStrings(diags)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}
