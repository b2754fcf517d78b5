package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Executor applies a Plan. It is the only code with side effects on the host.
type Executor struct {
	Runtime Runtime
	Cgroups Cgroups
	// Available are the controllers the host offers (from Observed).
	Available []string
	// StateDir holds logs (StateDir/logs/<namespace>/<containerdID>.log).
	StateDir string
	// Workers bounds how many siblings are converged at once.
	Workers int
	// Credentials are the registry credentials of each realm namespace.
	Credentials map[string][]ctr.Credential
	// SaveInventory persists the inventory; called before containers are
	// created (so a crash leaves a record) and after each phase.
	SaveInventory func(*Inventory) error

	mu  sync.Mutex
	inv *Inventory
}

// Outcome is the result of one change.
type Outcome struct {
	Change *Change
	// Err is set when the change failed.
	Err error
	// Blocked names the failed parent when the change was not attempted.
	Blocked string
}

// Apply runs the plan's changes in order: deletes bottom-up, then creates and
// updates top-down, siblings in parallel. A change whose parent failed is
// not attempted and is reported Blocked. inv is updated in place.
func (e *Executor) Apply(ctx context.Context, plan *Plan, inv *Inventory) []Outcome {
	e.inv = inv
	outcomes := make([]Outcome, len(plan.Changes))
	failed := map[string]string{} // key → reason

	// Phases: consecutive changes of the same (delete?, level).
	type phase struct{ idx []int }
	var phases []phase
	for i, ch := range plan.Changes {
		if len(phases) > 0 {
			prev := plan.Changes[phases[len(phases)-1].idx[0]]
			if (prev.Action == ActionDeleted) == (ch.Action == ActionDeleted) && prev.Level == ch.Level {
				phases[len(phases)-1].idx = append(phases[len(phases)-1].idx, i)
				continue
			}
		}
		phases = append(phases, phase{idx: []int{i}})
	}

	for _, ph := range phases {
		// Record intent before anything is created in this phase.
		for _, i := range ph.idx {
			ch := &plan.Changes[i]
			if ch.Action != ActionDeleted {
				e.record(ch)
			}
		}
		e.save()
		sem := make(chan struct{}, max(e.Workers, 1))
		var wg sync.WaitGroup
		var fmu sync.Mutex
		for _, i := range ph.idx {
			ch := &plan.Changes[i]
			outcomes[i].Change = ch
			fmu.Lock()
			parentFailed, blocked := failed[ch.Parent]
			fmu.Unlock()
			if blocked && ch.Parent != "" {
				outcomes[i].Blocked = ch.Parent
				fmu.Lock()
				failed[ch.Key] = "blocked by " + ch.Parent + ": " + parentFailed
				fmu.Unlock()
				continue
			}
			if ch.Action == ActionUnchanged {
				continue
			}
			if ctx.Err() != nil {
				outcomes[i].Err = ctx.Err()
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				err := e.applyChange(ctx, ch)
				if err != nil {
					outcomes[i].Err = err
					fmu.Lock()
					failed[ch.Key] = err.Error()
					fmu.Unlock()
					return
				}
			}()
		}
		wg.Wait()
		e.save()
	}
	return outcomes
}

func (e *Executor) save() {
	if e.SaveInventory == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.SaveInventory(e.inv)
}

// record upserts the inventory entry of a desired object.
func (e *Executor) record(ch *Change) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := e.inv.Objects[ch.Key]
	if rec == nil {
		rec = &Record{Kind: ch.Kind}
		e.inv.Objects[ch.Key] = rec
	}
	switch {
	case ch.Realm != nil:
		r := ch.Realm
		rec.Realm, rec.Namespace, rec.Cgroup, rec.Source = r.Name, r.Namespace, r.CgroupPath, r.Source.File
	case ch.Space != nil:
		s := ch.Space
		rec.Realm, rec.Space, rec.Cgroup, rec.Source = s.Realm, s.Name, s.CgroupPath, s.Source.File
		rec.Namespace = e.namespaceOf(s.Realm)
	case ch.Stack != nil:
		s := ch.Stack
		rec.Realm, rec.Space, rec.Stack, rec.Cgroup, rec.Source = s.Realm, s.Space, s.Name, s.CgroupPath, s.Source.File
		rec.Namespace = e.namespaceOf(s.Realm)
	case ch.Cell != nil:
		c := ch.Cell
		rec.Realm, rec.Space, rec.Stack, rec.Cell, rec.CellID = c.Realm, c.Space, c.Stack, c.Name, c.ID
		rec.Namespace, rec.Cgroup, rec.Source = c.Namespace, c.CgroupPath, c.Source.File
		if rec.Containers == nil {
			rec.Containers = map[string]*ContainerRecord{}
		}
		// Adopted containers without a record get their hash; the spec is
		// only recorded when we create the container.
		for _, dc := range c.Containers {
			if rec.Containers[dc.ContainerdID] == nil {
				rec.Containers[dc.ContainerdID] = &ContainerRecord{SpecHash: dc.SpecHash}
			}
		}
	}
}

