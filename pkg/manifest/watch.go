package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
)

// DefaultDebounce is the quiet period of a Watcher whose options leave
// Debounce zero.
const DefaultDebounce = 200 * time.Millisecond

// maxBurst caps, in debounce periods, how long a stream of events that never
// pauses can hold back a signal.
const maxBurst = 10

// maxSymlinkHops is the kernel's limit (MAXSYMLINKS) on one path resolution.
const maxSymlinkHops = 40

// WatchOptions tune a Watcher.
type WatchOptions struct {
	// Debounce is the quiet period after the last relevant event before a
	// change is signalled (default 200ms).
	Debounce time.Duration
}

// Watcher watches manifest paths (directories or files, possibly symlinks)
// and signals that something may have changed. Events are hints: the daemon
// re-loads (the loader hashes files, so an identical rewrite plans nothing).
//
// It watches directories, never files, as kubelet does: every directory of
// each tree (symlinked directories followed, each watched once), the
// directory holding each path given (so that replacing the path itself, by
// a symlink swap or by removing and recreating it, is seen) and the
// directory holding each symlink on the way to a path. Any change that
// alters this set is followed by a rescan that re-establishes it, before
// the change is signalled; a change made after NewWatcher returns is
// therefore never lost, however late its directory was watched.
//
// Hazard: a directory reachable under two paths (a bind mount) is watched
// under the first one only.
type Watcher struct {
	roots    []string
	debounce time.Duration
	fsw      *fsnotify.Watcher
	changes  chan struct{}

	// dirs is what is watched, by resolved path. Only Run's goroutine
	// touches it once Run has started.
	dirs     map[string]*watchedDir
	initErrs []error
	logged   map[string]bool // errors of the last scan, logged once while they last

	ran       atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// watchedDir says why a directory is watched, which decides the events of
// its entries that matter.
type watchedDir struct {
	id fileID
	// tree marks a directory of a manifest tree: its manifest files,
	// directories and followed symlinks matter.
	tree bool
	// names are entries that matter whatever they are: a path given, a
	// symlink on the way to one, or the target a symlink resolves to.
	names map[string]bool
	// links are the symlinks of a tree directory that the scan followed.
	links map[string]bool
}

// NewWatcher watches paths ("-", standard input, is ignored). A path that
// does not exist yet is not an error: its nearest existing ancestor is
// watched until it appears. It returns an error if inotify cannot be set up
// or its watch limit is reached (fs.inotify.max_user_watches); other
// problems with single directories are logged by Run and retried at the
// next rescan.
func NewWatcher(paths []string, opts WatchOptions) (*Watcher, error) {
	var roots []string
	for _, p := range paths {
		if p == "-" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", p, err)
		}
		roots = append(roots, abs)
	}
	if len(roots) == 0 {
		return nil, errors.New("no paths to watch")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher{
		roots:    roots,
		debounce: opts.Debounce,
		fsw:      fsw,
		changes:  make(chan struct{}, 1),
		dirs:     map[string]*watchedDir{},
		logged:   map[string]bool{},
	}
	w.initErrs = w.rescan()
	for _, err := range w.initErrs {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) {
			return nil, errors.Join(fmt.Errorf("%w (see fs.inotify.max_user_watches and max_user_instances)", err), w.Close())
		}
	}
	return w, nil
}

