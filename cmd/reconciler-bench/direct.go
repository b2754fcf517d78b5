package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// direct is the floor: the containerd client doing exactly the containerd
// work the reconciler does for the same cells — namespace, one image
// import, then per container a snapshot, a container and a task, started —
// with the same OCI specs, labels and cgroup paths (the same manifests
// resolved by pkg/hierarchy, specs by controller.Executor.ContainerSpec
// and ctr.SpecOpts), and nothing else: no observation, no inventory or
// status.
type direct struct {
	e     *env
	ns    string
	ctx   context.Context // carries the namespace
	img   client.Image
	cells []*hierarchy.Cell
	specs *controller.Executor // only its ContainerSpec
}

// newDirect resolves cells [0, n) of realm from their manifests; it does
// not touch containerd, so callers time what follows.
func (e *env) newDirect(ctx context.Context, realm string, n int) (*direct, error) {
	dir := e.path(realm, "direct")
	if err := writeCells(filepath.Join(dir, "manifests"), realm, 0, n); err != nil {
		return nil, err
	}
	rc := &controller.Reconciler{Opts: controller.Options{Manifests: []string{filepath.Join(dir, "manifests")}, Hierarchy: e.hierarchy()}}
	_, tree, diags, _ := rc.Desired()
	for _, d := range diags {
		if d.Severity == manifest.SeverityError {
			return nil, fmt.Errorf("direct %s: %w", realm, d)
		}
	}
	d := &direct{e: e, ns: e.namespace(realm), cells: tree.Cells(), specs: &controller.Executor{StateDir: filepath.Join(dir, "state")}}
	if len(d.cells) != n {
		return nil, fmt.Errorf("direct %s: %d cells resolved, want %d", realm, len(d.cells), n)
	}
	d.ctx = namespaces.WithNamespace(ctx, d.ns)
	return d, nil
}

// up creates the namespace and imports and unpacks the image.
func (d *direct) up() error {
	err := d.e.raw.NamespaceService().Create(d.ctx, d.ns, map[string]string{ctr.LabelManagedBy: ctr.ManagedByValue})
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", d.ns, err)
	}
	f, err := os.Open(d.e.archive)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	imgs, err := d.e.raw.Import(d.ctx, f)
	if err != nil {
		return fmt.Errorf("import into %s: %w", d.ns, err)
	}
	for _, m := range imgs {
		if m.Name == image {
			d.img = client.NewImage(d.e.raw, m)
		}
	}
	if d.img == nil {
		return fmt.Errorf("import into %s: archive does not provide %s", d.ns, image)
	}
	if err := d.img.Unpack(d.ctx, ""); err != nil {
		return fmt.Errorf("unpack in %s: %w", d.ns, err)
	}
	return nil
}

// converge brings up every cell with at most p at a time.
func (d *direct) converge(p int) error {
	return parallel(len(d.cells), p, d.cell)
}

// spec is the runtime spec of container k of cell i (0 is the root); rev,
// when not 0, replaces the workload's env as an edited manifest would.
func (d *direct) spec(i, k, rev int, rootPID uint32) ctr.ContainerSpec {
	c := d.cells[i]
	dc := *c.Containers[k]
	if rev != 0 {
		dc.Spec.Env = []string{fmt.Sprintf("REV=%d", rev)}
	}
	return d.specs.ContainerSpec(c, &dc, rootPID)
}

// cell runs cell i: the root, then the workload joining its namespaces.
func (d *direct) cell(i int) error {
	pid, err := d.run(d.spec(i, 0, 0, 0))
	if err != nil {
		return err
	}
	_, err = d.run(d.spec(i, 1, 0, pid))
	return err
}

// run creates and starts one container and returns its task's PID.
func (d *direct) run(spec ctr.ContainerSpec) (uint32, error) {
	cont, err := d.e.raw.NewContainer(d.ctx, spec.ID,
		client.WithImage(d.img),
		client.WithNewSnapshot(spec.ID, d.img),
		client.WithNewSpec(ctr.SpecOpts(spec, d.img, d.e.binary)...),
		client.WithContainerLabels(spec.Labels))
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", spec.ID, err)
	}
	return d.start(cont, spec)
}

// start creates the task of cont, logging to spec.LogPath, and starts it.
func (d *direct) start(cont client.Container, spec ctr.ContainerSpec) (uint32, error) {
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return 0, fmt.Errorf("log dir: %w", err)
	}
	task, err := cont.NewTask(d.ctx, cio.LogFile(spec.LogPath))
	if err != nil {
		return 0, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	if err := task.Start(d.ctx); err != nil {
		return 0, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	return task.Pid(), nil
}

// stop signals the task, waits for its exit (escalating to SIGKILL after
// grace) and deletes it.
func (d *direct) stop(task client.Task, sig syscall.Signal, grace time.Duration) error {
	exited, err := task.Wait(d.ctx)
	if err != nil {
		return fmt.Errorf("wait %s: %w", task.ID(), err)
	}
	if err := task.Kill(d.ctx, sig); err != nil {
		return fmt.Errorf("signal %s: %w", task.ID(), err)
	}
	if sig != syscall.SIGKILL {
		select {
		case <-exited:
		case <-time.After(grace):
			if err := task.Kill(d.ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("kill %s: %w", task.ID(), err)
			}
		}
	}
	<-exited
	if _, err := task.Delete(d.ctx); err != nil {
		return fmt.Errorf("delete task %s: %w", task.ID(), err)
	}
	return nil
}

// recreate does what the reconciler does for an env change of cell i's
// workload: stop (SIGTERM, the grace period, SIGKILL), delete the task and
// the container with its snapshot, create and start the new revision.
func (d *direct) recreate(i, rev int, grace time.Duration) error {
	work := d.spec(i, 1, rev, 0)
	cont, task, err := loadTask(d.ctx, d.e.raw, work.ID)
	if err != nil {
		return err
	}
	if err := d.stop(task, syscall.SIGTERM, grace); err != nil {
		return err
	}
	if err := cont.Delete(d.ctx, client.WithSnapshotCleanup); err != nil {
		return fmt.Errorf("delete %s: %w", work.ID, err)
	}
	_, root, err := loadTask(d.ctx, d.e.raw, d.spec(i, 0, 0, 0).ID)
	if err != nil {
		return err
	}
	work.JoinPID = root.Pid()
	_, err = d.run(work)
	return err
}

// crash SIGKILLs cell i's workload and restarts it as the runtime's own
// restart does: after the exit, delete the task, create a new one, start it.
func (d *direct) crash(i int) error {
	work := d.spec(i, 1, 0, 0)
	cont, task, err := loadTask(d.ctx, d.e.raw, work.ID)
	if err == nil {
		err = d.stop(task, syscall.SIGKILL, 0)
	}
	if err == nil {
		_, err = d.start(cont, work)
	}
	return err
}

// loadTask returns container id and its task, in the context's namespace.
func loadTask(ctx context.Context, cc *client.Client, id string) (client.Container, client.Task, error) {
	cont, err := cc.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", id, err)
	}
	task, err := cont.Task(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("task %s: %w", id, err)
	}
	return cont, task, nil
}

// killTask sends SIGKILL to the task of container id in the context's
// namespace.
func killTask(ctx context.Context, cc *client.Client, id string) error {
	_, task, err := loadTask(ctx, cc, id)
	if err != nil {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	return nil
}

// parallel runs fn(0..n-1) with at most p at a time and returns their
// errors joined.
func parallel(n, p int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, max(p, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
