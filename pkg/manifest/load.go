package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// DefaultMaxFileSize is the size cap of a manifest file.
const DefaultMaxFileSize = 10 << 20

// StdinName names standard input in positions.
const StdinName = "<stdin>"

// Options tune a Loader.
type Options struct {
	// MaxFileSize is the largest file that is read; a larger one is an
	// error. Zero means DefaultMaxFileSize.
	MaxFileSize int64
}

// Loader loads manifests and remembers what each file decoded to, keyed by
// path and content hash, so that reloading a directory whose files did not
// change costs one read and one hash per file. A Loader is safe for one
// goroutine at a time.
//
// Hazard: Documents of an unchanged file are returned again with the same
// Object pointers. Callers must treat Objects (and Fields) as read-only.
type Loader struct {
	opts  Options
	cache map[string]cached
}

type cached struct {
	hash string
	dec  *decoded
}

// NewLoader returns a Loader with an empty cache.
func NewLoader(opts Options) *Loader {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	return &Loader{opts: opts, cache: map[string]cached{}}
}

// Load is a one-shot Loader.Load.
func Load(paths []string, stdin io.Reader, opts Options) *Result {
	return NewLoader(opts).Load(paths, stdin)
}

// Load reads every manifest under paths: files (read whatever their name),
// directories (walked recursively, see walk), or "-" for stdin. It never
// stops at a problem: every unreadable path, bad file and bad document is a
// diagnostic, and every good document of every file is returned.
func (l *Loader) Load(paths []string, stdin io.Reader) *Result {
	w := &walker{maxSize: l.opts.MaxFileSize, seen: map[string]bool{}}
	for _, p := range paths {
		if p == "-" {
			w.stdin(stdin)
			continue
		}
		w.root(p)
	}
	res := &Result{Diagnostics: w.diags}
	decs := l.decodeAll(w.files)
	next := make(map[string]cached, len(w.files))
	for i, f := range w.files {
		file := File{Path: f.path, Hash: f.hash, Failed: f.failed, Dir: f.dir}
		if d := decs[i]; d != nil {
			next[f.path] = cached{hash: f.hash, dec: d}
			file.Failed = file.Failed || d.failed
			file.Objects = d.objects
			res.Documents = append(res.Documents, d.docs...)
			res.Diagnostics = append(res.Diagnostics, d.diags...)
		}
		res.Files = append(res.Files, file)
	}
	l.cache = next
	sort.SliceStable(res.Diagnostics, func(i, j int) bool {
		a, b := res.Diagnostics[i].Position, res.Diagnostics[j].Position
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return res
}

// decodeAll decodes the files that are not in the cache, in parallel. The
// result has one entry per file, nil for a file that could not be read.
func (l *Loader) decodeAll(files []readFile) []*decoded {
	out := make([]*decoded, len(files))
	var todo []int
	for i, f := range files {
		if f.data == nil && f.failed {
			continue
		}
		if c, ok := l.cache[f.path]; ok && c.hash == f.hash {
			out[i] = c.dec
			continue
		}
		todo = append(todo, i)
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	if workers <= 1 {
		for _, i := range todo {
			out[i] = decodeSource(files[i].path, files[i].data)
		}
		return out
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = decodeSource(files[i].path, files[i].data)
			}
		}()
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// readFile is a file the walk read, or a source it failed to read (then dir
// marks a path that is, or may be, a directory; see File.Dir).
type readFile struct {
	path   string
	data   []byte
	hash   string
	failed bool
	dir    bool
}

// walker finds and reads manifest files.
type walker struct {
	maxSize int64
	files   []readFile
	diags   []Diagnostic
	seen    map[string]bool // paths already read, so a file named twice loads once
	// dirs are the directories on the current walk path, by device and
	// inode, to detect symlink loops.
	dirs []fileID
}

type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, true
}

func (w *walker) errorf(path, format string, args ...any) {
	w.diags = append(w.diags, Diagnostic{Severity: SeverityError, Position: Position{File: path}, Message: fmt.Sprintf(format, args...)})
}

// fail reports path as a failed source: an error diagnostic at path and a
// failed entry in Result.Files, so that objects earlier passes took from it
// (from under it when dir) are kept. A path fails once per Load.
func (w *walker) fail(path string, dir bool, format string, args ...any) {
	if w.seen[path] {
		return
	}
	w.seen[path] = true
	w.errorf(path, format, args...)
	w.files = append(w.files, readFile{path: path, failed: true, dir: dir})
}

// describeErr renders an I/O error without the path, which the position
// already carries.
func describeErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}

func (w *walker) stdin(r io.Reader) {
	if w.seen[StdinName] {
		return
	}
	w.seen[StdinName] = true
	if r == nil {
		r = strings.NewReader("")
	}
	w.read(StdinName, r, -1)
}

// root handles one path named on the command line. A path that cannot be
// stat'ed (missing, unreadable) may be a directory whose manifests are
// recorded, so it fails as one.
func (w *walker) root(p string) {
	fi, err := os.Stat(p)
	if err != nil {
		w.fail(p, true, "%s", describeErr(err))
		return
	}
	if fi.IsDir() {
		w.dir(p, fi)
		return
	}
	w.file(p, fi)
}

// dir walks a directory: entries sorted by name, skipped names ignored,
// symlinks followed, a directory that is its own ancestor reported as a
// symlink loop.
//
// Every entry the walk cannot read fails as a source (see fail) rather than
// vanishing, so that a transient problem never looks like a deleted file:
// a directory it cannot list (EACCES, EIO) and a symlink loop as a
// directory; a dangling symlink and an entry it cannot stat as a directory
// too, since what they were cannot be told, unless the directory entry says
// it is a regular file. A manifest-named entry that is neither a regular
// file nor a directory (a fifo, a socket) fails as a file.
func (w *walker) dir(p string, fi fs.FileInfo) {
	id, ok := idOf(fi)
	if ok {
		for _, d := range w.dirs {
			if d == id {
				w.fail(p, true, "symlink loop")
				return
			}
		}
		w.dirs = append(w.dirs, id)
		defer func() { w.dirs = w.dirs[:len(w.dirs)-1] }()
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		w.fail(p, true, "%s", describeErr(err))
		return
	}
	for _, e := range entries {
		name := e.Name()
		if Skipped(name) {
			continue
		}
		child := filepath.Join(p, name)
		fi, err := os.Stat(child) // follows symlinks
		if err != nil {
			unknown := !e.Type().IsRegular()
			if e.Type()&fs.ModeSymlink != 0 && errors.Is(err, fs.ErrNotExist) {
				w.fail(child, unknown, "dangling symlink: %s", describeErr(err))
				continue
			}
			w.fail(child, unknown, "%s", describeErr(err))
			continue
		}
		switch {
		case fi.IsDir():
			w.dir(child, fi)
		case isManifestName(name):
			w.file(child, fi)
		}
	}
}

// file reads one regular file, enforcing the size cap.
func (w *walker) file(p string, fi fs.FileInfo) {
	if !fi.Mode().IsRegular() {
		w.fail(p, false, "not a regular file")
		return
	}
	if w.seen[p] {
		return
	}
	w.seen[p] = true
	if fi.Size() > w.maxSize {
		w.tooLarge(p, fi.Size())
		return
	}
	f, err := os.Open(p)
	if err != nil {
		w.errorf(p, "%s", describeErr(err))
		w.files = append(w.files, readFile{path: p, failed: true})
		return
	}
	defer f.Close()
	w.read(p, f, fi.Size())
}

func (w *walker) tooLarge(p string, size int64) {
	if size >= 0 {
		w.errorf(p, "file is too large (%d bytes, limit %d)", size, w.maxSize)
	} else {
		w.errorf(p, "file is too large (limit %d bytes)", w.maxSize)
	}
	w.files = append(w.files, readFile{path: p, failed: true})
}

// read reads r (at most maxSize bytes) and hashes it.
func (w *walker) read(p string, r io.Reader, size int64) {
	capHint := 512
	if size > 0 {
		capHint = int(size) + 1
	}
	buf := make([]byte, 0, capHint)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > w.maxSize {
			w.tooLarge(p, -1)
			return
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			w.errorf(p, "%s", describeErr(err))
			w.files = append(w.files, readFile{path: p, failed: true})
			return
		}
	}
	sum := sha256.Sum256(buf)
	w.files = append(w.files, readFile{path: p, data: buf, hash: hex.EncodeToString(sum[:])})
}

// isManifestName reports whether a directory entry is read as a manifest.
func isManifestName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Skipped reports whether a directory entry is ignored by the walk: hidden
// names and the leftovers of editors and package managers, as kubelet and
// k3s skip them in their manifest directories.
func Skipped(name string) bool {
	switch {
	case strings.HasPrefix(name, "."), // hidden, includes .#emacs locks and .swp
		strings.HasSuffix(name, "~"),
		strings.HasSuffix(name, ".swp"), strings.HasSuffix(name, ".swx"),
		strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"),
		name == "4913", // vim's write test file
		strings.HasSuffix(name, ".bak"), strings.HasSuffix(name, ".orig"),
		strings.HasSuffix(name, ".tmp"),
		strings.Contains(name, ".dpkg-"),
		strings.Contains(name, ".rpm"):
		return true
	}
	return false
}
