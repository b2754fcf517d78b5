// Package ctrfake is an in-memory stand-in for pkg/ctr's runtime backends
// with the same method sets and error contracts (proved by the ctrtest
// contract suites), deterministic (injectable clock) and goroutine-safe,
// plus hooks for controller tests: exits, deletions behind our back,
// cgroup file drift, call counts and injected failures.
package ctrfake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Runtime is an in-memory containerd: namespaces, images, containers and
// tasks. Tasks run nothing; they exit only through Exit, StopContainer or
// DeleteContainer. Linked to a fake Cgroups (WithCgroups), a running task is
// a process in its container's cgroup, as runc puts it there.
type Runtime struct {
	mu      sync.Mutex
	now     func() time.Time
	sources map[string]bool // images EnsureImage can import or pull
	nss     map[string]*namespace
	nextPID uint32
	calls   map[string]int
	fail    map[string]error
	subs    []chan ctr.Event
	down    bool
	cgroups *Cgroups // nil: tasks are placed nowhere
	stops   []Stop
}

// Stop records one stop of a running task (StopContainer or
// DeleteContainer): the grace period it was given and whether it was
// SIGKILLed once that was over.
type Stop struct {
	Namespace string
	ID        string
	Grace     time.Duration
	Killed    bool // the task ignored SIGTERM
}

type namespace struct {
	owned      bool
	images     map[string]bool
	containers map[string]*container
}

