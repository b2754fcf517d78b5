package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/testenv"
)

const realmDoc = "apiVersion: v1beta1\nkind: Realm\nmetadata:\n  name: %s\n"

func realm(name string) string { return strings.Replace(realmDoc, "%s", name, 1) }

// tree writes files (path → content) under dir; a content starting with
// "-> " makes a symlink to the rest.
func tree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if content == "<dir>" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func filePaths(r *Result, dir string) []string {
	var out []string
	for _, f := range r.Files {
		rel, err := filepath.Rel(dir, f.Path)
		if err != nil {
			rel = f.Path // outside dir: the diff shows it whole
		}
		out = append(out, rel)
	}
	return out
}

func diagStrings(r *Result, dir string) []string {
	var out []string
	for _, d := range r.Diagnostics {
		out = append(out, strings.ReplaceAll(d.String(), dir+"/", ""))
	}
	return out
}

func TestWalk(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		args      func(dir string) []string
		opts      Options
		wantFiles []string
		wantDiags []string
	}{
		{
			name: "reads yaml, yml and json files recursively in sorted order",
			files: map[string]string{
				"b.yaml": realm("b"), "a.yml": realm("a"), "sub/c.json": `{"kind": "Realm", "metadata": {"name": "c"}}`,
				"sub/deeper/d.yaml": realm("d"), "notes.txt": "not a manifest", "README.md": "# hi",
			},
			wantFiles: []string{"a.yml", "b.yaml", "sub/c.json", "sub/deeper/d.yaml"},
		},
		{
			name: "skips hidden names and editor and package manager leftovers",
			files: map[string]string{
				"ok.yaml": realm("ok"), ".hidden.yaml": "x: [", ".git/config.yaml": "x: [",
				"ok.yaml~": "x: [", "ok.yaml.swp": "x: [", "ok.yaml.swx": "x: [", "#ok.yaml#": "x: [",
				".#ok.yaml": "x: [", "4913": "x: [", "ok.yaml.bak": "x: [", "ok.yaml.orig": "x: [",
				"ok.yaml.tmp": "x: [", "ok.yaml.dpkg-new": "x: [", "ok.yaml.rpmsave": "x: [",
			},
			wantFiles: []string{"ok.yaml"},
		},
		{
			name: "follows symlinks to files and directories",
			files: map[string]string{
				"real/a.yaml": realm("a"), "linked": "-> real", "one.yaml": "-> real/a.yaml",
			},
			wantFiles: []string{"linked/a.yaml", "one.yaml", "real/a.yaml"},
		},
		{
			name: "reports a symlink loop at the looping path and reads the rest",
			files: map[string]string{
				"a.yaml": realm("a"), "sub/loop": "-> ..", "sub/b.yaml": realm("b"),
			},
			wantFiles: []string{"a.yaml", "sub/b.yaml", "sub/loop"},
			wantDiags: []string{"sub/loop: symlink loop"},
		},
		{
			name:      "reports a dangling symlink whatever its name: it may have been a directory",
			files:     map[string]string{"a.yaml": realm("a"), "gone.yaml": "-> nowhere.yaml", "gone.txt": "-> nowhere.txt"},
			wantFiles: []string{"a.yaml", "gone.txt", "gone.yaml"},
			wantDiags: []string{"gone.txt: dangling symlink: no such file or directory", "gone.yaml: dangling symlink: no such file or directory"},
		},
		{
			name:      "reports a file over the size limit without reading it",
			files:     map[string]string{"a.yaml": realm("a"), "big.yaml": realm("big") + strings.Repeat("# padding\n", 20)},
			opts:      Options{MaxFileSize: 100},
			wantFiles: []string{"a.yaml", "big.yaml"},
			wantDiags: []string{"big.yaml: file is too large (254 bytes, limit 100)"},
		},
		{
			name:  "reports a path that does not exist",
			files: map[string]string{"a.yaml": realm("a")},
			args: func(dir string) []string {
				return []string{filepath.Join(dir, "missing"), filepath.Join(dir, "a.yaml")}
			},
			wantFiles: []string{"missing", "a.yaml"},
			wantDiags: []string{"missing: no such file or directory"},
		},
		{
			name:  "reads an explicitly named file whatever its name",
			files: map[string]string{"realm.txt": realm("a"), ".hidden": realm("b")},
			args: func(dir string) []string {
				return []string{filepath.Join(dir, "realm.txt"), filepath.Join(dir, ".hidden")}
			},
			wantFiles: []string{"realm.txt", ".hidden"},
		},
		{
			name:      "reads a file named twice once",
			files:     map[string]string{"a.yaml": realm("a")},
			args:      func(dir string) []string { return []string{dir, filepath.Join(dir, "a.yaml")} },
			wantFiles: []string{"a.yaml"},
		},
		{
			name:  "an empty directory gives nothing",
			files: map[string]string{"empty": "<dir>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tree(t, dir, tt.files)
			args := []string{dir}
			if tt.args != nil {
				args = tt.args(dir)
			}
			r := Load(args, nil, tt.opts)
			if diff := cmp.Diff(tt.wantFiles, filePaths(r, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDiags, diagStrings(r, dir)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadDefaultSizeLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	content := realm("big") + strings.Repeat("#"+strings.Repeat("x", 1023)+"\n", 10<<10)
	if err := os.WriteFile(big, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Load([]string{dir}, nil, Options{})
	want := []string{"big.yaml: file is too large (10496054 bytes, limit 10485760)"}
	if diff := cmp.Diff(want, diagStrings(r, dir)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	if len(r.Files) != 1 || !r.Files[0].Failed {
		t.Errorf("files = %+v, want big.yaml failed", r.Files)
	}
}

func TestLoadStdin(t *testing.T) {
	in := strings.NewReader(realm("lab") + "---\nkind: Realm\nmetadata: {name: Bad}\n")
	r := Load([]string{"-"}, in, Options{})
	want := []string{`<stdin>:7:18: Realm Bad: metadata.name: invalid name "Bad": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`}
	if diff := cmp.Diff(want, diagStrings(r, "")); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	if len(r.Documents) != 1 || r.Documents[0].Position.String() != "<stdin>:1:1" {
		t.Errorf("documents = %+v, want the realm lab at <stdin>:1:1", r.Documents)
	}
}

func TestResultFilesAndOrder(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir, map[string]string{
		"a.yaml": realm("a") + "---\n" + realm("Bad") + "---\n" + realm("c"),
		"b.yaml": "kind: Realm\nmetadata: {name: [x]}\n",
		"c.yaml": realm("ok") + "  labels: {a: b}\n",
		"d.yaml": "x: [\n",
	})
	r := Load([]string{dir}, nil, Options{})
	type fileRow struct {
		Path    string
		Failed  bool
		Objects int
	}
	var got []fileRow
	for _, f := range r.Files {
		if len(f.Hash) != 64 {
			t.Errorf("%s: hash %q is not a sha256", f.Path, f.Hash)
		}
		got = append(got, fileRow{strings.TrimPrefix(f.Path, dir+"/"), f.Failed, f.Objects})
	}
	want := []fileRow{{"a.yaml", true, 3}, {"b.yaml", true, 1}, {"c.yaml", false, 1}, {"d.yaml", true, 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	var names []string
	for _, d := range r.Documents {
		names = append(names, objectName(d))
	}
	if diff := cmp.Diff([]string{"a", "c", "ok"}, names); diff != "" {
		t.Errorf("documents (-want +got):\n%s", diff)
	}
	wantDiags := []string{
		`a.yaml:9:9: Realm Bad: metadata.name: invalid name "Bad": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`,
		`b.yaml:2:18: Realm ?: metadata.name: expected a string, got a sequence`,
		`d.yaml:1:1: syntax error: did not find expected node content`,
	}
	if diff := cmp.Diff(wantDiags, diagStrings(r, dir)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

func TestLoaderCache(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir, map[string]string{"a.yaml": realm("a"), "b.yaml": realm("b")})
	l := NewLoader(Options{})
	first := l.Load([]string{dir}, nil)
	second := l.Load([]string{dir}, nil)
	for i := range first.Documents {
		if first.Documents[i].Object != second.Documents[i].Object {
			t.Errorf("document %d was decoded again although its file did not change", i)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(realm("changed")), 0o644); err != nil {
		t.Fatal(err)
	}
	third := l.Load([]string{dir}, nil)
	if third.Documents[0].Object != first.Documents[0].Object {
		t.Error("the unchanged a.yaml was decoded again")
	}
	if got := objectName(third.Documents[1]); got != "changed" {
		t.Errorf("after the change b.yaml holds %q, want %q", got, "changed")
	}
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	fourth := l.Load([]string{dir}, nil)
	if len(fourth.Documents) != 1 || len(l.cache) != 1 {
		t.Errorf("after removing a.yaml: %d documents, %d cached files; want 1 and 1", len(fourth.Documents), len(l.cache))
	}
}

// TestExamples checks that every example validates, with warnings only for
// the kukeon-only fields of examples/kukeon.
func TestExamples(t *testing.T) {
	r := Load([]string{"../../examples"}, nil, Options{})
	got := report(r)
	testenv.Golden(t, "testdata/examples.golden", got)
	if r.HasErrors() {
		t.Error("the examples have errors")
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("kind: Cell\nmetadata: {name: bomb}\nspec:\n  realmId: a\n  spaceId: b\n  stackId: c\n")
	b.WriteString("  x: &vol {target: /a, source: /b}\n")
	b.WriteString("  y: &vols [" + strings.Repeat("*vol, ", 99) + "*vol]\n")
	b.WriteString("  z: &c {id: a, image: b, volumes: *vols}\n")
	b.WriteString("  containers: [" + strings.Repeat("*c, ", 99) + "*c]\n")
	r := Load([]string{"-"}, strings.NewReader(b.String()), Options{})
	if !r.HasErrors() || len(r.Documents) != 0 {
		t.Fatalf("an alias bomb loaded: %d documents", len(r.Documents))
	}
	var got []string
	for _, d := range r.Diagnostics {
		if strings.Contains(d.Message, "aliases expand") {
			got = append(got, d.String())
		}
	}
	want := []string{"<stdin>:7:6: Cell a/b/c/bomb: spec.containers[11].volumes[3]: aliases expand the document to more than 3366 nodes"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alias expansion errors (-want +got):\n%s", diff)
	}
}
