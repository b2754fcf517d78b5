package manifest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// fileRow is what a test compares of a File.
type fileRow struct {
	Path    string
	Failed  bool
	Dir     bool
	Objects int
}

func fileRows(r *Result, dir string) []fileRow {
	var out []fileRow
	for _, f := range r.Files {
		out = append(out, fileRow{strings.TrimPrefix(f.Path, dir+"/"), f.Failed, f.Dir, f.Objects})
	}
	return out
}

// nobody is the uid the walk runs as in unprivilegedTest.
const nobody = 65534

// unprivileged runs fn with the file permission checks of an unprivileged
// user, so that mode 000 means EACCES even when the test runs as root: as
// root, the filesystem uid of the (locked) thread is set to nobody for the
// duration, which drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from it;
// Load walks on the calling goroutine, hence on that thread. dir must be
// reachable by nobody.
func unprivileged(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	runtime.LockOSThread()
	if _, err := unix.SetfsuidRetUid(nobody); err != nil {
		t.Fatalf("setfsuid %d: %v", nobody, err)
	}
	if cur, _ := unix.SetfsuidRetUid(-1); cur != nobody {
		t.Fatalf("setfsuid %d: the filesystem uid is still %d", nobody, cur)
	}
	defer func() {
		_, _ = unix.SetfsuidRetUid(0) // the result is checked just below
		if cur, _ := unix.SetfsuidRetUid(-1); cur != 0 {
			// Leave the thread locked: it dies with the goroutine.
			t.Fatalf("restore the filesystem uid: still %d", cur)
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// reachable makes dir and its parent (t.TempDir's, mode 0700) searchable by
// everyone, for unprivileged.
func reachable(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	// RemoveAll needs to list and search directories again.
	t.Cleanup(func() { _ = os.Chmod(path, 0o755) })
}

func TestFailedSources(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		// setup runs after the files are written.
		setup func(t *testing.T, dir string)
		args  func(dir string) []string
		// asNobody walks with the permissions of an unprivileged user.
		asNobody  bool
		wantFiles []fileRow
		wantDiags []string
	}{
		{
			name:      "a dangling symlink to a manifest fails; its type is unknown, so everything under it fails too",
			files:     map[string]string{"a.yaml": realm("a"), "gone.yaml": "-> nowhere.yaml"},
			wantFiles: []fileRow{{"a.yaml", false, false, 1}, {"gone.yaml", true, true, 0}},
			wantDiags: []string{"gone.yaml: dangling symlink: no such file or directory"},
		},
		{
			name:      "a dangling symlink to a subdirectory fails as a directory instead of vanishing",
			files:     map[string]string{"a.yaml": realm("a"), "sub": "-> moved-away"},
			wantFiles: []fileRow{{"a.yaml", false, false, 1}, {"sub", true, true, 0}},
			wantDiags: []string{"sub: dangling symlink: no such file or directory"},
		},
		{
			name:      "a symlink to itself fails",
			files:     map[string]string{"self.yaml": "-> self.yaml"},
			wantFiles: []fileRow{{"self.yaml", true, true, 0}},
			wantDiags: []string{"self.yaml: too many levels of symbolic links"},
		},
		{
			name:      "a symlink loop fails as a directory at the looping path",
			files:     map[string]string{"sub/a.yaml": realm("a"), "sub/loop": "-> .."},
			wantFiles: []fileRow{{"sub/a.yaml", false, false, 1}, {"sub/loop", true, true, 0}},
			wantDiags: []string{"sub/loop: symlink loop"},
		},
		{
			name:  "a path given that does not exist fails as a directory",
			files: map[string]string{"a.yaml": realm("a")},
			args: func(dir string) []string {
				return []string{filepath.Join(dir, "gone"), filepath.Join(dir, "gone"), filepath.Join(dir, "a.yaml")}
			},
			wantFiles: []fileRow{{"gone", true, true, 0}, {"a.yaml", false, false, 1}},
			wantDiags: []string{"gone: no such file or directory"},
		},
		{
			name:  "a manifest-named fifo fails as a file without being opened",
			files: map[string]string{"a.yaml": realm("a")},
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(filepath.Join(dir, "pipe.txt"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantFiles: []fileRow{{"a.yaml", false, false, 1}, {"pipe.yaml", true, false, 0}},
			wantDiags: []string{"pipe.yaml: not a regular file"},
		},
		{
			name: "a file that fails to read (EIO) fails",
			setup: func(t *testing.T, dir string) {
				// Reading a process's own memory at offset 0 is EIO.
				if err := os.Symlink("/proc/self/mem", filepath.Join(dir, "mem.yaml")); err != nil {
					t.Fatal(err)
				}
			},
			wantFiles: []fileRow{{"mem.yaml", true, false, 0}},
			wantDiags: []string{"mem.yaml: input/output error"},
		},
		{
			name:      "an unreadable file (EACCES) fails",
			files:     map[string]string{"a.yaml": realm("a"), "secret.yaml": realm("s")},
			setup:     func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "secret.yaml"), 0) },
			asNobody:  true,
			wantFiles: []fileRow{{"a.yaml", false, false, 1}, {"secret.yaml", true, false, 0}},
			wantDiags: []string{"secret.yaml: permission denied"},
		},
		{
			name:      "a directory that cannot be listed (EACCES) fails as a directory",
			files:     map[string]string{"a.yaml": realm("a"), "locked/b.yaml": realm("b")},
			setup:     func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "locked"), 0) },
			asNobody:  true,
			wantFiles: []fileRow{{"a.yaml", false, false, 1}, {"locked", true, true, 0}},
			wantDiags: []string{"locked: permission denied"},
		},
		{
			name: "entries of a directory that can be listed but not searched each fail, by their type",
			files: map[string]string{
				"half/b.yaml": realm("b"), "half/notes.txt": "x", "half/sub/c.yaml": realm("c"), "half/link": "-> sub",
			},
			setup:    func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "half"), 0o644) },
			asNobody: true,
			wantFiles: []fileRow{
				{"half/b.yaml", true, false, 0}, {"half/link", true, true, 0},
				{"half/notes.txt", true, false, 0}, {"half/sub", true, true, 0},
			},
			wantDiags: []string{
				"half/b.yaml: permission denied", "half/link: permission denied",
				"half/notes.txt: permission denied", "half/sub: permission denied",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tree(t, dir, tt.files)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			args := []string{dir}
			if tt.args != nil {
				args = tt.args(dir)
			}
			var r *Result
			if tt.asNobody {
				reachable(t, dir)
				unprivileged(t, func() { r = Load(args, nil, Options{}) })
			} else {
				r = Load(args, nil, Options{})
			}
			if diff := cmp.Diff(tt.wantFiles, fileRows(r, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDiags, diagStrings(r, dir)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			for _, d := range r.Diagnostics {
				if d.Severity == SeverityError && !r.FailedSource(d.Position.File) {
					t.Errorf("error %q is at a path that is not a failed source", d)
				}
			}
		})
	}
}