type container struct {
	spec      ctr.ContainerSpec
	labels    map[string]string
	createdAt time.Time
	task      *ctr.Task
	// termExit is the exit code of a task that exits on SIGTERM; nil means
	// it ignores SIGTERM, as a PID 1 without a handler does, and is
	// SIGKILLed (137) when its grace period is over.
	termExit *uint32
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithClock makes the fake read time from now (default time.Now).
func WithClock(now func() time.Time) Option { return func(r *Runtime) { r.now = now } }

// WithImages declares the image references EnsureImage can source (as if an
// archive or registry provided them). References are normalized.
func WithImages(refs ...string) Option {
	return func(r *Runtime) {
		for _, ref := range refs {
			r.sources[ctr.NormalizeImage(ref)] = true
		}
	}
}

// WithCgroups links the runtime to a fake cgroup tree: StartContainer puts
// the task's PID in the spec's CgroupsPath (creating it, as runc does; a
// spec without CgroupsPath is placed nowhere), a task that exits leaves it,
// and a deleted task's cgroup is removed. The tree's rules then hold for
// the runtime too: a task cannot start in a group that delegates
// controllers (no internal processes), and a group holding a task cannot
// be removed (ErrNotEmpty).
func WithCgroups(cg *Cgroups) Option { return func(r *Runtime) { r.cgroups = cg } }

// NewRuntime returns an empty fake runtime.
func NewRuntime(opts ...Option) *Runtime {
	r := &Runtime{
		now:     time.Now,
		sources: map[string]bool{},
		nss:     map[string]*namespace{},
		nextPID: 1000,
		calls:   map[string]int{},
		fail:    map[string]error{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Calls returns how many times each mutating method was called.
func (r *Runtime) Calls() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.calls)
}

// FailNext makes the next call of method (e.g. "StartContainer") return
// err without doing anything.
func (r *Runtime) FailNext(method string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[method] = err
}

// SetDown makes every call fail with ErrUnavailable (containerd down) until
// SetDown(false). Going down sends EventDisconnected and coming back up
// EventReconnected, each once per change, as the real event stream does.
func (r *Runtime) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := r.down
	r.down = down
	switch {
	case !was && down:
		r.emit(ctr.Event{Kind: ctr.EventDisconnected, At: r.now()})
	case was && !down:
		r.emit(ctr.Event{Kind: ctr.EventReconnected, At: r.now()})
	}
}

// enter counts a call of method and returns an injected or down error.
// Callers hold r.mu.
func (r *Runtime) enter(method string, mutating bool) error {
	if mutating {
		r.calls[method]++
	}
	if err, ok := r.fail[method]; ok {
		delete(r.fail, method)
		return err
	}
	if r.down {
		return fmt.Errorf("%s: %w", method, ctr.ErrUnavailable)
	}
	return nil
}

// Ping fails with ErrUnavailable while the fake is down, and with ctx's
// error when ctx is done.
func (r *Runtime) Ping(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("Ping", false); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// EnsureNamespace creates ns (owned) if it is missing. See ctr.Client.
func (r *Runtime) EnsureNamespace(_ context.Context, ns string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("EnsureNamespace", true); err != nil {
		return err
	}
	if _, ok := r.nss[ns]; !ok {
		r.nss[ns] = newNamespace(true)
	}
	return nil
}

// AddForeignNamespace creates ns as if someone else had (not ours).
func (r *Runtime) AddForeignNamespace(ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.nss[ns]; !ok {
		r.nss[ns] = newNamespace(false)
	}
}

func newNamespace(owned bool) *namespace {
	return &namespace{owned: owned, images: map[string]bool{}, containers: map[string]*container{}}
}

// ListNamespaces returns every namespace, sorted.
func (r *Runtime) ListNamespaces(context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("ListNamespaces", false); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(r.nss))
	for ns := range r.nss {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out, nil
}

// DeleteNamespace removes an owned, container-free namespace. See ctr.Client.
func (r *Runtime) DeleteNamespace(_ context.Context, ns string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("DeleteNamespace", true); err != nil {
		return err
	}
	n, ok := r.nss[ns]
	switch {
	case !ok:
		return fmt.Errorf("namespace %s: %w", ns, ctr.ErrNotFound)
	case !n.owned:
		return fmt.Errorf("delete namespace %s: %w", ns, ctr.ErrNotOwned)
	case len(n.containers) > 0:
		return fmt.Errorf("delete namespace %s: %d containers left: %w", ns, len(n.containers), ctr.ErrNotEmpty)
	}
	delete(r.nss, ns)
	return nil
}

// EnsureImage follows the pull policies of ctr.Client.EnsureImage; an image
// is sourceable when declared with WithImages (or AddImageSource).
func (r *Runtime) EnsureImage(_ context.Context, ns, ref, pullPolicy string, _ []ctr.Credential) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("EnsureImage", true); err != nil {
		return err
	}
	name := ctr.NormalizeImage(ref)
	n := r.namespace(ns)
	switch pullPolicy {
	case "", ctr.PullIfNotPresent, ctr.PullNever:
		if n.images[name] {
			return nil
		}
	case ctr.PullAlways:
	default:
		return fmt.Errorf("image %s: unsupported pull policy %q", name, pullPolicy)
	}
	if !r.sources[name] {
		if pullPolicy == ctr.PullNever {
			return fmt.Errorf("image %s in namespace %s (pull policy Never, no archive provides it): %w", name, ns, ctr.ErrImageNotPresent)
		}
		return fmt.Errorf("pull %s into %s: %w", name, ns, ctr.ErrNotFound)
	}
	n.images[name] = true
	return nil
}

// AddImage makes image ref present in ns (creating ns unowned if needed),
// as if someone had imported it: nothing can source it again.
func (r *Runtime) AddImage(ns, ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.namespace(ns).images[ctr.NormalizeImage(ref)] = true
}

// AddImageSource declares one more sourceable image.
func (r *Runtime) AddImageSource(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources[ctr.NormalizeImage(ref)] = true
}

// namespace returns ns, creating it unowned as containerd does implicitly.
func (r *Runtime) namespace(ns string) *namespace {
	n, ok := r.nss[ns]
	if !ok {
		n = newNamespace(false)
		r.nss[ns] = n
	}
	return n
}

// CreateContainer records the container. See ctr.Client.
func (r *Runtime) CreateContainer(_ context.Context, ns string, spec ctr.ContainerSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("CreateContainer", true); err != nil {
		return err
	}
	n := r.namespace(ns)
	if c, ok := n.containers[spec.ID]; ok {
		if c.labels[ctr.LabelManagedBy] != ctr.ManagedByValue {
			return fmt.Errorf("create container %s in %s: a container without our label has this ID: %w (%w)", spec.ID, ns, ctr.ErrAlreadyExists, ctr.ErrNotOwned)
		}
		return fmt.Errorf("create container %s in %s: %w", spec.ID, ns, ctr.ErrAlreadyExists)
	}
	name := ctr.NormalizeImage(spec.Image)
	if !n.images[name] {
		return fmt.Errorf("create container %s: image %s in namespace %s: %w", spec.ID, name, ns, ctr.ErrImageNotPresent)
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ctr.LabelManagedBy] = ctr.ManagedByValue
	spec.Image = name
	c := &container{spec: spec, labels: labels, createdAt: r.now()}
	if spec.Pause {
		c.termExit = new(uint32) // the synthesized root exits 0 on SIGTERM
	}
	n.containers[spec.ID] = c
	return nil
}

// HandleSIGTERM makes the tasks of container id exit with code on SIGTERM
// (by default they ignore it, as a PID 1 without a handler does, except a
// synthesized root, which exits 0). No-op for a missing container.
func (r *Runtime) HandleSIGTERM(ns, id string, code uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.nss[ns]; ok {
		if c, ok := n.containers[id]; ok {
			c.termExit = &code
		}
	}
}

// Stops returns every stop of a running task so far, in order.
func (r *Runtime) Stops() []Stop {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.stops)
}

