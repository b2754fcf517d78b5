package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// planCell compares a desired cell with its observed containers and cgroup.
//
// The root container owns the cell's net, IPC and UTS namespaces and the
// workloads joined them by the root's PID, so a root that is missing,
// changed or not running recreates the whole cell. Otherwise each workload
// is compared on its own: missing → create, spec hash changed → recreate,
// task ended → restart per its restartPolicy, user labels changed → relabel.
func planCell(in PlanInput, c *hierarchy.Cell) (ch Change, wait time.Duration) {
	ch = Change{Level: LevelCell, Kind: v1beta1.KindCell, Key: c.Key(), Cell: c,
		Parent: hierarchy.StackKey(c.Realm, c.Space, c.Stack)}
	ch.Record = in.Inventory.Objects[ch.Key]

	observed := map[string]ctr.Container{}
	for _, oc := range in.Observed.ContainersOfCell(c.Namespace, c.Space, c.Stack, c.ID) {
		observed[oc.ID] = oc
	}
	if rec := ch.Record; rec != nil && rec.CellID != "" && rec.CellID != c.ID {
		// spec.id changed: the containers under the old id are this cell's
		// too, and go (the new ids do not match them).
		for _, oc := range in.Observed.ContainersOfCell(c.Namespace, c.Space, c.Stack, rec.CellID) {
			observed[oc.ID] = oc
		}
	}
	desiredIDs := map[string]bool{}
	for _, dc := range c.Containers {
		desiredIDs[dc.ContainerdID] = true
	}

	if c.AutoDelete && ch.Record != nil && ch.Record.Completed != "" && ch.Record.Completed == CellFingerprint(c) {
		// Ran to completion and was removed: stays removed until its
		// spec changes.
		ch.Action = ActionUnchanged
		ch.Reasons = []string{"completed"}
		return ch, 0
	}
	if c.AutoDelete && completed(c, observed) {
		ch.Action = ActionDeleted
		ch.Reasons = []string{"completed (autoDelete)"}
		ch.Steps = []Step{StepDeleteCgroup}
		for _, id := range sortedKeys(observed) {
			ch.Containers = append(ch.Containers, ContainerChange{ID: containerShortID(id), ContainerdID: id,
				Root: observed[id].Labels[ctr.LabelContainerType] == "root", Action: ContainerDelete})
		}
		sortDeletes(ch.Containers)
		return ch, 0
	}
	ch.Steps, ch.Reasons, ch.ResourceFiles = planCgroup(in, c.CgroupPath, c.Resources, c.NestedCgroupRuntime)

	root, rootSeen := observed[c.Root.ContainerdID]
	rootReason := ""
	switch {
	case !rootSeen:
		rootReason = "root container missing"
	case root.Labels[ctr.LabelSpecHash] != c.Root.SpecHash:
		rootReason = "root container spec changed"
		if f := changedFields(ch.Record, c.Root); len(f) > 0 {
			rootReason += " (" + strings.Join(f, ", ") + ")"
		}
	case root.Task.Status != ctr.TaskRunning:
		rootReason = fmt.Sprintf("root container %s", taskWords(root.Task))
	}

	if rootReason != "" {
		if len(observed) == 0 {
			// Nothing runs: a plain create, not disruptive.
			for _, dc := range c.Containers {
				ch.Containers = append(ch.Containers, ContainerChange{ID: dc.Spec.ID, ContainerdID: dc.ContainerdID,
					Root: dc.Root, Action: ContainerCreate})
			}
			if ch.Record == nil && !in.Observed.Cgroups[c.CgroupPath].Exists {
				ch.Action = ActionCreated
			} else {
				ch.Action = ActionUpdated
				ch.Reasons = append(ch.Reasons, "containers missing")
			}
			return ch, 0
		}
		ch.Action = ActionRecreated
		ch.Reasons = append(ch.Reasons, rootReason)
		for _, id := range sortedKeys(observed) {
			if !desiredIDs[id] {
				ch.Containers = append(ch.Containers, ContainerChange{ID: containerShortID(id), ContainerdID: id,
					Root: observed[id].Labels[ctr.LabelContainerType] == "root", Action: ContainerDelete, Reason: "no longer declared"})
			}
		}
		for _, dc := range c.Containers {
			a := ContainerRecreate
			if _, ok := observed[dc.ContainerdID]; !ok {
				a = ContainerCreate
			}
			ch.Containers = append(ch.Containers, ContainerChange{ID: dc.Spec.ID, ContainerdID: dc.ContainerdID,
				Root: dc.Root, Action: a})
		}
		return ch, 0
	}

	ch.RootPID = root.Task.PID
	for _, id := range sortedKeys(observed) {
		if !desiredIDs[id] {
			ch.Containers = append(ch.Containers, ContainerChange{ID: containerShortID(id), ContainerdID: id,
				Action: ContainerDelete, Reason: "no longer declared"})
		}
	}
	for _, dc := range c.Containers[1:] {
		oc, ok := observed[dc.ContainerdID]
		cc := ContainerChange{ID: dc.Spec.ID, ContainerdID: dc.ContainerdID}
		switch {
		case !ok:
			cc.Action = ContainerCreate
			cc.Reason = "missing"
		case oc.Labels[ctr.LabelSpecHash] != dc.SpecHash:
			cc.Action = ContainerRecreate
			cc.Reason = "spec changed"
			cc.Fields = changedFields(ch.Record, dc)
		case oc.Task.Status != ctr.TaskRunning:
			restart, after := shouldRestart(in, c, dc, oc)
			if after > 0 && (wait == 0 || after < wait) {
				wait = after
			}
			if !restart {
				break
			}
			cc.Action = ContainerStart
			cc.Reason = taskWords(oc.Task)
		case !labelsMatch(oc.Labels, c.Labels):
			cc.Action = ContainerRelabel
			cc.Reason = "labels changed"
		}
		if cc.Action != "" {
			ch.Containers = append(ch.Containers, cc)
		}
	}
	if !labelsMatch(root.Labels, c.Labels) {
		ch.Containers = append(ch.Containers, ContainerChange{ID: c.Root.Spec.ID, ContainerdID: c.Root.ContainerdID,
			Root: true, Action: ContainerRelabel, Reason: "labels changed"})
	}
	if len(ch.Steps) > 0 || len(ch.Containers) > 0 {
		ch.Action = ActionUpdated
	} else {
		ch.Action = ActionUnchanged
	}
	return ch, wait
}

