package ctr

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeMount lays out interface files as empty regular files under a temp
// dir, so that what a write puts where can be read back exactly (cgroupfs
// would normalise it). Every group gets every file of files.
func fakeMount(t *testing.T, groups, files []string) *Cgroups {
	t.Helper()
	mnt := t.TempDir()
	for _, g := range groups {
		dir := filepath.Join(mnt, g)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &Cgroups{mountpoint: mnt}
}

func readFiles(t *testing.T, g *Cgroups, group string, files []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(g.dir(group), f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	return out
}

func TestDelegateWritesOnlyItsLevel(t *testing.T) {
	levels := []string{"/", "/a", "/a/b", "/a/b/c"}
	for _, lvl := range levels {
		t.Run("delegating in "+lvl+" writes only its subtree_control", func(t *testing.T) {
			g := fakeMount(t, levels, []string{"cgroup.subtree_control"})
			if err := g.delegate(lvl, []string{"cpu", "memory"}); err != nil {
				t.Fatalf("delegate: %v", err)
			}
			want := map[string]string{}
			for _, l := range levels {
				want[l] = ""
			}
			want[lvl] = "+cpu +memory"
			got := map[string]string{}
			for _, l := range levels {
				got[l] = readFiles(t, g, l, []string{"cgroup.subtree_control"})["cgroup.subtree_control"]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("subtree_control per level (-want +got):\n%s", diff)
			}
			if n := g.Writes(); n != 1 {
				t.Errorf("Writes() = %d, want 1", n)
			}
		})
	}
}

func TestWriteSpellsEveryValueExactly(t *testing.T) {
	tests := []struct {
		name    string
		fv      FileValue
		library bool // through Manager.Update or AddProc
	}{
		{"cpu.weight goes through the library", FileValue{"cpu.weight", "250"}, true},
		{"cpu.max goes through the library", FileValue{"cpu.max", "50000 100000"}, true},
		{"cpuset.cpus goes through the library", FileValue{"cpuset.cpus", "0-1"}, true},
		{"cpuset.mems goes through the library", FileValue{"cpuset.mems", "0"}, true},
		{"memory.min in bytes goes through the library", FileValue{"memory.min", "1048576"}, true},
		{"memory.low in bytes goes through the library", FileValue{"memory.low", "2097152"}, true},
		{"memory.high in bytes goes through the library", FileValue{"memory.high", "4194304"}, true},
		{"memory.max in bytes goes through the library", FileValue{"memory.max", "536870912"}, true},
		{"memory.swap.max of zero goes through the library", FileValue{"memory.swap.max", "0"}, true},
		{"pids.max as a number goes through the library", FileValue{"pids.max", "64"}, true},
		{"pids.max max goes through the library", FileValue{"pids.max", "max"}, true},
		{"cgroup.procs goes through AddProc", FileValue{"cgroup.procs", "1234"}, true},
		{"memory.max max is written directly", FileValue{"memory.max", "max"}, false},
		{"pids.max of zero is written directly", FileValue{"pids.max", "0"}, false},
		{"io.weight is written directly", FileValue{"io.weight", "default 200"}, false},
		{"io.max is written directly as one line", FileValue{"io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max"}, false},
		{"a core file is written directly", FileValue{"cgroup.max.depth", "3"}, false},
		{"a number with a leading zero is written directly", FileValue{"cpu.weight", "0100"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := fakeMount(t, []string{"/", "/r/g"}, []string{tt.fv.File})
			m, err := g.manager("/r/g")
			if err != nil {
				t.Fatal(err)
			}
			if lib := libraryWrite(m, tt.fv) != nil; lib != tt.library {
				t.Errorf("through the library = %v, want %v", lib, tt.library)
			}
			if err := g.Write("/r/g", []FileValue{tt.fv}); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got := readFiles(t, g, "/r/g", []string{tt.fv.File})
			if diff := cmp.Diff(map[string]string{tt.fv.File: tt.fv.Value}, got); diff != "" {
				t.Errorf("file content (-want +got):\n%s", diff)
			}
			if n := g.Writes(); n != 1 {
				t.Errorf("Writes() = %d, want 1", n)
			}
		})
	}
}
