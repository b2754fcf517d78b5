package ctrfake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"

	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
	"github.com/kukeon/reconciler/pkg/ctr/ctrtest"
)

const image = "docker.io/library/busybox:latest"

func TestRuntimeContract(t *testing.T) {
	var rt *ctrfake.Runtime
	var cg *ctrfake.Cgroups
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ctrtest.RunRuntimeContract(t, func(t *testing.T) (ctrtest.Runtime, string, string) {
		cg = ctrfake.NewCgroups("cpu", "io", "memory", "pids")
		rt = ctrfake.NewRuntime(ctrfake.WithImages(image), ctrfake.WithClock(func() time.Time { return clock }), ctrfake.WithCgroups(cg))
		return rt, "test.kukeon.io", image
	}, ctrtest.Hooks{
		ForeignNamespace: func(t *testing.T, ns string) { rt.AddForeignNamespace(ns) },
		ForeignContainer: func(t *testing.T, ns, id, image string) { rt.AddForeignContainer(ns, id, image) },
		Kill: func(t *testing.T, ns, id string, pid uint32) uint32 {
			rt.Exit(ns, id, 137)
			return 137
		},
		HandleSIGTERM: func(t *testing.T, ns, id string, pid, code uint32) { rt.HandleSIGTERM(ns, id, code) },
		Down:          func(t *testing.T) { rt.SetDown(true) },
		Up:            func(t *testing.T) { rt.SetDown(false) },
		TagImage:      func(t *testing.T, ns, src, ref string) { rt.AddImage(ns, ref) },
		StoredSpec: func(t *testing.T, ns, id string) ctrtest.StoredSpec {
			s, ok := rt.Spec(ns, id)
			if !ok {
				t.Fatalf("no container %s in %s", id, ns)
			}
			return ctrtest.StoredSpec{Env: s.Env, Mounts: s.Mounts, Resources: s.Resources, CgroupsPath: s.CgroupsPath}
		},
		Cgroups: func(t *testing.T) (ctrtest.CgroupFS, string) { return cg, "/kukeon-test" },
		Mounted: func(t *testing.T, mountpoint, group string) bool {
			ok, err := cg.Exists(group)
			if err != nil {
				t.Fatalf("Exists(%s): %v", group, err)
			}
			return mountpoint == cg.Mountpoint() && ok
		},
	})
}

func TestCgroupContract(t *testing.T) {
	ctrtest.RunCgroupContract(t, func(t *testing.T) (ctrtest.CgroupFS, string) {
		return ctrfake.NewCgroups("cpu", "io", "memory", "pids", "hugetlb"), "/kukeon-test"
	})
}

func TestCgroupFilesFollowDelegation(t *testing.T) {
	fs := ctrfake.NewCgroups("memory", "pids")
	if _, _, err := fs.Ensure("/r/s", []string{"pids"}); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Read("/r/s", []string{"memory.max", "pids.max"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"pids.max": "max"}, got); diff != "" {
		t.Errorf("files with only pids delegated (-want +got):\n%s", diff)
	}
	if err := fs.Write("/r/s", []ctr.FileValue{{File: "memory.max", Value: "1"}}); !errors.Is(err, ctr.ErrNotFound) {
		t.Errorf("Write(memory.max) without memory delegated = %v, want ErrNotFound", err)
	}
	if _, _, err := fs.Ensure("/r/s", []string{"pids", "memory"}); err != nil {
		t.Fatal(err)
	}
	fs.SetFile("/r/s", "memory.max", "1048576")
	if got, err = fs.Read("/r/s", []string{"memory.max"}); err != nil {
		t.Fatal(err)
	}
	if got["memory.max"] != "1048576" {
		t.Errorf("memory.max after SetFile = %q", got["memory.max"])
	}
	if n := fs.Calls()["Ensure"]; n != 2 {
		t.Errorf("Calls()[Ensure] = %d, want 2", n)
	}
}

func TestRuntimeHooks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rt := ctrfake.NewRuntime(ctrfake.WithImages(image))
	events := rt.Events(ctx)
	ns := "a.kukeon.io"
	boom := errors.New("boom")
	rt.FailNext("CreateContainer", boom)
	if err := rt.EnsureImage(ctx, ns, "busybox", ctr.PullIfNotPresent, nil); err != nil {
		t.Fatal(err)
	}
	spec := ctr.ContainerSpec{ID: "c", Image: "busybox"}
	if err := rt.CreateContainer(ctx, ns, spec); !errors.Is(err, boom) {
		t.Fatalf("CreateContainer after FailNext = %v, want boom", err)
	}
	if err := rt.CreateContainer(ctx, ns, spec); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	// A slow consumer never blocks the fake: the oldest events are dropped.
	for range 1000 {
		if _, err := rt.StartContainer(ctx, ns, "c"); err != nil {
			t.Fatal(err)
		}
		rt.Exit(ns, "c", 1)
	}
	rt.DeleteBehindBack(ns, "c")
	var last ctr.Event
	for len(events) > 0 {
		last = <-events
	}
	if last.Kind != ctr.EventContainerDelete || last.ContainerID != "c" {
		t.Errorf("last event = %+v, want the container delete", last)
	}
	if got := rt.Calls(); got["CreateContainer"] != 2 || got["StartContainer"] != 1000 {
		t.Errorf("Calls() = %v", got)
	}
	rt.SetDown(true)
	if _, err := rt.ListContainers(ctx, ns); !errors.Is(err, ctr.ErrUnavailable) {
		t.Errorf("ListContainers while down = %v, want ErrUnavailable", err)
	}
	rt.SetDown(false)
	if ev := <-events; ev.Kind != ctr.EventDisconnected {
		t.Errorf("event after going down = %+v, want disconnected", ev)
	}
	if ev := <-events; ev.Kind != ctr.EventReconnected {
		t.Errorf("event after coming back = %+v, want reconnected", ev)
	}
	cancel()
	for range events {
	}
}
