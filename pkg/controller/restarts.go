package controller

import (
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// RestartState is what the restart policy needs to remember about a
// container between passes.
type RestartState struct {
	// Count is the number of restarts since the container last ran for
	// RestartResetAfter.
	Count        int
	LastExitCode uint32
	// LastRestart is when the reconciler last restarted the container.
	LastRestart time.Time
}

// Restart backoff bounds (SPEC §5).
const (
	MaxRestartBackoff = 300 * time.Second
	RestartResetAfter = 60 * time.Second
)

// RestartDelay is how long after the previous restart the next one may
// happen: the first restart is immediate, then base, 2×base, 4×base, … up
// to MaxRestartBackoff.
func RestartDelay(base time.Duration, count int) time.Duration {
	if count <= 0 {
		return 0
	}
	d := base
	for i := 1; i < count && d < MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, MaxRestartBackoff)
}

// RestartBook is the one owner of restart bookkeeping: loaded from the
// previous status, read by the assessment (the planner and status both),
// written when a pass restarts a container and reset once a container has
// run for RestartResetAfter. It is keyed by "<namespace>/<containerdID>".
// A book is used by one pass at a time.
type RestartBook struct {
	entries map[string]RestartState
}

// restartBookFrom loads the bookkeeping of a previous status (nil: empty).
func restartBookFrom(prev *Status) *RestartBook {
	b := &RestartBook{entries: map[string]RestartState{}}
	if prev == nil {
		return b
	}
	for _, o := range prev.Objects {
		for _, c := range o.Containers {
			rs := RestartState{Count: c.RestartCount}
			if c.LastExitCode != nil {
				rs.LastExitCode = *c.LastExitCode
			}
			if c.LastRestartAt != nil {
				rs.LastRestart = *c.LastRestartAt
			}
			b.entries[o.Namespace+"/"+c.ContainerdID] = rs
		}
	}
	return b
}

// Get returns the state of a container (zero when none is recorded).
func (b *RestartBook) Get(ns, containerdID string) RestartState {
	if b == nil {
		return RestartState{}
	}
	return b.entries[ns+"/"+containerdID]
}

// recordRestart counts a restart performed at now of a task that had
// exited with exitCode.
func (b *RestartBook) recordRestart(ns, containerdID string, exitCode uint32, now time.Time) {
	k := ns + "/" + containerdID
	rs := b.entries[k]
	rs.Count++
	rs.LastRestart = now
	rs.LastExitCode = exitCode
	b.entries[k] = rs
}

// resetRunning starts the backoff afresh for every container that has been
// running for RestartResetAfter at now.
func (b *RestartBook) resetRunning(obs *Observed, now time.Time) {
	for ns, cs := range obs.Containers {
		for _, c := range cs {
			k := ns + "/" + c.ID
			if rs, ok := b.entries[k]; ok && rs.Count > 0 && c.Task.Status == ctr.TaskRunning &&
				!c.Task.StartedAt.IsZero() && now.Sub(c.Task.StartedAt) >= RestartResetAfter {
				rs.Count = 0
				b.entries[k] = rs
			}
		}
	}
}

// resetLongRuns starts the backoff afresh for every stopped container
// that ran for RestartResetAfter before it exited, though no pass saw it
// running that long (the resync is 30 s): the run is measured from the
// reconciler's last restart of it to the task's exit.
func (b *RestartBook) resetLongRuns(obs *Observed) {
	for ns, cs := range obs.Containers {
		for _, c := range cs {
			k := ns + "/" + c.ID
			rs, ok := b.entries[k]
			if ok && rs.Count > 0 && c.Task.Status == ctr.TaskStopped && !rs.LastRestart.IsZero() &&
				!c.Task.ExitedAt.IsZero() && c.Task.ExitedAt.Sub(rs.LastRestart) >= RestartResetAfter {
				rs.Count = 0
				b.entries[k] = rs
			}
		}
	}
}

// nextRestart is when the policy allows the next restart of dc.
func nextRestart(dc *hierarchy.Container, rs RestartState) time.Time {
	return rs.LastRestart.Add(RestartDelay(time.Duration(*dc.Spec.RestartBackoffSeconds)*time.Second, rs.Count))
}
