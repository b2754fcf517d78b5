package controller

import (
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Verdict is the one judgement of a desired container against what runs:
// the planner turns it into container operations and status into states.
type Verdict string

const (
	// VerdictMissing: no container with the desired ID exists.
	VerdictMissing Verdict = "missing"
	// VerdictSpecChanged: the container's spec hash is not the desired one.
	VerdictSpecChanged Verdict = "spec-changed"
	// VerdictRunning: it runs the desired spec.
	VerdictRunning Verdict = "running"
	// VerdictStart: its task was created but never started, or vanished
	// (containerd restarted): started whatever the policy, which is about
	// exits.
	VerdictStart Verdict = "start"
	// VerdictRestart: it exited and its policy restarts it now.
	VerdictRestart Verdict = "restart"
	// VerdictBackoff: it exited and its policy restarts it at NextRestart.
	VerdictBackoff Verdict = "backoff"
	// VerdictDone: it exited and stays so: restartPolicy never, or
	// on-failure after a clean exit.
	VerdictDone Verdict = "done"
	// VerdictGaveUp: on-failure exhausted restartMaxRetries.
	VerdictGaveUp Verdict = "gave-up"
)

// ContainerView is the assessment of one desired container.
type ContainerView struct {
	Desired  *hierarchy.Container
	Observed ctr.Container // zero unless Verdict is past missing
	Verdict  Verdict
	Restart  RestartState
	// NextRestart is when the policy allows the next restart (backoff).
	NextRestart time.Time
}

// Failed reports whether the container ended in a way the cell must show
// as failed: a non-zero exit under never, or on-failure giving up.
func (v ContainerView) Failed() bool {
	return v.Verdict == VerdictGaveUp || (v.Verdict == VerdictDone && v.Observed.Task.ExitCode != 0)
}

// ShouldRun reports whether the container is meant to be running now.
func (v ContainerView) ShouldRun() bool {
	return v.Desired.Root || (v.Verdict != VerdictDone && v.Verdict != VerdictGaveUp)
}

// assessContainer judges dc against what runs under its ID, with its
// restart bookkeeping, at now. With backoff (the daemon) a restart that is
// due later is VerdictBackoff; a single --once pass restarts what the
// policy allows right away.
func assessContainer(dc *hierarchy.Container, oc ctr.Container, present bool, rs RestartState, now time.Time, backoff bool) ContainerView {
	v := ContainerView{Desired: dc, Observed: oc, Restart: rs}
	switch {
	case !present:
		v.Verdict, v.Observed = VerdictMissing, ctr.Container{}
		return v
	case oc.Labels[ctr.LabelSpecHash] != dc.SpecHash:
		v.Verdict = VerdictSpecChanged
		return v
	case oc.Task.Status == ctr.TaskRunning:
		v.Verdict = VerdictRunning
		return v
	case oc.Task.Status != ctr.TaskStopped:
		v.Verdict = VerdictStart
		return v
	}
	switch dc.Spec.RestartPolicy {
	case v1beta1.RestartAlways:
	case v1beta1.RestartOnFailure:
		if oc.Task.ExitCode == 0 {
			v.Verdict = VerdictDone
			return v
		}
		if int64(rs.Count) >= *dc.Spec.RestartMaxRetries {
			v.Verdict = VerdictGaveUp
			return v
		}
	default:
		v.Verdict = VerdictDone
		return v
	}
	v.NextRestart = nextRestart(dc, rs)
	if rs.LastRestart.IsZero() {
		v.NextRestart = oc.Task.ExitedAt // never restarted: at once
	}
	if backoff && rs.Count > 0 && now.Before(v.NextRestart) {
		v.Verdict = VerdictBackoff
		return v
	}
	v.Verdict = VerdictRestart
	return v
}

// CellView is the assessment of a desired cell: its containers' views in
// declaration order (the root first), and what it observed beyond them.
type CellView struct {
	Containers []ContainerView
	// Observed are every container of the cell on the host by containerd
	// ID, including those no longer declared and those under a previous
	// spec.id.
	Observed map[string]ctr.Container
	// Completed: every workload exited cleanly from the desired spec with
	// the root still running — what kukeon calls an Exited cell, the
	// trigger of autoDelete. A policy that restarts clean exits (always)
	// never completes.
	Completed bool
	// CompletedBefore: an autoDelete cell that ran to completion and was
	// removed; it stays removed until its spec changes.
	CompletedBefore bool
}

// assessCell judges a desired cell against the observation. rec is its
// inventory record (nil when none).
func assessCell(c *hierarchy.Cell, obs *Observed, rec *Record, book *RestartBook, now time.Time, backoff bool) CellView {
	v := CellView{Observed: map[string]ctr.Container{}}
	for _, oc := range obs.ContainersOfCell(c.Namespace, c.Space, c.Stack, c.ID) {
		v.Observed[oc.ID] = oc
	}
	if rec != nil && rec.CellID != "" && rec.CellID != c.ID {
		// spec.id changed: the containers under the old id are this
		// cell's too, and go (the new ids do not match them).
		for _, oc := range obs.ContainersOfCell(c.Namespace, c.Space, c.Stack, rec.CellID) {
			v.Observed[oc.ID] = oc
		}
	}
	for _, dc := range c.Containers {
		oc, ok := v.Observed[dc.ContainerdID]
		v.Containers = append(v.Containers, assessContainer(dc, oc, ok, book.Get(c.Namespace, dc.ContainerdID), now, backoff))
	}
	v.CompletedBefore = c.AutoDelete && rec != nil && rec.Completed != "" && rec.Completed == CellFingerprint(c)
	v.Completed = len(v.Containers) >= 2 && v.Containers[0].Verdict == VerdictRunning
	for _, cv := range v.Containers[1:] {
		if cv.Verdict != VerdictDone || cv.Observed.Task.ExitCode != 0 {
			v.Completed = false
		}
	}
	return v
}
