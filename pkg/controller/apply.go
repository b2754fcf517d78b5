package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// StateDir holds logs (StateDir/logs/<namespace>/<containerdID>.log).
	StateDir string
	// Workers bounds how many siblings are converged at once.
	Workers int
	// Credentials are the registry credentials of each realm namespace.
	Credentials map[string][]ctr.Credential
	// SaveInventory persists the inventory; called with force before every
	// phase that acts (so a crash leaves a record, and an unwritable state
	// dir stops the phase before it changes anything) and after each phase.
	SaveInventory func(inv *Inventory, force bool) error

	mu     sync.Mutex
	inv    *Inventory
	images sync.Map // (namespace, image, policy) → *imageOnce
}

// Outcome is the result of one change.
type Outcome struct {
	Change *Change
	// Err is set when the change failed.
	Err error
	// Blocked names the failed parent when the change was not attempted.
	Blocked string
	// Terminal is set when retrying cannot help until the manifests
	// change: the change was refused, or it is blocked by a refused parent.
	Terminal bool
}

// RefusedError is the error of a change the reconciler will not make (a
// breaking change only the operator can resolve). It is terminal: reported
// once and not retried until the manifests change.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "refused: " + e.Reason }

// IsRefused reports whether err is (or wraps) a RefusedError.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// Apply runs the plan's changes in order: deletes bottom-up, then creates and
// updates top-down, siblings in parallel. A change whose parent failed is
// not attempted and is reported Blocked. inv is updated in place.
//
// The inventory is written before every phase that acts; when that write
// fails the phase does not run (its changes fail with the write's error and
// their children are blocked) and Apply returns the error, as it does when
// the write after a phase fails.
func (e *Executor) Apply(ctx context.Context, plan *Plan, inv *Inventory) ([]Outcome, error) {
	e.inv = inv
	outcomes := make([]Outcome, len(plan.Changes))
	failed := map[string]string{} // key → reason
	terminal := map[string]bool{} // keys whose failure is terminal
	var saveErr error

	// Phases: consecutive changes of the same phase, as planned.
	type phase struct{ idx []int }
	var phases []phase
	for i, ch := range plan.Changes {
		if len(phases) > 0 {
			if plan.Changes[phases[len(phases)-1].idx[0]].Phase == ch.Phase {
				phases[len(phases)-1].idx = append(phases[len(phases)-1].idx, i)
				continue
			}
		}
		phases = append(phases, phase{idx: []int{i}})
	}

	for _, ph := range phases {
		// Children of a failed or blocked parent are not attempted, and not
		// recorded: their records must keep describing what exists.
		var run []int
		for _, i := range ph.idx {
			ch := &plan.Changes[i]
			outcomes[i].Change = ch
			if reason, blocked := failed[ch.Parent]; blocked && ch.Parent != "" {
				outcomes[i].Blocked = ch.Parent
				outcomes[i].Terminal = terminal[ch.Parent]
				failed[ch.Key] = "blocked by " + ch.Parent + ": " + reason
				terminal[ch.Key] = terminal[ch.Parent]
				continue
			}
			if ch.Refused == "" && ch.Action != ActionDeleted {
				// Record intent before anything is created.
				e.record(ch)
			}
			run = append(run, i)
		}
		acts := slices.ContainsFunc(run, func(i int) bool { return plan.Changes[i].Action != ActionUnchanged })
		if err := e.save(acts); err != nil {
			saveErr = errors.Join(saveErr, err)
			for _, i := range run {
				if ch := &plan.Changes[i]; ch.Action != ActionUnchanged {
					outcomes[i].Err = err
					failed[ch.Key] = err.Error()
				}
			}
			continue
		}
		sem := make(chan struct{}, max(e.Workers, 1))
		var wg sync.WaitGroup
		var fmu sync.Mutex
		for _, i := range run {
			ch := &plan.Changes[i]
			if ch.Action == ActionUnchanged {
				continue
			}
			if ctx.Err() != nil {
				outcomes[i].Err = ctx.Err()
				fmu.Lock()
				failed[ch.Key] = ctx.Err().Error()
				fmu.Unlock()
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := e.applyChange(ctx, ch); err != nil {
					outcomes[i].Err = err
					outcomes[i].Terminal = IsRefused(err)
					fmu.Lock()
					failed[ch.Key] = err.Error()
					terminal[ch.Key] = outcomes[i].Terminal
					fmu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := e.save(false); err != nil {
			saveErr = errors.Join(saveErr, err)
		}
	}
	return outcomes, saveErr
}

func (e *Executor) save(force bool) error {
	if e.SaveInventory == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.SaveInventory(e.inv, force)
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
	if ch.Refused != "" {
		return &RefusedError{Reason: ch.Refused}
	}
	if ch.Action == ActionDeleted {
		return e.applyDelete(ctx, ch)
	}
	if ch.Level != LevelCell {
		return e.applyLevel(ctx, ch)
	}
	if err := e.applyCgroup(ch); err != nil {
		return err
	}
	return e.applyContainers(ctx, ch)
}

func (e *Executor) applyDelete(ctx context.Context, ch *Change) error {
	rec := ch.Record
	if rec == nil && ch.Cell != nil {
		e.record(ch) // an adopted autoDelete cell that completed
		e.mu.Lock()
		rec = e.inv.Objects[ch.Key]
		e.mu.Unlock()
	}
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
