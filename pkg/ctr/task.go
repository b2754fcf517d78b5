package ctr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// load returns our container id in ns, or an error matching ErrNotFound
// (missing) or ErrNotOwned (no managed-by label).
func (c *Client) load(ctx context.Context, cc *client.Client, ns, id string) (client.Container, containers.Container, error) {
	nctx := nsCtx(ctx, ns)
	cont, err := cc.LoadContainer(nctx, id)
	if err != nil {
		return nil, containers.Container{}, c.fail(cc, "container "+id+" in "+ns, err)
	}
	info, err := cont.Info(nctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return nil, containers.Container{}, c.fail(cc, "container "+id+" in "+ns, err)
	}
	if info.Labels[LabelManagedBy] != ManagedByValue {
		return nil, containers.Container{}, fmt.Errorf("container %s in %s: %w", id, ns, ErrNotOwned)
	}
	return cont, info, nil
}

// StartContainer makes our container id in ns run and returns its task's
// PID. Idempotent: a running (or paused, which is resumed) task is kept; a
// created or stopped task is deleted and a new one started. Output
// (stdout and stderr) is appended to the container's log file. Errors
// match ErrNotFound or ErrNotOwned as for DeleteContainer.
//
// It converges after two interruptions of containerd 1.6: a create cut off
// by the client's death leaves a stale task bundle, which is removed when
// that is safe (see bundle.go) before one more create; and a containerd
// restarted while re-loading its shims may refuse a create as "already
// exists" while its task is not listed, so the task is awaited (up to
// taskAppearTimeout) and then kept or replaced as above, or, if it never
// shows, deleted as a ghost (deleteGhostTask) before one more create.
func (c *Client) StartContainer(ctx context.Context, ns, id string) (uint32, error) {
	cc, err := c.conn()
	if err != nil {
		return 0, err
	}
	cont, info, err := c.load(ctx, cc, ns, id)
	if err != nil {
		return 0, err
	}
	nctx := nsCtx(ctx, ns)
	task, err := cont.Task(nctx, nil)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return 0, c.fail(cc, "task "+id, err)
	default:
		if pid, kept, err := c.keepOrDelete(nctx, cc, task, id); err != nil || kept {
			return pid, err
		}
	}

	if err := c.releaseCreateLease(nctx, cc, ns, id); err != nil {
		return 0, err
	}
	logPath := logPathOf(info)
	if logPath == "" {
		logPath = c.logPath(ns, id)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return 0, fmt.Errorf("start %s: log dir: %w", id, err)
	}
	newTask := func() (client.Task, error) { return cont.NewTask(nctx, cio.LogFile(logPath)) }
	task, err = newTask()
	// After an interrupted create, containerd may still be cleaning up the
	// old attempt's bundle (its clean-up runs when its own shim start gives
	// up) while a new one is made under the same path: the new shim then
	// fails to start ("getwd: no such file or directory", a missing
	// shim-binary-path, "ttrpc: closed"). Those, and a stale bundle, are
	// retried a few times, shortly apart.
	var clearErr error // why a stale bundle was left in place, last time
	for attempt := 1; err != nil && attempt <= shimStartRetries; attempt++ {
		if dir, ok := staleBundle(err, ns, id); ok {
			// A refusal may pass: an orphan shim may still be exiting.
			clearErr = clearStaleBundle(dir)
		} else if !shimStartRaced(err) {
			break
		}
		select {
		case <-nctx.Done():
			return 0, c.fail(cc, "create task "+id+" in "+ns, errors.Join(err, nctx.Err()))
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
		task, err = newTask()
	}
	if _, stale := staleBundle(err, ns, id); stale && clearErr != nil {
		return 0, fmt.Errorf("create task %s in %s: %w", id, ns, clearErr)
	}
	if errdefs.IsAlreadyExists(err) {
		existing, werr := awaitTask(nctx, cont)
		switch {
		case errdefs.IsNotFound(werr):
			if err := c.deleteGhostTask(nctx, cc, id); err != nil {
				return 0, err
			}
		case werr != nil:
			return 0, c.fail(cc, "create task "+id+" in "+ns, errors.Join(err, werr))
		default:
			if pid, kept, err := c.keepOrDelete(nctx, cc, existing, id); err != nil || kept {
				return pid, err
			}
		}
		task, err = newTask()
	}
	if err != nil {
		return 0, c.fail(cc, "create task "+id+" in "+ns, err)
	}
	if err := task.Start(nctx); err != nil {
		// The half-made task goes, or the next start finds it; a failure
		// to delete it is reported with the start's.
		if _, derr := task.Delete(nctx, client.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("delete the task that did not start: %w", derr))
		}
		return 0, c.fail(cc, "start task "+id+" in "+ns, err)
	}
	return task.Pid(), nil
}

