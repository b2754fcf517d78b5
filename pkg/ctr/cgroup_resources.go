package ctr

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// Write writes each value to its file of group, once each, in order. It
// stops at the first failure, whose error names file and group; a file (or
// group) that does not exist is an error matching ErrNotFound. A file the
// library has a field for (cpu.*, cpuset.*, memory.*, pids.max,
// cgroup.procs) goes through Manager.Update (AddProc), one value per call
// so that order and errors stay per file; any other file, or a value the
// library cannot spell byte for byte, is written directly (see libraryWrite).
func (g *Cgroups) Write(group string, fv []FileValue) error {
	group = path.Clean("/" + group)
	m, err := g.manager(group)
	if err != nil {
		return err
	}
	for _, x := range fv {
		if x.File == "" || strings.ContainsRune(x.File, '/') {
			return fmt.Errorf("write %q of cgroup %s: not an interface file name", x.File, group)
		}
		// Looked up first: the library opens with O_CREATE, which cgroupfs
		// refuses with EACCES, not ENOENT, for a file that does not exist
		// (a controller not delegated).
		if _, err := os.Stat(filepath.Join(g.dir(group), x.File)); err != nil {
			return notFound("write "+x.File+" of ", group, err)
		}
		g.writes.Add(1)
		if write := libraryWrite(m, x); write != nil {
			err = write()
		} else {
			err = g.writeFile(group, x.File, x.Value)
		}
		if err != nil {
			return notFound("write "+x.File+" of ", group, err)
		}
	}
	return nil
}

// libraryWrite returns the library call that writes exactly x.Value to
// x.File, or nil where the library has no way to:
//   - io.weight: the library only knows io.bfq.weight, the BFQ scheduler's
//     file, not the io controller's io.weight ("default N").
//   - io.max: an Entry writes one "MAJ:MIN type=rate" per write with a
//     numeric rate, so a line carrying "max" (unlimited) has no spelling,
//     and splitting one line into four writes would leave a limit half
//     applied when a later one fails.
//   - memory.* "max": the memory fields are int64 bytes; the library would
//     write -1, which the kernel refuses.
//   - pids.max 0 (no new processes): Pids.Max 0 means unset to the library.
//   - core files (cgroup.max.depth, ...) and anything else: no field.
func libraryWrite(m *cgroup2.Manager, x FileValue) func() error {
	u, err := strconv.ParseUint(x.Value, 10, 64)
	number := err == nil && strconv.FormatUint(u, 10) == x.Value
	update := func(r *cgroup2.Resources) func() error {
		return func() error { return m.Update(r) }
	}
	switch x.File {
	case "cgroup.procs":
		if number {
			return func() error { return m.AddProc(u) }
		}
	case "cpu.weight":
		if number {
			return update(&cgroup2.Resources{CPU: &cgroup2.CPU{Weight: &u}})
		}
	case "cpu.max":
		if x.Value != "" {
			return update(&cgroup2.Resources{CPU: &cgroup2.CPU{Max: cgroup2.CPUMax(x.Value)}})
		}
	case "cpuset.cpus":
		if x.Value != "" {
			return update(&cgroup2.Resources{CPU: &cgroup2.CPU{Cpus: x.Value}})
		}
	case "cpuset.mems":
		if x.Value != "" {
			return update(&cgroup2.Resources{CPU: &cgroup2.CPU{Mems: x.Value}})
		}
	case "memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max":
		if number && u <= math.MaxInt64 {
			v := int64(u)
			mem := map[string]*cgroup2.Memory{
				"memory.min": {Min: &v}, "memory.low": {Low: &v}, "memory.high": {High: &v},
				"memory.max": {Max: &v}, "memory.swap.max": {Swap: &v},
			}[x.File]
			return update(&cgroup2.Resources{Memory: mem})
		}
	case "pids.max":
		switch {
		case x.Value == "max":
			return update(&cgroup2.Resources{Pids: &cgroup2.Pids{Max: -1}})
		case number && u > 0 && u <= math.MaxInt64:
			return update(&cgroup2.Resources{Pids: &cgroup2.Pids{Max: int64(u)}})
		}
	}
	return nil
}

// writeFile writes value to an existing interface file of group, without
// creating it.
func (g *Cgroups) writeFile(group, file, value string) error {
	f, err := os.OpenFile(filepath.Join(g.dir(group), file), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stat returns what the processes of group and its descendants use now,
// from the library's Manager.Stat. A value whose controller is not enabled
// in group (memory, pids, io; cpu for the throttling time) reads as zero,
// not an error. A missing group is an error matching ErrNotFound. It
// writes nothing.
func (g *Cgroups) Stat(group string) (Usage, error) {
	group = path.Clean("/" + group)
	if ok, err := g.Exists(group); err != nil {
		return Usage{}, err
	} else if !ok {
		return Usage{}, fmt.Errorf("stat cgroup %s: %w", group, ErrNotFound)
	}
	m, err := g.manager(group)
	if err != nil {
		return Usage{}, err
	}
	s, err := m.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents | cgroup2.StatPids | cgroup2.StatIO)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Usage{}, fmt.Errorf("stat cgroup %s: %w", group, ErrNotFound)
		}
		return Usage{}, fmt.Errorf("stat cgroup %s: %w", group, err)
	}
	var u Usage
	if s.Memory != nil {
		u.MemoryBytes, u.SwapBytes = s.Memory.Usage, s.Memory.SwapUsage
	}
	if s.MemoryEvents != nil {
		u.OOMKills = s.MemoryEvents.OomKill
	}
	if s.CPU != nil {
		u.CPUUsec, u.CPUThrottledUsec = s.CPU.UsageUsec, s.CPU.ThrottledUsec
	}
	if s.Pids != nil {
		u.Pids = s.Pids.Current
	}
	if s.Io != nil {
		for _, e := range s.Io.Usage {
			u.IOReadBytes += e.Rbytes
			u.IOWriteBytes += e.Wbytes
		}
	}
	return u, nil
}