// shouldRestart applies the restart policy to a workload whose task is not
// running. A task that was created but never started, or that vanished
// (containerd restarted), is always started: the policy is about exits.
// With backoff, a restart that is due later returns false and the wait.
func shouldRestart(in PlanInput, c *hierarchy.Cell, dc *hierarchy.Container, oc ctr.Container) (bool, time.Duration) {
	if oc.Task.Status != ctr.TaskStopped {
		return true, 0
	}
	rs := in.Observed.Restarts[c.Namespace+"/"+dc.ContainerdID]
	switch dc.Spec.RestartPolicy {
	case v1beta1.RestartAlways:
	case v1beta1.RestartOnFailure:
		if oc.Task.ExitCode == 0 || int64(rs.Count) >= *dc.Spec.RestartMaxRetries {
			return false, 0
		}
	default:
		return false, 0
	}
	if !in.Backoff {
		return true, 0
	}
	base := time.Duration(*dc.Spec.RestartBackoffSeconds) * time.Second
	next := rs.LastRestart.Add(RestartDelay(base, rs.Count))
	if rs.Count == 0 || !in.Now.Before(next) {
		return true, 0
	}
	return false, next.Sub(in.Now)
}

func taskWords(t ctr.Task) string {
	switch t.Status {
	case ctr.TaskStopped:
		return fmt.Sprintf("exited with code %d", t.ExitCode)
	case ctr.TaskNone:
		return "has no task"
	default:
		return string(t.Status)
	}
}

// DesiredLabels are the labels a container of cell c carries.
func DesiredLabels(c *hierarchy.Cell, dc *hierarchy.Container) map[string]string {
	l := maps.Clone(c.Labels)
	if l == nil {
		l = map[string]string{}
	}
	typ := "container"
	if dc.Root {
		typ = "root"
	}
	l[ctr.LabelRealm] = c.Realm
	l[ctr.LabelSpace] = c.Space
	l[ctr.LabelStack] = c.Stack
	l[ctr.LabelCell] = c.ID
	l[ctr.LabelContainerType] = typ
	l[ctr.LabelManagedBy] = ctr.ManagedByValue
	l[ctr.LabelSpecHash] = dc.SpecHash
	return l
}

// labelsMatch compares the user labels (keys outside kukeon.io/) of a
// container with the cell's labels.
func labelsMatch(observed, want map[string]string) bool {
	n := 0
	for k, v := range observed {
		if isManagedLabel(k) {
			continue
		}
		n++
		if want[k] != v {
			return false
		}
	}
	return n == len(want)
}

func isManagedLabel(k string) bool {
	return strings.HasPrefix(k, "kukeon.io/") || strings.Contains(strings.SplitN(k, "/", 2)[0], ".kukeon.io") ||
		strings.HasPrefix(k, "io.containerd.")
}

// changedFields names the top-level container fields that differ between
// the spec recorded at creation and the desired one. It returns nil when the
// record has no spec (created by an older version or adopted).
func changedFields(rec *Record, dc *hierarchy.Container) []string {
	if rec == nil || rec.Containers[dc.ContainerdID] == nil || len(rec.Containers[dc.ContainerdID].Spec) == 0 {
		return nil
	}
	var old, cur map[string]json.RawMessage
	if json.Unmarshal(rec.Containers[dc.ContainerdID].Spec, &old) != nil {
		return nil
	}
	b, _ := json.Marshal(dc.Spec)
	_ = json.Unmarshal(b, &cur)
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range cur {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if compactJSON(old[k]) != compactJSON(cur[k]) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// compactJSON normalises whitespace: the inventory is written indented.
func compactJSON(b json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// CellFingerprint identifies a cell's spec: its containers' spec hashes.
func CellFingerprint(c *hierarchy.Cell) string {
	var b strings.Builder
	for _, dc := range c.Containers {
		b.WriteString(dc.ContainerdID)
		b.WriteByte('=')
		b.WriteString(dc.SpecHash)
		b.WriteByte(';')
	}
	return b.String()
}

// completed reports whether every workload of the cell exited cleanly
// (code 0) from the spec that is desired now, with the root still running:
// what kukeon calls an Exited cell, the trigger of autoDelete. A policy that
// restarts clean exits (always) never completes.
func completed(c *hierarchy.Cell, observed map[string]ctr.Container) bool {
	root, ok := observed[c.Root.ContainerdID]
	if !ok || root.Task.Status != ctr.TaskRunning || len(c.Containers) < 2 {
		return false
	}
	for _, dc := range c.Containers[1:] {
		oc, ok := observed[dc.ContainerdID]
		if !ok || oc.Labels[ctr.LabelSpecHash] != dc.SpecHash || oc.Task.Status != ctr.TaskStopped ||
			oc.Task.ExitCode != 0 || dc.Spec.RestartPolicy == v1beta1.RestartAlways {
			return false
		}
	}
	return true
}