// Changes delivers one value per debounced burst of relevant events; it is
// buffered (1) and never blocks the watcher (a pending signal absorbs new ones).
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Run watches until ctx ends; it returns nil then. It re-establishes watches
// after the watched directory is removed and recreated or a symlink on the
// path is swapped, and signals after inotify overflow (fsnotify.ErrEventOverflow).
// Run closes the Watcher when it returns and may be called once; it logs
// (logr from ctx) the directories it cannot watch and inotify errors.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return errors.New("watcher already ran")
	}
	defer w.Close()
	log := logr.FromContextOrDiscard(ctx)
	w.report(log, w.initErrs)
	w.initErrs = nil

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		burst  time.Time // first relevant event not yet signalled; zero if none
		rescan bool      // the pending burst may have changed what to watch
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return w.closed(ctx)
			}
			relevant, structural := w.classify(ev)
			if !relevant {
				continue
			}
			log.V(4).Info("manifest event", "path", ev.Name, "op", ev.Op.String())
			rescan = rescan || structural
			now := time.Now()
			if burst.IsZero() {
				burst = now
			}
			timer.Reset(max(0, min(w.debounce, burst.Add(maxBurst*w.debounce).Sub(now))))
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return w.closed(ctx)
			}
			// Events may have been lost, a directory creation among them:
			// watch again whatever is there now and let the daemon reload.
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				log.Info("inotify queue overflowed, rescanning")
			} else {
				log.Error(err, "inotify")
			}
			timer.Stop()
			burst, rescan = time.Time{}, false
			w.report(log, w.rescan())
			w.signal()
		case <-timer.C:
			// The rescan comes before the signal: the reload it causes then
			// reads every file that landed before a new watch was added.
			if rescan {
				w.report(log, w.rescan())
			}
			burst, rescan = time.Time{}, false
			w.signal()
		}
	}
}

// Close releases the watcher. Run closes it on return; Close is for a
// Watcher whose Run is never called. It is safe to call more than once.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() { w.closeErr = w.fsw.Close() })
	return w.closeErr
}

func (w *Watcher) closed(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("inotify watcher closed")
}

func (w *Watcher) signal() {
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

// report logs the errors of a scan that the previous scan did not have.
func (w *Watcher) report(log logr.Logger, errs []error) {
	now := make(map[string]bool, len(errs))
	for _, err := range errs {
		msg := err.Error()
		if !w.logged[msg] {
			log.Error(err, "manifest watch incomplete")
		}
		now[msg] = true
	}
	w.logged = now
}

// classify tells whether ev may change what the loader reads (relevant) and
// whether it may change what must be watched (structural). Chmod alone
// (touch, chmod) is never relevant.
func (w *Watcher) classify(ev fsnotify.Event) (relevant, structural bool) {
	op := ev.Op &^ fsnotify.Chmod
	if op == 0 {
		return false, false
	}
	structural = op.Has(fsnotify.Create) || op.Has(fsnotify.Remove) || op.Has(fsnotify.Rename)
	name := filepath.Clean(ev.Name)
	if _, ok := w.dirs[name]; ok { // a watched directory itself, or as an entry of its parent
		return true, structural
	}
	d := w.dirs[filepath.Dir(name)]
	if d == nil {
		return false, false // a late event of a dropped watch
	}
	base := filepath.Base(name)
	if d.names[base] {
		return true, structural
	}
	if !d.tree || (Skipped(base) && !strings.HasPrefix(base, "..")) {
		return false, false
	}
	if d.links[base] {
		return true, structural
	}
	if op.Has(fsnotify.Create) {
		if fi, err := os.Lstat(name); err == nil && (fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0) {
			return true, true
		}
	}
	return isManifestName(base), false
}

// rescan brings the watches in line with the file system and returns the
// directories it could not watch or read.
func (w *Watcher) rescan() []error {
	s := &scan{
		fsw:  w.fsw,
		next: map[string]*watchedDir{},
		ids:  map[fileID]string{},
		prev: make(map[fileID]string, len(w.dirs)),
	}
	for p, d := range w.dirs {
		s.prev[d.id] = p
	}
	for _, r := range w.roots {
		if final, ok := s.follow(r); ok {
			if fi, err := os.Stat(final); err == nil && fi.IsDir() {
				s.tree(final)
			}
		}
	}
	for p := range w.dirs {
		if s.next[p] == nil {
			s.unwatch(p)
		}
	}
	w.dirs = s.next
	return s.errs
}

// scan is one walk of the watched paths. Each directory is watched before
// it is read, so an entry that appears during the walk is either read or
// reported by an event.
type scan struct {
	fsw  *fsnotify.Watcher
	next map[string]*watchedDir
	ids  map[fileID]string // directories watched by this scan, by identity
	prev map[fileID]string // directories watched before, by identity
	errs []error
}

// follow resolves p one component at a time, as the kernel does, watching
// the directory that holds each entry whose replacement would change what
// p names: every symlink on the way, the last component and the first
// missing one. It returns the resolved path if it exists.
func (s *scan) follow(p string) (string, bool) {
	dir, rest, hops := "/", components(p), 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			dir = filepath.Dir(dir)
			continue
		}
		next := filepath.Join(dir, c)
		fi, err := os.Lstat(next)
		link := err == nil && fi.Mode()&fs.ModeSymlink != 0
		if err != nil || link || len(rest) == 0 || !fi.IsDir() {
			s.watchName(dir, c)
		}
		switch {
		case err != nil:
			return "", false
		case link:
			if hops++; hops > maxSymlinkHops {
				return "", false
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", false
			}
			if filepath.IsAbs(target) {
				dir = "/"
			}
			rest = append(components(target), rest...)
			continue
		case len(rest) > 0 && !fi.IsDir():
			return "", false
		}
		dir = next
	}
	return dir, true
}

