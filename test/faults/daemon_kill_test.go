package faults

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// kills is how many times each phase of TestDaemonKilledAtRandomPoints
// SIGKILLs the daemon.
const kills = 10

// TestDaemonKilledAtRandomPoints: a daemon SIGKILLed anywhere in a 30-cell
// converge, and anywhere in the prune of those 30 cells, loses nothing and
// leaves nothing behind that one --once does not finish.
//
// A kill point is a number of our containers: the daemon is killed, after a
// random few milliseconds more, once that many exist (converge) or are left
// (prune), then started again for the next point. Points are drawn from the
// seeded source, so a failing run repeats with its FAULTS_SEED.
func TestDaemonKilledAtRandomPoints(t *testing.T) {
	h := newHost(t, testenv.HostOptions{})
	rng := seeded(t)
	keeper := newCell("lab", "keeper")
	h.declareCells(keeper)
	converge(t, h)
	ns := h.Namespace("lab")
	h.plantForeign(ns, "web_blog_c01_foreign", newCell("lab", "c01"))

	var cells []cell
	for i := 1; i <= 30; i++ {
		cells = append(cells, newCell("lab", fmt.Sprintf("c%02d", i)))
	}
	h.declareCells(cells...)
	all := 2 * (len(cells) + 1) // a root and app per cell, keeper included

	t.Run("killed during the converge", func(t *testing.T) {
		h := h.in(t)
		for i, target := range killPoints(rng, 2, all) {
			if !h.killWhen(t, rng, i, fmt.Sprintf("%d of %d containers exist", target, all),
				func(n int) bool { return n >= target }) {
				break
			}
		}
		converge(t, h)
	})

	t.Run("killed during the prune", func(t *testing.T) {
		h := h.in(t)
		for _, c := range cells {
			h.undeclare(c.name + ".yaml")
		}
		points := killPoints(rng, 3, all+1)
		slices.Reverse(points)
		for i, target := range points {
			if !h.killWhen(t, rng, i, fmt.Sprintf("%d of %d containers are left", target, all),
				func(n int) bool { return n <= target }) {
				break
			}
		}
		converge(t, h)
	})
}

// killPoints returns kills distinct numbers in [lo, hi), ascending.
func killPoints(rng *rand.Rand, lo, hi int) []int {
	var out []int
	for _, v := range rng.Perm(hi - lo)[:kills] {
		out = append(out, lo+v)
	}
	slices.Sort(out)
	return out
}

// killWhen starts the daemon, waits until reached holds for the number of
// our containers in realm lab, waits 0–40 ms more and SIGKILLs it. It
// reports false, with the daemon's log, when the daemon gets stuck short of
// the point: later points are then moot.
func (h *host) killWhen(t *testing.T, rng *rand.Rand, round int, what string, reached func(int) bool) bool {
	t.Helper()
	d := h.Start("--log-format", "json")
	cl := h.client()
	defer cl.Close()
	ns := h.Namespace("lab")
	end := time.Now().Add(deadline)
	n := h.ours(cl, ns)
	for n < 0 || !reached(n) {
		if !d.Running() {
			t.Errorf("kill %d: the daemon exited by itself before %s:\n%s", round+1, what, d.Tail(50))
			return false
		}
		if time.Now().After(end) {
			d.Kill()
			t.Errorf("kill %d: the daemon got stuck: not %s within %s (%d containers); its log:\n%s",
				round+1, what, deadline, n, d.Tail(40))
			return false
		}
		time.Sleep(10 * time.Millisecond)
		n = h.ours(cl, ns)
	}
	extra := time.Duration(rng.Intn(40)) * time.Millisecond
	time.Sleep(extra)
	d.Kill()
	t.Logf("kill %d: %s (%d seen, SIGKILL %s later, %d at the kill)", round+1, what, n, extra, h.ours(cl, ns))
	return true
}
