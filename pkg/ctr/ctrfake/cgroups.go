package ctrfake

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// controllerFiles are the interface files (with kernel defaults) a group
// shows for each controller its parent delegates to it.
var controllerFiles = map[string]map[string]string{
	"cpu":    {"cpu.weight": "100", "cpu.weight.nice": "0", "cpu.max": "max 100000"},
	"cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "", "cpuset.mems.effective": ""},
	"memory": {"memory.min": "0", "memory.low": "0", "memory.high": "max", "memory.max": "max", "memory.swap.max": "max",
		"memory.current": "0", "memory.swap.current": "0", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0"},
	"io":      {"io.weight": "default 100", "io.max": "", "io.stat": ""},
	"pids":    {"pids.max": "max", "pids.current": "0"},
	"hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0"},
	"rdma":    {"rdma.max": "", "rdma.current": ""},
	"misc":    {"misc.max": "", "misc.current": ""},
}

// coreFiles exist in every non-root group (cpu.stat too: the kernel
// accounts CPU time without the cpu controller).
var coreFiles = map[string]string{
	"cgroup.max.descendants": "max", "cgroup.max.depth": "max", "cgroup.type": "domain",
	"cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0",
	"cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0",
}

// Cgroups is an in-memory cgroup v2 mount that models delegation (a
// group's controllers are its parent's subtree_control), per-controller
// interface files, the no-internal-process rule and EBUSY on rmdir.
type Cgroups struct {
	mu        sync.Mutex
	mount     string
	available []string
	groups    map[string]*group
	writes    int64
	calls     map[string]int
	fail      map[string]error
}

type group struct {
	subtree []string
	files   map[string]string // values written or set; defaults otherwise
	procs   []int
}

// NewCgroups returns a fake mount whose root offers available controllers.
func NewCgroups(available ...string) *Cgroups {
	return &Cgroups{
		mount:     "/fake/cgroup",
		available: slices.Sorted(slices.Values(available)),
		groups:    map[string]*group{"/": {files: map[string]string{}}},
		calls:     map[string]int{},
		fail:      map[string]error{},
	}
}

func clean(g string) string { return path.Clean("/" + g) }

// Mountpoint returns a fixed fake path.
func (f *Cgroups) Mountpoint() string { return f.mount }

// Writes counts interface-file writes.
func (f *Cgroups) Writes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// Calls returns how many times each mutating method was called.
func (f *Cgroups) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

// FailNext makes the next call of method (e.g. "Write") return err.
func (f *Cgroups) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *Cgroups) enter(method string, mutating bool) error {
	if mutating {
		f.calls[method]++
	}
	if err, ok := f.fail[method]; ok {
		delete(f.fail, method)
		return err
	}
	return nil
}

// SetFile sets an interface file of an existing group behind the
// reconciler's back (drift), creating the file if needed.
func (f *Cgroups) SetFile(g, file, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if grp, ok := f.groups[clean(g)]; ok {
		grp.files[file] = value
	}
}

// SetProcs puts pids directly in group g (creating it), as a runtime would.
func (f *Cgroups) SetProcs(g string, pids ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mkdirAll(clean(g))
	f.groups[clean(g)].procs = slices.Clone(pids)
}

// ProcessExited removes pid from whatever group holds it.
func (f *Cgroups) ProcessExited(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.groups {
		g.procs = slices.DeleteFunc(g.procs, func(p int) bool { return p == pid })
	}
}

// Available returns the root's controllers.
func (f *Cgroups) Available() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Available", false); err != nil {
		return nil, err
	}
	return slices.Clone(f.available), nil
}

// controllers is what group g offers: the root's set, or the parent's
// subtree_control.
func (f *Cgroups) controllers(g string) []string {
	if g == "/" {
		return f.available
	}
	return f.groups[path.Dir(g)].subtree
}

func (f *Cgroups) mkdirAll(g string) {
	if _, ok := f.groups[g]; ok || g == "/" {
		return
	}
	f.mkdirAll(path.Dir(g))
	f.groups[g] = &group{files: map[string]string{}}
}

// Ensure behaves as ctr.Cgroups.Ensure.
func (f *Cgroups) Ensure(g string, want []string) (effective, missing []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Ensure", true); err != nil {
		return nil, nil, err
	}
	g = clean(g)
	f.mkdirAll(g)
	levels := []string{"/"}
	if g != "/" {
		parts := strings.Split(strings.TrimPrefix(g, "/"), "/")
		for i := range parts {
			levels = append(levels, "/"+strings.Join(parts[:i+1], "/"))
		}
	}
	for _, lvl := range levels {
		grp := f.groups[lvl]
		var add []string
		for _, w := range want {
			if slices.Contains(f.controllers(lvl), w) && !slices.Contains(grp.subtree, w) && !slices.Contains(add, w) {
				add = append(add, w)
			}
		}
		if len(add) == 0 {
			continue
		}
		f.writes++
		if lvl != "/" && len(grp.procs) > 0 {
			return nil, nil, fmt.Errorf("delegate +%s in cgroup %s: the group holds processes (no-internal-process rule): device or resource busy", strings.Join(add, " +"), lvl)
		}
		grp.subtree = slices.Sorted(slices.Values(append(grp.subtree, add...)))
	}
	effective = slices.Clone(f.groups[g].subtree)
	for _, w := range want {
		if !slices.Contains(effective, w) && !slices.Contains(missing, w) {
			missing = append(missing, w)
		}
	}
	sort.Strings(missing)
	return effective, missing, nil
}

