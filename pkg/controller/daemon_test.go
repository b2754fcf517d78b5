package controller

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// runDaemon starts a daemon over e and returns a function that stops it and
// waits for Run to return.
func (e *env) runDaemon(changes chan struct{}) (stop func() error, passes <-chan *PassResult) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *PassResult, 100)
	d := &Daemon{
		Reconciler: e.rc,
		Changes:    changes,
		Events:     e.rt.Events(ctx),
		Resync:     time.Hour,
		OnPass: func(pr *PassResult, full bool, depth int) {
			select {
			case ch <- pr:
			default:
			}
		},
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var (
		once sync.Once
		err  error
	)
	return func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}, ch
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) containerState(cell string, idx int) ContainerStatus {
	st, err := LoadStatus(e.rc.statusPath())
	if err != nil {
		e.t.Errorf("load status: %v", err)
	}
	if st == nil {
		return ContainerStatus{}
	}
	o := cellOf(st, cell)
	if idx >= len(o.Containers) {
		return ContainerStatus{}
	}
	return o.Containers[idx]
}

func TestDaemon(t *testing.T) {
	t.Run("converges at start, on a manifest change and restarts an exited container at once", func(t *testing.T) {
		e := newEnv(t)
		e.write("realm.yaml", labRealm)
		e.write("frontend.yaml", strings.Replace(frontendCell, "restartPolicy: always", "restartPolicy: always\n      restartBackoffSeconds: 1", 1))
		changes := make(chan struct{}, 1)
		stop, _ := e.runDaemon(changes)
		defer stop()
		eventually(t, "frontend running", func() bool {
			return e.containerState("Cell lab/web/blog/frontend", 1).State == ContainerRunning
		})

		e.write("worker.yaml", workerCell)
		changes <- struct{}{}
		eventually(t, "worker running", func() bool {
			return e.containerState("Cell lab/web/blog/worker", 1).State == ContainerRunning
		})

		e.rt.Exit("lab.kukeon.io", "web_blog_frontend_httpd", 137)
		eventually(t, "httpd restarted once", func() bool {
			c := e.containerState("Cell lab/web/blog/frontend", 1)
			return c.State == ContainerRunning && c.RestartCount == 1 && c.LastExitCode != nil && *c.LastExitCode == 137
		})

		// The second exit waits for the backoff (1 s) before the restart.
		e.rt.Exit("lab.kukeon.io", "web_blog_frontend_httpd", 1)
		eventually(t, "httpd exited and waiting", func() bool {
			c := e.containerState("Cell lab/web/blog/frontend", 1)
			return c.State == ContainerExited && c.NextRestartAt != nil
		})
		eventually(t, "httpd restarted twice", func() bool {
			c := e.containerState("Cell lab/web/blog/frontend", 1)
			return c.State == ContainerRunning && c.RestartCount == 2
		})
		if err := stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	})

	t.Run("a deleted container comes back after its delete event", func(t *testing.T) {
		e := newEnv(t)
		e.lab()
		stop, _ := e.runDaemon(nil)
		defer stop()
		eventually(t, "sidecar running", func() bool {
			return e.containerState("Cell lab/web/blog/frontend", 2).State == ContainerRunning
		})
		e.rt.DeleteBehindBack("lab.kukeon.io", "web_blog_frontend_sidecar")
		eventually(t, "sidecar recreated", func() bool {
			_, ok := e.rt.Spec("lab.kukeon.io", "web_blog_frontend_sidecar")
			return ok && e.containerState("Cell lab/web/blog/frontend", 2).State == ContainerRunning
		})
	})

	t.Run("on-failure gives up after its retries and the cell is Failed", func(t *testing.T) {
		e := newEnv(t)
		e.write("realm.yaml", labRealm)
		e.write("worker.yaml", strings.Replace(workerCell, "restartMaxRetries: 2", "restartMaxRetries: 2\n      restartBackoffSeconds: 0", 1))
		stop, _ := e.runDaemon(nil)
		defer stop()
		for i := 1; i <= 3; i++ {
			eventually(t, "job running", func() bool {
				return e.containerState("Cell lab/web/blog/worker", 1).State == ContainerRunning
			})
			e.rt.Exit("lab.kukeon.io", "web_blog_worker_job", 3)
			if i < 3 {
				eventually(t, "job restarted", func() bool {
					return e.containerState("Cell lab/web/blog/worker", 1).RestartCount == i
				})
			}
		}
		eventually(t, "cell Failed", func() bool {
			st, err := LoadStatus(e.rc.statusPath())
			if err != nil {
				t.Fatalf("load status: %v", err)
			}
			o := cellOf(st, "Cell lab/web/blog/worker")
			c := e.containerState("Cell lab/web/blog/worker", 1)
			return o.State == StateFailed && c.ExitCode != nil && *c.ExitCode == 3
		})
	})
}
