package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/testenv"
)

// readyWithin is the functional deadline: /readyz answers 503 at
// most this long after containerd dies.
const readyWithin = time.Second

// TestContainerdKilledMidPass: containerd SIGKILLed in the middle of a pass
// (of the daemon, then of --once) and started again loses nothing; the next
// pass converges. The daemon's /readyz says 503 within a second of the kill,
// idle or in a pass, and 200 again once containerd is back.
func TestContainerdKilledMidPass(t *testing.T) {
	h := newHost(t, testenv.HostOptions{})
	batch := func(prefix string) []cell {
		var out []cell
		for i := 1; i <= 6; i++ {
			out = append(out, newCell("lab", fmt.Sprintf("%s%d", prefix, i)))
		}
		return out
	}
	ns := h.Namespace("lab")
	// count dials afresh: containerd restarts between the calls.
	count := func(h *host) int {
		cl := h.client()
		defer cl.Close()
		return h.ours(cl, ns)
	}

	t.Run("the daemon turns unready at once, idle or mid-pass, and converges after the restart", func(t *testing.T) {
		h := h.in(t)
		h.declareCells(batch("a")...)
		converge(t, h)
		d := h.StartDaemon()
		waitReady(t, d, 200)

		// Idle: the daemon has converged and no pass runs.
		h.killContainerd(t)
		expectUnready(t, d, "containerd killed while the daemon is idle")
		restarted := h.restartContainerd(t)
		waitReady(t, d, 200)
		h.waitPassOK(t, restarted)

		h.declareCells(batch("b")...)
		before := count(h)
		testenv.WaitFor(t, "the daemon's pass has created 2 containers", deadline, 10*time.Millisecond, func() (bool, string) {
			n := count(h)
			return n >= before+2, fmt.Sprintf("%d containers, %d before the edit", n, before)
		})
		h.killContainerd(t)
		expectUnready(t, d, "containerd killed mid-pass")
		restarted = h.restartContainerd(t)
		waitReady(t, d, 200)
		h.waitPassOK(t, restarted)
		if _, err := d.Stop(); err != nil {
			t.Errorf("stop daemon: %v", err)
		}
		checkInvariant(t, h)
	})

	t.Run("a --once pass fails and the next converges", func(t *testing.T) {
		h := h.in(t)
		h.declareCells(batch("c")...)
		before := count(h)
		p := h.Start("--once")
		testenv.WaitFor(t, "the pass has created 4 containers", deadline, 10*time.Millisecond, func() (bool, string) {
			n := count(h)
			return n >= before+4 || !p.Running(), fmt.Sprintf("%d containers, %d before", n, before)
		})
		h.killContainerd(t)
		code, err := p.Wait(2 * deadline)
		t.Logf("--once with containerd killed → exit %d\n%s", code, p.Output())
		if err != nil || code != 1 {
			t.Errorf("--once with containerd killed mid-pass: exit %d (%v), want 1", code, err)
		}
		h.restartContainerd(t)
		converge(t, h)
	})
}

func (h *host) killContainerd(t *testing.T) {
	t.Helper()
	if err := h.Containerd.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("containerd %d SIGKILLed", h.Containerd.PID)
}

// restartContainerd starts containerd again and returns when it answers.
func (h *host) restartContainerd(t *testing.T) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := h.Containerd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("containerd restarted as %d", h.Containerd.PID)
	return time.Now()
}

// expectUnready polls /readyz every 50 ms and reports an error unless it
// answers 503 within readyWithin.
func expectUnready(t *testing.T, d *testenv.Daemon, what string) {
	t.Helper()
	start := time.Now()
	var code int
	var body string
	for time.Since(start) <= readyWithin {
		if code, body = d.Get("/readyz"); code == 503 {
			t.Logf("%s: /readyz 503 after %s: %s", what, time.Since(start).Round(time.Millisecond), body)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("%s: /readyz did not answer 503 within %s; last answer %d %q", what, readyWithin, code, body)
}

// waitReady waits until /readyz answers want.
func waitReady(t *testing.T, d *testenv.Daemon, want int) {
	t.Helper()
	testenv.WaitFor(t, fmt.Sprintf("/readyz %d", want), deadline, 50*time.Millisecond, func() (bool, string) {
		code, body := d.Get("/readyz")
		return code == want, fmt.Sprintf("%d %s", code, body)
	})
}

// waitPassOK waits until status.json records a pass that started after
// since and converged, and reports an error when none does in time.
func (h *host) waitPassOK(t *testing.T, since time.Time) {
	t.Helper()
	ok, why := testenv.Eventually(deadline, 100*time.Millisecond, func() (bool, string) {
		st, err := controller.LoadStatus(filepath.Join(h.State, "status.json"))
		if err != nil || st == nil {
			return false, fmt.Sprintf("status: %v", err)
		}
		if !st.Pass.StartedAt.After(since) {
			return false, "last pass started " + st.Pass.StartedAt.Format(time.RFC3339Nano)
		}
		return st.Pass.OK, "last pass errors:\n  " + strings.Join(st.Pass.Errors, "\n  ")
	})
	if !ok {
		t.Errorf("no converged pass within %s of %s: %s", deadline, since.Format(time.RFC3339Nano), why)
	}
}
