package ctrtest

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// runSpecChecks pins the ContainerSpec fields a fake could drop without
// any other check noticing: env, mounts, resources and the cgroups path
// must reach the stored container spec.
func runSpecChecks(t *testing.T, newRT NewRuntime, hooks Hooks) {
	t.Run("env, mounts, resources and the cgroups path reach the stored spec", func(t *testing.T) {
		rt, ns, image := newRT(t)
		mustImage(t, rt, ns, image)
		mem, shares, pids := int64(64<<20), int64(512), int64(32)
		s := spec("specified", image, nil)
		s.Env = []string{"FOO=bar", "MODE=contract"}
		s.Mounts = []ctr.Mount{
			{Kind: "bind", Source: t.TempDir(), Target: "/data", ReadOnly: true},
			{Kind: "bind", Source: t.TempDir(), Target: "/work"},
			{Kind: "tmpfs", Target: "/scratch", SizeBytes: 1 << 20},
		}
		s.Resources = ctr.Resources{MemoryLimitBytes: &mem, CPUShares: &shares, PidsLimit: &pids}
		s.CgroupsPath = "/kukeon-contract/specified"
		if err := rt.CreateContainer(context.Background(), ns, s); err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		deleteAtCleanup(t, rt, ns, s.ID)

		got := hooks.StoredSpec(t, ns, s.ID)
		for _, e := range s.Env {
			if !slices.Contains(got.Env, e) {
				t.Errorf("stored env %q lacks %q", got.Env, e)
			}
		}
		for _, m := range s.Mounts {
			var found *ctr.Mount
			for i := range got.Mounts {
				if got.Mounts[i].Target == m.Target {
					found = &got.Mounts[i]
				}
			}
			if found == nil {
				t.Errorf("no stored mount at %s (stored: %+v)", m.Target, got.Mounts)
				continue
			}
			if diff := cmp.Diff(m, *found); diff != "" {
				t.Errorf("stored mount at %s (-want +got):\n%s", m.Target, diff)
			}
		}
		if diff := cmp.Diff(s.Resources, got.Resources); diff != "" {
			t.Errorf("stored resources (-want +got):\n%s", diff)
		}
		if got.CgroupsPath != s.CgroupsPath {
			t.Errorf("stored cgroups path = %q, want %q", got.CgroupsPath, s.CgroupsPath)
		}
	})
}