func TestFailedSource(t *testing.T) {
	r := &Result{Files: []File{
		{Path: "m/ok.yaml", Objects: 1},
		{Path: "m/bad.yaml", Failed: true},
		{Path: "m/sub", Failed: true, Dir: true},
		{Path: "m/ok-dir", Dir: true}, // not failed: Dir alone means nothing
		{Path: "/abs/gone/", Failed: true, Dir: true},
	}}
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"a failed file", "m/bad.yaml", true},
		{"a failed file named uncleanly", "./m//bad.yaml", true},
		{"a file that loaded", "m/ok.yaml", false},
		{"a path below a failed file that is not a directory", "m/bad.yaml/x.yaml", false},
		{"a failed directory itself", "m/sub", true},
		{"a file under a failed directory", "m/sub/a.yaml", true},
		{"a file deep under a failed directory", "m/sub/x/y/z.yaml", true},
		{"a sibling whose name extends the failed directory's", "m/sub2/a.yaml", false},
		{"a file under a directory entry that did not fail", "m/ok-dir/a.yaml", false},
		{"a file under a failed directory given with a trailing slash", "/abs/gone/a.yaml", true},
		{"the same path relative instead of absolute", "abs/gone/a.yaml", false},
		{"a path the Load never saw", "elsewhere.yaml", false},
		{"the empty path", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.FailedSource(tt.path); got != tt.want {
				t.Errorf("FailedSource(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
	root := &Result{Files: []File{{Path: "/", Failed: true, Dir: true}, {Path: ".", Failed: true, Dir: true}}}
	for _, p := range []string{"/", "/etc/x.yaml", ".", "a.yaml", "sub/a.yaml"} {
		if !root.FailedSource(p) {
			t.Errorf("FailedSource(%q) under a failed / and . = false, want true", p)
		}
	}
	for _, p := range []string{"../a.yaml", ".."} {
		if root.FailedSource(p) {
			t.Errorf("FailedSource(%q) = true: it is not under . nor /", p)
		}
	}
}

func TestZeroObjectFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    fileRow
		wantErr string
	}{
		{name: "an empty file holds no object", content: "", want: fileRow{"f.yaml", false, false, 0}},
		{name: "a lone document marker holds no object", content: "---\n", want: fileRow{"f.yaml", false, false, 0}},
		{name: "document markers only hold no object", content: "---\n---\n...\n", want: fileRow{"f.yaml", false, false, 0}},
		{name: "comments only hold no object", content: "# nothing yet\n---\n# still nothing\n", want: fileRow{"f.yaml", false, false, 0}},
		{name: "blank lines only hold no object", content: "\n  \n\n", want: fileRow{"f.yaml", false, false, 0}},
		{name: "an empty JSON object is a document without a kind", content: "{}", want: fileRow{"f.yaml", true, false, 0}, wantErr: "f.yaml:1:1: kind is required"},
		{
			name: "a document marker without a line break may be cut short", content: "---",
			want:    fileRow{"f.yaml", true, false, 0},
			wantErr: "f.yaml:1:4: the file does not end with a line break: it may be cut short while being written, so its last document (from line 1) is ignored; end the file with a line break",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tree(t, dir, map[string]string{"f.yaml": tt.content})
			r := Load([]string{dir}, nil, Options{})
			if diff := cmp.Diff([]fileRow{tt.want}, fileRows(r, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			var want []string
			if tt.wantErr != "" {
				want = []string{tt.wantErr}
			}
			if diff := cmp.Diff(want, diagStrings(r, dir)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}
