package ctr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup2"
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

// Cgroups manages groups in one cgroup v2 mount through containerd's
// cgroup2 library. Group paths are absolute within the mount
// ("/kukeon/lab/web"); nothing outside a given group is written except the
// ancestors' cgroup.subtree_control, for delegation. Every write is
// preceded by a read that shows it is needed, so a converged host gets
// none. It is safe for concurrent use on distinct groups.
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
	return &Cgroups{mountpoint: filepath.Clean(mountpoint)}, nil
}

// Mountpoint returns the cgroup2 mount path.
func (g *Cgroups) Mountpoint() string { return g.mountpoint }

// Writes counts the interface-file writes made so far, one per
// cgroup.subtree_control written by Ensure and one per file written by
// Write (for idempotence tests: a converged Ensure writes nothing).
func (g *Cgroups) Writes() int64 { return g.writes.Load() }

func (g *Cgroups) dir(group string) string {
	return filepath.Join(g.mountpoint, path.Clean("/"+group))
}

// manager returns the library's manager of group (a clean absolute path).
// Loading touches nothing on disk.
func (g *Cgroups) manager(group string) (*cgroup2.Manager, error) {
	m, err := cgroup2.Load(group, cgroup2.WithMountpoint(g.mountpoint))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", group, err)
	}
	return m, nil
}

// notFound maps a missing file or directory of group to ErrNotFound.
func notFound(op, group string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%scgroup %s: %w", op, group, ErrNotFound)
	}
	return fmt.Errorf("%scgroup %s: %w", op, group, err)
}

// Available returns the controllers the mount root offers.
func (g *Cgroups) Available() ([]string, error) {
	m, err := g.manager("/")
	if err != nil {
		return nil, err
	}
	ctrls, err := m.RootControllers()
	if err != nil {
		return nil, notFound("read cgroup.controllers of ", "/", err)
	}
	return ctrls, nil
}

// readList reads a space-separated interface file the library has no
// reader for (cgroup.subtree_control).
func (g *Cgroups) readList(group, file string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(g.dir(group), file))
	if err != nil {
		return nil, notFound("read "+file+" of ", group, err)
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
	if err := g.create(group); err != nil {
		return nil, nil, err
	}
	for _, lvl := range levels(group) {
		m, err := g.manager(lvl)
		if err != nil {
			return nil, nil, err
		}
		offered, err := m.Controllers()
		if err != nil {
			return nil, nil, notFound("read cgroup.controllers of ", lvl, err)
		}
		enabled, err := g.readList(lvl, "cgroup.subtree_control")
		if err != nil {
			return nil, nil, err
		}
		var add []string
		for _, w := range want {
			if contains(offered, w) && !contains(enabled, w) && !contains(add, w) {
				add = append(add, w)
			}
		}
		if len(add) == 0 {
			continue
		}
		if err := g.delegate(lvl, add); err != nil {
			tokens := "+" + strings.Join(add, " +")
			if errors.Is(err, syscall.EBUSY) {
				return nil, nil, fmt.Errorf("delegate %s in cgroup %s: the group holds processes (no-internal-process rule): %w", tokens, lvl, err)
			}
			return nil, nil, fmt.Errorf("delegate %s in cgroup %s: %w", tokens, lvl, err)
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

// create makes group and its parents. cgroup2.NewManager is not used: it
// writes cgroup.subtree_control of every ancestor even when nothing is
// missing; NewChild without resources only makes the directories.
func (g *Cgroups) create(group string) error {
	if group == "/" {
		return nil
	}
	root, err := g.manager("/")
	if err != nil {
		return err
	}
	if _, err := root.NewChild(strings.TrimPrefix(group, "/"), nil); err != nil {
		return fmt.Errorf("create cgroup %s: %w", group, err)
	}
	return nil
}

// levels returns "/" and every ancestor of group, then group, top down.
func levels(group string) []string {
	out := []string{"/"}
	if group == "/" {
		return out
	}
	parts := strings.Split(strings.TrimPrefix(group, "/"), "/")
	for i := range parts {
		out = append(out, "/"+strings.Join(parts[:i+1], "/"))
	}
	return out
}

// delegate enables ctrls in the cgroup.subtree_control of level, and in no
// other file. Hazard: Manager.ToggleControllers writes into the
// subtree_control of every ancestor of its group below its mountpoint,
// whether the controller is enabled there or not; a manager mounted at
// level itself, for a placeholder child that need not exist, confines it
// to level's one file.
func (g *Cgroups) delegate(level string, ctrls []string) error {
	m, err := cgroup2.Load("/child", cgroup2.WithMountpoint(g.dir(level)))
	if err != nil {
		return err
	}
	g.writes.Add(1)
	return m.ToggleControllers(ctrls, cgroup2.Enable)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
// map. A missing group is an error matching ErrNotFound. The library reads
// only whole stat structures, so the files are read here.
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

// Procs returns the PIDs directly in group (not in its children). A
// missing group is an error matching ErrNotFound.
func (g *Cgroups) Procs(group string) ([]int, error) {
	group = path.Clean("/" + group)
	m, err := g.manager(group)
	if err != nil {
		return nil, err
	}
	pids, err := m.Procs(false)
	if err != nil {
		return nil, notFound("read cgroup.procs of ", group, err)
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out, nil
}

// Remove removes group and every group below it, deepest first. A missing
// group is not an error. A group that still holds processes makes rmdir
// fail with EBUSY: the error matches ErrNotEmpty and names that group.
func (g *Cgroups) Remove(group string) error {
	group = path.Clean("/" + group)
	if group == "/" {
		return errors.New("remove cgroup /: refusing to remove the mount root")
	}
	var groups []string
	err := filepath.WalkDir(g.dir(group), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			groups = append(groups, "/"+strings.TrimPrefix(strings.TrimPrefix(p, g.mountpoint), "/"))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", group, err)
	}
	// Deeper groups first: rmdir of a cgroup needs its children gone.
	sort.Slice(groups, func(i, j int) bool {
		return strings.Count(groups[i], "/") > strings.Count(groups[j], "/")
	})
	for _, name := range groups {
		if err := g.delete(name); err != nil {
			return fmt.Errorf("remove cgroup %s: %w", group, err)
		}
	}
	return nil
}

// delete removes one group that has no children left. Its processes are
// checked first: Manager.Delete refuses a group with tasks with an error
// that wraps nothing. When Delete fails anyway, one rmdir tells why:
// Delete removes through os.RemoveAll, whose error is the last interface
// file it could not unlink, not rmdir's EBUSY (a process that arrived since
// the check, or one the kernel is still releasing).
func (g *Cgroups) delete(name string) error {
	busy := fmt.Errorf("%s still holds processes: %w", name, ErrNotEmpty)
	pids, err := g.Procs(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return busy
	}
	m, err := g.manager(name)
	if err != nil {
		return err
	}
	derr := m.Delete()
	if derr == nil {
		return nil
	}
	switch err := unix.Rmdir(g.dir(name)); {
	case err == nil || errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY):
		return busy
	}
	return fmt.Errorf("rmdir %s: %w", name, derr)
}
