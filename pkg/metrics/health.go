package metrics

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Health is the daemon's liveness and readiness. Ready means: the first full pass has
// completed AND containerd is reachable (the daemon calls SetContainerdUp; containerd counts
// as down until the first call). Healthy means the process's loop is alive: the daemon calls
// Beat at least once per resync, and Healthy fails once no beat came for staleAfter (the
// daemon passes 3× the resync interval). Being unready never makes the process unhealthy:
// a daemon waiting for containerd keeps answering /healthz with 200 so it is not killed.
// All methods are safe for concurrent use.
type Health struct {
	staleAfter time.Duration
	// now is the clock; tests replace it. Beats are compared with the monotonic reading
	// time.Now carries, so a wall-clock step does not make the loop look stale.
	now func() time.Time

	mu            sync.Mutex
	lastBeat      time.Time
	firstPassDone bool
	containerdUp  bool
	stateErr      string
}

// NewHealth returns a Health that is healthy (its construction counts as the first beat)
// and not ready. A staleAfter of zero or less disables the staleness check.
func NewHealth(staleAfter time.Duration) *Health {
	return newHealth(staleAfter, time.Now)
}

func newHealth(staleAfter time.Duration, now func() time.Time) *Health {
	return &Health{staleAfter: staleAfter, now: now, lastBeat: now()}
}

// Beat records that the daemon's loop is alive.
func (h *Health) Beat() {
	t := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastBeat = t
}

// SetFirstPassDone records that the first full pass has completed. It cannot be undone:
// later failing passes are reported by metrics and status, not by readiness.
func (h *Health) SetFirstPassDone() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.firstPassDone = true
}

// SetContainerdUp records whether containerd answered the daemon's last check.
func (h *Health) SetContainerdUp(up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.containerdUp = up
}

// SetStateError records whether the last pass could write the state dir
// (nil: it could). While it cannot, the daemon is not ready: creates and
// deletes it cannot record are not made.
func (h *Health) SetStateError(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stateErr = ""
	if err != nil {
		h.stateErr = err.Error()
	}
}

// Ready reports whether the daemon is ready and, when it is not, why (every unmet
// condition, joined by "; ").
func (h *Health) Ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var reasons []string
	if !h.firstPassDone {
		reasons = append(reasons, "first pass not done")
	}
	if !h.containerdUp {
		reasons = append(reasons, "containerd unreachable")
	}
	if h.stateErr != "" {
		reasons = append(reasons, "state dir not writable: "+h.stateErr)
	}
	if len(reasons) > 0 {
		return false, strings.Join(reasons, "; ")
	}
	return true, ""
}

// Healthy reports whether the daemon's loop beat within staleAfter and, when it did not,
// how long ago the last beat was.
func (h *Health) Healthy() (bool, string) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.staleAfter <= 0 {
		return true, ""
	}
	if since := now.Sub(h.lastBeat); since > h.staleAfter {
		return false, fmt.Sprintf("no loop beat for %s (limit %s)", since.Round(time.Millisecond), h.staleAfter)
	}
	return true, ""
}
