package v1beta1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCgroupFiles(t *testing.T) {
	tests := []struct {
		name            string
		in              *Resources
		want            []CgroupFile
		wantControllers []string
	}{
		{name: "nil resources write nothing", in: nil},
		{name: "empty resources write nothing", in: &Resources{}},
		{
			name: "every field maps to its file, sorted by file",
			in: &Resources{
				CPU: &CPUResources{Weight: i64(100), Max: " 50000   100000 ", Cpus: "0-1", Mems: "0"},
				Memory: &MemoryResources{
					Min: &Quantity{}, Low: &Quantity{Bytes: 64 << 20}, High: &Quantity{Bytes: 1 << 30},
					Max: &Quantity{Bytes: 2 << 30}, SwapMax: &Quantity{Max: true},
				},
				IO: &IOResources{Weight: i64(200), Max: []IOLimit{
					{Device: "8:16", Riops: i64(100)},
					{Device: "8:0", Rbps: &Quantity{Bytes: 10 << 20}, Wbps: &Quantity{}, Riops: i64(0)},
				}},
				Pids: &PidsResources{Max: i64(512)},
			},
			want: []CgroupFile{
				{"cpu", "cpu.max", "50000 100000"},
				{"cpu", "cpu.weight", "100"},
				{"cpuset", "cpuset.cpus", "0-1"},
				{"cpuset", "cpuset.mems", "0"},
				{"io", "io.max", "8:0 rbps=10485760 wbps=max riops=max wiops=max"},
				{"io", "io.max", "8:16 rbps=max wbps=max riops=100 wiops=max"},
				{"io", "io.weight", "default 200"},
				{"memory", "memory.high", "1073741824"},
				{"memory", "memory.low", "67108864"},
				{"memory", "memory.max", "2147483648"},
				{"memory", "memory.min", "0"},
				{"memory", "memory.swap.max", "max"},
				{"pids", "pids.max", "512"},
			},
			wantControllers: []string{"cpu", "cpuset", "io", "memory", "pids"},
		},
		{
			name:            "max memory is written as max",
			in:              &Resources{Memory: &MemoryResources{Max: &Quantity{Max: true}}},
			want:            []CgroupFile{{"memory", "memory.max", "max"}},
			wantControllers: []string{"memory"},
		},
		{
			name:            "cpu.max max stays max",
			in:              &Resources{CPU: &CPUResources{Max: "max"}},
			want:            []CgroupFile{{"cpu", "cpu.max", "max"}},
			wantControllers: []string{"cpu"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, CgroupFiles(tt.in)); diff != "" {
				t.Errorf("CgroupFiles (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantControllers, Controllers(tt.in)); diff != "" {
				t.Errorf("Controllers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCgroupValueEqual(t *testing.T) {
	tests := []struct {
		name            string
		file, want, got string
		equal           bool
	}{
		{"memory rounded down to a page matches", "memory.max", "100000", "98304", true},
		{"memory exact matches", "memory.max", "67108864", "67108864", true},
		{"memory with a trailing newline matches", "memory.high", "67108864", "67108864\n", true},
		{"memory that differs by more than a page does not match", "memory.max", "100000", "94208", false},
		{"memory max matches max", "memory.max", "max", "max\n", true},
		{"memory max does not match a number", "memory.max", "max", "9223372036854771712", false},
		{"swap max is rounded too", "memory.swap.max", "5000", "4096", true},
		{"cpu.max max reads back with the default period", "cpu.max", "max", "max 100000", true},
		{"cpu.max quota reads back with the default period", "cpu.max", "50000", "50000 100000", true},
		{"cpu.max with both parts matches", "cpu.max", "50000 200000", "50000 200000\n", true},
		{"cpu.max with another period does not match", "cpu.max", "50000", "50000 200000", false},
		{"cpu.max with another quota does not match", "cpu.max", "50000 100000", "max 100000", false},
		{"io.weight reads default N", "io.weight", "default 100", "default 100\n", true},
		{"io.weight with device lines matches on the default", "io.weight", "default 100", "default 100\n8:0 200\n", true},
		{"io.weight with another default does not match", "io.weight", "default 100", "default 200", false},
		{"io.max finds its device among several", "io.max", "8:0 rbps=10485760 wbps=max riops=max wiops=max", "8:16 rbps=max wbps=max riops=5 wiops=max\n8:0 rbps=10485760 wbps=max riops=max wiops=max\n", true},
		{"io.max with another limit does not match", "io.max", "8:0 rbps=10485760 wbps=max riops=max wiops=max", "8:0 rbps=1 wbps=max riops=max wiops=max", false},
		{"io.max without limits matches an absent device", "io.max", "8:0 rbps=max wbps=max riops=max wiops=max", "", true},
		{"io.max with limits does not match an absent device", "io.max", "8:0 rbps=1 wbps=max riops=max wiops=max", "8:16 rbps=1 wbps=max riops=max wiops=max", false},
		{"cpuset lists are compared as sets", "cpuset.cpus", "0,1", "0-1\n", true},
		{"cpuset lists that differ do not match", "cpuset.cpus", "0-2", "0-1", false},
		{"cpuset mems compare as sets", "cpuset.mems", "0", "0", true},
		{"pids.max compares exactly", "pids.max", "512", "512\n", true},
		{"pids.max that differs does not match", "pids.max", "512", "max", false},
		{"cpu.weight compares exactly", "cpu.weight", "100", "100", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CgroupValueEqual(tt.file, tt.want, tt.got); got != tt.equal {
				t.Errorf("CgroupValueEqual(%q, %q, %q) = %v, want %v", tt.file, tt.want, tt.got, got, tt.equal)
			}
		})
	}
}