// keepOrDelete keeps an existing task that runs (resuming a paused one) and
// returns its PID with kept true; any other task (created, stopped) is
// deleted, killing its process, so that a new one can be created.
func (c *Client) keepOrDelete(nctx context.Context, cc *client.Client, task client.Task, id string) (pid uint32, kept bool, err error) {
	st, err := task.Status(nctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return 0, false, c.fail(cc, "task status "+id, err)
	}
	switch st.Status {
	case client.Running:
		return task.Pid(), true, nil
	case client.Paused, client.Pausing:
		if err := task.Resume(nctx); err != nil {
			return 0, false, c.fail(cc, "resume "+id, err)
		}
		return task.Pid(), true, nil
	}
	if _, err := task.Delete(nctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return 0, false, c.fail(cc, "delete old task "+id, err)
	}
	return 0, false, nil
}

// deleteGhostTask deletes the task of container id that containerd holds
// but cannot show: after a restart, containerd 1.6 re-loads the shim of a
// create that was cut off before runc made the container, and then refuses
// a create ("already exists") while Get asks the shim for its state and
// answers not found ("container not created"), for as long as it runs. No
// process exists to kill. The tasks service's Delete looks the task up
// without its state, shuts the shim down and removes its bundle (runtime/v2
// shimTask.delete of v1.6.20), answering not found from the shim's own
// delete, which is success here.
func (c *Client) deleteGhostTask(nctx context.Context, cc *client.Client, id string) error {
	_, err := cc.TaskService().Delete(nctx, &tasksapi.DeleteTaskRequest{ContainerID: id})
	if err = errgrpc.ToNative(err); err != nil && !errdefs.IsNotFound(err) {
		return c.fail(cc, "delete unlisted task "+id, err)
	}
	return nil
}

// taskAppearTimeout bounds the wait for a task containerd says exists but
// does not list yet, and taskAppearPoll is the interval of its polls.
const (
	taskAppearTimeout = 3 * time.Second
	taskAppearPoll    = 100 * time.Millisecond
)

