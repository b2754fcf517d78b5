package ctrfake_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
)

func TestCgroupStatFollowsFiles(t *testing.T) {
	fs := ctrfake.NewCgroups("cpu", "io", "memory", "pids")
	if _, _, err := fs.Ensure("/r", []string{"cpu", "io", "memory", "pids"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fs.Ensure("/r/s", nil); err != nil {
		t.Fatal(err)
	}
	fs.SetProcs("/r/s", 10, 11)
	fs.SetFile("/r/s", "memory.current", "4096")
	fs.SetFile("/r/s", "memory.swap.current", "8192")
	fs.SetFile("/r/s", "memory.events", "low 0\nhigh 1\nmax 2\noom 1\noom_kill 3\noom_group_kill 0")
	fs.SetFile("/r/s", "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nthrottled_usec 70")
	fs.SetFile("/r/s", "io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2 rios=1 wios=1")

	got, err := fs.Stat("/r/s")
	if err != nil {
		t.Fatal(err)
	}
	want := ctr.Usage{MemoryBytes: 4096, SwapBytes: 8192, OOMKills: 3, CPUUsec: 1500, CPUThrottledUsec: 70,
		Pids: 2, IOReadBytes: 101, IOWriteBytes: 202}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stat (-want +got):\n%s", diff)
	}

	fs.SetFile("/r/s", "memory.current", "lots")
	if _, err := fs.Stat("/r/s"); err == nil || !strings.Contains(err.Error(), "memory.current") {
		t.Errorf("Stat with memory.current = lots = %v, want an error naming the file", err)
	}
}
