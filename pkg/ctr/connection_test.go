package ctr_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/ctr/ctrtest"
)

func TestConnectionContractIntegration(t *testing.T) {
	e := newEnv(t, ctr.Config{DialTimeout: 2 * time.Second})
	ctrtest.RunConnectionContract(t, func(t *testing.T) ctrtest.Runtime { return e.client }, ctrtest.Outage{
		Down: func(t *testing.T) {
			if err := e.cd.Kill(); err != nil {
				t.Fatalf("kill containerd: %v", err)
			}
		},
		Up: func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.cd.Restart(ctx); err != nil {
				t.Fatalf("restart containerd: %v", err)
			}
		},
	})
}

func TestPreflightContractIntegration(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	fresh := e.freshNamespaces("preflight")
	ctrtest.RunPreflightContract(t, func(t *testing.T) (ctrtest.Preflighter, string, string) {
		return e.client, fresh(t), busybox
	}, e.foreignContainer)
}

func TestCreateContractIntegration(t *testing.T) {
	e := newEnv(t, ctr.Config{})
	fresh := e.freshNamespaces("create")
	ctrtest.RunCreateContract(t, func(t *testing.T) (ctrtest.Runtime, string, string) {
		return e.client, fresh(t), busybox
	}, e.foreignContainer)
}

// freshNamespaces returns a function that names a new namespace for each
// call, deleted when the calling test ends.
func (e *env) freshNamespaces(prefix string) func(t *testing.T) string {
	n := 0
	return func(t *testing.T) string {
		n++
		ns := fmt.Sprintf("%s-%d.%s", prefix, n, nsSuffix)
		e.deleteNamespace(t, ns)
		return ns
	}
}