func (e *Executor) namespaceOf(realm string) string {
	if r := e.inv.Objects[hierarchy.RealmKey(realm)]; r != nil {
		return r.Namespace
	}
	return ""
}

func (e *Executor) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.inv.Objects, key)
}

func (e *Executor) recordContainer(cellKey string, dc *hierarchy.Container) {
	spec, _ := json.Marshal(dc.Spec)
	e.mu.Lock()
	defer e.mu.Unlock()
	if rec := e.inv.Objects[cellKey]; rec != nil {
		if rec.Containers == nil {
			rec.Containers = map[string]*ContainerRecord{}
		}
		rec.Containers[dc.ContainerdID] = &ContainerRecord{SpecHash: dc.SpecHash, Spec: spec}
	}
}

func (e *Executor) applyChange(ctx context.Context, ch *Change) error {
	if ch.Action == ActionDeleted {
		return e.applyDelete(ctx, ch)
	}
	switch ch.Level {
	case LevelRealm:
		r := ch.Realm
		if slices.Contains(ch.Steps, StepEnsureNamespace) {
			if err := e.Runtime.EnsureNamespace(ctx, r.Namespace); err != nil {
				return fmt.Errorf("ensure namespace %s: %w", r.Namespace, err)
			}
		}
		return e.applyCgroup(ch, r.CgroupPath, r.Resources, false)
	case LevelSpace:
		return e.applyCgroup(ch, ch.Space.CgroupPath, ch.Space.Resources, false)
	case LevelStack:
		return e.applyCgroup(ch, ch.Stack.CgroupPath, ch.Stack.Resources, false)
	case LevelCell:
		if err := e.applyCgroup(ch, ch.Cell.CgroupPath, ch.Cell.Resources, ch.Cell.NestedCgroupRuntime); err != nil {
			return err
		}
		return e.applyContainers(ctx, ch)
	}
	return nil
}

// applyCgroup creates the level cgroup, delegates its controllers and writes
// the resource files the plan found different.
func (e *Executor) applyCgroup(ch *Change, path string, res *v1beta1.Resources, nested bool) error {
	if slices.Contains(ch.Steps, StepEnsureCgroup) {
		want := intersect(WantedControllers(res, nested, e.Available), e.Available)
		if _, _, err := e.Cgroups.Ensure(path, want); err != nil {
			return fmt.Errorf("ensure cgroup %s: %w", path, err)
		}
	}
	if slices.Contains(ch.Steps, StepWriteResources) && len(ch.ResourceFiles) > 0 {
		var fv []ctr.FileValue
		for _, f := range v1beta1.CgroupFiles(res) {
			if slices.Contains(ch.ResourceFiles, f.File) {
				fv = append(fv, ctr.FileValue{File: f.File, Value: f.Value})
			}
		}
		if err := e.Cgroups.Write(path, fv); err != nil {
			return fmt.Errorf("write resources of %s: %w", path, err)
		}
	}
	return nil
}

