package manifest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// The watch tests run on the real file system. Waits are generous for a
// loaded machine and no timing is asserted: a step expects either one signal
// (within signalWait) followed by quiet, or quiet.
const (
	// 120 ms: a step's fs operations must land within one debounce even on a
	// machine busy with other suites, or one step would signal twice.
	testDebounce = 120 * time.Millisecond
	signalWait   = 2 * time.Second
	quietWait    = 4 * testDebounce
)

// watchStep is one action on the file system and whether it must be
// signalled (exactly once) or not at all.
type watchStep struct {
	name   string
	do     func(t *testing.T, dir string)
	signal bool
}

func TestWatch(t *testing.T) {
	a := realm("a")
	tests := []struct {
		name  string
		files map[string]string // the tree before the watch, as for tree()
		watch []string          // relative to the test directory
		steps []watchStep
	}{
		{
			name:  "an editor save through a temp file renamed over the manifest signals once",
			files: map[string]string{"m/a.yaml": a},
			watch: []string{"m"},
			steps: []watchStep{
				{"write a.yaml.tmp and rename it over a.yaml", func(t *testing.T, dir string) {
					write(t, dir, "m/a.yaml.tmp", realm("a2"))
					rename(t, dir, "m/a.yaml.tmp", "m/a.yaml")
				}, true},
			},
		},
		{
			name:  "a vim save (4913 probe, backup by rename, rewrite) signals once",
			files: map[string]string{"m/a.yaml": a},
			watch: []string{"m"},
			steps: []watchStep{
				{"vim writes", func(t *testing.T, dir string) {
					write(t, dir, "m/4913", "")
					remove(t, dir, "m/4913")
					rename(t, dir, "m/a.yaml", "m/a.yaml~")
					write(t, dir, "m/a.yaml", realm("a2"))
					remove(t, dir, "m/a.yaml~")
				}, true},
			},
		},
		{
			name:  "editor leftovers alone signal nothing",
			files: map[string]string{"m/a.yaml": a},
			watch: []string{"m"},
			steps: []watchStep{
				{"vim swap file", func(t *testing.T, dir string) { write(t, dir, "m/.a.yaml.swp", "x") }, false},
				{"vim write probe", func(t *testing.T, dir string) { write(t, dir, "m/4913", "") }, false},
				{"backup file", func(t *testing.T, dir string) { write(t, dir, "m/a.yaml~", a) }, false},
				{"emacs autosave", func(t *testing.T, dir string) { write(t, dir, "m/#a.yaml#", a) }, false},
				{"emacs lock symlink", func(t *testing.T, dir string) { symlink(t, dir, "root@host.1:1", "m/.#a.yaml") }, false},
				{"temp file removed", func(t *testing.T, dir string) {
					write(t, dir, "m/a.yaml.tmp", a)
					remove(t, dir, "m/a.yaml.tmp")
				}, false},
				{"hidden directory with a manifest", func(t *testing.T, dir string) { write(t, dir, "m/.git/x.yaml", a) }, false},
			},
		},
		{
			name:  "files that are not manifests and attribute changes signal nothing",
			files: map[string]string{"m/a.yaml": a},
			watch: []string{"m"},
			steps: []watchStep{
				{"write README.md", func(t *testing.T, dir string) { write(t, dir, "m/README.md", "hi") }, false},
				{"touch a.yaml", func(t *testing.T, dir string) {
					now := time.Now()
					if err := os.Chtimes(filepath.Join(dir, "m/a.yaml"), now, now); err != nil {
						t.Fatal(err)
					}
				}, false},
				{"chmod a.yaml", func(t *testing.T, dir string) {
					if err := os.Chmod(filepath.Join(dir, "m/a.yaml"), 0o600); err != nil {
						t.Fatal(err)
					}
				}, false},
			},
		},
		{
			name:  "touching nothing signals nothing",
			files: map[string]string{"m/a.yaml": a},
			watch: []string{"m"},
			steps: []watchStep{{"nothing", func(*testing.T, string) {}, false}},
		},
		{
			name:  "a file created in a new subdirectory signals, and so do later edits there",
			files: map[string]string{"m/a.yaml": a},
			watch: []string{"m"},
			steps: []watchStep{
				{"mkdir -p and write", func(t *testing.T, dir string) { write(t, dir, "m/sub/deeper/b.yml", realm("b")) }, true},
				{"edit the new file", func(t *testing.T, dir string) { write(t, dir, "m/sub/deeper/b.yml", realm("b2")) }, true},
				{"add a json file next to it", func(t *testing.T, dir string) { write(t, dir, "m/sub/deeper/c.json", "{}") }, true},
			},
		},
		{
			name:  "a directory moved in with its files already inside signals, and so do edits there",
			files: map[string]string{"m/a.yaml": a, "staging/x/c.yaml": realm("c")},
			watch: []string{"m"},
			steps: []watchStep{
				{"move the directory in", func(t *testing.T, dir string) { rename(t, dir, "staging/x", "m/x") }, true},
				{"edit a file inside", func(t *testing.T, dir string) { write(t, dir, "m/x/c.yaml", realm("c2")) }, true},
				{"move it out", func(t *testing.T, dir string) { rename(t, dir, "m/x", "staging/y") }, true},
				{"edit it outside", func(t *testing.T, dir string) { write(t, dir, "staging/y/c.yaml", realm("c3")) }, false},
			},
		},
		{
			name:  "a subdirectory renamed within the tree keeps signalling under its new name",
			files: map[string]string{"m/a/x.yaml": realm("x"), "m/a/deep/y.yaml": realm("y")},
			watch: []string{"m"},
			steps: []watchStep{
				{"mv m/a m/b", func(t *testing.T, dir string) { rename(t, dir, "m/a", "m/b") }, true},
				{"edit in the renamed directory", func(t *testing.T, dir string) { write(t, dir, "m/b/x.yaml", realm("x2")) }, true},
				{"edit in its subdirectory", func(t *testing.T, dir string) { write(t, dir, "m/b/deep/y.yaml", realm("y2")) }, true},
			},
		},
		{
			name: "a symlinked manifest directory swapped to a new target signals; edits follow the new target",
			files: map[string]string{
				"old/a.yaml": a, "new/a.yaml": realm("a2"), "m": "-> old",
			},
			watch: []string{"m"},
			steps: []watchStep{
				{"ln -s new tmp && mv -T tmp m", func(t *testing.T, dir string) {
					symlink(t, dir, "new", "tmp")
					rename(t, dir, "tmp", "m")
				}, true},
				{"edit in the new target", func(t *testing.T, dir string) { write(t, dir, "new/a.yaml", realm("a3")) }, true},
				{"edit in the old target", func(t *testing.T, dir string) { write(t, dir, "old/a.yaml", realm("a4")) }, false},
				{"remove the old target", func(t *testing.T, dir string) { removeAll(t, dir, "old") }, false},
				{"new subdirectory in the new target", func(t *testing.T, dir string) { write(t, dir, "new/s/b.yaml", realm("b")) }, true},
			},
		},
		{
			name: "a symlink on the way to the manifest directory swapped to a new target signals",
			files: map[string]string{
				"v1/m/a.yaml": a, "v2/m/a.yaml": realm("a2"), "cur": "-> v1",
			},
			watch: []string{"cur/m"},
			steps: []watchStep{
				{"swap cur", func(t *testing.T, dir string) {
					symlink(t, dir, "v2", "tmp")
					rename(t, dir, "tmp", "cur")
				}, true},
				{"edit in the new target", func(t *testing.T, dir string) { write(t, dir, "v2/m/a.yaml", realm("a3")) }, true},
				{"edit in the old target", func(t *testing.T, dir string) { write(t, dir, "v1/m/a.yaml", realm("a4")) }, false},
			},
		},
		{
			name: "a Kubernetes ConfigMap ..data swap signals, and the new data directory is watched",
			files: map[string]string{
				"cfg/..2024_01/a.yaml": a,
				"cfg/..data":           "-> ..2024_01",
				"cfg/a.yaml":           "-> ..data/a.yaml",
			},
			watch: []string{"cfg"},
			steps: []watchStep{
				{"atomic writer swap", func(t *testing.T, dir string) {
					write(t, dir, "cfg/..2024_02/a.yaml", realm("a2"))
					symlink(t, dir, "..2024_02", "cfg/..data_tmp")
					rename(t, dir, "cfg/..data_tmp", "cfg/..data")
					removeAll(t, dir, "cfg/..2024_01")
				}, true},
				{"edit in the new data directory", func(t *testing.T, dir string) { write(t, dir, "cfg/..2024_02/a.yaml", realm("a3")) }, true},
			},
		},
		{
			name:  "a manifest directory removed and recreated signals each time, and edits in the new one signal",
			files: map[string]string{"m/a.yaml": a, "m/sub/b.yaml": realm("b")},
			watch: []string{"m"},
			steps: []watchStep{
				{"rm -rf m", func(t *testing.T, dir string) { removeAll(t, dir, "m") }, true},
				{"mkdir m and write", func(t *testing.T, dir string) { write(t, dir, "m/a.yaml", a) }, true},
				{"edit in the recreated directory", func(t *testing.T, dir string) { write(t, dir, "m/a.yaml", realm("a2")) }, true},
				{"recreate a subdirectory", func(t *testing.T, dir string) { write(t, dir, "m/sub/b.yaml", realm("b")) }, true},
				{"edit in it", func(t *testing.T, dir string) { write(t, dir, "m/sub/b.yaml", realm("b2")) }, true},
			},
		},
		{
			name:  "a manifest directory that does not exist yet is watched once it appears",
			files: map[string]string{"etc/other": "x"},
			watch: []string{"etc/kukeon/manifests"},
			steps: []watchStep{
				{"unrelated file beside it", func(t *testing.T, dir string) { write(t, dir, "etc/other", "y") }, false},
				{"mkdir -p and write", func(t *testing.T, dir string) { write(t, dir, "etc/kukeon/manifests/a.yaml", a) }, true},
				{"edit", func(t *testing.T, dir string) { write(t, dir, "etc/kukeon/manifests/a.yaml", realm("a2")) }, true},
			},
		},
		{
			name:  "a file given as a path signals for its own changes only, whatever its name",
			files: map[string]string{"etc/app.conf": a, "etc/b.yaml": realm("b")},
			watch: []string{"etc/app.conf"},
			steps: []watchStep{
				{"edit a sibling manifest", func(t *testing.T, dir string) { write(t, dir, "etc/b.yaml", realm("b2")) }, false},
				{"edit the file", func(t *testing.T, dir string) { write(t, dir, "etc/app.conf", realm("a2")) }, true},
				{"rename a temp file over it", func(t *testing.T, dir string) {
					write(t, dir, "etc/app.conf.new", realm("a3"))
					rename(t, dir, "etc/app.conf.new", "etc/app.conf")
				}, true},
			},
		},
		{
			name: "a symlinked manifest file signals when its target is edited",
			files: map[string]string{
				"data/x.yaml": a, "data/y.yaml": realm("y"), "m/x.yaml": "-> ../data/x.yaml",
			},
			watch: []string{"m"},
			steps: []watchStep{
				{"edit the target", func(t *testing.T, dir string) { write(t, dir, "data/x.yaml", realm("a2")) }, true},
				{"edit a file beside the target", func(t *testing.T, dir string) { write(t, dir, "data/y.yaml", realm("y2")) }, false},
			},
		},
		{
			name: "a symlink loop is walked once and edits still signal",
			files: map[string]string{
				"m/a.yaml": a, "m/sub/up": "-> ..", "m/sub/self": "-> .",
			},
			watch: []string{"m"},
			steps: []watchStep{
				{"edit", func(t *testing.T, dir string) { write(t, dir, "m/a.yaml", realm("a2")) }, true},
				{"write in the subdirectory", func(t *testing.T, dir string) { write(t, dir, "m/sub/b.yaml", realm("b")) }, true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tree(t, dir, tt.files)
			var paths []string
			for _, p := range tt.watch {
				paths = append(paths, filepath.Join(dir, p))
			}
			w := startWatcher(t, paths)
			for _, st := range tt.steps {
				st.do(t, dir)
				if st.signal {
					waitSignal(t, w, st.name)
				}
				expectQuiet(t, w, st.name, quietWait)
			}
		})
	}
}

func TestWatchOverflow(t *testing.T) {
	t.Run("an inotify queue overflow signals", func(t *testing.T) {
		b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
		if err != nil {
			t.Fatal(err)
		}
		queued, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("fs.inotify.max_queued_events: %v", err)
		}
		if queued > 100_000 {
			testenv.SkipOrFail(t, fmt.Sprintf("fs.inotify.max_queued_events is %d: too many files to create to overflow it", queued))
		}
		dir := t.TempDir()
		w, err := NewWatcher([]string{dir}, WatchOptions{Debounce: testDebounce})
		if err != nil {
			t.Fatal(err)
		}
		// Until Run reads, fsnotify holds one read buffer (4096 events) and
		// the kernel queues the rest. The names are skipped ones, so only the
		// overflow can signal.
		for i := range queued + 4096 + 1000 {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d.tmp", i)))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		runWatcher(t, w)
		waitSignal(t, w, "overflow")
	})
}

func TestWatchChanges(t *testing.T) {
	t.Run("a pending signal absorbs later ones and never blocks the watcher", func(t *testing.T) {
		dir := t.TempDir()
		w := startWatcher(t, []string{dir})
		write(t, dir, "a.yaml", realm("a"))
		deadline := time.Now().Add(signalWait)
		for len(w.Changes()) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		write(t, dir, "b.yaml", realm("b"))
		time.Sleep(quietWait)
		write(t, dir, "c.yaml", realm("c"))
		time.Sleep(quietWait)
		waitSignal(t, w, "the pending signal")
		expectQuiet(t, w, "after the pending signal", quietWait)
	})
}

func TestWatchLifecycle(t *testing.T) {
	t.Run("Run returns nil promptly when its context ends", func(t *testing.T) {
		dir := t.TempDir()
		w, err := NewWatcher([]string{dir}, WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		write(t, dir, "a.yaml", realm("a")) // an event in flight
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(signalWait):
			t.Fatal("Run did not return after cancel")
		}
		checkNoWatchGoroutines(t)
		if err := w.Run(context.Background()); err == nil {
			t.Error("second Run = nil, want an error")
		}
	})
	t.Run("Close releases a watcher that never ran", func(t *testing.T) {
		w, err := NewWatcher([]string{t.TempDir()}, WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
		checkNoWatchGoroutines(t)
	})
	t.Run("NewWatcher refuses no paths and stdin alone", func(t *testing.T) {
		for _, paths := range [][]string{nil, {"-"}} {
			if w, err := NewWatcher(paths, WatchOptions{}); err == nil {
				w.Close()
				t.Errorf("NewWatcher(%q) = nil error, want one", paths)
			}
		}
	})
}

// startWatcher runs a Watcher on paths until the test ends.
func startWatcher(t *testing.T, paths []string) *Watcher {
	t.Helper()
	w, err := NewWatcher(paths, WatchOptions{Debounce: testDebounce})
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	return w
}

// runWatcher runs w until the test ends, then checks that Run returned nil
// and left no goroutine behind.
func runWatcher(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(signalWait):
			t.Error("Run did not return after cancel")
		}
		checkNoWatchGoroutines(t)
	})
}

// checkNoWatchGoroutines fails the test if a goroutine of a Watcher or of
// fsnotify is still running: goleak, by hand. The watch tests do not run
// in parallel, so any such goroutine is a leak.
func checkNoWatchGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(signalWait); ; {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "fsnotify") && !strings.Contains(stacks, "manifest.(*Watcher)") {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("leaked watch goroutines:\n%s", stacks)
}

func waitSignal(t *testing.T, w *Watcher, step string) {
	t.Helper()
	select {
	case <-w.Changes():
	case <-time.After(signalWait):
		t.Fatalf("%s: no signal within %v", step, signalWait)
	}
}

func expectQuiet(t *testing.T, w *Watcher, step string, d time.Duration) {
	t.Helper()
	select {
	case <-w.Changes():
		t.Fatalf("%s: unexpected signal", step)
	case <-time.After(d):
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, dir, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, dir, target, name string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func removeAll(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