// Exists reports whether group g exists.
func (f *Cgroups) Exists(g string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Exists", false); err != nil {
		return false, err
	}
	_, ok := f.groups[clean(g)]
	return ok, nil
}

// file returns the content of file in group g and whether it exists.
func (f *Cgroups) file(g, file string) (string, bool) {
	grp := f.groups[g]
	switch file {
	case "cgroup.controllers":
		return strings.Join(f.controllers(g), " "), true
	case "cgroup.subtree_control":
		return strings.Join(grp.subtree, " "), true
	case "cgroup.procs":
		s := make([]string, len(grp.procs))
		for i, p := range grp.procs {
			s[i] = strconv.Itoa(p)
		}
		return strings.Join(s, "\n"), true
	}
	if v, ok := grp.files[file]; ok {
		return v, true
	}
	if g == "/" {
		return "", false
	}
	if file == "pids.current" && slices.Contains(f.controllers(g), "pids") {
		n := 0
		for name, o := range f.groups {
			if name == g || strings.HasPrefix(name, g+"/") {
				n += len(o.procs)
			}
		}
		return strconv.Itoa(n), true
	}
	if v, ok := coreFiles[file]; ok {
		return v, true
	}
	ctrl, _, _ := strings.Cut(file, ".")
	if slices.Contains(f.controllers(g), ctrl) {
		v, ok := controllerFiles[ctrl][file]
		return v, ok
	}
	return "", false
}

// Read behaves as ctr.Cgroups.Read.
func (f *Cgroups) Read(g string, files []string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Read", false); err != nil {
		return nil, err
	}
	g = clean(g)
	if _, ok := f.groups[g]; !ok {
		return nil, fmt.Errorf("cgroup %s: %w", g, ctr.ErrNotFound)
	}
	out := map[string]string{}
	for _, file := range files {
		if v, ok := f.file(g, file); ok {
			out[file] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// Write behaves as ctr.Cgroups.Write. Writing cgroup.procs moves a PID
// here; cgroup.subtree_control takes "+ctrl" and "-ctrl" tokens.
func (f *Cgroups) Write(g string, fv []ctr.FileValue) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Write", true); err != nil {
		return err
	}
	g = clean(g)
	grp, ok := f.groups[g]
	if !ok {
		return fmt.Errorf("cgroup %s: %w", g, ctr.ErrNotFound)
	}
	for _, x := range fv {
		if _, ok := f.file(g, x.File); !ok {
			return fmt.Errorf("write %s of cgroup %s: %w", x.File, g, ctr.ErrNotFound)
		}
		f.writes++
		switch x.File {
		case "cgroup.procs":
			pid, err := strconv.Atoi(strings.TrimSpace(x.Value))
			if err != nil {
				return fmt.Errorf("write %s of cgroup %s: invalid argument", x.File, g)
			}
			if g != "/" && len(grp.subtree) > 0 {
				return fmt.Errorf("write %s of cgroup %s: device or resource busy", x.File, g)
			}
			for _, o := range f.groups {
				o.procs = slices.DeleteFunc(o.procs, func(p int) bool { return p == pid })
			}
			grp.procs = append(grp.procs, pid)
		case "cgroup.subtree_control":
			for _, tok := range strings.Fields(x.Value) {
				name := tok[1:]
				switch {
				case tok[0] == '+' && slices.Contains(f.controllers(g), name):
					if g != "/" && len(grp.procs) > 0 {
						return fmt.Errorf("write %s of cgroup %s: device or resource busy", x.File, g)
					}
					if !slices.Contains(grp.subtree, name) {
						grp.subtree = slices.Sorted(slices.Values(append(grp.subtree, name)))
					}
				case tok[0] == '-':
					grp.subtree = slices.DeleteFunc(grp.subtree, func(s string) bool { return s == name })
				default:
					return fmt.Errorf("write %s of cgroup %s: %w", x.File, g, ctr.ErrNotFound)
				}
			}
		case "cgroup.controllers":
			return fmt.Errorf("write %s of cgroup %s: permission denied", x.File, g)
		default:
			grp.files[x.File] = strings.TrimSpace(x.Value)
		}
	}
	return nil
}

