package controller

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// PlanInput is everything the planner looks at.
type PlanInput struct {
	Desired   *hierarchy.Tree
	Observed  *Observed
	Inventory *Inventory
	// Sources is what the pass knows of the manifest files: objects
	// recorded from a failed or emptied source are kept, never pruned.
	Sources Sources
	// Excluded are objects declared but left out of the desired tree
	// because of an error (their own, or a parent's), with the reason:
	// they and everything recorded under them are kept.
	Excluded map[string]string
	// PruneNotBefore defers deletions of objects that are no longer
	// declared until the manifests have been quiet for the prune grace: a
	// file in the middle of a rewrite is not intent.
	PruneNotBefore time.Time
	// Prune enables deleting recorded objects that are no longer desired.
	Prune bool
	// AllowEmpty lets an empty desired set prune everything.
	AllowEmpty bool
	// Now is the planner's clock (restart backoff).
	Now time.Time
	// Backoff enables restart backoff (the daemon); a single --once pass
	// restarts what its policy allows right away.
	Backoff bool
}

// baseControllers are delegated on every level (SPEC §3).
var baseControllers = []string{"cpu", "io", "memory", "pids"}

// ComputePlan is the planner: a pure function of its input. Changes come in
// execution order: deletes bottom-up (cells, stacks, spaces, realms), then
// creates and updates top-down (realms, spaces, stacks, cells).
func ComputePlan(in PlanInput) *Plan {
	p := &Plan{}
	var desired []Change
	for _, r := range in.Desired.Realms {
		desired = append(desired, planRealm(in, r))
	}
	p.Changes = append(planPrune(in, p, desired), desired...)
	for _, r := range in.Desired.Realms {
		for _, s := range r.Spaces {
			p.Changes = append(p.Changes, planSpace(in, s))
		}
	}
	for _, r := range in.Desired.Realms {
		for _, s := range r.Spaces {
			for _, st := range s.Stacks {
				p.Changes = append(p.Changes, planStack(in, st))
			}
		}
	}
	for _, c := range in.Desired.Cells() {
		ch, wait := planCell(in, c)
		p.Changes = append(p.Changes, ch)
		if wait > 0 && (p.RequeueAfter == 0 || wait < p.RequeueAfter) {
			p.RequeueAfter = wait
		}
	}
	return p
}

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

// planCgroup compares a level cgroup with its desired delegation and
// resources and returns the steps and reasons to converge it.
func planCgroup(in PlanInput, path string, res *v1beta1.Resources, nested bool) (steps []Step, reasons, files []string) {
	obs := in.Observed.Cgroups[path]
	want := intersect(WantedControllers(res, nested, in.Observed.Available), in.Observed.Available)
	switch {
	case !obs.Exists:
		steps = append(steps, StepEnsureCgroup)
		reasons = append(reasons, "cgroup missing")
	case len(subtract(want, obs.Delegated)) > 0:
		steps = append(steps, StepEnsureCgroup)
		reasons = append(reasons, "controllers not delegated: "+strings.Join(subtract(want, obs.Delegated), " "))
	}
	if files = resourceDiff(in.Observed, path, res); len(files) > 0 {
		steps = append(steps, StepWriteResources)
		if obs.Exists {
			reasons = append(reasons, strings.Join(files, ", ")+" differ")
		}
	}
	return steps, reasons, files
}

// resourceDiff returns the resource files of res whose observed value does
// not satisfy the desired one. Files of controllers the host lacks are left
// out: they cannot be written, and status reports the missing controller.
func resourceDiff(obs *Observed, path string, res *v1beta1.Resources) []string {
	st := obs.Cgroups[path]
	var files []string
	for _, f := range v1beta1.CgroupFiles(res) {
		if !slices.Contains(obs.Available, f.Controller) {
			continue
		}
		got, ok := st.Files[f.File]
		if !ok || !v1beta1.CgroupValueEqual(f.File, f.Value, got) {
			files = append(files, f.File)
		}
	}
	return files
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
	steps, reasons, files := planCgroup(in, r.CgroupPath, r.Resources, false)
	ch.ResourceFiles = files
	ch.Steps = append(ch.Steps, steps...)
	ch.Reasons = append(ch.Reasons, reasons...)
	ch.Action = levelAction(ch.Steps, ch.Record != nil, nsExists || in.Observed.Cgroups[r.CgroupPath].Exists)
	return ch
}

func planSpace(in PlanInput, s *hierarchy.Space) Change {
	ch := Change{Level: LevelSpace, Kind: v1beta1.KindSpace, Key: s.Key(), Space: s, Implied: s.Implied,
		Parent: hierarchy.RealmKey(s.Realm)}
	ch.Record = in.Inventory.Objects[ch.Key]
	ch.Steps, ch.Reasons, ch.ResourceFiles = planCgroup(in, s.CgroupPath, s.Resources, false)
	ch.Action = levelAction(ch.Steps, ch.Record != nil, in.Observed.Cgroups[s.CgroupPath].Exists)
	return ch
}

func planStack(in PlanInput, st *hierarchy.Stack) Change {
	ch := Change{Level: LevelStack, Kind: v1beta1.KindStack, Key: st.Key(), Stack: st, Implied: st.Implied,
		Parent: hierarchy.SpaceKey(st.Realm, st.Space)}
	ch.Record = in.Inventory.Objects[ch.Key]
	ch.Steps, ch.Reasons, ch.ResourceFiles = planCgroup(in, st.CgroupPath, st.Resources, false)
	ch.Action = levelAction(ch.Steps, ch.Record != nil, in.Observed.Cgroups[st.CgroupPath].Exists)
	return ch
}

// isAncestor reports whether a is a strict ancestor of b.
func isAncestor(a, b *Record) bool {
	if a.Realm != b.Realm || a == b {
		return false
	}
	switch a.Kind {
	case v1beta1.KindRealm:
		return b.Kind != v1beta1.KindRealm
	case v1beta1.KindSpace:
		return b.Space == a.Space && (b.Kind == v1beta1.KindStack || b.Kind == v1beta1.KindCell)
	case v1beta1.KindStack:
		return b.Space == a.Space && b.Stack == a.Stack && b.Kind == v1beta1.KindCell
	}
	return false
}

// containerShortID is the container id part of "<space>_<stack>_<cell>_<id>".
func containerShortID(containerdID string) string {
	if i := strings.LastIndexByte(containerdID, '_'); i >= 0 {
		return containerdID[i+1:]
	}
	return containerdID
}

// sortDeletes orders container deletes workloads first, root last: workloads
// live in the root's namespaces.
func sortDeletes(cs []ContainerChange) {
	sort.SliceStable(cs, func(i, j int) bool {
		ri, rj := cs[i].Root, cs[j].Root
		if ri != rj {
			return rj
		}
		return cs[i].ContainerdID < cs[j].ContainerdID
	})
}
