package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Object states.
const (
	StatePending  = "Pending"
	StateReady    = "Ready"
	StateDegraded = "Degraded"
	StateFailed   = "Failed"
	StateBlocked  = "Blocked"
	// StateOrphaned is a recorded object that is no longer declared and is
	// kept (see Kept): it still exists, with its containers.
	StateOrphaned = "Orphaned"
	// StateCompleted is an autoDelete cell whose workloads exited cleanly
	// and that was removed.
	StateCompleted = "Completed"
)

// Container states.
const (
	ContainerRunning = "Running"
	ContainerExited  = "Exited"
	ContainerCreated = "Created"
	ContainerMissing = "Missing"
	ContainerFailed  = "Failed"
)

// Status is the last observed status of every object, written to
// <state-dir>/status.json after every pass.
type Status struct {
	GeneratedAt time.Time      `json:"generatedAt"`
	Pass        PassSummary    `json:"pass"`
	Objects     []ObjectStatus `json:"objects"`
	// Diagnostics are the manifest errors and warnings of the pass.
	Diagnostics []string `json:"diagnostics,omitempty"`
}

// PassSummary describes the pass that produced a Status.
type PassSummary struct {
	StartedAt time.Time      `json:"startedAt"`
	Duration  string         `json:"duration"`
	OK        bool           `json:"ok"`
	Counts    map[Action]int `json:"counts"`
	Errors    []string       `json:"errors,omitempty"`
}