// Procs returns the PIDs directly in group g.
func (f *Cgroups) Procs(g string) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Procs", false); err != nil {
		return nil, err
	}
	grp, ok := f.groups[clean(g)]
	if !ok {
		return nil, fmt.Errorf("cgroup %s: %w", clean(g), ctr.ErrNotFound)
	}
	return slices.Clone(grp.procs), nil
}

// Remove behaves as ctr.Cgroups.Remove.
func (f *Cgroups) Remove(g string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Remove", true); err != nil {
		return err
	}
	g = clean(g)
	if g == "/" {
		return fmt.Errorf("remove cgroup /: refusing to remove the mount root")
	}
	var sub []string
	for name := range f.groups {
		if name == g || strings.HasPrefix(name, g+"/") {
			sub = append(sub, name)
		}
	}
	sort.Slice(sub, func(i, j int) bool {
		if di, dj := strings.Count(sub[i], "/"), strings.Count(sub[j], "/"); di != dj {
			return di > dj
		}
		return sub[i] < sub[j]
	})
	for _, name := range sub {
		if len(f.groups[name].procs) > 0 {
			return fmt.Errorf("remove cgroup %s: %s still holds processes: %w", g, name, ctr.ErrNotEmpty)
		}
		delete(f.groups, name)
	}
	return nil
}

// Stat behaves as ctr.Cgroups.Stat, from the group's files: SetFile drives
// it (memory.current, cpu.stat, io.stat, ...), and pids.current counts the
// processes of the subtree unless set. A value set that does not parse is
// an error naming the file.
func (f *Cgroups) Stat(g string) (ctr.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Stat", false); err != nil {
		return ctr.Usage{}, err
	}
	g = clean(g)
	if _, ok := f.groups[g]; !ok {
		return ctr.Usage{}, fmt.Errorf("stat cgroup %s: %w", g, ctr.ErrNotFound)
	}
	var u ctr.Usage
	var errs []error
	parse := func(file, s string) uint64 {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("stat cgroup %s: %s: %w", g, file, err))
		}
		return n
	}
	single := func(file string) uint64 {
		if v, ok := f.file(g, file); ok {
			return parse(file, strings.TrimSpace(v))
		}
		return 0
	}
	keyed := func(file string, keys map[string]*uint64) {
		v, _ := f.file(g, file)
		for _, line := range strings.Split(v, "\n") {
			if k, val, ok := strings.Cut(strings.TrimSpace(line), " "); ok && keys[k] != nil {
				*keys[k] = parse(file, val)
			}
		}
	}
	u.MemoryBytes = single("memory.current")
	u.SwapBytes = single("memory.swap.current")
	u.Pids = single("pids.current")
	keyed("memory.events", map[string]*uint64{"oom_kill": &u.OOMKills})
	keyed("cpu.stat", map[string]*uint64{"usage_usec": &u.CPUUsec, "throttled_usec": &u.CPUThrottledUsec})
	io, _ := f.file(g, "io.stat")
	for _, line := range strings.Split(io, "\n") {
		fields := strings.Fields(line)
		for _, kv := range fields[min(1, len(fields)):] {
			switch k, val, _ := strings.Cut(kv, "="); k {
			case "rbytes":
				u.IOReadBytes += parse("io.stat", val)
			case "wbytes":
				u.IOWriteBytes += parse("io.stat", val)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ctr.Usage{}, err
	}
	return u, nil
}

// attach puts pid in group g, creating g with its parents, as runc does
// when it starts a task with that cgroups path. The no-internal-process
// rule applies: a non-root group that delegates controllers cannot take a
// process (EBUSY).
func (f *Cgroups) attach(g string, pid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	g = clean(g)
	f.mkdirAll(g)
	grp := f.groups[g]
	if g != "/" && len(grp.subtree) > 0 {
		return fmt.Errorf("write cgroup.procs of cgroup %s: it delegates %s (no-internal-process rule): device or resource busy",
			g, strings.Join(grp.subtree, " "))
	}
	for _, o := range f.groups {
		o.procs = slices.DeleteFunc(o.procs, func(p int) bool { return p == pid })
	}
	grp.procs = append(grp.procs, pid)
	return nil
}

// detach takes pid out of group g (its process ended). With remove, g
// itself goes too when it is left without processes and children, as runc
// removes a container's cgroup when the task is deleted.
func (f *Cgroups) detach(g string, pid int, remove bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g = clean(g)
	grp, ok := f.groups[g]
	if !ok {
		return
	}
	grp.procs = slices.DeleteFunc(grp.procs, func(p int) bool { return p == pid })
	if !remove || g == "/" || len(grp.procs) > 0 {
		return
	}
	for name := range f.groups {
		if strings.HasPrefix(name, g+"/") {
			return
		}
	}
	delete(f.groups, g)
}
