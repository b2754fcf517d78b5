package controller

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Action is what a pass does to an object. The values complete the sentence
// "Cell lab/web/blog/frontend has been …".
type Action string

const (
	ActionUnchanged Action = "unchanged"
	ActionCreated   Action = "created"
	ActionUpdated   Action = "updated"
	ActionRecreated Action = "recreated"
	ActionDeleted   Action = "deleted"
)

// Disruptive reports whether the action deletes or recreates something.
func (a Action) Disruptive() bool { return a == ActionRecreated || a == ActionDeleted }

// Level is one of the four kinds.
type Level int

const (
	LevelRealm Level = iota
	LevelSpace
	LevelStack
	LevelCell
)

func (l Level) String() string {
	return [...]string{"Realm", "Space", "Stack", "Cell"}[l]
}

// Change is the planned action on one object. It is pure data: printed,
// stored in status and asserted in tests.
type Change struct {
	Level  Level  `json:"-"`
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	Action Action `json:"action"`
	// Phase is the step of the pass the change runs in: "delete Cell" …
	// "delete Realm" (bottom-up), then "apply Realm" … "apply Cell"
	// (top-down). Changes of one phase run in parallel (siblings).
	Phase string `json:"phase"`
	// Reasons say why, in plain words ("cgroup missing", "memory.max differs").
	Reasons []string `json:"reasons,omitempty"`
	// Implied marks an object no manifest declares.
	Implied bool `json:"implied,omitempty"`
	// Steps are the level's own operations, in order.
	Steps []Step `json:"steps,omitempty"`
	// Containers are the container operations of a cell change.
	Containers []ContainerChange `json:"containers,omitempty"`

	// Desired objects (nil for deletes); Record is the inventory entry (nil
	// for creates of new objects).
	Realm  *hierarchy.Realm `json:"-"`
	Space  *hierarchy.Space `json:"-"`
	Stack  *hierarchy.Stack `json:"-"`
	Cell   *hierarchy.Cell  `json:"-"`
	Record *Record          `json:"-"`
	// Parent is the key of the parent object ("" for realms).
	Parent string `json:"-"`
	// Delegate are the controllers the level's cgroup is ensured with (set
	// with StepEnsureCgroup); Writes are its resource files to write, with
	// the observed and the new value.
	Delegate []string    `json:"delegate,omitempty"`
	Writes   []FileWrite `json:"writes,omitempty"`
	// RootPID is the PID of the running root task of a cell whose root is
	// kept; new workloads join its namespaces.
	RootPID uint32 `json:"-"`
	// Refused says why a desired change cannot be made (a breaking change
	// the operator must resolve); applying it fails and blocks children.
	Refused string `json:"refused,omitempty"`
}

// phaseOf names the phase of a prune (delete) or of a desired object.
func phaseOf(prune bool, l Level) string {
	if prune {
		return "delete " + l.String()
	}
	return "apply " + l.String()
}

// Step is one level operation.
type Step string

const (
	StepEnsureNamespace Step = "ensure-namespace"
	StepEnsureCgroup    Step = "ensure-cgroup"
	StepWriteResources  Step = "write-resources"
	StepRecordOnly      Step = "record"
	StepDeleteCgroup    Step = "delete-cgroup"
	StepDeleteNamespace Step = "delete-namespace"
)

// ContainerAction is what happens to one container of a cell.
type ContainerAction string

const (
	ContainerCreate   ContainerAction = "create"
	ContainerRecreate ContainerAction = "recreate"
	ContainerStart    ContainerAction = "start" // restart a stopped task
	ContainerRelabel  ContainerAction = "relabel"
	ContainerDelete   ContainerAction = "delete"
)

// ContainerChange is one container operation in a cell change.
type ContainerChange struct {
	ID           string          `json:"id"`
	ContainerdID string          `json:"containerdId"`
	Root         bool            `json:"root,omitempty"`
	Action       ContainerAction `json:"action"`
	Reason       string          `json:"reason,omitempty"`
	// Fields name the container fields whose change forces the recreate;
	// Diffs carry their old and new values.
	Fields []string    `json:"fields,omitempty"`
	Diffs  []FieldDiff `json:"diffs,omitempty"`
}

