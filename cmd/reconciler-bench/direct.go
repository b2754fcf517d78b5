package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// direct is the floor: the containerd client doing exactly the containerd
// work the reconciler does for the same cells — namespace, one image
// import, then per container a snapshot, a container and a task, started —
// with the same OCI spec (ctr.SpecOpts), labels and cgroup layout, and
// nothing else: no manifests, no observation, no inventory or status.
type direct struct {
	e     *env
	realm string
	ns    string
	ctx   context.Context // carries the namespace
	img   client.Image
}

// newDirect creates namespace and imports the image (both timed by the
// caller as part of the converge).
func (e *env) newDirect(ctx context.Context, realm string) (*direct, error) {
	d := &direct{e: e, realm: realm, ns: namespaceOf(realm)}
	d.ctx = namespaces.WithNamespace(ctx, d.ns)
	err := e.raw.NamespaceService().Create(d.ctx, d.ns, map[string]string{ctr.LabelManagedBy: ctr.ManagedByValue})
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", d.ns, err)
	}
	f, err := os.Open(e.archive)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	imgs, err := e.raw.Import(d.ctx, f)
	if err != nil {
		return nil, fmt.Errorf("import into %s: %w", d.ns, err)
	}
	for _, m := range imgs {
		if m.Name == image {
			d.img = client.NewImage(e.raw, m)
		}
	}
	if d.img == nil {
		return nil, fmt.Errorf("import into %s: archive does not provide %s", d.ns, image)
	}
	if err := d.img.Unpack(d.ctx, ""); err != nil {
		return nil, fmt.Errorf("unpack in %s: %w", d.ns, err)
	}
	return d, nil
}

// converge brings up cells [0, n) with at most p at a time.
func (d *direct) converge(n, p int) error {
	return parallel(n, p, d.cell)
}

func (d *direct) labels(i int, kind string) map[string]string {
	return map[string]string{
		ctr.LabelRealm: d.realm, ctr.LabelSpace: benchSpace, ctr.LabelStack: benchStack, ctr.LabelCell: cellName(i),
		ctr.LabelContainerType: kind, ctr.LabelManagedBy: ctr.ManagedByValue,
	}
}

func (d *direct) rootSpec(i int) ctr.ContainerSpec {
	id := rootContainerdID(i)
	return ctr.ContainerSpec{
		ID: id, Image: image, Pause: true, Hostname: cellName(i),
		CgroupsPath: d.e.cellCgroup(d.realm, i) + "/" + id, Labels: d.labels(i, "root"),
		LogPath: d.e.path("direct-logs", d.ns, id+".log"),
	}
}

func (d *direct) workloadSpec(i, rev int, rootPID uint32) ctr.ContainerSpec {
	id := workloadContainerdID(i)
	return ctr.ContainerSpec{
		ID: id, Image: image, Command: "sleep", Args: []string{"3600"}, Env: []string{fmt.Sprintf("REV=%d", rev)},
		Hostname: cellName(i), JoinPID: rootPID,
		CgroupsPath: d.e.cellCgroup(d.realm, i) + "/" + id, Labels: d.labels(i, "container"),
		LogPath: d.e.path("direct-logs", d.ns, id+".log"),
	}
}

// cell runs cell i: the root, then the workload joining its namespaces.
func (d *direct) cell(i int) error {
	pid, err := d.run(d.rootSpec(i))
	if err != nil {
		return err
	}
	_, err = d.run(d.workloadSpec(i, 0, pid))
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

// recreate does what the reconciler does for an env change of cell i's
// workload: stop (SIGTERM, the grace period, SIGKILL), delete the task and
// the container with its snapshot, create and start the new revision.
func (d *direct) recreate(i, rev int, grace time.Duration) error {
	id := workloadContainerdID(i)
	cont, err := d.e.raw.LoadContainer(d.ctx, id)
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	if err := d.stopTask(cont, grace); err != nil {
		return err
	}
	if err := cont.Delete(d.ctx, client.WithSnapshotCleanup); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	rootPID, err := d.pid(rootContainerdID(i))
	if err != nil {
		return err
	}
	_, err = d.run(d.workloadSpec(i, rev, rootPID))
	return err
}

func (d *direct) stopTask(cont client.Container, grace time.Duration) error {
	task, err := cont.Task(d.ctx, nil)
	if err != nil {
		return fmt.Errorf("task %s: %w", cont.ID(), err)
	}
	exited, err := task.Wait(d.ctx)
	if err != nil {
		return fmt.Errorf("wait %s: %w", cont.ID(), err)
	}
	if err := task.Kill(d.ctx, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", cont.ID(), err)
	}
	select {
	case <-exited:
	case <-time.After(grace):
		if err := task.Kill(d.ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("kill %s: %w", cont.ID(), err)
		}
		<-exited
	}
	if _, err := task.Delete(d.ctx); err != nil {
		return fmt.Errorf("delete task %s: %w", cont.ID(), err)
	}
	return nil
}

// restart is the runtime's own restart of a crashed task: after the exit,
// delete the task, create a new one and start it.
func (d *direct) restart(i int, killed <-chan client.ExitStatus, task client.Task) error {
	<-killed
	if _, err := task.Delete(d.ctx); err != nil {
		return fmt.Errorf("delete task: %w", err)
	}
	id := workloadContainerdID(i)
	cont, err := d.e.raw.LoadContainer(d.ctx, id)
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	nt, err := cont.NewTask(d.ctx, cio.LogFile(d.workloadSpec(i, 0, 0).LogPath))
	if err != nil {
		return fmt.Errorf("create task %s: %w", id, err)
	}
	if err := nt.Start(d.ctx); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// pid returns the PID of container id's task.
func (d *direct) pid(id string) (uint32, error) {
	cont, err := d.e.raw.LoadContainer(d.ctx, id)
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", id, err)
	}
	task, err := cont.Task(d.ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("task %s: %w", id, err)
	}
	return task.Pid(), nil
}

// killTask sends SIGKILL to the task of container id in the context's
// namespace and returns the channel its exit arrives on (registered before
// the signal, so it cannot be missed) and the task.
func killTask(ctx context.Context, cc *client.Client, id string) (<-chan client.ExitStatus, client.Task, error) {
	cont, err := cc.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", id, err)
	}
	task, err := cont.Task(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("task %s: %w", id, err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("wait %s: %w", id, err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		return nil, nil, fmt.Errorf("kill %s: %w", id, err)
	}
	return exited, task, nil
}
