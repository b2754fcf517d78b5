package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/manifest"
	"github.com/kukeon/reconciler/pkg/metrics"
)

// eventSource is what the daemon needs of the runtime beyond the
// controller's interface.
type eventSource interface {
	Events(ctx context.Context) <-chan ctr.Event
}

// runDaemon converges continuously until SIGTERM/SIGINT: a full pass at
// start, on every manifest change (debounced) and every --resync, and the
// owning cell at once on every containerd task exit or container delete.
// On a stop signal it lets the in-flight pass finish (up to 10 s), writes
// status and returns nil; containers keep running.
func runDaemon(ctx context.Context, rc *controller.Reconciler, f *reconcileFlags, _, _ io.Writer) error {
	log := logr.FromContextOrDiscard(ctx)

	w, err := manifest.NewWatcher([]string{f.manifests}, manifest.WatchOptions{Debounce: f.debounce})
	if err != nil {
		return exitWith(1, fmt.Errorf("watch %s: %w", f.manifests, err))
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchDone := make(chan error, 1)
	go func() { watchDone <- w.Run(watchCtx) }()

	m := metrics.New()
	health := metrics.NewHealth(3 * f.resync)
	if f.listen != "" {
		srv := metrics.NewServer(f.listen, m, health)
		if err := srv.Start(); err != nil {
			return exitWith(1, err)
		}
		log.Info("serving health and metrics", "address", srv.Addr())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Error(err, "stop serving health and metrics")
			}
		}()
	}

	var events <-chan ctr.Event
	if es, ok := rc.Runtime.(eventSource); ok {
		events = es.Events(ctx)
	}
	cd := &containerdState{connected: true, passUp: true, report: func(up bool) {
		health.SetContainerdUp(up)
		m.SetContainerdUp(up)
	}}
	firstDone := false
	d := &controller.Daemon{
		Reconciler: rc,
		Changes:    w.Changes(),
		Events:     events,
		Resync:     f.resync,
		OnConnection: func(up bool) {
			if !up {
				log.Error(ctr.ErrUnavailable, "containerd connection lost")
			}
			cd.connection(up)
		},
		OnPass: func(pr *controller.PassResult, full bool, depth int) {
			health.Beat()
			health.SetStateError(pr.StateErr)
			m.SetQueueDepth(depth)
			cd.pass(pr.Err == nil || !errors.Is(pr.Err, ctr.ErrUnavailable))
			result := "success"
			if !pr.OK() {
				result = "error"
			}
			if full {
				m.ObserveReconcile("pass", result, pr.Duration)
			}
			for _, o := range pr.Outcomes {
				if o.Change == nil || o.Change.Action == controller.ActionUnchanged {
					continue
				}
				r := "success"
				if o.Err != nil || o.Blocked != "" {
					r = "error"
				}
				m.ObserveReconcile(levelName(o.Change.Level), r, pr.Duration)
			}
			for _, r := range pr.Restarts {
				m.IncRestarts(r.Policy)
			}
			errs, warns := 0, 0
			for _, dg := range pr.Diagnostics {
				if dg.Severity == manifest.SeverityError {
					errs++
				} else {
					warns++
				}
			}
			m.SetManifestErrors(errs)
			m.SetManifestWarnings(warns)
			if pr.Status != nil {
				counts := map[[2]string]int{}
				for _, o := range pr.Status.Objects {
					counts[[2]string{o.Kind, o.State}]++
				}
				m.SetObjectStates(counts)
				if full {
					m.SetCgroupUsage(cgroupUsage(pr.Status))
				}
			}
			if full && pr.Err == nil {
				if pr.OK() {
					m.PassSucceeded(time.Now())
				}
				if !firstDone {
					firstDone = true
					health.SetFirstPassDone()
					log.Info("first pass done", "ok", pr.OK(), "duration", pr.Duration.String())
				}
			}
		},
	}
	log.Info("reconciler started", "manifests", f.manifests, "containerd", f.containerdAddress, "cgroupRoot", f.cgroupRoot, "resync", f.resync.String())
	err = d.Run(ctx)
	stopWatch()
	if werr := <-watchDone; werr != nil {
		log.Error(werr, "manifest watch ended")
	}
	log.Info("stopped; containers keep running")
	return err
}

// containerdState is whether containerd is up, for readiness and the
// reconciler_containerd_up metric: up when the event stream is connected
// and the last pass did not find it unavailable. The stream reports a lost
// connection at once, so readiness need not wait for the next pass; and
// since both must agree, a pass that began before the loss cannot report
// containerd up after it. Without an event stream connected stays true
// and passes alone decide. Safe for concurrent use: the event feed and the
// pass loop are different goroutines.
type containerdState struct {
	mu        sync.Mutex
	connected bool // what the event stream last said
	passUp    bool // what the last pass said
	report    func(up bool)
}

// connection records what the event stream says. A regained connection
// answered a Ping, so it counts as up until a pass says otherwise.
func (s *containerdState) connection(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected = up
	if up {
		s.passUp = true
	}
	s.report(s.connected && s.passUp)
}

// pass records what a pass found.
func (s *containerdState) pass(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passUp = up
	s.report(s.connected && s.passUp)
}

func levelName(l controller.Level) string {
	switch l {
	case controller.LevelRealm:
		return "realm"
	case controller.LevelSpace:
		return "space"
	case controller.LevelStack:
		return "stack"
	default:
		return "cell"
	}
}

// cgroupUsage turns the usage in a status into gauge values, naming each
// object by its realm, space, stack and cell.
func cgroupUsage(st *controller.Status) []metrics.CgroupUsage {
	var out []metrics.CgroupUsage
	for _, o := range st.Objects {
		if o.Usage == nil {
			continue
		}
		_, path, _ := strings.Cut(o.Key, " ")
		parts := append(strings.SplitN(path, "/", 4), "", "", "")
		out = append(out, metrics.CgroupUsage{Realm: parts[0], Space: parts[1], Stack: parts[2], Cell: parts[3],
			MemoryBytes: o.Usage.MemoryBytes, CPUUsec: o.Usage.CPUUsec, Pids: o.Usage.Pids})
	}
	return out
}
