package main

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// TestValidate runs "reconciler validate" on each case directory under
// testdata/validate/<dir>. The case's files are copied into a temporary
// working directory, so that positions in the output are the relative paths
// an operator would type, and generated inputs (a file over 10 MiB, a symlink
// loop) never touch the source tree. want.txt is the exact stdout; the exit
// code is asserted here, not in the golden file, so -update cannot hide a
// change of verdict.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		// args default to []string{dir}.
		args []string
		// stdin names a file of the case fed to stdin.
		stdin    string
		setup    func(t *testing.T, dir string)
		wantExit int
	}{
		{name: "accepts a lone cell with implied parents", dir: "valid"},
		{name: "reports malformed YAML at the line and column of the syntax error", dir: "malformed-yaml", wantExit: 1},
		{name: "reports a list where a string is wanted", dir: "wrong-type", wantExit: 1},
		{name: "reports an unknown key with a suggestion", dir: "unknown-key", wantExit: 1},
		{name: "reports missing required fields", dir: "missing-required", wantExit: 1},
		{name: "reports unknown and unsupported kinds and a missing kind", dir: "unknown-kind", wantExit: 1},
		{name: "reports an unsupported apiVersion", dir: "unsupported-apiversion", wantExit: 1},
		{name: "reports invalid names: bad_cell, bad/cell, Bad, .., 64 characters, empty", dir: "invalid-names", wantExit: 1},
		{name: "reports a containerd ID over 76 characters", dir: "containerd-id-too-long", wantExit: 1},
		{name: "reports restartPolicy sometimes", dir: "restart-policy", wantExit: 1},
		{name: "reports negative and unparsable quantities", dir: "bad-quantities", wantExit: 1},
		{name: "reports a rootContainerId naming no container", dir: "root-container-id-unknown", wantExit: 1},
		{name: "reports two root containers", dir: "two-roots", wantExit: 1},
		{name: "reports duplicate container ids", dir: "duplicate-container-ids", wantExit: 1},
		{name: "reports duplicate objects across files naming both places", dir: "duplicate-objects", wantExit: 1},
		{name: "reports a cell in the reserved realm kuke-system", dir: "kuke-system", wantExit: 1},
		{
			name: "reports a file over 10 MiB and still checks the others", dir: "too-large", wantExit: 1,
			setup: func(t *testing.T, dir string) {
				big := bytes.Repeat([]byte("#"), 10<<20+1)
				if err := os.WriteFile(filepath.Join(dir, "big.yaml"), big, 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "reports a symlink loop and still checks the directory", dir: "symlink-loop", wantExit: 1,
			setup: func(t *testing.T, dir string) {
				if err := os.Symlink(".", filepath.Join(dir, "loop")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "reports a directory that does not exist", dir: "missing-directory", wantExit: 1,
			args: []string{"missing-directory/manifests"},
		},
		{name: "reports every problem of every document and file", dir: "multi-error", wantExit: 1},
		{name: "reports a label over containerd's 4096 bytes", dir: "label-too-large", wantExit: 1},
		{
			name: "reports image references that do not parse, 100 KB cut", dir: "bad-image-refs", wantExit: 1,
			setup: func(t *testing.T, dir string) {
				big := "apiVersion: v1beta1\nkind: Cell\nmetadata:\n  name: big\nspec:\n  realmId: lab\n  spaceId: web\n  stackId: blog\n" +
					"  containers:\n    - id: web\n      image: busybox:" + strings.Repeat("t", 100<<10) + "\n"
				if err := os.WriteFile(filepath.Join(dir, "big.yaml"), []byte(big), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{name: "reports a realm taking the namespace of an implied realm, naming both places", dir: "implied-realm-namespace", wantExit: 1},
		{
			name: "reports dangling symlinks to a file and to a directory", dir: "dangling-symlink", wantExit: 1,
			setup: func(t *testing.T, dir string) {
				for link, target := range map[string]string{"gone.yaml": "nowhere.yaml", "sub": "moved-away"} {
					if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
						t.Fatal(err)
					}
				}
			},
		},
		{name: "accepts kukeon manifests with a warning per ignored field", dir: "kukeon-warnings"},
		{name: "reads stdin for the path -", dir: "stdin", args: []string{"-"}, stdin: "stdin.yaml", wantExit: 1},
		{name: "prints JSON with -o json", dir: "json-output", args: []string{"-o", "json", "json-output"}, wantExit: 1},
		{name: "prints only the summary with -q, flags after paths", dir: "quiet", args: []string{"quiet", "-q"}, wantExit: 1},
		{name: "uses --manifests when no path is given", dir: "valid", args: []string{"--manifests", "valid"}},
		{name: "prints usage with --help", dir: "help", args: []string{"--help"}},
		{name: "rejects an unknown flag", dir: "bad-flag", args: []string{"--bogus"}, wantExit: 1},
		{
			name: "accepts the examples", dir: "examples",
			setup: func(t *testing.T, dir string) {
				src, err := filepath.Abs(filepath.Join(validateRepoRoot, "examples"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(src); err != nil {
					t.Fatalf("examples directory: %v", err)
				}
				copyValidateCase(t, src, dir)
			},
		},
	}
	golden, err := filepath.Abs("testdata/validate")
	if err != nil {
		t.Fatal(err)
	}
	validateRepoRoot, err = filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := t.TempDir()
			copyValidateCase(t, filepath.Join(golden, tt.dir), filepath.Join(work, tt.dir))
			t.Chdir(work)
			if tt.setup != nil {
				tt.setup(t, tt.dir)
			}
			args := tt.args
			if args == nil {
				args = []string{tt.dir}
			}
			var stdin []byte
			if tt.stdin != "" {
				if stdin, err = os.ReadFile(filepath.Join(golden, tt.dir, tt.stdin)); err != nil {
					t.Fatal(err)
				}
			}

			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"validate"}, args...), bytes.NewReader(stdin), &stdout, &stderr)
			if code := exitCode(err, &stderr); code != tt.wantExit {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantExit, stderr.String())
			}

			testenv.Golden(t, filepath.Join(golden, tt.dir, "want.txt"), stdout.String())
		})
	}
}

// validateRepoRoot is the absolute path of the repository, set before the cases run
// (they change the working directory).
var validateRepoRoot string

// copyValidateCase copies the regular files under src (but its want.txt) to dst.
func copyValidateCase(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case rel == "want.txt" || !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPaths []string
		wantQuiet bool
	}{
		{"takes flags before paths", []string{"-q", "a", "b"}, []string{"a", "b"}, true},
		{"takes flags between and after paths", []string{"a", "-q", "b"}, []string{"a", "b"}, true},
		{"keeps - as a path", []string{"-", "-q"}, []string{"-"}, true},
		{"treats everything after -- as paths", []string{"a", "--", "-q"}, []string{"a", "-q"}, false},
		{"returns no paths for none", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			quiet := fs.Bool("q", false, "")
			paths, err := parseInterspersed(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantPaths, paths); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
			if *quiet != tt.wantQuiet {
				t.Errorf("-q = %v, want %v", *quiet, tt.wantQuiet)
			}
		})
	}
}
