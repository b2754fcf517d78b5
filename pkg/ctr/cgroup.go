package ctr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// DetectMountpoint returns the unified (v2) cgroup mountpoint:
// /sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
// A v1-only host is an error: the reconciler needs the unified hierarchy.
func DetectMountpoint() (string, error) {
	return detectMountpoint([]string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"})
}

// detectMountpoint returns the first candidate that is a cgroup2 mount.
func detectMountpoint(candidates []string) (string, error) {
	for _, p := range candidates {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 mount at %s: the host is cgroup v1 only and the reconciler needs the unified hierarchy",
		strings.Join(candidates, " or "))
}

// Cgroups manages groups in one cgroup v2 mount. Group paths are absolute
// within the mount ("/kukeon/lab/web"); nothing outside a given group is
// written except the ancestors' cgroup.subtree_control, for delegation.
// It is safe for concurrent use on distinct groups.
type Cgroups struct {
	mountpoint string
	writes     atomic.Int64
}

// NewCgroups returns a manager for the cgroup v2 mount at mountpoint ("" =
// DetectMountpoint). It fails if mountpoint is not a cgroup2 mount.
func NewCgroups(mountpoint string) (*Cgroups, error) {
	if mountpoint == "" {
		mp, err := DetectMountpoint()
		if err != nil {
			return nil, err
		}
		mountpoint = mp
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mountpoint, &st); err != nil {
		return nil, fmt.Errorf("cgroup mountpoint %s: %w", mountpoint, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("cgroup mountpoint %s: not a cgroup2 filesystem", mountpoint)
	}
	return &Cgroups{mountpoint: mountpoint}, nil
}

// Mountpoint returns the cgroup2 mount path.
func (g *Cgroups) Mountpoint() string { return g.mountpoint }

// Writes counts the interface-file writes made so far (for idempotence
// tests: a converged Ensure writes nothing).
func (g *Cgroups) Writes() int64 { return g.writes.Load() }

func (g *Cgroups) dir(group string) string {
	return filepath.Join(g.mountpoint, path.Clean("/"+group))
}

// Available returns the controllers the mount root offers.
func (g *Cgroups) Available() ([]string, error) {
	return g.readList("/", "cgroup.controllers")
}

func (g *Cgroups) readList(group, file string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(g.dir(group), file))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cgroup %s: %w", group, ErrNotFound)
		}
		return nil, fmt.Errorf("read %s of cgroup %s: %w", file, group, err)
	}
	return strings.Fields(string(b)), nil
}

// Ensure creates group (with parents) and delegates the wanted controllers:
// at every level from the mount root down to and including group, each
// wanted controller the level offers (its cgroup.controllers) and has not
// enabled yet is added to its cgroup.subtree_control, in one write per
// level. Nothing is ever disabled, and a converged hierarchy gets no
// writes. It returns the controllers group's subtree_control shows
// afterwards (effective) and want minus those (missing), both sorted.
// Hazard: the no-internal-process rule makes the kernel refuse (EBUSY) to
// enable controllers in a non-root group that holds processes; the error
// names that group.
func (g *Cgroups) Ensure(group string, want []string) (effective, missing []string, err error) {
	group = path.Clean("/" + group)
	if err := os.MkdirAll(g.dir(group), 0o755); err != nil {
		return nil, nil, fmt.Errorf("create cgroup %s: %w", group, err)
	}
	levels := []string{"/"}
	if group != "/" {
		parts := strings.Split(strings.TrimPrefix(group, "/"), "/")
		for i := range parts {
			levels = append(levels, "/"+strings.Join(parts[:i+1], "/"))
		}
	}
	for _, lvl := range levels {
		offered, err := g.readList(lvl, "cgroup.controllers")
		if err != nil {
			return nil, nil, err
		}
		enabled, err := g.readList(lvl, "cgroup.subtree_control")
		if err != nil {
			return nil, nil, err
		}
		var add []string
		for _, w := range want {
			if contains(offered, w) && !contains(enabled, w) && !contains(add, "+"+w) {
				add = append(add, "+"+w)
			}
		}
		if len(add) == 0 {
			continue
		}
		if err := g.writeFile(lvl, "cgroup.subtree_control", strings.Join(add, " ")); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				return nil, nil, fmt.Errorf("delegate %s in cgroup %s: the group holds processes (no-internal-process rule): %w", strings.Join(add, " "), lvl, err)
			}
			return nil, nil, fmt.Errorf("delegate %s in cgroup %s: %w", strings.Join(add, " "), lvl, err)
		}
	}
	effective, err = g.readList(group, "cgroup.subtree_control")
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(effective)
	for _, w := range want {
		if !contains(effective, w) && !contains(missing, w) {
			missing = append(missing, w)
		}
	}
	sort.Strings(missing)
	return effective, missing, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (g *Cgroups) writeFile(group, file, value string) error {
	f, err := os.OpenFile(filepath.Join(g.dir(group), file), os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write %s of cgroup %s: %w", file, group, ErrNotFound)
		}
		return fmt.Errorf("write %s of cgroup %s: %w", file, group, err)
	}
	g.writes.Add(1)
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s of cgroup %s: %w", file, group, err)
	}
	return nil
}

// Exists reports whether group exists.
func (g *Cgroups) Exists(group string) (bool, error) {
	st, err := os.Stat(g.dir(group))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cgroup %s: %w", group, err)
	}
	return st.IsDir(), nil
}

// Read returns the trimmed content of the named interface files of group.
// Files that do not exist (a controller not enabled) are absent from the
// map. A missing group is an error matching ErrNotFound.
func (g *Cgroups) Read(group string, files []string) (map[string]string, error) {
	if ok, err := g.Exists(group); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("cgroup %s: %w", group, ErrNotFound)
	}
	out := make(map[string]string, len(files))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(g.dir(group), f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s of cgroup %s: %w", f, group, err)
		}
		out[f] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// Write writes each value to its file of group, once each, in order. It
// stops at the first failure, whose error names file and group; a file (or
// group) that does not exist is an error matching ErrNotFound.
func (g *Cgroups) Write(group string, fv []FileValue) error {
	for _, x := range fv {
		if err := g.writeFile(group, x.File, x.Value); err != nil {
			return err
		}
	}
	return nil
}

// Procs returns the PIDs directly in group (not in its children).
func (g *Cgroups) Procs(group string) ([]int, error) {
	fields, err := g.readList(group, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(fields))
	for _, f := range fields {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Remove removes group and every group below it, deepest first. A missing
// group is not an error. A group that still holds processes makes rmdir
// fail with EBUSY: the error matches ErrNotEmpty and names that group.
func (g *Cgroups) Remove(group string) error {
	group = path.Clean("/" + group)
	if group == "/" {
		return errors.New("remove cgroup /: refusing to remove the mount root")
	}
	root := g.dir(group)
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", group, err)
	}
	// Deeper paths first; rmdir of a cgroup needs its children gone.
	sort.Slice(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	for _, d := range dirs {
		err := unix.Rmdir(d)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		name := "/" + strings.TrimPrefix(strings.TrimPrefix(d, g.mountpoint), "/")
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %s still holds processes: %w", group, name, ErrNotEmpty)
		}
		return fmt.Errorf("remove cgroup %s: rmdir %s: %w", group, name, err)
	}
	return nil
}
