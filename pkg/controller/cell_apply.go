package controller

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

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

	// Images first, once per reference and pass.
	for _, cc := range ch.Containers {
		dc := byID[cc.ContainerdID]
		if dc == nil || (cc.Action != ContainerCreate && cc.Action != ContainerRecreate) {
			continue
		}
		if err := e.ensureImage(ctx, c.Namespace, dc.Spec.Image, dc.Spec.ImagePullPolicy); err != nil {
			return err
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

// ensureImage makes sure ref is in ns, once per (namespace, image, policy)
// and pass: sibling cells on the same image share one check.
func (e *Executor) ensureImage(ctx context.Context, ns, ref, policy string) error {
	key := ns + "\x00" + ref + "\x00" + policy
	v, _ := e.images.LoadOrStore(key, &imageOnce{})
	once := v.(*imageOnce)
	once.Do(func() {
		once.err = e.Runtime.EnsureImage(ctx, ns, ref, policy, e.Credentials[ns])
		if once.err != nil {
			once.err = fmt.Errorf("ensure image %s: %w", ref, once.err)
		}
	})
	return once.err
}

type imageOnce struct {
	sync.Once
	err error
}
