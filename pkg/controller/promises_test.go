package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
)

// These tests pin promises of the README's "Running as a service" section
// (restarts) on the daemon's passes — PassScope{Backoff: true}, a full pass
// for a resync and a pass of one cell for an exit event — with a fake clock
// (Options.Now and ctrfake.WithClock) instead of sleeping.

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newClockEnv is newEnv whose reconciler and fake runtime read clock.
func newClockEnv(t *testing.T) (*env, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t)
	e.rt = ctrfake.NewRuntime(ctrfake.WithImages(busybox), ctrfake.WithClock(clock.now))
	e.rc.Runtime = e.rt
	e.rc.Opts.Now = clock.now
	return e, clock
}

// daemonPass runs a pass as the daemon does: with restart backoff, over
// every object (a resync) or, given keys, over those cells only (an exit
// event).
func (e *env) daemonPass(keys ...string) *PassResult {
	e.t.Helper()
	scope := PassScope{Backoff: true}
	if len(keys) > 0 {
		scope.Only = map[string]bool{}
		for _, k := range keys {
			scope.Only[k] = true
		}
	}
	pr := e.rc.Reconcile(context.Background(), scope)
	if pr.Err != nil {
		e.t.Fatalf("pass: %v", pr.Err)
	}
	for _, o := range pr.Outcomes {
		if o.Err != nil {
			e.t.Fatalf("pass: %s: %v", o.Change.Key, o.Err)
		}
	}
	return pr
}

// restarted lists the containers a pass restarted, as "cell container".
func restarted(pr *PassResult) []string {
	var out []string
	for _, r := range pr.Restarts {
		out = append(out, r.Cell+" "+r.Container)
	}
	return out
}

// svcCell is cell svc in lab/web/blog (a synthesized root) with one
// workload app under restart policy policy, backing off from backoff s.
func svcCell(policy string, backoff int) string {
	return fmt.Sprintf(`kind: Cell
metadata: {name: svc}
spec:
  realmId: lab
  spaceId: web
  stackId: blog
  containers:
    - id: app
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["3600"]
      restartPolicy: %s
      restartBackoffSeconds: %d
`, policy, backoff)
}

const (
	svcKey = "Cell lab/web/blog/svc"
	svcApp = "web_blog_svc_app"
	labNS  = "lab.kukeon.io"
)

// TestRestartBackoffResetsAfterSixtySecondsOfRunning: "backoff doubling
// from restartBackoffSeconds to 300 s, reset after 60 s of running". With a
// base of 60 s the second restart is due 60 s after the first and a third
// would be due 120 s after the second; a container that ran 60 s before it
// exits again is restarted at once, as if it had never failed.
func TestRestartBackoffResetsAfterSixtySecondsOfRunning(t *testing.T) {
	tests := []struct {
		name string
		// run is what happens between the second restart and the exit.
		run         func(e *env, clock *fakeClock)
		wantRestart bool
		// wantCount is app's restartCount after the exit's pass.
		wantCount int
	}{
		{
			name: "a resync that sees it running for 61 s resets the backoff",
			run: func(e *env, clock *fakeClock) {
				clock.advance(61 * time.Second)
				e.daemonPass()
			},
			wantRestart: true,
			wantCount:   1,
		},
		{
			// The daemon's resync runs every 30 s: a container that runs
			// 60–90 s and exits is usually seen running by no pass after its
			// 60th second. Fails today: the count is reset only by a pass
			// that observes the task running (pass.go), never from the
			// exited task's run time.
			name: "an exit after 61 s of running with no pass in between restarts at once",
			run: func(e *env, clock *fakeClock) {
				clock.advance(61 * time.Second)
			},
			wantRestart: true,
			wantCount:   1,
		},
		{
			name: "an exit after 59 s of running waits for the doubled backoff",
			run: func(e *env, clock *fakeClock) {
				clock.advance(59 * time.Second)
				e.daemonPass()
			},
			wantRestart: false,
			wantCount:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clock := newClockEnv(t)
			e.write("realm.yaml", labRealm)
			e.write("svc.yaml", svcCell("always", 60))
			e.daemonPass()

			e.rt.Exit(labNS, svcApp, 1)
			if got := restarted(e.daemonPass(svcKey)); len(got) != 1 {
				t.Fatalf("first exit: restarted %v, want app at once", got)
			}
			e.rt.Exit(labNS, svcApp, 1)
			pr := e.daemonPass(svcKey)
			if got := restarted(pr); len(got) != 0 {
				t.Fatalf("second exit at once: restarted %v, want none before the 60 s backoff", got)
			}
			if pr.Plan.RequeueAfter != 60*time.Second {
				t.Fatalf("second exit: requeue after %s, want 60s", pr.Plan.RequeueAfter)
			}
			clock.advance(60 * time.Second)
			if got := restarted(e.daemonPass()); len(got) != 1 {
				t.Fatalf("60 s after the second exit: restarted %v, want app", got)
			}

			tt.run(e, clock)
			e.rt.Exit(labNS, svcApp, 1)
			pr = e.daemonPass(svcKey)
			var want []string
			if tt.wantRestart {
				want = []string{svcKey + " app"}
			}
			if diff := cmp.Diff(want, restarted(pr)); diff != "" {
				t.Errorf("restarts of the exit's pass (-want +got):\n%s", diff)
			}
			c := e.containerState(svcKey, 1)
			if c.RestartCount != tt.wantCount {
				t.Errorf("restartCount %d, want %d", c.RestartCount, tt.wantCount)
			}
			if !tt.wantRestart && (c.NextRestartAt == nil || !c.NextRestartAt.Equal(clock.now().Add(61*time.Second))) {
				t.Errorf("nextRestartAt %v, want 120 s after the second restart (%s)", c.NextRestartAt, clock.now().Add(61*time.Second))
			}
		})
	}
}

