// Package ctr holds the reconciler's runtime backends: the containerd client
// (namespaces, images, containers, tasks, events) and the cgroup v2 manager.
// It returns concrete types; consumers (pkg/controller) declare the small
// interfaces they need.
package ctr

import (
	"errors"
	"time"
)

// Errors matched with errors.Is.
var (
	// ErrNotFound: the namespace, image, container or cgroup does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a container with that ID exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrNotEmpty: a namespace still holds containers, or a cgroup still
	// holds processes (EBUSY on rmdir).
	ErrNotEmpty = errors.New("not empty")
	// ErrNotOwned: the object exists but does not carry our managed-by label.
	ErrNotOwned = errors.New("not managed by the reconciler")
	// ErrImageNotPresent: the image is not in the namespace and the pull
	// policy is Never (and no archive provides it).
	ErrImageNotPresent = errors.New("image not present")
	// ErrUnavailable: containerd cannot be reached.
	ErrUnavailable = errors.New("containerd unavailable")
)

// Labels we put on every container we create.
const (
	LabelRealm         = "kukeon.io/realm"
	LabelSpace         = "kukeon.io/space"
	LabelStack         = "kukeon.io/stack"
	LabelCell          = "kukeon.io/cell"
	LabelContainerType = "kukeon.io/container-type" // "root" | "container"
	LabelManagedBy     = "kukeon.io/managed-by"
	LabelSpecHash      = "kukeon.io/spec-hash"
	ManagedByValue     = "reconciler"
)

// Pull policies (the same strings as v1beta1).
const (
	PullIfNotPresent = "IfNotPresent"
	PullAlways       = "Always"
	PullNever        = "Never"
)

// Credential authenticates pulls from one registry host.
type Credential struct {
	ServerAddress string
	Username      string
	Password      string
}

// Mount is a bind or tmpfs mount into a container.
type Mount struct {
	Kind      string // "bind" or "tmpfs"
	Source    string // host path for bind
	Target    string
	ReadOnly  bool
	SizeBytes int64 // tmpfs size; 0 = kernel default
	Options   []string
}

// Resources are per-container cgroup limits (nil = unset).
type Resources struct {
	MemoryLimitBytes *int64
	CPUShares        *int64
	PidsLimit        *int64
}

// ContainerSpec is everything needed to create one container.
type ContainerSpec struct {
	// ID is the containerd container ID.
	ID string
	// Image is the image reference; it must already be present in the
	// namespace (see Client.EnsureImage).
	Image string
	// Command and Args follow the SPEC argv rules: Command set → [Command]+Args;
	// only Args → Args replace the image entrypoint and cmd; neither → image
	// ENTRYPOINT+CMD.
	Command    string
	Args       []string
	Env        []string
	WorkingDir string
	User       string
	Hostname   string
	Privileged bool
	// HostNetwork shares the host network namespace (else the container
	// joins JoinPID's network namespace, or gets a new one when JoinPID is 0).
	HostNetwork    bool
	HostPID        bool
	ReadOnlyRootfs bool
	CapAdd         []string
	CapDrop        []string
	Mounts         []Mount
	Devices        []string
	Resources      Resources
	// CgroupsPath is the absolute group path of the container's own cgroup,
	// set as OCI linux.cgroupsPath.
	CgroupsPath string
	// Labels are stored on the container; the managed-by label is added.
	Labels map[string]string
	// JoinPID, when non-zero, is the PID of the cell's root task: the
	// container joins its net (unless HostNetwork), IPC and UTS namespaces
	// through /proc/<pid>/ns/*.
	JoinPID uint32
	// Pause makes this the synthesized root: the process is the reconciler's
	// own static binary (Client's PauseBinary), bind-mounted read-only at
	// PauseMountPath and run as "pause"; Command and Args are ignored.
	Pause bool
	// NestedCgroup mounts cgroup2 read-write inside the container.
	NestedCgroup bool
	// LogPath receives the task's stdout and stderr (created with parents).
	LogPath string
}

// PauseMountPath is where the reconciler binary is bind-mounted in a
// synthesized root container.
const PauseMountPath = "/.reconciler/pause"

// TaskStatus is the state of a container's task.
type TaskStatus string

const (
	TaskNone    TaskStatus = ""        // no task
	TaskCreated TaskStatus = "created" // created, not started
	TaskRunning TaskStatus = "running"
	TaskStopped TaskStatus = "stopped"
	TaskPaused  TaskStatus = "paused"
	TaskUnknown TaskStatus = "unknown"
)

// Container is an observed container that carries our managed-by label.
type Container struct {
	ID        string
	Labels    map[string]string
	Image     string
	CreatedAt time.Time
	Task      Task
}

// Task is the observed task of a container.
type Task struct {
	Status   TaskStatus
	PID      uint32
	ExitCode uint32
	ExitedAt time.Time
	// StartedAt is when the running task was started, read from the
	// process start time (zero if not running).
	StartedAt time.Time
}

// EventKind tells which containerd event triggered a key.
type EventKind string

const (
	EventTaskExit        EventKind = "task-exit"
	EventContainerDelete EventKind = "container-delete"
	// EventDisconnected is sent once as soon as the event stream breaks
	// (containerd died or its socket went away), and at start when
	// containerd cannot be reached: events are lost until the matching
	// EventReconnected. Consumers should consider containerd down.
	EventDisconnected EventKind = "disconnected"
	// EventReconnected is sent once after the event stream was re-established
	// (containerd restarted), always after an EventDisconnected; consumers
	// should relist everything.
	EventReconnected EventKind = "reconnected"
)

// Event is a hint that a container changed.
type Event struct {
	Kind        EventKind
	Namespace   string
	ContainerID string
	ExitCode    uint32
	At          time.Time
}

// FileValue is one cgroup interface file and the value to write.
type FileValue struct {
	File  string
	Value string
}

// Usage is what the processes of a cgroup and all its descendants use, as
// the kernel accounts it (Cgroups.Stat). A value whose controller is not
// enabled in the group reads as zero: memory and OOM kills need memory,
// Pids needs pids, IO needs io, CPUThrottledUsec needs cpu. CPUUsec is
// accounted in every cgroup v2 group.
type Usage struct {
	// MemoryBytes is memory.current: the memory charged to the group now.
	MemoryBytes uint64
	// SwapBytes is memory.swap.current.
	SwapBytes uint64
	// OOMKills is oom_kill of memory.events: processes the OOM killer
	// ended under this group's limits, since the group was created.
	OOMKills uint64
	// CPUUsec is usage_usec of cpu.stat: CPU time used since creation.
	CPUUsec uint64
	// CPUThrottledUsec is throttled_usec of cpu.stat: time held back by
	// cpu.max.
	CPUThrottledUsec uint64
	// Pids is pids.current: processes and threads in the group now.
	Pids uint64
	// IOReadBytes and IOWriteBytes sum rbytes and wbytes of io.stat over
	// the devices.
	IOReadBytes, IOWriteBytes uint64
}
