package faults

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// TestStateDirLock: one reconciler at a time per state dir. Of two --once
// started together one fails at once naming the holder, the other
// converges; a --once beside the daemon fails the same way; with
// --wait-lock it waits for the daemon to stop and then converges.
func TestStateDirLock(t *testing.T) {
	h := newHost(t, testenv.HostOptions{})
	var cells []cell
	for i := 1; i <= 8; i++ {
		cells = append(cells, newCell("lab", fmt.Sprintf("l%d", i)))
	}
	h.declareCells(cells...)
	locked := regexp.MustCompile(`state dir ` + regexp.QuoteMeta(h.State) + ` is locked by pid (\d+) \((reconciler[^)]*) since [^)]+\)`)

	t.Run("two --once at once: one fails at once, the other converges", func(t *testing.T) {
		h := h.in(t)
		a, b := h.Start("--once"), h.Start("--once")
		codeA, errA := a.Wait(2 * deadline)
		codeB, errB := b.Wait(2 * deadline)
		if errA != nil || errB != nil {
			t.Fatalf("--once did not finish: %v %v", errA, errB)
		}
		t.Logf("--once A (pid %d) → exit %d\n%s", a.PID(), codeA, a.Output())
		t.Logf("--once B (pid %d) → exit %d\n%s", b.PID(), codeB, b.Output())
		winner, loser, loserCode := a, b, codeB
		if codeA != 0 {
			winner, loser, loserCode = b, a, codeA
		}
		if !(codeA == 0 && codeB == 1 || codeA == 1 && codeB == 0) {
			t.Errorf("exit codes %d and %d, want one 0 and one 1", codeA, codeB)
		}
		m := locked.FindStringSubmatch(loser.Output())
		switch {
		case m == nil:
			t.Errorf("the --once that exited %d does not say `state dir %s is locked by pid N (reconciler --once since …)`:\n%s",
				loserCode, h.State, loser.Output())
		case m[1] != strconv.Itoa(winner.PID()) || m[2] != "reconciler --once":
			t.Errorf("lock message names pid %s (%s), want the winner %d (reconciler --once): %s", m[1], m[2], winner.PID(), m[0])
		}
		if !loser.ExitedAt().Before(winner.ExitedAt()) {
			t.Errorf("the locked-out --once exited at %s, after the one holding the lock (%s): it must fail at once, not wait",
				loser.ExitedAt().Format(time.RFC3339Nano), winner.ExitedAt().Format(time.RFC3339Nano))
		}
		checkInvariant(t, h)
	})

	t.Run("--once beside the daemon fails, with --wait-lock it waits and converges", func(t *testing.T) {
		h := h.in(t)
		d := h.StartDaemon()
		waitReady(t, d, 200)
		out, code := h.Run("--once")
		m := locked.FindStringSubmatch(out)
		switch {
		case code != 1 || m == nil:
			t.Errorf("--once beside the daemon: exit %d, want 1 with `state dir %s is locked by pid %d (reconciler … since …)`:\n%s",
				code, h.State, d.PID(), out)
		case m[1] != strconv.Itoa(d.PID()):
			t.Errorf("lock message names pid %s, want the daemon's %d: %s", m[1], d.PID(), m[0])
		}

		h.declareCells(newCell("lab", "waited"))
		w := h.Start("--once", "--wait-lock", "60s")
		if ok, _ := testenv.Eventually(2*time.Second, 100*time.Millisecond, func() (bool, string) {
			return !w.Running(), ""
		}); ok {
			t.Errorf("--once --wait-lock 60s exited %d while the daemon holds the lock, want it to wait:\n%s",
				w.ExitCode(), w.Output())
		}
		stopped := time.Now()
		if _, err := d.Stop(); err != nil {
			t.Errorf("stop daemon: %v", err)
		}
		code, err := w.Wait(2 * deadline)
		t.Logf("--once --wait-lock 60s → exit %d\n%s", code, w.Output())
		if err != nil || code != 0 {
			t.Errorf("--once --wait-lock 60s after the daemon stopped: exit %d (%v), want 0", code, err)
		} else if w.ExitedAt().Before(stopped) {
			t.Errorf("--once --wait-lock 60s converged before the daemon stopped")
		}
		checkInvariant(t, h)
	})
}
