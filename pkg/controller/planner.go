package controller

import (
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
	// Restarts is the restart bookkeeping (nil: none).
	Restarts *RestartBook
	// Now is the planner's clock (restart backoff).
	Now time.Time
	// Backoff enables restart backoff (the daemon); a single --once pass
	// restarts what its policy allows right away.
	Backoff bool
}

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
	for i := range p.Changes[len(p.Changes)-len(desired):] {
		ch := &p.Changes[len(p.Changes)-len(desired)+i]
		ch.Phase = phaseOf(false, ch.Level)
	}
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
