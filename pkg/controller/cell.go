package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
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
	v := assessCell(c, in.Observed, ch.Record, in.Restarts, in.Now, in.Backoff)
	observed := v.Observed
	desiredIDs := map[string]bool{}
	for _, dc := range c.Containers {
		desiredIDs[dc.ContainerdID] = true
	}

	if v.CompletedBefore {
		ch.Action = ActionUnchanged
		ch.Reasons = []string{"completed"}
		return ch, 0
	}
	if c.AutoDelete && v.Completed {
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
	planCgroup(in, &ch, c.CgroupPath, c.Resources, c.NestedCgroupRuntime)

	root := v.Containers[0]
	rootReason := ""
	switch root.Verdict {
	case VerdictMissing:
		rootReason = "root container missing"
	case VerdictSpecChanged:
		rootReason = "root container spec changed"
		if f := changedFields(ch.Record, c.Root); len(f) > 0 {
			rootReason += " (" + joinDiffs(f) + ")"
		}
	case VerdictRunning:
	default:
		rootReason = fmt.Sprintf("root container %s", taskWords(root.Observed.Task))
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
		for _, cv := range v.Containers {
			a := ContainerRecreate
			if cv.Verdict == VerdictMissing {
				a = ContainerCreate
			}
			ch.Containers = append(ch.Containers, ContainerChange{ID: cv.Desired.Spec.ID, ContainerdID: cv.Desired.ContainerdID,
				Root: cv.Desired.Root, Action: a})
		}
		return ch, 0
	}

	ch.RootPID = root.Observed.Task.PID
	for _, id := range sortedKeys(observed) {
		if !desiredIDs[id] {
			ch.Containers = append(ch.Containers, ContainerChange{ID: containerShortID(id), ContainerdID: id,
				Action: ContainerDelete, Reason: "no longer declared"})
		}
	}
	for _, cv := range v.Containers[1:] {
		dc := cv.Desired
		cc := ContainerChange{ID: dc.Spec.ID, ContainerdID: dc.ContainerdID}
		switch cv.Verdict {
		case VerdictMissing:
			cc.Action, cc.Reason = ContainerCreate, "missing"
		case VerdictSpecChanged:
			cc.Action, cc.Reason = ContainerRecreate, "spec changed"
			cc.Diffs = changedFields(ch.Record, dc)
			for _, d := range cc.Diffs {
				cc.Fields = append(cc.Fields, d.Field)
			}
		case VerdictStart, VerdictRestart:
			cc.Action, cc.Reason = ContainerStart, taskWords(cv.Observed.Task)
		case VerdictBackoff:
			if after := cv.NextRestart.Sub(in.Now); wait == 0 || after < wait {
				wait = after
			}
		case VerdictRunning:
			if !labelsMatch(cv.Observed.Labels, c.Labels) {
				cc.Action, cc.Reason = ContainerRelabel, "labels changed"
			}
		}
		if cc.Action != "" {
			ch.Containers = append(ch.Containers, cc)
		}
	}
	if !labelsMatch(root.Observed.Labels, c.Labels) {
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

// FieldDiff is one top-level container field that differs between the
// spec a container was created from and the desired one.
type FieldDiff struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

func (d FieldDiff) String() string { return d.Field + " " + d.Old + " → " + d.New }

// changedFields returns the fields that differ between the spec recorded at
// creation and the desired one, with old and new values (lists of strings
// as the elements removed and added; secrets and credentials redacted). It
// returns nil when the record has no spec (created by an older version, or
// adopted).
func changedFields(rec *Record, dc *hierarchy.Container) []FieldDiff {
	if rec == nil || rec.Containers[dc.ContainerdID] == nil || len(rec.Containers[dc.ContainerdID].Spec) == 0 {
		return nil
	}
	var old, cur map[string]json.RawMessage
	if json.Unmarshal(rec.Containers[dc.ContainerdID].Spec, &old) != nil {
		return nil
	}
	b, err := json.Marshal(dc.Spec)
	if err != nil || json.Unmarshal(b, &cur) != nil {
		return nil
	}
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range cur {
		keys[k] = true
	}
	var out []FieldDiff
	for _, k := range sortedKeys(keys) {
		o, n := compactJSON(old[k]), compactJSON(cur[k])
		if o == n {
			continue
		}
		d := FieldDiff{Field: k, Old: o, New: n}
		if os, ns, ok := stringLists(old[k], cur[k]); ok {
			d.Old, d.New = listDelta(os, ns)
		}
		if sensitive(k) {
			d.Old, d.New = redacted, redacted
		}
		if d.Old == "" {
			d.Old = "(unset)"
		}
		if d.New == "" {
			d.New = "(unset)"
		}
		out = append(out, d)
	}
	return out
}

const redacted = "(redacted)"

// sensitive reports whether a field carries secret values.
func sensitive(field string) bool {
	f := strings.ToLower(field)
	return strings.Contains(f, "secret") || strings.Contains(f, "password") || strings.Contains(f, "token") || strings.Contains(f, "credential")
}

// stringLists decodes two JSON values as lists of strings (null is empty).
func stringLists(a, b json.RawMessage) (x, y []string, ok bool) {
	dec := func(m json.RawMessage) ([]string, bool) {
		if len(m) == 0 || string(m) == "null" {
			return nil, true
		}
		var l []string
		return l, json.Unmarshal(m, &l) == nil
	}
	x, okA := dec(a)
	y, okB := dec(b)
	return x, y, okA && okB
}

// listDelta renders what a list lost and gained: ["A=1","B=2"] → ["A=2",
// "B=2"] reads "A=1 → A=2". A reorder alone shows both lists.
func listDelta(old, cur []string) (string, string) {
	var lost, gained []string
	for _, s := range old {
		if !slices.Contains(cur, s) {
			lost = append(lost, s)
		}
	}
	for _, s := range cur {
		if !slices.Contains(old, s) {
			gained = append(gained, s)
		}
	}
	if len(lost) == 0 && len(gained) == 0 {
		lost, gained = old, cur
	}
	return strings.Join(lost, " "), strings.Join(gained, " ")
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

// joinDiffs renders diffs as "env A=1 → A=2; image a → b".
func joinDiffs(ds []FieldDiff) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, "; ")
}