// awaitTask polls for the task of cont until containerd lists it, for up to
// taskAppearTimeout or until ctx ends. It returns an error matching
// errdefs.ErrNotFound if the task never appears.
func awaitTask(ctx context.Context, cont client.Container) (client.Task, error) {
	deadline := time.Now().Add(taskAppearTimeout)
	for {
		task, err := cont.Task(ctx, nil)
		if !errdefs.IsNotFound(err) {
			return task, err
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("task not listed after %s: %w", taskAppearTimeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(taskAppearPoll):
		}
	}
}

// logPathOf reads the log path annotation from a container's stored spec.
func logPathOf(info containers.Container) string {
	if info.Spec == nil {
		return ""
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(info.Spec.GetValue(), &s); err != nil {
		return ""
	}
	return s.Annotations[annotationLogPath]
}

// StopContainer stops the task of our container id in ns: SIGTERM, up to
// grace for it to exit, then SIGKILL, and deletes the task. A container
// without a task is already stopped (nil). Errors match ErrNotFound or
// ErrNotOwned as for DeleteContainer.
func (c *Client) StopContainer(ctx context.Context, ns, id string, grace time.Duration) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	cont, _, err := c.load(ctx, cc, ns, id)
	if err != nil {
		return err
	}
	return c.stop(ctx, cc, cont, ns, id, grace)
}

func (c *Client) stop(ctx context.Context, cc *client.Client, cont client.Container, ns, id string, grace time.Duration) error {
	nctx := nsCtx(ctx, ns)
	task, err := cont.Task(nctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return c.fail(cc, "task "+id, err)
	}
	st, err := task.Status(nctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return c.fail(cc, "task status "+id, err)
	}
	if st.Status == client.Running || st.Status == client.Paused || st.Status == client.Pausing {
		// Wait must be registered before the signal, or the exit is missed.
		exited, err := task.Wait(nctx)
		if err != nil {
			return c.fail(cc, "wait "+id, err)
		}
		if st.Status != client.Running {
			// A frozen task would not see SIGTERM until the grace ran out.
			if err := task.Resume(nctx); err != nil && !errdefs.IsNotFound(err) {
				return c.fail(cc, "resume "+id, err)
			}
		}
		if err := task.Kill(nctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return c.fail(cc, "signal "+id, err)
		}
		timer := time.NewTimer(grace)
		select {
		case <-exited:
			timer.Stop()
		case <-timer.C:
			if err := task.Kill(nctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
				return c.fail(cc, "kill "+id, err)
			}
			select {
			case <-exited:
			case <-ctx.Done():
				return fmt.Errorf("stop %s: %w", id, ctx.Err())
			}
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("stop %s: %w", id, ctx.Err())
		}
	}
	if _, err := task.Delete(nctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return c.fail(cc, "delete task "+id, err)
	}
	return nil
}

// DeleteContainer stops (as StopContainer) and deletes our container id in
// ns with its snapshot, then its log file (see removeLog). It returns an
// error matching ErrNotFound if the container does not exist and
// ErrNotOwned if it lacks our label (it is then left untouched).
func (c *Client) DeleteContainer(ctx context.Context, ns, id string, grace time.Duration) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	cont, info, err := c.load(ctx, cc, ns, id)
	if err != nil {
		return err
	}
	if err := c.stop(ctx, cc, cont, ns, id, grace); err != nil {
		return err
	}
	nctx := nsCtx(ctx, ns)
	if err := cont.Delete(nctx, client.WithSnapshotCleanup); err != nil {
		return c.fail(cc, "delete container "+id+" in "+ns, err)
	}
	return c.removeLog(ns, id, logPathOf(info))
}

// removeLog removes the log file of container id in ns once the task and
// the container are gone: the annotated path, or the default one when there
// is none. Only a file in the log tree of the state dir (StateDir/logs) is
// removed; a LogPath the caller chose elsewhere is the caller's to keep. A
// missing file is fine. The directory stays: a concurrent start in the same
// namespace may be about to create its own file there.
func (c *Client) removeLog(ns, id, path string) error {
	if path == "" {
		path = c.logPath(ns, id)
	}
	tree := filepath.Join(c.cfg.StateDir, "logs") + string(filepath.Separator)
	if !strings.HasPrefix(filepath.Clean(path), tree) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete container %s in %s: remove log: %w", id, ns, err)
	}
	return nil
}