// TestRestartPolicyOnACleanExit: "always restarts any exit, on-failure
// non-zero exits": exit code 0 restarts an always container and leaves an
// on-failure one exited, its cell Ready and the pass OK.
func TestRestartPolicyOnACleanExit(t *testing.T) {
	tests := []struct {
		policy      string
		code        uint32
		wantRestart bool
		wantState   string
	}{
		{policy: "always", code: 0, wantRestart: true, wantState: ContainerRunning},
		{policy: "on-failure", code: 0, wantRestart: false, wantState: ContainerExited},
		{policy: "on-failure", code: 1, wantRestart: true, wantState: ContainerRunning},
		{policy: "never", code: 0, wantRestart: false, wantState: ContainerExited},
	}
	for _, tt := range tests {
		verb := "restarts"
		if !tt.wantRestart {
			verb = "does not restart"
		}
		t.Run(fmt.Sprintf("%s %s an exit with code %d", tt.policy, verb, tt.code), func(t *testing.T) {
			e, _ := newClockEnv(t)
			e.write("realm.yaml", labRealm)
			e.write("svc.yaml", svcCell(tt.policy, 1))
			e.daemonPass()
			e.rt.Exit(labNS, svcApp, tt.code)
			pr := e.daemonPass(svcKey)
			var want []string
			if tt.wantRestart {
				want = []string{svcKey + " app"}
			}
			if diff := cmp.Diff(want, restarted(pr)); diff != "" {
				t.Errorf("restarts (-want +got):\n%s", diff)
			}
			// A resync later changes nothing: a clean exit stays done.
			pr = e.daemonPass()
			if got := restarted(pr); len(got) != 0 {
				t.Errorf("a resync after the exit restarted %v", got)
			}
			if !pr.OK() {
				t.Errorf("the resync's pass is not OK: %v", pr.Errors())
			}
			c := e.containerState(svcKey, 1)
			if c.State != tt.wantState {
				t.Errorf("app is %s, want %s", c.State, tt.wantState)
			}
			if tt.wantState == ContainerExited && (c.ExitCode == nil || *c.ExitCode != tt.code) {
				t.Errorf("app exitCode %s, want %d", ptrString(c.ExitCode), tt.code)
			}
			if cell := cellOf(pr.Status, svcKey); cell.State != StateReady {
				t.Errorf("cell svc is %s (%s), want Ready", cell.State, cell.Message)
			}
		})
	}
}

func ptrString(p *uint32) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// crashOnFirstStart is the fake runtime whose container id exits with code
// right after its first start, as a process that dies at once: the exit
// event comes while the pass that started it is still in flight.
type crashOnFirstStart struct {
	*ctrfake.Runtime
	ns, id  string
	code    uint32
	crashed atomic.Bool
}

func (r *crashOnFirstStart) StartContainer(ctx context.Context, ns, id string) (uint32, error) {
	pid, err := r.Runtime.StartContainer(ctx, ns, id)
	if err == nil && ns == r.ns && id == r.id && r.crashed.CompareAndSwap(false, true) {
		r.Exit(ns, id, r.code)
	}
	return pid, err
}

// TestDaemonRestartsAContainerThatExitsDuringThePassThatStartedIt: "a
// containerd task exit … reconciles the owning cell at once" and "the first
// restart right after the exit event", for a container that dies as soon
// as the pass creating its cell starts it — before that pass has told the
// daemon which cell owns the container. The resync is an hour: only the
// exit event can bring the restart.
func TestDaemonRestartsAContainerThatExitsDuringThePassThatStartedIt(t *testing.T) {
	e := newEnv(t)
	e.write("realm.yaml", labRealm)
	e.write("svc.yaml", svcCell("always", 1))
	e.rc.Runtime = &crashOnFirstStart{Runtime: e.rt, ns: labNS, id: svcApp, code: 1}
	stop, _ := e.runDaemon(nil)
	defer stop()
	eventually(t, "app restarted after its exit during the first pass", func() bool {
		c := e.containerState(svcKey, 1)
		return c.State == ContainerRunning && c.RestartCount == 1
	})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}
