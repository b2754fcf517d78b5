package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Observed is what exists on the host, as far as the plan needs to know.
type Observed struct {
	// Available are the controllers the cgroup root offers.
	Available []string
	// Namespaces are the containerd namespaces that exist.
	Namespaces map[string]bool
	// Containers are our containers per namespace.
	Containers map[string][]ctr.Container
	// Cgroups are the observed level cgroups by group path.
	Cgroups map[string]CgroupState

	byCell     map[cellRef][]ctr.Container
	byCellOnce sync.Once
}

type cellRef struct{ ns, space, stack, cell string }

// clone copies the maps that a refresh replaces entries of; the values (and
// Available, Namespaces) are shared, and the by-cell index is
// rebuilt on first use.
func (o *Observed) clone() *Observed {
	return &Observed{
		Available:  o.Available,
		Namespaces: o.Namespaces,
		Containers: maps.Clone(o.Containers),
		Cgroups:    maps.Clone(o.Cgroups),
	}
}

// CgroupState is an observed level cgroup.
type CgroupState struct {
	Exists bool
	// Delegated is the content of cgroup.subtree_control.
	Delegated []string
	// Files are the values of the resource files the desired state sets.
	Files map[string]string
}

// ContainersOfCell returns our containers of a cell in ns.
// The index is built once, on first use; Containers must not change after.
func (o *Observed) ContainersOfCell(ns, space, stack, cellID string) []ctr.Container {
	o.byCellOnce.Do(func() {
		o.byCell = map[cellRef][]ctr.Container{}
		for ns, cs := range o.Containers {
			for _, c := range cs {
				l := c.Labels
				k := cellRef{ns, l[ctr.LabelSpace], l[ctr.LabelStack], l[ctr.LabelCell]}
				o.byCell[k] = append(o.byCell[k], c)
			}
		}
	})
	return o.byCell[cellRef{ns, space, stack, cellID}]
}

// Observer reads the host.
type Observer struct {
	Runtime RuntimeReader
	Cgroups CgroupReader
	// Workers bounds concurrent reads.
	Workers int
}

// Observe reads what the plan needs for the desired tree and the inventory.
// It performs no writes.
func (o *Observer) Observe(ctx context.Context, tree *hierarchy.Tree, inv *Inventory) (*Observed, error) {
	obs := &Observed{
		Namespaces: map[string]bool{},
		Containers: map[string][]ctr.Container{},
		Cgroups:    map[string]CgroupState{},
	}
	avail, err := o.Cgroups.Available()
	if err != nil {
		return nil, fmt.Errorf("read available cgroup controllers: %w", err)
	}
	obs.Available = avail

	nss, err := o.Runtime.ListNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range nss {
		obs.Namespaces[ns] = true
	}

	// Namespaces and cgroups to look at: desired and recorded.
	wantNS := map[string]bool{}
	groups := map[string][]string{} // group → resource files to read
	addGroup := func(path string, res *v1beta1.Resources) {
		files := groups[path]
		for _, f := range v1beta1.CgroupFiles(res) {
			files = append(files, f.File)
		}
		groups[path] = files
	}
	for _, r := range tree.Realms {
		wantNS[r.Namespace] = true
		addGroup(r.CgroupPath, r.Resources)
		for _, s := range r.Spaces {
			addGroup(s.CgroupPath, s.Resources)
			for _, st := range s.Stacks {
				addGroup(st.CgroupPath, st.Resources)
				for _, c := range st.Cells {
					addGroup(c.CgroupPath, c.Resources)
				}
			}
		}
	}
	for _, rec := range inv.Objects {
		wantNS[rec.Namespace] = true
		if _, ok := groups[rec.Cgroup]; !ok {
			groups[rec.Cgroup] = nil
		}
	}

	var (
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, max(o.Workers, 1))
	var wg sync.WaitGroup
	for _, ns := range sortedKeys(wantNS) {
		if !obs.Namespaces[ns] {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			cs, err := o.Runtime.ListContainers(ctx, ns)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("list containers in %s: %w", ns, err))
				return
			}
			obs.Containers[ns] = cs
		}()
	}
	for _, g := range sortedKeys(groups) {
		files := dedupe(append([]string{"cgroup.subtree_control"}, groups[g]...))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := o.readCgroup(g, files)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			obs.Cgroups[g] = st
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return obs, nil
}