// ObjectStatus is the status of one object.
type ObjectStatus struct {
	Kind    string `json:"kind"`
	Key     string `json:"key"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Implied bool   `json:"implied,omitempty"`
	Source  string `json:"source,omitempty"`
	// Namespace is the containerd namespace (realms and cells).
	Namespace  string `json:"namespace,omitempty"`
	CgroupPath string `json:"cgroupPath,omitempty"`
	// Controllers are the controllers delegated in the level's
	// cgroup.subtree_control; MissingControllers were asked for and the
	// host does not offer them.
	Controllers        []string          `json:"controllers"`
	MissingControllers []string          `json:"missingControllers,omitempty"`
	Containers         []ContainerStatus `json:"containers,omitempty"`
	// Usage is the cgroup's usage at the end of the pass (full daemon
	// passes and --once; see Options.Usage).
	Usage *Usage `json:"usage,omitempty"`
}

// Usage is what a level cgroup uses now (memory.current, pids.current) and
// has used since it was created (cpu.stat).
type Usage struct {
	MemoryBytes      uint64 `json:"memoryBytes"`
	SwapBytes        uint64 `json:"swapBytes,omitempty"`
	OOMKills         uint64 `json:"oomKills,omitempty"`
	CPUUsec          uint64 `json:"cpuUsec"`
	CPUThrottledUsec uint64 `json:"cpuThrottledUsec,omitempty"`
	Pids             uint64 `json:"pids"`
	IOReadBytes      uint64 `json:"ioReadBytes,omitempty"`
	IOWriteBytes     uint64 `json:"ioWriteBytes,omitempty"`
}

// ContainerStatus is the status of one container of a cell.
type ContainerStatus struct {
	ID           string     `json:"id"`
	ContainerdID string     `json:"containerdId"`
	Root         bool       `json:"root,omitempty"`
	State        string     `json:"state"`
	PID          uint32     `json:"pid,omitempty"`
	ExitCode     *uint32    `json:"exitCode,omitempty"`
	StartedAt    *time.Time `json:"startedAt,omitempty"`
	RestartCount int        `json:"restartCount"`
	LastExitCode *uint32    `json:"lastExitCode,omitempty"`
	// LastRestartAt is when the reconciler last restarted the container;
	// NextRestartAt is when its restart policy allows the next one.
	LastRestartAt *time.Time `json:"lastRestartAt,omitempty"`
	NextRestartAt *time.Time `json:"nextRestartAt,omitempty"`
	Message       string     `json:"message,omitempty"`
}

// LoadStatus reads a status file; a missing file is (nil, nil).
func LoadStatus(path string) (*Status, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse status %s: %w", path, err)
	}
	return &st, nil
}

// Save writes the status atomically.
func (s *Status) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	return writeStateFile(path, append(b, '\n'))
}

// buildStatus derives every object's status from the final observation and
// the outcomes of the pass.
func buildStatus(tree *hierarchy.Tree, obs *Observed, outcomes []Outcome, restarts *RestartBook, inv *Inventory) []ObjectStatus {
	byKey := map[string]Outcome{}
	for _, o := range outcomes {
		if o.Change != nil {
			byKey[o.Change.Key] = o
		}
	}
	level := func(kind, key string, m hierarchy.Meta, ns string, nested bool) ObjectStatus {
		st := ObjectStatus{Kind: kind, Key: key, Implied: m.Implied, Source: m.Source.String(), CgroupPath: m.CgroupPath, Namespace: ns}
		if m.Implied {
			st.Source = ""
		}
		cg := obs.Cgroups[m.CgroupPath]
		st.Controllers = cg.Delegated
		if st.Controllers == nil {
			st.Controllers = []string{}
		}
		st.MissingControllers = assessLevel(obs, m.CgroupPath, m.Resources, nested).Missing
		o := byKey[key]
		switch {
		case o.Blocked != "":
			st.State, st.Reason, st.Message = StateBlocked, "ParentFailed", "blocked by "+o.Blocked
		case o.Err != nil:
			st.State, st.Reason, st.Message = StateFailed, "ApplyFailed", strings.ReplaceAll(o.Err.Error(), "\n", "; ")
		case !cg.Exists:
			st.State, st.Reason = StatePending, "CgroupMissing"
		default:
			st.State = StateReady
		}
		return st
	}
	var out []ObjectStatus
	for _, r := range tree.Realms {
		st := level(v1beta1.KindRealm, r.Key(), r.Meta, r.Namespace, false)
		if st.State == StateReady && !obs.Namespaces[r.Namespace] {
			st.State, st.Reason = StatePending, "NamespaceMissing"
		}
		out = append(out, st)
		for _, s := range r.Spaces {
			out = append(out, level(v1beta1.KindSpace, s.Key(), s.Meta, "", false))
			for _, sk := range s.Stacks {
				out = append(out, level(v1beta1.KindStack, sk.Key(), sk.Meta, "", false))
				for _, c := range sk.Cells {
					st := level(v1beta1.KindCell, c.Key(), c.Meta, c.Namespace, c.NestedCgroupRuntime)
					v := assessCell(c, obs, inv.Objects[c.Key()], restarts, time.Time{}, false)
					if v.CompletedBefore {
						st.State, st.Reason, st.Message = StateCompleted, "AutoDeleted", "workloads exited cleanly; the cell was removed (autoDelete) and stays removed until its spec changes"
						st.Controllers = []string{}
						out = append(out, st)
						continue
					}
					out = append(out, cellStatus(st, v))
				}
			}
		}
	}
	return out
}

// orphanStatus shows the kept objects as they are on the host.
func orphanStatus(kept []Kept, obs *Observed) []ObjectStatus {
	var out []ObjectStatus
	for _, k := range kept {
		rec := k.Record
		st := ObjectStatus{Kind: k.Kind, Key: k.Key, State: StateOrphaned, Reason: k.Why.statusReason(),
			Message: "kept: " + k.Reason, Source: rec.Source, CgroupPath: rec.Cgroup, Controllers: obs.Cgroups[rec.Cgroup].Delegated}
		if st.Controllers == nil {
			st.Controllers = []string{}
		}
		if k.Kind == v1beta1.KindRealm || k.Kind == v1beta1.KindCell {
			st.Namespace = rec.Namespace
		}
		if k.Kind == v1beta1.KindCell {
			for _, oc := range obs.ContainersOfCell(rec.Namespace, rec.Space, rec.Stack, rec.CellID) {
				cs := ContainerStatus{ID: containerShortID(oc.ID), ContainerdID: oc.ID, Root: oc.Labels[ctr.LabelContainerType] == "root"}
				switch oc.Task.Status {
				case ctr.TaskRunning:
					cs.State, cs.PID = ContainerRunning, oc.Task.PID
				case ctr.TaskStopped:
					code := oc.Task.ExitCode
					cs.State, cs.ExitCode = ContainerExited, &code
				default:
					cs.State = ContainerCreated
				}
				st.Containers = append(st.Containers, cs)
			}
		}
		out = append(out, st)
	}
	return out
}

// cellStatus renders the assessment of a cell; it judges nothing itself.
func cellStatus(st ObjectStatus, v CellView) ObjectStatus {
	running, expected := 0, 0
	var failedMsgs, downMsgs []string
	for _, cv := range v.Containers {
		dc, oc, rs := cv.Desired, cv.Observed, cv.Restart
		cs := ContainerStatus{ID: dc.Spec.ID, ContainerdID: dc.ContainerdID, Root: dc.Root, RestartCount: rs.Count}
		if rs.Count > 0 {
			lc := rs.LastExitCode
			cs.LastExitCode = &lc
		}
		if !rs.LastRestart.IsZero() {
			t := rs.LastRestart
			cs.LastRestartAt = &t
		}
		switch cv.Verdict {
		case VerdictMissing:
			cs.State = ContainerMissing
		case VerdictSpecChanged:
			cs.State, cs.Message = ContainerMissing, "spec changed; waiting for recreate"
		case VerdictRunning:
			cs.State, cs.PID = ContainerRunning, oc.Task.PID
			if !oc.Task.StartedAt.IsZero() {
				t := oc.Task.StartedAt
				cs.StartedAt = &t
			}
		case VerdictStart:
			cs.State = ContainerCreated
		default: // the task exited
			code := oc.Task.ExitCode
			cs.ExitCode, cs.State = &code, ContainerExited
			switch {
			case cv.Verdict == VerdictGaveUp:
				cs.State = ContainerFailed
				cs.Message = fmt.Sprintf("exited with code %d after %d restarts (restartMaxRetries %d)", code, rs.Count, *dc.Spec.RestartMaxRetries)
				failedMsgs = append(failedMsgs, fmt.Sprintf("container %s %s", dc.Spec.ID, cs.Message))
			case cv.Failed():
				failedMsgs = append(failedMsgs, fmt.Sprintf("container %s exited with code %d", dc.Spec.ID, code))
			case (cv.Verdict == VerdictRestart || cv.Verdict == VerdictBackoff) && !dc.Root:
				next := cv.NextRestart
				cs.NextRestartAt = &next
			}
		}
		if cv.ShouldRun() {
			expected++
			if cs.State == ContainerRunning {
				running++
			} else if cs.State != ContainerFailed {
				downMsgs = append(downMsgs, fmt.Sprintf("container %s %s", dc.Spec.ID, stateWords(cs)))
			}
		}
		st.Containers = append(st.Containers, cs)
	}
	if st.State != StateReady {
		return st
	}
	switch {
	case len(failedMsgs) > 0:
		st.State, st.Reason, st.Message = StateFailed, "ContainerFailed", strings.Join(failedMsgs, "; ")
	case running == expected:
		st.State = StateReady
	case running > 0 && slices.ContainsFunc(st.Containers, func(c ContainerStatus) bool { return c.Root && c.State == ContainerRunning }):
		st.State, st.Reason, st.Message = StateDegraded, "ContainersDown", strings.Join(downMsgs, "; ")
	default:
		st.State, st.Reason, st.Message = StatePending, "ContainersNotRunning", strings.Join(downMsgs, "; ")
	}
	return st
}

func stateWords(cs ContainerStatus) string {
	switch cs.State {
	case ContainerExited:
		return fmt.Sprintf("exited with code %d", *cs.ExitCode)
	case ContainerMissing:
		return "missing"
	case ContainerCreated:
		return "not started"
	}
	return cs.State
}

// readUsage fills the usage of every object whose cgroup exists, reading
// up to Workers cgroups at once. A group that vanished meanwhile has none;
// another failure is the object's status message.
func (rc *Reconciler) readUsage(st *Status) {
	sem := make(chan struct{}, rc.workers())
	var wg sync.WaitGroup
	for i := range st.Objects {
		o := &st.Objects[i]
		if o.CgroupPath == "" || o.State == StateCompleted || o.State == StatePending && o.Reason == "CgroupMissing" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u, err := rc.Cgroups.Stat(o.CgroupPath)
			switch {
			case errors.Is(err, ctr.ErrNotFound):
			case err != nil:
				o.Message = strings.TrimPrefix(o.Message+"; ", "; ") + fmt.Sprintf("read usage of %s: %v", o.CgroupPath, err)
			default:
				o.Usage = &Usage{MemoryBytes: u.MemoryBytes, SwapBytes: u.SwapBytes, OOMKills: u.OOMKills, CPUUsec: u.CPUUsec,
					CPUThrottledUsec: u.CPUThrottledUsec, Pids: u.Pids, IOReadBytes: u.IOReadBytes, IOWriteBytes: u.IOWriteBytes}
			}
		}()
	}
	wg.Wait()
}
