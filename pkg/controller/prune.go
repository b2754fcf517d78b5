package controller

import (
	"fmt"
	"strings"
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// Sources is what a pass knows of its manifest files, for the prune guard.
type Sources struct {
	// Load is what the manifest loader found: its failed files and
	// directories (a dangling symlink, an unreadable directory) keep the
	// objects recorded from them or from anything under them.
	Load *manifest.Result
	// Failed are the files of manifest errors (an invalid object, a
	// duplicate): the objects recorded from them are kept too.
	Failed map[string]bool
	// Empty are files that exist and declare no objects (0 bytes, only
	// "---"): a file in the middle of a rewrite, or emptied by mistake.
	// Objects recorded from them are kept until the file declares objects
	// again or is deleted.
	Empty map[string]bool
}

// failed reports whether path, or a directory above it, failed to load.
func (s Sources) failed(path string) bool {
	return s.Failed[path] || (s.Load != nil && s.Load.FailedSource(path))
}

// KeptWhy classifies a recorded object that is no longer declared and was
// not pruned.
type KeptWhy string

const (
	// KeptUnsafe: the desired tree did not build cleanly around the object
	// (its source failed or emptied, a parent is excluded or refused, an
	// empty desired set): deleting it could be a typo's doing. The pass is
	// not OK while such an object is kept.
	KeptUnsafe KeptWhy = "unsafe"
	// KeptDeferred: the manifests changed less than the prune grace ago;
	// the deletion is planned again once they are quiet.
	KeptDeferred KeptWhy = "deferred"
	// KeptPruneOff: pruning is disabled (--prune=false).
	KeptPruneOff KeptWhy = "prune-off"
)

// statusReason is the Reason of a kept object's status.
func (w KeptWhy) statusReason() string {
	switch w {
	case KeptDeferred:
		return "KeptDeferred"
	case KeptPruneOff:
		return "KeptPruneOff"
	default:
		return "KeptUnsafe"
	}
}

// Kept is a recorded object that is no longer declared and that the plan
// keeps, with the reason. Status shows it as Orphaned.
type Kept struct {
	Kind   string  `json:"kind"`
	Key    string  `json:"key"`
	Why    KeptWhy `json:"why"`
	Reason string  `json:"reason"`
	Record *Record `json:"-"`
}

// planPrune deletes recorded objects that are no longer desired, bottom-up.
// An object is deleted only when it is positively undeclared: the whole
// desired tree built cleanly around it — no error in its own source, no
// excluded or refused object above it, not an empty desired set — and the
// manifests are quiet. Every other candidate is kept, in p.Kept, with the
// reason. desired are the changes of the desired objects (for refusals).
func planPrune(in PlanInput, p *Plan, desired []Change) []Change {
	declared, empty := desiredKeys(in.Desired)
	var candidates []string
	for _, k := range in.Inventory.Keys() {
		if !declared[k] && in.Inventory.Objects[k].Realm != v1beta1.SystemRealm {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	refused := map[string]string{}
	for _, ch := range desired {
		if ch.Refused != "" {
			refused[ch.Key] = ch.Refused
		}
	}

	kept := map[string]Kept{}
	keep := func(k string, why KeptWhy, reason string) {
		if _, ok := kept[k]; !ok {
			kept[k] = Kept{Kind: in.Inventory.Objects[k].Kind, Key: k, Why: why, Reason: reason, Record: in.Inventory.Objects[k]}
		}
	}
	emptied := map[string]int{}
	for _, k := range candidates {
		rec := in.Inventory.Objects[k]
		switch {
		case !in.Prune:
			keep(k, KeptPruneOff, "pruning is off (--prune=false)")
		case empty && !in.AllowEmpty:
			keep(k, KeptUnsafe, "no objects are desired (an empty or unreadable manifest directory?); pass --allow-empty to prune everything")
		case rec.Source != "" && in.Sources.failed(rec.Source):
			keep(k, KeptUnsafe, fmt.Sprintf("its source %s failed to load", rec.Source))
		case rec.Source != "" && in.Sources.Empty[rec.Source]:
			emptied[rec.Source]++
			keep(k, KeptUnsafe, fmt.Sprintf("its source %s declares no objects now; delete the file to prune them", rec.Source))
		default:
			for _, a := range ancestorKeys(rec) {
				if reason, ok := in.Excluded[a]; ok {
					keep(k, KeptUnsafe, fmt.Sprintf("%s is excluded: %s", a, reason))
					break
				}
				if reason, ok := refused[a]; ok {
					keep(k, KeptUnsafe, fmt.Sprintf("%s is refused: %s", a, reason))
					break
				}
			}
			if reason, ok := in.Excluded[k]; ok {
				keep(k, KeptUnsafe, "excluded: "+reason)
			}
		}
	}
	if empty && !in.AllowEmpty && in.Prune {
		p.Warnings = append(p.Warnings, fmt.Sprintf(
			"refusing to prune %d recorded objects: no objects are desired (an empty or unreadable manifest directory?); pass --allow-empty to prune everything",
			len(candidates)))
	}
	for _, f := range sortedKeys(emptied) {
		p.Warnings = append(p.Warnings, fmt.Sprintf(
			"%s declares no objects: its %d recorded objects are kept until it declares objects again or is deleted", f, emptied[f]))
	}
	// An object with a kept descendant stays: deleting a realm would take a
	// kept cell with it.
	for _, k := range candidates {
		rec := in.Inventory.Objects[k]
		for kk, kr := range kept {
			if isAncestor(rec, kr.Record) {
				keep(k, kr.Why, kk+" under it is kept")
				break
			}
		}
	}
	// The rest is positively undeclared; still, deletions wait for quiet
	// manifests.
	deferred := in.Now.Before(in.PruneNotBefore)
	var out []Change
	for lvl := LevelCell; lvl >= LevelRealm; lvl-- {
		for _, k := range candidates {
			rec := in.Inventory.Objects[k]
			if _, ok := kept[k]; ok || rec.Kind != lvl.String() {
				continue
			}
			if deferred {
				keep(k, KeptDeferred, fmt.Sprintf("no longer declared; deleted once the manifests are quiet (at %s)", in.PruneNotBefore.Format(time.RFC3339)))
				continue
			}
			out = append(out, pruneChange(in, lvl, k, rec))
		}
	}
	if deferred && len(kept) > 0 {
		if wait := in.PruneNotBefore.Sub(in.Now); p.RequeueAfter == 0 || wait < p.RequeueAfter {
			p.RequeueAfter = wait
		}
	}
	for _, k := range sortedKeys(kept) {
		p.Kept = append(p.Kept, kept[k])
	}
	return out
}

// desiredKeys are the keys of every object of the tree; empty reports that
// no manifest declares anything (implied parents do not count).
func desiredKeys(tree *hierarchy.Tree) (keys map[string]bool, empty bool) {
	keys, empty = map[string]bool{}, true
	for _, r := range tree.Realms {
		keys[r.Key()] = true
		empty = empty && r.Implied
		for _, s := range r.Spaces {
			keys[s.Key()] = true
			empty = empty && s.Implied
			for _, st := range s.Stacks {
				keys[st.Key()] = true
				empty = empty && st.Implied
				for _, c := range st.Cells {
					keys[c.Key()] = true
					empty = false
				}
			}
		}
	}
	return keys, empty
}

// pruneChange is the delete of a recorded object.
func pruneChange(in PlanInput, lvl Level, k string, rec *Record) Change {
	ch := Change{Level: lvl, Kind: rec.Kind, Key: k, Action: ActionDeleted, Record: rec, Phase: phaseOf(true, lvl),
		Reasons: []string{"no longer declared"}}
	switch lvl {
	case LevelRealm:
		ch.Steps = []Step{StepDeleteCgroup, StepDeleteNamespace}
	default:
		ch.Steps = []Step{StepDeleteCgroup}
	}
	if lvl == LevelCell {
		for _, c := range in.Observed.ContainersOfCell(rec.Namespace, rec.Space, rec.Stack, rec.CellID) {
			ch.Containers = append(ch.Containers, ContainerChange{ID: containerShortID(c.ID), ContainerdID: c.ID,
				Root: c.Labels[ctr.LabelContainerType] == "root", Action: ContainerDelete})
		}
		sortDeletes(ch.Containers)
	}
	return ch
}

// ancestorKeys are the keys of a record's parents, nearest first.
func ancestorKeys(rec *Record) []string {
	switch rec.Kind {
	case v1beta1.KindCell:
		return []string{hierarchy.StackKey(rec.Realm, rec.Space, rec.Stack), hierarchy.SpaceKey(rec.Realm, rec.Space), hierarchy.RealmKey(rec.Realm)}
	case v1beta1.KindStack:
		return []string{hierarchy.SpaceKey(rec.Realm, rec.Space), hierarchy.RealmKey(rec.Realm)}
	case v1beta1.KindSpace:
		return []string{hierarchy.RealmKey(rec.Realm)}
	}
	return nil
}

// describeKept renders a kept object for output and errors.
func (k Kept) describe() string {
	return fmt.Sprintf("%s kept: %s", k.Key, strings.TrimSpace(k.Reason))
}
