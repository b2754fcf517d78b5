package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// cgroupFS is where cgroup hierarchies are mounted, on pure v2 and hybrid
// hosts alike.
const cgroupFS = "/sys/fs/cgroup"

// UnifiedMount returns the cgroup v2 mount point: /sys/fs/cgroup when it is
// cgroup2 (a pure v2 host), else /sys/fs/cgroup/unified (a hybrid host). The
// error says neither is cgroup2.
func UnifiedMount() (string, error) {
	for _, p := range []string{cgroupFS, filepath.Join(cgroupFS, "unified")} {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup2 mount at %s or %s/unified", cgroupFS, cgroupFS)
}

// cgroupMounts returns every cgroup (v1) and cgroup2 mount point at or below
// /sys/fs/cgroup: the places runc may have created a container's path in.
func cgroupMounts() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		// Fields after " - " are: fstype source options.
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 1 || (tail[0] != "cgroup" && tail[0] != "cgroup2") {
			continue
		}
		mp := unescapeMount(fields[4])
		if (mp == cgroupFS || strings.HasPrefix(mp, cgroupFS+"/")) && !seen[mp] {
			seen[mp] = true
			out = append(out, mp)
		}
	}
	sort.Strings(out)
	return out, nil
}

// CgroupRoot returns a fresh cgroup path /kukeon-it-<8 hex> for the test and
// registers a cleanup that removes it, with RemoveCgroupTree, from the unified
// hierarchy and every v1 hierarchy runc created it in. The path is not created.
// A cgroup that cannot be removed at cleanup (still holding processes: a
// leak) is kept and fails the test. Call CgroupRoot before Start, since
// cleanups run last-in first-out and Stop is what ends containers a test
// left running.
func CgroupRoot(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("cgroup root: %v", err)
	}
	root := "/kukeon-it-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if err := RemoveCgroupTree(root); err != nil {
			t.Errorf("cgroup root %s left behind: %v", root, err)
		}
	})
	return root
}

// BusyError reports cgroups that could not be removed because processes are
// still in them.
type BusyError struct {
	Path string // directory in a mounted hierarchy
	PIDs []string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("cgroup %s still has processes %s", e.Path, strings.Join(e.PIDs, " "))
}

// RemoveCgroupTree removes the cgroup root (a path such as /kukeon-it-1a2b3c4d,
// relative to each hierarchy's mount point) and everything below it from every
// cgroup hierarchy mounted under /sys/fs/cgroup, deepest first, with rmdir
// only: nothing outside root is touched and no file is written. A cgroup that
// still holds processes is kept, as are its ancestors, and reported as a
// *BusyError in the returned error. A root that exists nowhere is no error.
//
// Hazard: root must be a tree this caller owns; "/" and relative paths are
// refused.
func RemoveCgroupTree(root string) error {
	clean := filepath.Clean(root)
	if !filepath.IsAbs(root) || clean == "/" || clean != root {
		return fmt.Errorf("remove cgroup tree %q: want a clean absolute path below /", root)
	}
	mps, err := cgroupMounts()
	if err != nil {
		return fmt.Errorf("remove cgroup tree %s: %w", root, err)
	}
	var errs []error
	for _, mp := range mps {
		if err := removeTree(filepath.Join(mp, root)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree rmdirs dir and its subdirectories, children before parents:
// the kernel refuses rmdir of a cgroup with children or processes (EBUSY).
func removeTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
		return fmt.Errorf("walk %s: %w", dir, err)
	}
	sort.Slice(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	var errs []error
	kept := map[string]bool{} // dirs kept because a descendant is busy
	for _, d := range dirs {
		if kept[d] {
			kept[filepath.Dir(d)] = true
			continue
		}
		err := unix.Rmdir(d)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		kept[filepath.Dir(d)] = true
		if pids := cgroupPIDs(d); len(pids) > 0 {
			errs = append(errs, &BusyError{Path: d, PIDs: pids})
			continue
		}
		errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
	}
	return errors.Join(errs...)
}

func cgroupPIDs(dir string) []string {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}
