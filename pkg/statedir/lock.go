// Package statedir guards a reconciler state directory against two
// reconcilers converging one host at once: two passes creating the same
// snapshots and tasks fail each other halfway and leave half-created cells.
package statedir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is matched (errors.Is) by the error of Lock when another
// process holds the state dir.
var ErrLocked = errors.New("state dir is locked")

// FileName is the lock file inside the state dir.
const FileName = "lock"

// pollInterval is how often Lock retries while it waits.
const pollInterval = 100 * time.Millisecond

// Holder is what the lock file says about the process holding the lock.
type Holder struct {
	PID int `json:"pid"`
	// Name says what the holder is: "reconciler daemon", "reconciler --once".
	Name string `json:"name"`
	// Since is when it took the lock, UTC, whole seconds.
	Since time.Time `json:"since"`
}

// LockedError is the error of Lock when another process holds the lock.
// It matches ErrLocked, and the context's error when Lock gave up waiting
// because its context ended.
type LockedError struct {
	Dir string
	// Holder is nil when the lock file could not be read or parsed: the
	// holder has not written it yet, or it is not a reconciler.
	Holder *Holder
	// Waited is how long Lock waited; 0 when it was told not to.
	Waited time.Duration
	// Err is the context's error when the wait was cut short.
	Err error
}

func (e *LockedError) Error() string {
	by := "another process"
	if h := e.Holder; h != nil {
		by = fmt.Sprintf("pid %d (%s since %s)", h.PID, h.Name, h.Since.Format(time.RFC3339))
	}
	msg := fmt.Sprintf("state dir %s is locked by %s", e.Dir, by)
	if e.Waited > 0 {
		msg += " after waiting " + e.Waited.String()
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *LockedError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrLocked, e.Err}
	}
	return []error{ErrLocked}
}

// Held is the exclusive lock on a state dir that Lock took, held until
// Unlock or the end of the process: it is a flock(2) on <dir>/lock, which
// the kernel releases when the holder dies, however it dies. Keep the Held
// reachable while the lock is to be held: its file is closed, and the lock
// released, when it is garbage collected.
type Held struct {
	f        *os.File
	writable bool
	// WriteErr is set when the lock is held but its holder could not be
	// written into the lock file (a full or read-only state dir).
	WriteErr error
}

// Lock takes the exclusive lock on dir, creating dir (0700) and its lock
// file (0600) when missing, and writes holder, the process ID and the time
// into the lock file. holder says what the caller is ("reconciler daemon").
//
// When another process holds the lock, Lock returns an error matching
// ErrLocked (a *LockedError naming the holder as its lock file says) at
// once when wait is 0; otherwise it retries every 100 ms until the lock is
// free, wait has elapsed or ctx ends. Other errors (dir or file not
// creatable) name the path and do not match ErrLocked.
func Lock(ctx context.Context, dir string, holder string, wait time.Duration) (*Held, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	// Hazard: the file is never removed or replaced, by Unlock or anyone: a
	// taker that opened the old file would lock an inode nobody else sees.
	// os.OpenFile sets O_CLOEXEC, so children never inherit the lock.
	writable := true
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, unix.EROFS) {
		// A read-only state dir must still exclude a second reconciler
		// (which then fails loudly on the state, not on the lock):
		// flock works on a read-only descriptor of the existing file.
		writable = false
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	start := time.Now()
	deadline := start.Add(wait)
	for {
		err := flock(f, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		remaining := time.Until(deadline)
		if wait <= 0 || remaining <= 0 {
			e := &LockedError{Dir: dir, Holder: readHolder(f), Waited: wait}
			f.Close()
			return nil, e
		}
		t := time.NewTimer(min(pollInterval, remaining))
		select {
		case <-ctx.Done():
			t.Stop()
			e := &LockedError{Dir: dir, Holder: readHolder(f), Waited: time.Since(start).Round(time.Millisecond), Err: ctx.Err()}
			f.Close()
			return nil, e
		case <-t.C:
		}
	}
	l := &Held{f: f, writable: writable}
	h := Holder{PID: os.Getpid(), Name: holder, Since: time.Now().UTC().Truncate(time.Second)}
	if !writable {
		l.WriteErr = fmt.Errorf("write lock file %s: %w", path, unix.EROFS)
	} else if err := l.write(h); err != nil {
		// The lock is held all the same; only its holder cannot be named
		// (a full disk). The caller says so and goes on: the pass fails
		// loudly on the state it cannot write.
		l.WriteErr = fmt.Errorf("write lock file %s: %w", path, err)
	}
	return l, nil
}

// write replaces the lock file's content with h. A taker that fails to
// lock meanwhile may read it empty or half-written, and says "another
// process".
func (l *Held) write(h Holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return err
	}
	return l.f.Sync()
}

// Unlock empties the lock file and releases the lock. Emptying it first
// keeps a later taker that fails against the next holder from naming this
// one. Unlock of a released Held does nothing and returns nil.
func (l *Held) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	var errs []error
	if l.writable {
		if err := f.Truncate(0); err != nil {
			errs = append(errs, fmt.Errorf("empty lock file: %w", err))
		}
	}
	if err := flock(f, unix.LOCK_UN); err != nil {
		errs = append(errs, fmt.Errorf("unlock %s: %w", f.Name(), err))
	}
	if err := f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close lock file: %w", err))
	}
	return errors.Join(errs...)
}

// flock calls flock(2) on f, retrying when a signal interrupts it.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// readHolder reads the holder from the lock file open as f, or returns nil
// when it is empty, unreadable or not what Lock writes.
func readHolder(f *os.File) *Holder {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 4096))
	if err != nil || len(b) == 0 {
		return nil
	}
	var h Holder
	if err := json.Unmarshal(b, &h); err != nil || h.PID <= 0 || h.Name == "" {
		return nil
	}
	return &h
}