// ListContainers returns the containers in ns that carry our managed-by
// label, with their task state, sorted by ID. It costs one container list
// (filtered by label) and one task list per call.
func (c *Client) ListContainers(ctx context.Context, ns string) ([]Container, error) {
	cc, err := c.conn()
	if err != nil {
		return nil, err
	}
	nctx := nsCtx(ctx, ns)
	list, err := cc.ContainerService().List(nctx, fmt.Sprintf("labels.%q==%s", LabelManagedBy, ManagedByValue))
	if err != nil {
		return nil, c.fail(cc, "list containers in "+ns, err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	resp, err := cc.TaskService().List(nctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, c.fail(cc, "list tasks in "+ns, err)
	}
	tasks := make(map[string]*tasktypes.Process, len(resp.Tasks))
	for _, t := range resp.Tasks {
		tasks[t.ID] = t
	}
	return withTasks(list, tasks), nil
}

// ListContainersWithLabels is ListContainers narrowed to the containers
// that carry every label of selector (key → exact value). It asks only
// those containers' shims for their task, where ListContainers asks every
// shim of the namespace: the cheap read behind an event-driven reconcile.
func (c *Client) ListContainersWithLabels(ctx context.Context, ns string, selector map[string]string) ([]Container, error) {
	cc, err := c.conn()
	if err != nil {
		return nil, err
	}
	nctx := nsCtx(ctx, ns)
	terms := []string{fmt.Sprintf("labels.%q==%q", LabelManagedBy, ManagedByValue)}
	for _, k := range slices.Sorted(maps.Keys(selector)) {
		terms = append(terms, fmt.Sprintf("labels.%q==%q", k, selector[k]))
	}
	list, err := cc.ContainerService().List(nctx, strings.Join(terms, ","))
	if err != nil {
		return nil, c.fail(cc, "list containers in "+ns+" with "+strings.Join(terms[1:], ","), err)
	}
	tasks := make(map[string]*tasktypes.Process, len(list))
	for _, info := range list {
		resp, err := cc.TaskService().Get(nctx, &tasksapi.GetRequest{ContainerID: info.ID})
		err = errgrpc.ToNative(err) // the raw service speaks gRPC statuses
		switch {
		case errdefs.IsNotFound(err):
		case err != nil:
			return nil, c.fail(cc, "task "+info.ID, err)
		default:
			tasks[info.ID] = resp.Process
		}
	}
	return withTasks(list, tasks), nil
}

// withTasks joins container records with their tasks, sorted by ID.
func withTasks(list []containers.Container, tasks map[string]*tasktypes.Process) []Container {
	out := make([]Container, 0, len(list))
	for _, info := range list {
		ct := Container{ID: info.ID, Labels: info.Labels, Image: info.Image, CreatedAt: info.CreatedAt}
		if t, ok := tasks[info.ID]; ok {
			ct.Task = Task{Status: taskStatus(t.Status), PID: t.Pid, ExitCode: t.ExitStatus}
			if t.ExitedAt != nil && t.Status == tasktypes.Status_STOPPED {
				ct.Task.ExitedAt = t.ExitedAt.AsTime()
			}
			if ct.Task.Status == TaskRunning || ct.Task.Status == TaskPaused {
				ct.Task.StartedAt = processStart(t.Pid)
			}
		}
		out = append(out, ct)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func taskStatus(s tasktypes.Status) TaskStatus {
	switch s {
	case tasktypes.Status_CREATED:
		return TaskCreated
	case tasktypes.Status_RUNNING:
		return TaskRunning
	case tasktypes.Status_STOPPED:
		return TaskStopped
	case tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		return TaskPaused
	}
	return TaskUnknown
}

// UpdateLabels sets labels on our container id in ns, keeping the others.
// The managed-by label cannot be changed. Errors match ErrNotFound or
// ErrNotOwned as for DeleteContainer.
func (c *Client) UpdateLabels(ctx context.Context, ns, id string, labels map[string]string) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	_, info, err := c.load(ctx, cc, ns, id)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(labels))
	for k, v := range labels {
		if k == LabelManagedBy {
			continue
		}
		info.Labels[k] = v
		paths = append(paths, "labels."+k)
	}
	if len(paths) == 0 {
		return nil
	}
	if _, err := cc.ContainerService().Update(nsCtx(ctx, ns), info, paths...); err != nil {
		return c.fail(cc, "update labels of "+id, err)
	}
	return nil
}

var boot struct {
	once sync.Once
	time time.Time
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// processStart returns when process pid started, from its start time in
// /proc/<pid>/stat (clock ticks since boot) and the boot time in /proc/stat.
// It is stable across reconciler restarts; zero if unreadable.
func processStart(pid uint32) time.Time {
	boot.once.Do(func() {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					boot.time = time.Unix(s, 0)
				}
			}
		}
	})
	if pid == 0 || boot.time.IsZero() {
		return time.Time{}
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return time.Time{}
	}
	// The command name (field 2) may contain spaces: fields after ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return time.Time{}
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return boot.time.Add(time.Duration(ticks) * time.Second / clockTicks)
}

// shimStartRetries bounds the retries of a task create whose shim start
// raced the clean-up of an interrupted create.
const shimStartRetries = 5

// shimStartRaced reports whether err is a shim start that failed because
// its bundle vanished under it (see StartContainer).
func shimStartRaced(err error) bool {
	if err == nil || !errdefs.IsUnknown(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "failed to start shim") || strings.Contains(msg, "failed to create shim task")
}
