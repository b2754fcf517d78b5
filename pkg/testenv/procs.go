package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// shimSocketDir is where containerd 1.6 shims put their sockets, whatever the
// daemon's state dir.
const shimSocketDir = "/run/containerd/s/"

// defaultRuncRoot is the runc shim's state root when the client passed no
// runc Root option; runc state lives in <root>/<namespace>/<id>.
const defaultRuncRoot = "/run/containerd/runc"

// proc is one line of the process table.
type proc struct {
	pid, ppid int
	args      []string
	state     byte
}

// processes reads /proc. Processes that vanish while it reads are skipped;
// an unreadable /proc is an error, never an empty table (which would let
// every leftover check pass).
func processes() (map[int]proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read process table: %w", err)
	}
	out := make(map[int]proc, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProc(pid)
		if ok {
			out[pid] = p
		}
	}
	return out, nil
}

func readProc(pid int) (proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// The command name in parentheses may hold spaces and parentheses;
	// the fields after the last ')' are fixed.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return proc{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return proc{}, false
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return proc{}, false
	}
	p := proc{pid: pid, ppid: ppid, state: fields[0][0]}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		p.args = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	}
	return p, true
}

// references reports whether a command line names this instance: its
// address after -address (how containerd starts shims), or a path inside its
// dirs.
func (c *Containerd) references(args []string) bool {
	for i, a := range args {
		if (a == "-address" || a == "--address") && i+1 < len(args) && args[i+1] == c.Address {
			return true
		}
		if a == "-address="+c.Address || a == "--address="+c.Address {
			return true
		}
		for _, d := range []string{c.Dir, c.sockDir} {
			if d != "" && (a == d || strings.HasPrefix(a, d+"/")) {
				return true
			}
		}
	}
	return false
}

// leftovers returns the processes that reference this instance and all
// their descendants. The caller and pid 1 are never included.
func (c *Containerd) leftovers() ([]int, error) {
	procs, err := processes()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	self := os.Getpid()
	found := map[int]bool{}
	var add func(pid int)
	add = func(pid int) {
		if found[pid] || pid == self || pid <= 1 {
			return
		}
		found[pid] = true
		for _, ch := range children[pid] {
			add(ch)
		}
	}
	for _, p := range procs {
		if c.references(p.args) {
			add(p.pid)
		}
	}
	if c.Running() {
		add(c.PID)
	}
	pids := make([]int, 0, len(found))
	for pid := range found {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids, nil
}

// bundle is one task bundle in the state dir: what is needed to clean up a
// container whose shim is gone.
type bundle struct {
	namespace, id string
	runc          string // runc binary
	runcRoot      string // runc --root, namespace included
	shimSocket    string // a path under shimSocketDir, or ""
}

// bundles lists the task bundles in the state dir; none is no error.
func (c *Containerd) bundles() ([]bundle, error) {
	base := filepath.Join(c.State, "io.containerd.runtime.v2.task")
	nss, err := readDirIfExists(base)
	if err != nil {
		return nil, err
	}
	var out []bundle
	for _, ns := range nss {
		ids, err := readDirIfExists(filepath.Join(base, ns.Name()))
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			dir := filepath.Join(base, ns.Name(), id.Name())
			b := bundle{namespace: ns.Name(), id: id.Name(), runc: "runc",
				runcRoot: filepath.Join(defaultRuncRoot, ns.Name())}
			var opts struct {
				Root       string `json:"root"`
				BinaryName string `json:"binary_name"`
			}
			if data, err := os.ReadFile(filepath.Join(dir, "options.json")); err == nil && json.Unmarshal(data, &opts) == nil {
				if opts.Root != "" {
					b.runcRoot = filepath.Join(opts.Root, ns.Name())
				}
				if opts.BinaryName != "" {
					b.runc = opts.BinaryName
				}
			}
			if addr, err := os.ReadFile(filepath.Join(dir, "address")); err == nil {
				p := strings.TrimPrefix(strings.TrimSpace(string(addr)), "unix://")
				if strings.HasPrefix(filepath.Clean(p), shimSocketDir) {
					b.shimSocket = filepath.Clean(p)
				}
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// readDirIfExists is os.ReadDir with a missing dir read as empty.
func readDirIfExists(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	return ents, nil
}

// reapShims ends the shims of this instance and the containers under them,
// and removes the runc state and shim sockets they leave. Only processes
// whose command line references this instance, and their descendants, are
// signalled.
func (c *Containerd) reapShims() error {
	var errs []error
	pids, err := c.leftovers()
	if err != nil {
		errs = append(errs, err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	// runc delete --force kills what is left in a container's cgroup (its
	// own children included), removes that cgroup and the runc state; a
	// leftover state dir would make the next container with the same
	// namespace and id fail to create.
	bundles, err := c.bundles()
	if err != nil {
		errs = append(errs, err)
	}
	for _, b := range bundles {
		state := filepath.Join(b.runcRoot, b.id)
		if _, err := os.Stat(state); err == nil {
			out, err := exec.Command(b.runc, "--root", b.runcRoot, "delete", "--force", b.id).CombinedOutput()
			if _, serr := os.Stat(state); err != nil && serr == nil {
				errs = append(errs, fmt.Errorf("runc delete %s/%s: %w: %s", b.namespace, b.id, err, bytes.TrimSpace(out)))
			}
		}
		os.Remove(b.runcRoot) // only if empty: see Stop
		if b.shimSocket != "" {
			if err := os.Remove(b.shimSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove shim socket: %w", err))
			}
		}
	}
	if left := waitGone(pids, 5*time.Second); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes still running after SIGKILL: %v", left))
	}
	return errors.Join(errs...)
}

// waitGone waits until none of pids is alive (zombies count as gone: their
// parent, not us, reaps them) and returns those still alive at the deadline.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if p, ok := readProc(pid); ok && p.state != 'Z' && p.state != 'X' {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mounts returns the mount points listed in /proc/self/mountinfo.
func mounts() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMount(fields[4]))
	}
	return out, nil
}

// unescapeMount decodes the octal escapes (\040 for space, ...) the kernel
// uses in mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountsUnder returns the mount points at or below dir, deepest first.
func MountsUnder(dir string) ([]string, error) {
	all, err := mounts()
	if err != nil {
		return nil, err
	}
	roots := []string{filepath.Clean(dir)}
	if real, err := filepath.EvalSymlinks(dir); err == nil && real != roots[0] {
		roots = append(roots, real)
	}
	var out []string
	for _, m := range all {
		for _, r := range roots {
			if m == r || strings.HasPrefix(m, r+"/") {
				out = append(out, m)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
		if di != dj {
			return di > dj
		}
		return out[i] > out[j]
	})
	return out, nil
}

// unmountUnder lazily unmounts every mount at or below dir, deepest first.
// Nothing outside dir is touched.
func unmountUnder(dir string) error {
	ms, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}
