package ctrfake_test

import (
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
	"github.com/kukeon/reconciler/pkg/ctr/ctrtest"
)

const image = "docker.io/library/busybox:latest"

func TestRuntimeContract(t *testing.T) {
	var rt *ctrfake.Runtime
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ctrtest.RunRuntimeContract(t, func(t *testing.T) (ctrtest.Runtime, string, string) {
		rt = ctrfake.NewRuntime(ctrfake.WithImages(image), ctrfake.WithClock(func() time.Time { return clock }))
		return rt, "test.kukeon.io", image
	}, ctrtest.Hooks{
		ForeignNamespace: func(t *testing.T, ns string) { rt.AddForeignNamespace(ns) },
		ForeignContainer: func(t *testing.T, ns, id, image string) { rt.AddForeignContainer(ns, id, image) },
		Kill: func(t *testing.T, ns, id string, pid uint32) uint32 {
			rt.Exit(ns, id, 137)
			return 137
		},
	})
}

func TestCgroupContract(t *testing.T) {
	ctrtest.RunCgroupContract(t, func(t *testing.T) (ctrtest.CgroupFS, string) {
		return ctrfake.NewCgroups("cpu", "io", "memory", "pids", "hugetlb"), "/kukeon-test"
	})
}