// Plan is the ordered list of changes of one pass. Unchanged objects are
// included (Action unchanged) so output with -v and status can list them.
type Plan struct {
	Changes []Change `json:"changes"`
	// Warnings are problems that did not stop planning (a refused prune).
	Warnings []string `json:"warnings,omitempty"`
	// Kept are recorded objects that are no longer declared and are not
	// deleted, with the reason (see planPrune).
	Kept []Kept `json:"kept,omitempty"`
	// RequeueAfter is set when a restart is held back by its backoff: the
	// soonest time a pass should look again.
	RequeueAfter time.Duration `json:"requeueAfter,omitempty"`
}

// Counts tallies actions.
func (p *Plan) Counts() map[Action]int {
	c := map[Action]int{}
	for _, ch := range p.Changes {
		c[ch.Action]++
	}
	return c
}

// HasChanges reports whether anything would be done.
func (p *Plan) HasChanges() bool {
	for _, ch := range p.Changes {
		if ch.Action != ActionUnchanged {
			return true
		}
	}
	return false
}

// Disruptive reports whether the plan deletes or recreates anything,
// including a single container of a cell.
func (p *Plan) Disruptive() bool {
	for _, ch := range p.Changes {
		if ch.Action.Disruptive() {
			return true
		}
		for _, cc := range ch.Containers {
			if cc.Action == ContainerRecreate || cc.Action == ContainerDelete {
				return true
			}
		}
	}
	return false
}

// meta is the desired object's common part; nil for a delete.
func (c *Change) meta() *hierarchy.Meta {
	switch {
	case c.Cell != nil:
		return &c.Cell.Meta
	case c.Stack != nil:
		return &c.Stack.Meta
	case c.Space != nil:
		return &c.Space.Meta
	case c.Realm != nil:
		return &c.Realm.Meta
	}
	return nil
}

// source is where the object is declared ("" when implied).
func (c *Change) source() string {
	if m := c.meta(); m != nil {
		if m.Implied {
			return ""
		}
		return m.Source.String()
	}
	if c.Record != nil {
		return c.Record.Source
	}
	return ""
}

// cgroup is the object's group path.
func (c *Change) cgroup() string {
	if m := c.meta(); m != nil {
		return m.CgroupPath
	}
	if c.Record != nil {
		return c.Record.Cgroup
	}
	return ""
}

// deferred reports whether deletions wait for quiet manifests.
func (p *Plan) deferred() bool {
	for _, k := range p.Kept {
		if k.Why == KeptDeferred {
			return true
		}
	}
	return false
}

// Refused reports whether any change is refused.
func (p *Plan) Refused() bool {
	for _, ch := range p.Changes {
		if ch.Refused != "" {
			return true
		}
	}
	return false
}

// Describe renders the change as the rest of the sentence after its key,
// e.g. "updated: container sidecar recreated (env)".
func (c *Change) Describe() string {
	if c.Refused != "" {
		return "refused: " + c.Refused
	}
	out := string(c.Action)
	if c.Implied {
		out += " (implied)"
	}
	var parts []string
	switch c.Action {
	case ActionCreated, ActionUnchanged:
		return out
	case ActionUpdated:
		for _, cc := range c.Containers {
			s := fmt.Sprintf("container %s %s", cc.ID, pastTense(cc.Action))
			switch {
			case len(cc.Diffs) > 0:
				s += " (" + joinDiffs(cc.Diffs) + ")"
			case len(cc.Fields) > 0:
				s += " (" + strings.Join(cc.Fields, ", ") + ")"
			case cc.Reason != "":
				s += " (" + cc.Reason + ")"
			}
			parts = append(parts, s)
		}
	}
	for _, r := range c.Reasons {
		if !slices.Contains(parts, r) {
			parts = append(parts, r)
		}
	}
	if len(parts) > 0 {
		out += ": " + strings.Join(parts, "; ")
	}
	return out
}

func pastTense(a ContainerAction) string {
	switch a {
	case ContainerCreate:
		return "created"
	case ContainerRecreate:
		return "recreated"
	case ContainerStart:
		return "restarted"
	case ContainerRelabel:
		return "relabeled"
	case ContainerDelete:
		return "deleted"
	}
	return string(a)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