func (e *Executor) applyDelete(ctx context.Context, ch *Change) error {
	if ch.Record == nil && ch.Cell != nil {
		e.record(ch) // an adopted autoDelete cell that completed
		e.mu.Lock()
		ch.Record = e.inv.Objects[ch.Key]
		e.mu.Unlock()
	}
	rec := ch.Record
	if ch.Level == LevelCell {
		if err := e.deleteContainers(ctx, rec.Namespace, ch.Containers, recordedGrace(rec)); err != nil {
			return err
		}
	}
	if err := e.Cgroups.Remove(rec.Cgroup); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", rec.Cgroup, err)
	}
	if ch.Cell != nil {
		// A desired autoDelete cell that completed: keep the record, marked.
		e.mu.Lock()
		rec.Completed = CellFingerprint(ch.Cell)
		rec.Containers = nil
		e.mu.Unlock()
		return nil
	}
	if ch.Level == LevelRealm {
		err := e.Runtime.DeleteNamespace(ctx, rec.Namespace)
		switch {
		case err == nil, errors.Is(err, ctr.ErrNotFound), errors.Is(err, ctr.ErrNotOwned):
			// A namespace we did not create stays; so does a missing one.
		case errors.Is(err, ctr.ErrNotEmpty):
			// Foreign containers live there: keep the namespace.
		default:
			return fmt.Errorf("delete namespace %s: %w", rec.Namespace, err)
		}
	}
	e.forget(ch.Key)
	return nil
}