// components splits a path into its names, dropping empty ones and ".".
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func (s *scan) watchName(dir, name string) {
	if d := s.watch(dir); d != nil {
		if d.names == nil {
			d.names = map[string]bool{}
		}
		d.names[name] = true
	}
}

// tree watches dir and, recursively, its directories and the directories
// its symlinks lead to, skipping the names the loader skips except the
// "..data" and "..<timestamp>" entries of a Kubernetes volume. A directory
// already in the tree is not walked again, which also stops symlink loops.
func (s *scan) tree(dir string) {
	d := s.watch(dir)
	if d == nil || d.tree {
		return
	}
	d.tree = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.errs = append(s.errs, fmt.Errorf("read %s: %w", dir, err))
		}
		return
	}
	for _, e := range entries {
		name := e.Name()
		dotdot := strings.HasPrefix(name, "..")
		if Skipped(name) && !dotdot {
			continue
		}
		child := filepath.Join(dir, name)
		switch {
		case e.IsDir():
			s.tree(child)
		case e.Type()&fs.ModeSymlink != 0:
			fi, err := os.Stat(child)
			isDir := err == nil && fi.IsDir()
			if !isDir && !dotdot && !isManifestName(name) {
				continue
			}
			if d.links == nil {
				d.links = map[string]bool{}
			}
			d.links[name] = true
			if final, ok := s.follow(child); ok && isDir {
				s.tree(final)
			}
		}
	}
}

// watch adds an inotify watch on dir (a resolved path) once per scan. It
// returns nil if dir cannot be watched: gone (its parent's event will tell),
// already watched under another path, or an error recorded in s.errs.
func (s *scan) watch(dir string) *watchedDir {
	if d := s.next[dir]; d != nil {
		return d
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil
	}
	id, _ := idOf(fi)
	if _, ok := s.ids[id]; ok {
		return nil
	}
	// inotify watches an inode, not a path: a directory that moved is still
	// watched under its old path, and fsnotify would keep that name for it
	// and ignore the new one. Drop the old watch first.
	if old, ok := s.prev[id]; ok && old != dir && s.next[old] == nil {
		s.unwatch(old)
		delete(s.prev, id)
	}
	// Adding a watched path again is cheap, and it re-establishes a watch
	// that inotify dropped when the directory was removed and recreated.
	if err := s.fsw.Add(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			s.errs = append(s.errs, fmt.Errorf("watch %s: %w", dir, err))
		}
		return nil
	}
	d := &watchedDir{id: id}
	s.next[dir] = d
	s.ids[id] = dir
	return d
}

// unwatch removes the watch of dir. A watch inotify already dropped (the
// directory is gone) is not an error; any other failure is recorded, so the
// next scan reports it.
func (s *scan) unwatch(dir string) {
	if err := s.fsw.Remove(dir); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
		s.errs = append(s.errs, fmt.Errorf("unwatch %s: %w", dir, err))
	}
}