// AddForeignContainer creates container id in ns without our label, as
// someone else would.
func (r *Runtime) AddForeignContainer(ns, id, image string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.namespace(ns).containers[id] = &container{
		spec: ctr.ContainerSpec{ID: id, Image: ctr.NormalizeImage(image)}, labels: map[string]string{}, createdAt: r.now(),
	}
}

// Spec returns the spec a container was created with (for assertions).
func (r *Runtime) Spec(ns, id string) (ctr.ContainerSpec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.nss[ns]; ok {
		if c, ok := n.containers[id]; ok {
			return c.spec, true
		}
	}
	return ctr.ContainerSpec{}, false
}

// ours returns our container id in ns or an ErrNotFound/ErrNotOwned error.
func (r *Runtime) ours(ns, id string) (*container, error) {
	n, ok := r.nss[ns]
	if !ok {
		return nil, fmt.Errorf("container %s in %s: %w", id, ns, ctr.ErrNotFound)
	}
	c, ok := n.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s in %s: %w", id, ns, ctr.ErrNotFound)
	}
	if c.labels[ctr.LabelManagedBy] != ctr.ManagedByValue {
		return nil, fmt.Errorf("container %s in %s: %w", id, ns, ctr.ErrNotOwned)
	}
	return c, nil
}

// StartContainer starts a task with a new PID unless one runs. See ctr.Client.
func (r *Runtime) StartContainer(_ context.Context, ns, id string) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("StartContainer", true); err != nil {
		return 0, err
	}
	c, err := r.ours(ns, id)
	if err != nil {
		return 0, err
	}
	if c.task != nil && (c.task.Status == ctr.TaskRunning || c.task.Status == ctr.TaskPaused) {
		c.task.Status = ctr.TaskRunning
		return c.task.PID, nil
	}
	r.deleteTask(c) // a created or stopped task is replaced
	pid := r.nextPID + 1
	if r.cgroups != nil && c.spec.CgroupsPath != "" {
		if err := r.cgroups.attach(c.spec.CgroupsPath, int(pid)); err != nil {
			return 0, fmt.Errorf("start task %s in %s: %w", id, ns, err)
		}
	}
	r.nextPID = pid
	c.task = &ctr.Task{Status: ctr.TaskRunning, PID: pid, StartedAt: r.now()}
	return c.task.PID, nil
}

// deleteTask removes c's task; its process leaves c's cgroup, which is
// removed as runc removes a container's cgroup on task delete. Callers
// hold r.mu.
func (r *Runtime) deleteTask(c *container) {
	if c.task == nil {
		return
	}
	if r.cgroups != nil && c.spec.CgroupsPath != "" {
		r.cgroups.detach(c.spec.CgroupsPath, int(c.task.PID), true)
	}
	c.task = nil
}

// StopContainer sends the task SIGTERM and, if it ignores that (see
// HandleSIGTERM), SIGKILL once grace is over (exit code 137), then deletes
// the task; the stop is recorded (see Stops). See ctr.Client.
func (r *Runtime) StopContainer(_ context.Context, ns, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("StopContainer", true); err != nil {
		return err
	}
	c, err := r.ours(ns, id)
	if err != nil {
		return err
	}
	r.stop(ns, id, c, grace)
	return nil
}

func (r *Runtime) stop(ns, id string, c *container, grace time.Duration) {
	if c.task != nil && c.task.Status == ctr.TaskRunning {
		code, killed := uint32(137), c.termExit == nil
		if !killed {
			code = *c.termExit
		}
		r.stops = append(r.stops, Stop{Namespace: ns, ID: id, Grace: grace, Killed: killed})
		r.emit(ctr.Event{Kind: ctr.EventTaskExit, Namespace: ns, ContainerID: id, ExitCode: code, At: r.now()})
	}
	r.deleteTask(c)
}