// deleteContainers stops and deletes the listed containers: workloads in
// parallel first, the root last (workloads live in its namespaces).
func (e *Executor) deleteContainers(ctx context.Context, ns string, ccs []ContainerChange, grace map[string]time.Duration) error {
	var roots, workloads []ContainerChange
	for _, cc := range ccs {
		if cc.Action != ContainerDelete && cc.Action != ContainerRecreate {
			continue
		}
		if cc.Root {
			roots = append(roots, cc)
		} else {
			workloads = append(workloads, cc)
		}
	}
	del := func(list []ContainerChange) error {
		errs := make([]error, len(list))
		var wg sync.WaitGroup
		for i, cc := range list {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, ok := grace[cc.ContainerdID]
				if !ok {
					g = v1beta1.DefaultStopGracePeriodSeconds * time.Second
				}
				err := e.Runtime.DeleteContainer(ctx, ns, cc.ContainerdID, g)
				if err != nil && !errors.Is(err, ctr.ErrNotFound) {
					errs[i] = fmt.Errorf("delete container %s: %w", cc.ContainerdID, err)
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := del(workloads); err != nil {
		return err
	}
	return del(roots)
}

// applyContainers performs the container operations of a cell change.
func (e *Executor) applyContainers(ctx context.Context, ch *Change) error {
	c := ch.Cell
	byID := map[string]*hierarchy.Container{}
	grace := map[string]time.Duration{}
	for _, dc := range c.Containers {
		byID[dc.ContainerdID] = dc
		grace[dc.ContainerdID] = time.Duration(*dc.Spec.StopGracePeriodSeconds) * time.Second
	}
	if err := e.deleteContainers(ctx, c.Namespace, ch.Containers, grace); err != nil {
		return err
	}

	// Images first, once per reference.
	seen := map[string]bool{}
	for _, cc := range ch.Containers {
		dc := byID[cc.ContainerdID]
		if dc == nil || (cc.Action != ContainerCreate && cc.Action != ContainerRecreate) || seen[dc.Spec.Image] {
			continue
		}
		seen[dc.Spec.Image] = true
		if err := e.Runtime.EnsureImage(ctx, c.Namespace, dc.Spec.Image, dc.Spec.ImagePullPolicy, e.Credentials[c.Namespace]); err != nil {
			return fmt.Errorf("ensure image %s: %w", dc.Spec.Image, err)
		}
	}

	rootPID := ch.RootPID
	for _, cc := range ch.Containers {
		dc := byID[cc.ContainerdID]
		if dc == nil || !dc.Root {
			continue
		}
		switch cc.Action {
		case ContainerCreate, ContainerRecreate:
			pid, err := e.createAndStart(ctx, ch.Key, c, dc, 0)
			if err != nil {
				return err
			}
			rootPID = pid
		case ContainerRelabel:
			if err := e.Runtime.UpdateLabels(ctx, c.Namespace, dc.ContainerdID, DesiredLabels(c, dc)); err != nil {
				return fmt.Errorf("relabel container %s: %w", dc.ContainerdID, err)
			}
		}
	}

	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, cc := range ch.Containers {
		dc := byID[cc.ContainerdID]
		if dc == nil || dc.Root {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch cc.Action {
			case ContainerCreate, ContainerRecreate:
				_, err = e.createAndStart(ctx, ch.Key, c, dc, rootPID)
			case ContainerStart:
				if _, err = e.Runtime.StartContainer(ctx, c.Namespace, dc.ContainerdID); err != nil {
					err = fmt.Errorf("start container %s: %w", dc.ContainerdID, err)
				}
			case ContainerRelabel:
				if err = e.Runtime.UpdateLabels(ctx, c.Namespace, dc.ContainerdID, DesiredLabels(c, dc)); err != nil {
					err = fmt.Errorf("relabel container %s: %w", dc.ContainerdID, err)
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Executor) createAndStart(ctx context.Context, cellKey string, c *hierarchy.Cell, dc *hierarchy.Container, rootPID uint32) (uint32, error) {
	spec := e.ContainerSpec(c, dc, rootPID)
	err := e.Runtime.CreateContainer(ctx, c.Namespace, spec)
	if errors.Is(err, ctr.ErrAlreadyExists) {
		// Left over from an interrupted pass: replace it.
		if derr := e.Runtime.DeleteContainer(ctx, c.Namespace, dc.ContainerdID, 0); derr != nil && !errors.Is(derr, ctr.ErrNotFound) {
			return 0, fmt.Errorf("replace container %s: %w", dc.ContainerdID, derr)
		}
		err = e.Runtime.CreateContainer(ctx, c.Namespace, spec)
	}
	if err != nil {
		return 0, fmt.Errorf("create container %s: %w", dc.ContainerdID, err)
	}
	e.recordContainer(cellKey, dc)
	pid, err := e.Runtime.StartContainer(ctx, c.Namespace, dc.ContainerdID)
	if err != nil {
		return 0, fmt.Errorf("start container %s: %w", dc.ContainerdID, err)
	}
	return pid, nil
}

// ContainerSpec maps a desired container onto the runtime's spec.
func (e *Executor) ContainerSpec(c *hierarchy.Cell, dc *hierarchy.Container, rootPID uint32) ctr.ContainerSpec {
	s := dc.Spec
	spec := ctr.ContainerSpec{
		ID:             dc.ContainerdID,
		Image:          s.Image,
		Command:        s.Command,
		Args:           s.Args,
		Env:            s.Env,
		WorkingDir:     s.WorkingDir,
		User:           s.User,
		Hostname:       c.ID,
		Privileged:     s.Privileged,
		HostNetwork:    s.HostNetwork,
		HostPID:        s.HostPID,
		ReadOnlyRootfs: s.ReadOnlyRootFilesystem,
		Devices:        s.Devices,
		CgroupsPath:    dc.CgroupPath,
		Labels:         DesiredLabels(c, dc),
		JoinPID:        rootPID,
		Pause:          dc.Synthesized,
		NestedCgroup:   c.NestedCgroupRuntime,
		LogPath:        filepath.Join(e.StateDir, "logs", c.Namespace, dc.ContainerdID+".log"),
	}
	if dc.Root {
		spec.JoinPID = 0
	}
	if s.Capabilities != nil {
		spec.CapAdd, spec.CapDrop = s.Capabilities.Add, s.Capabilities.Drop
	}
	for _, v := range s.Volumes {
		m := ctr.Mount{Kind: v.Kind, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
		if v.SizeBytes != nil {
			m.SizeBytes = v.SizeBytes.Bytes
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	for _, t := range s.Tmpfs {
		m := ctr.Mount{Kind: v1beta1.VolumeTmpfs, Target: t.Path, Options: t.Options}
		if t.SizeBytes != nil {
			m.SizeBytes = t.SizeBytes.Bytes
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	if r := s.Resources; r != nil {
		if r.MemoryLimitBytes != nil && !r.MemoryLimitBytes.Max {
			v := r.MemoryLimitBytes.Bytes
			spec.Resources.MemoryLimitBytes = &v
		}
		spec.Resources.CPUShares = r.CPUShares
		spec.Resources.PidsLimit = r.PidsLimit
	}
	return spec
}

// recordedGrace returns the stop grace periods of a cell's containers as
// recorded when they were created; a pruned cell has no desired spec left.
func recordedGrace(rec *Record) map[string]time.Duration {
	out := map[string]time.Duration{}
	for id, cr := range rec.Containers {
		if cr == nil || len(cr.Spec) == 0 {
			continue
		}
		var spec v1beta1.Container
		if json.Unmarshal(cr.Spec, &spec) == nil && spec.StopGracePeriodSeconds != nil {
			out[id] = time.Duration(*spec.StopGracePeriodSeconds) * time.Second
		}
	}
	return out
}
