package controller

// The level controller: realm, space and stack (and the cgroup part of a
// cell) — assess, plan and apply over the hierarchy's metadata. A realm is
// a containerd namespace and a cgroup; a space and a stack are cgroups; each
// delegates controllers to its children and carries resource limits.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// baseControllers are delegated on every level (SPEC §3).
var baseControllers = []string{"cpu", "io", "memory", "pids"}

// WantedControllers is the set a level asks to delegate: cpu, io, memory,
// pids, plus cpuset when its resources pin cpus or mems, or every controller
// the host has for a nested cgroup runtime.
func WantedControllers(res *v1beta1.Resources, nested bool, available []string) []string {
	if nested {
		return slices.Clone(available)
	}
	want := slices.Clone(baseControllers)
	if res != nil && res.CPU != nil && (res.CPU.Cpus != "" || res.CPU.Mems != "") {
		want = append(want, "cpuset")
	}
	sort.Strings(want)
	return want
}

// intersect returns a ∩ b, sorted.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// subtract returns a − b, sorted.
func subtract(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// FileWrite is one cgroup interface file the plan writes: the value
// observed (empty when the file was not read or does not exist) and the
// value to write.
type FileWrite struct {
	File string `json:"file"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// LevelView is the one judgement of a level cgroup: planner and status both
// read it.
type LevelView struct {
	Exists bool
	// Delegated is what cgroup.subtree_control holds.
	Delegated []string
	// Delegate is what the level asks for and the host offers; Undelegated
	// the part of it that is not delegated yet.
	Delegate, Undelegated []string
	// Missing are controllers asked for that the host does not offer.
	Missing []string
	// Writes are the resource files whose observed value does not satisfy
	// the desired one. Files of controllers the host lacks are left out:
	// they cannot be written, and Missing reports the controller.
	Writes []FileWrite
}

// assessLevel judges the cgroup at path against its desired resources.
func assessLevel(obs *Observed, path string, res *v1beta1.Resources, nested bool) LevelView {
	st := obs.Cgroups[path]
	wanted := WantedControllers(res, nested, obs.Available)
	v := LevelView{Exists: st.Exists, Delegated: st.Delegated,
		Delegate: intersect(wanted, obs.Available), Missing: subtract(wanted, obs.Available)}
	if nested {
		v.Missing = nil // a nested runtime asks for what the host has
	}
	if st.Exists {
		v.Undelegated = subtract(v.Delegate, st.Delegated)
	} else {
		v.Undelegated = v.Delegate
	}
	for _, f := range v1beta1.CgroupFiles(res) {
		if !slices.Contains(obs.Available, f.Controller) {
			continue
		}
		got, ok := st.Files[f.File]
		if !ok || !v1beta1.CgroupValueEqual(f.File, f.Value, got) {
			v.Writes = append(v.Writes, FileWrite{File: f.File, Old: strings.TrimSpace(got), New: f.Value})
		}
	}
	return v
}

// planCgroup turns a level's view into steps and reasons; the change
// carries the controllers to delegate and the files to write.
func planCgroup(in PlanInput, ch *Change, path string, res *v1beta1.Resources, nested bool) {
	v := assessLevel(in.Observed, path, res, nested)
	switch {
	case !v.Exists:
		ch.Steps = append(ch.Steps, StepEnsureCgroup)
		ch.Reasons = append(ch.Reasons, "cgroup missing")
	case len(v.Undelegated) > 0:
		ch.Steps = append(ch.Steps, StepEnsureCgroup)
		ch.Reasons = append(ch.Reasons, "controllers not delegated: "+strings.Join(v.Undelegated, " "))
	}
	if slices.Contains(ch.Steps, StepEnsureCgroup) {
		ch.Delegate = v.Delegate
	}
	if len(v.Writes) > 0 {
		ch.Steps = append(ch.Steps, StepWriteResources)
		ch.Writes = v.Writes
		if v.Exists {
			var parts []string
			for _, w := range v.Writes {
				parts = append(parts, fmt.Sprintf("%s %s → %s", w.File, orNone(w.Old), w.New))
			}
			ch.Reasons = append(ch.Reasons, strings.Join(parts, ", "))
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

// levelAction turns steps into an action: nothing to do is unchanged; an
// object that is neither recorded nor present is created; else updated.
func levelAction(steps []Step, recorded, present bool) Action {
	switch {
	case len(steps) == 0:
		return ActionUnchanged
	case !recorded && !present:
		return ActionCreated
	default:
		return ActionUpdated
	}
}

func planRealm(in PlanInput, r *hierarchy.Realm) Change {
	ch := Change{Level: LevelRealm, Kind: v1beta1.KindRealm, Key: r.Key(), Realm: r, Implied: r.Implied}
	ch.Record = in.Inventory.Objects[ch.Key]
	if rec := ch.Record; rec != nil && rec.Namespace != "" && rec.Namespace != r.Namespace {
		// Containers cannot move between containerd namespaces; kukeon
		// calls this a breaking change too. Refuse rather than orphan the
		// old namespace's containers.
		ch.Action = ActionUpdated
		ch.Refused = fmt.Sprintf("containerd namespace changed from %s to %s: remove the realm's manifests and converge (the realm is pruned), then add them back",
			rec.Namespace, r.Namespace)
		return ch
	}
	nsExists := in.Observed.Namespaces[r.Namespace]
	if !nsExists {
		ch.Steps = append(ch.Steps, StepEnsureNamespace)
		ch.Reasons = append(ch.Reasons, "namespace "+r.Namespace+" missing")
	}
	planCgroup(in, &ch, r.CgroupPath, r.Resources, false)
	ch.Action = levelAction(ch.Steps, ch.Record != nil, nsExists || in.Observed.Cgroups[r.CgroupPath].Exists)
	return ch
}

func planSpace(in PlanInput, s *hierarchy.Space) Change {
	ch := Change{Level: LevelSpace, Kind: v1beta1.KindSpace, Key: s.Key(), Space: s, Implied: s.Implied,
		Parent: hierarchy.RealmKey(s.Realm)}
	ch.Record = in.Inventory.Objects[ch.Key]
	planCgroup(in, &ch, s.CgroupPath, s.Resources, false)
	ch.Action = levelAction(ch.Steps, ch.Record != nil, in.Observed.Cgroups[s.CgroupPath].Exists)
	return ch
}

func planStack(in PlanInput, st *hierarchy.Stack) Change {
	ch := Change{Level: LevelStack, Kind: v1beta1.KindStack, Key: st.Key(), Stack: st, Implied: st.Implied,
		Parent: hierarchy.SpaceKey(st.Realm, st.Space)}
	ch.Record = in.Inventory.Objects[ch.Key]
	planCgroup(in, &ch, st.CgroupPath, st.Resources, false)
	ch.Action = levelAction(ch.Steps, ch.Record != nil, in.Observed.Cgroups[st.CgroupPath].Exists)
	return ch
}

// applyLevel converges a realm, space or stack as its change says.
func (e *Executor) applyLevel(ctx context.Context, ch *Change) error {
	if ch.Realm != nil && slices.Contains(ch.Steps, StepEnsureNamespace) {
		if err := e.Runtime.EnsureNamespace(ctx, ch.Realm.Namespace); err != nil {
			return fmt.Errorf("ensure namespace %s: %w", ch.Realm.Namespace, err)
		}
	}
	return e.applyCgroup(ch)
}

// applyCgroup creates the level cgroup, delegates the change's controllers
// and writes the change's files: exactly what the plan says.
func (e *Executor) applyCgroup(ch *Change) error {
	path := ch.cgroup()
	if slices.Contains(ch.Steps, StepEnsureCgroup) {
		if _, _, err := e.Cgroups.Ensure(path, ch.Delegate); err != nil {
			return fmt.Errorf("ensure cgroup %s: %w", path, err)
		}
	}
	if len(ch.Writes) > 0 {
		fv := make([]ctr.FileValue, 0, len(ch.Writes))
		for _, w := range ch.Writes {
			fv = append(fv, ctr.FileValue{File: w.File, Value: w.New})
		}
		if err := e.Cgroups.Write(path, fv); err != nil {
			return fmt.Errorf("write resources of %s: %w", path, err)
		}
	}
	return nil
}