// DeleteContainer stops (as StopContainer) and removes our container. See
// ctr.Client.
func (r *Runtime) DeleteContainer(_ context.Context, ns, id string, grace time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("DeleteContainer", true); err != nil {
		return err
	}
	c, err := r.ours(ns, id)
	if err != nil {
		return err
	}
	r.stop(ns, id, c, grace)
	delete(r.nss[ns].containers, id)
	r.emit(ctr.Event{Kind: ctr.EventContainerDelete, Namespace: ns, ContainerID: id, At: r.now()})
	return nil
}

// ListContainers returns our containers in ns sorted by ID. See ctr.Client.
func (r *Runtime) ListContainers(_ context.Context, ns string) ([]ctr.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("ListContainers", false); err != nil {
		return nil, err
	}
	n, ok := r.nss[ns]
	if !ok {
		return nil, nil
	}
	var out []ctr.Container
	for id, c := range n.containers {
		if c.labels[ctr.LabelManagedBy] != ctr.ManagedByValue {
			continue
		}
		ct := ctr.Container{ID: id, Labels: maps.Clone(c.labels), Image: c.spec.Image, CreatedAt: c.createdAt}
		if c.task != nil {
			ct.Task = *c.task
		}
		out = append(out, ct)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ListContainersWithLabels is ListContainers narrowed to the containers
// carrying every label of selector. See ctr.Client.
func (r *Runtime) ListContainersWithLabels(ctx context.Context, ns string, selector map[string]string) ([]ctr.Container, error) {
	all, err := r.ListContainers(ctx, ns)
	if err != nil {
		return nil, err
	}
	var out []ctr.Container
	for _, c := range all {
		match := true
		for k, v := range selector {
			match = match && c.Labels[k] == v
		}
		if match {
			out = append(out, c)
		}
	}
	return out, nil
}

// UpdateLabels sets labels on our container, keeping the others; the
// managed-by label cannot change. See ctr.Client.
func (r *Runtime) UpdateLabels(_ context.Context, ns, id string, labels map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enter("UpdateLabels", true); err != nil {
		return err
	}
	c, err := r.ours(ns, id)
	if err != nil {
		return err
	}
	for k, v := range labels {
		if k != ctr.LabelManagedBy {
			c.labels[k] = v
		}
	}
	return nil
}

// Exit makes the running task of id exit with code (a crash or a clean
// exit) and emits the task-exit event. No-op without a running task.
func (r *Runtime) Exit(ns, id string, code uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nss[ns]
	if !ok {
		return
	}
	c, ok := n.containers[id]
	if !ok || c.task == nil || c.task.Status != ctr.TaskRunning {
		return
	}
	c.task.Status = ctr.TaskStopped
	c.task.ExitCode = code
	c.task.ExitedAt = r.now()
	c.task.StartedAt = time.Time{}
	if r.cgroups != nil && c.spec.CgroupsPath != "" {
		// The process is gone; the cgroup stays until the task is deleted.
		r.cgroups.detach(c.spec.CgroupsPath, int(c.task.PID), false)
	}
	r.emit(ctr.Event{Kind: ctr.EventTaskExit, Namespace: ns, ContainerID: id, ExitCode: code, At: r.now()})
}

// DeleteBehindBack removes container id (ours or not) as an operator would
// with ctr, and emits the container-delete event.
func (r *Runtime) DeleteBehindBack(ns, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.nss[ns]; ok {
		if c, ok := n.containers[id]; ok {
			r.deleteTask(c)
			delete(n.containers, id)
			r.emit(ctr.Event{Kind: ctr.EventContainerDelete, Namespace: ns, ContainerID: id, At: r.now()})
		}
	}
}

// Events delivers the fake's events until ctx ends; like the real client it
// drops the oldest event rather than block on a slow consumer.
func (r *Runtime) Events(ctx context.Context) <-chan ctr.Event {
	ch := make(chan ctr.Event, 256)
	r.mu.Lock()
	r.subs = append(r.subs, ch)
	r.mu.Unlock()
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, s := range r.subs {
			if s == ch {
				r.subs = append(r.subs[:i], r.subs[i+1:]...)
				break
			}
		}
		close(ch)
	}()
	return ch
}

// emit sends ev to every subscriber without blocking. Callers hold r.mu.
func (r *Runtime) emit(ev ctr.Event) {
	for _, ch := range r.subs {
		select {
		case ch <- ev:
			continue
		default:
		}
		select {
		case <-ch:
		default:
		}
		select {
		case ch <- ev:
		default:
		}
	}
}
