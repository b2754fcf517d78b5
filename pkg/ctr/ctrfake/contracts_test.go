package ctrfake_test

import (
	"testing"

	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
	"github.com/kukeon/reconciler/pkg/ctr/ctrtest"
)

func TestPreflightContract(t *testing.T) {
	var rt *ctrfake.Runtime
	ctrtest.RunPreflightContract(t, func(t *testing.T) (ctrtest.Preflighter, string, string) {
		rt = ctrfake.NewRuntime(ctrfake.WithImages(image))
		return rt, "test.kukeon.io", image
	}, func(t *testing.T, ns, id, image string) { rt.AddForeignContainer(ns, id, image) })
}

func TestCreateContract(t *testing.T) {
	var rt *ctrfake.Runtime
	ctrtest.RunCreateContract(t, func(t *testing.T) (ctrtest.Runtime, string, string) {
		rt = ctrfake.NewRuntime(ctrfake.WithImages(image))
		return rt, "test.kukeon.io", image
	}, func(t *testing.T, ns, id, image string) { rt.AddForeignContainer(ns, id, image) })
}

func TestConnectionContract(t *testing.T) {
	var rt *ctrfake.Runtime
	ctrtest.RunConnectionContract(t, func(t *testing.T) ctrtest.Runtime {
		rt = ctrfake.NewRuntime()
		return rt
	}, ctrtest.Outage{
		Down: func(t *testing.T) { rt.SetDown(true) },
		Up:   func(t *testing.T) { rt.SetDown(false) },
	})
}
