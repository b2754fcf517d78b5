package v1beta1

import (
	"sort"
	"strconv"
	"strings"
)

// CgroupFile is one value to write into a cgroup v2 interface file of a
// level's cgroup, e.g. {Controller: "memory", File: "memory.max", Value: "536870912"}.
type CgroupFile struct {
	// Controller must be enabled in the parent's cgroup.subtree_control for
	// File to exist.
	Controller string
	File       string
	Value      string
}

// CgroupFiles maps level resources to the cgroup v2 files that carry them,
// sorted by file (io.max has one entry per device, sorted by device). Unset
// fields produce no file; nil gives nil. r must have passed validation.
func CgroupFiles(r *Resources) []CgroupFile {
	if r == nil {
		return nil
	}
	var out []CgroupFile
	add := func(ctrl, file, value string) {
		out = append(out, CgroupFile{Controller: ctrl, File: file, Value: value})
	}
	if c := r.CPU; c != nil {
		if c.Weight != nil {
			add("cpu", "cpu.weight", strconv.FormatInt(*c.Weight, 10))
		}
		if c.Max != "" {
			add("cpu", "cpu.max", strings.Join(strings.Fields(c.Max), " "))
		}
		if c.Cpus != "" {
			add("cpuset", "cpuset.cpus", strings.TrimSpace(c.Cpus))
		}
		if c.Mems != "" {
			add("cpuset", "cpuset.mems", strings.TrimSpace(c.Mems))
		}
	}
	if m := r.Memory; m != nil {
		for _, f := range []struct {
			file string
			q    *Quantity
		}{
			{"memory.min", m.Min}, {"memory.low", m.Low}, {"memory.high", m.High},
			{"memory.max", m.Max}, {"memory.swap.max", m.SwapMax},
		} {
			if f.q != nil {
				add("memory", f.file, f.q.CgroupValue())
			}
		}
	}
	if io := r.IO; io != nil {
		if io.Weight != nil {
			add("io", "io.weight", "default "+strconv.FormatInt(*io.Weight, 10))
		}
		for _, l := range io.Max {
			add("io", "io.max", l.Device+" rbps="+bytesOrMax(l.Rbps)+" wbps="+bytesOrMax(l.Wbps)+
				" riops="+intOrMax(l.Riops)+" wiops="+intOrMax(l.Wiops))
		}
	}
	if r.Pids != nil && r.Pids.Max != nil {
		add("pids", "pids.max", strconv.FormatInt(*r.Pids.Max, 10))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// bytesOrMax renders an io.max byte rate: zero or unset is "max".
func bytesOrMax(q *Quantity) string {
	if q == nil || q.Max || q.Bytes == 0 {
		return "max"
	}
	return strconv.FormatInt(q.Bytes, 10)
}

// intOrMax renders an io.max operation rate: zero or unset is "max".
func intOrMax(v *int64) string {
	if v == nil || *v <= 0 {
		return "max"
	}
	return strconv.FormatInt(*v, 10)
}

// Controllers lists, sorted and without repeats, the controllers that must be
// enabled for CgroupFiles(r) to be writable.
func Controllers(r *Resources) []string {
	var out []string
	for _, f := range CgroupFiles(r) {
		if !containsString(out, f.Controller) {
			out = append(out, f.Controller)
		}
	}
	sort.Strings(out)
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pageSize is the granularity to which the kernel rounds memory.* limits.
const pageSize = 4096

// CgroupValueEqual reports whether got, read back from file, satisfies want,
// the value CgroupFiles produced for it. The kernel normalises what it is
// given: memory.* values are rounded down to a page, cpu.max gains its
// period ("max" reads back "max 100000"), io.weight reads "default N" (plus
// per-device lines), io.max lists every limited device (a device with no
// limits is absent), and cpuset lists are re-rendered ("0,1" reads "0-1").
func CgroupValueEqual(file, want, got string) bool {
	want, got = strings.TrimSpace(want), strings.TrimSpace(got)
	switch {
	case strings.HasPrefix(file, "memory."):
		if want == "max" || got == "max" {
			return want == got
		}
		w, err1 := strconv.ParseInt(want, 10, 64)
		g, err2 := strconv.ParseInt(got, 10, 64)
		if err1 != nil || err2 != nil {
			return want == got
		}
		return g == w || g == w/pageSize*pageSize
	case file == "cpu.max":
		wq, wp, err1 := parseCPUMax(want)
		gq, gp, err2 := parseCPUMax(got)
		if err1 != nil || err2 != nil {
			return want == got
		}
		return wq == gq && wp == gp
	case file == "io.weight":
		return ioDefaultWeight(want) == ioDefaultWeight(got) && ioDefaultWeight(want) != ""
	case file == "io.max":
		return ioMaxSatisfied(want, got)
	case file == "cpuset.cpus" || file == "cpuset.mems" ||
		file == "cpuset.cpus.effective" || file == "cpuset.mems.effective":
		w, err1 := parseCPUList(want)
		g, err2 := parseCPUList(got)
		if err1 != nil || err2 != nil {
			return want == got
		}
		if len(w) != len(g) {
			return false
		}
		for k := range w {
			if !g[k] {
				return false
			}
		}
		return true
	default:
		return want == got
	}
}

// ioDefaultWeight extracts N from "default N" (or a bare "N"), ignoring the
// per-device lines io.weight may also list.
func ioDefaultWeight(s string) string {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "default":
			return f[1]
		case len(f) == 1:
			return f[0]
		}
	}
	return ""
}

// ioMaxSatisfied reports whether the io.max read-back got (any number of
// device lines) carries the limits of the single device line want.
func ioMaxSatisfied(want, got string) bool {
	wdev, wlim, ok := parseIOMaxLine(want)
	if !ok {
		return want == got
	}
	glim := map[string]string{}
	for _, line := range strings.Split(got, "\n") {
		if dev, lim, ok := parseIOMaxLine(line); ok && dev == wdev {
			glim = lim
			break
		}
	}
	for _, k := range []string{"rbps", "wbps", "riops", "wiops"} {
		w, g := wlim[k], glim[k]
		if w == "" || w == "0" {
			w = "max"
		}
		if g == "" || g == "0" {
			g = "max"
		}
		if w != g {
			return false
		}
	}
	return true
}

func parseIOMaxLine(line string) (dev string, lim map[string]string, ok bool) {
	f := strings.Fields(line)
	if len(f) == 0 || !validDevice(f[0]) {
		return "", nil, false
	}
	lim = map[string]string{}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", nil, false
		}
		lim[k] = v
	}
	return f[0], lim, true
}