func (o *Observer) readCgroup(group string, files []string) (CgroupState, error) {
	ok, err := o.Cgroups.Exists(group)
	if err != nil {
		return CgroupState{}, fmt.Errorf("stat cgroup %s: %w", group, err)
	}
	if !ok {
		return CgroupState{}, nil
	}
	vals, err := o.Cgroups.Read(group, files)
	if err != nil {
		return CgroupState{}, fmt.Errorf("read cgroup %s: %w", group, err)
	}
	st := CgroupState{Exists: true, Files: map[string]string{}}
	for k, v := range vals {
		if k == "cgroup.subtree_control" {
			st.Delegated = strings.Fields(v)
			sort.Strings(st.Delegated)
			continue
		}
		st.Files[k] = v
	}
	return st, nil
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	out := ss[:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Refresh returns a copy of obs in which the containers of the namespaces
// and the cgroups that plan changed are read again; everything else is
// reused. It is the cheap "after" view of a pass that does not wait.
func (o *Observer) Refresh(ctx context.Context, obs *Observed, plan *Plan, tree *hierarchy.Tree, inv *Inventory) (*Observed, error) {
	out := obs.clone()
	nss := map[string]bool{}
	for _, ch := range plan.Changes {
		if ch.Action == ActionUnchanged {
			continue
		}
		if ch.Level == LevelRealm || ch.Action == ActionDeleted {
			// Namespaces may have come or gone: read everything again.
			return o.Observe(ctx, tree, inv)
		}
		ns := ""
		if ch.Cell != nil {
			ns = ch.Cell.Namespace
		}
		if len(ch.Containers) > 0 && ns != "" {
			nss[ns] = true
		}
		if len(ch.Steps) > 0 {
			path := ch.cgroup()
			files := []string{"cgroup.subtree_control"}
			for f := range obs.Cgroups[path].Files {
				files = append(files, f)
			}
			st, err := o.readCgroup(path, files)
			if err != nil {
				return nil, err
			}
			out.Cgroups[path] = st
		}
	}
	for ns := range nss {
		cs, err := o.Runtime.ListContainers(ctx, ns)
		if err != nil {
			return nil, fmt.Errorf("list containers in %s: %w", ns, err)
		}
		out.Containers[ns] = cs
	}
	return out, nil
}

// RefreshCells returns a copy of obs with the containers of the cells'
// namespaces and the cells' cgroups read again; everything else is reused.
func (o *Observer) RefreshCells(ctx context.Context, obs *Observed, cells []*hierarchy.Cell) (*Observed, error) {
	out := obs.clone()
	for _, c := range cells {
		if obs.Namespaces[c.Namespace] {
			fresh, err := o.Runtime.ListContainersWithLabels(ctx, c.Namespace, cellSelector(c))
			if err != nil {
				return nil, fmt.Errorf("list containers of %s: %w", c.Key(), err)
			}
			var keep []ctr.Container
			for _, oc := range out.Containers[c.Namespace] {
				l := oc.Labels
				if l[ctr.LabelSpace] != c.Space || l[ctr.LabelStack] != c.Stack || l[ctr.LabelCell] != c.ID {
					keep = append(keep, oc)
				}
			}
			out.Containers[c.Namespace] = append(keep, fresh...)
		}
		files := []string{"cgroup.subtree_control"}
		for _, f := range v1beta1.CgroupFiles(c.Resources) {
			files = append(files, f.File)
		}
		st, err := o.readCgroup(c.CgroupPath, files)
		if err != nil {
			return nil, err
		}
		out.Cgroups[c.CgroupPath] = st
	}
	return out, nil
}

// cellSelector selects the containers of cell c by their labels.
func cellSelector(c *hierarchy.Cell) map[string]string {
	return map[string]string{ctr.LabelSpace: c.Space, ctr.LabelStack: c.Stack, ctr.LabelCell: c.ID}
}
