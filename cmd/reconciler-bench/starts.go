package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
)

// startWatcher records every /tasks/start event of the private containerd
// with containerd's own timestamp, so latencies end at the moment the
// runtime reported the task running, not when a poll noticed it.
type startWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	starts  []taskStart
	changed chan struct{} // closed and replaced on every event
	err     error         // the stream broke
}

type taskStart struct {
	Namespace, ContainerID string
	At                     time.Time
}

// watchStarts subscribes to task starts in every namespace until stop.
func watchStarts(cc *client.Client) *startWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &startWatcher{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	envs, errs := cc.Subscribe(ctx, `topic=="/tasks/start"`)
	go func() {
		defer close(w.done)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() == nil {
					w.record(nil, fmt.Errorf("containerd event stream: %w", err))
				}
				return
			case env, ok := <-envs:
				if !ok {
					return
				}
				if v, err := typeurl.UnmarshalAny(env.Event); err == nil {
					if e, ok := v.(*apievents.TaskStart); ok {
						w.record(&taskStart{Namespace: env.Namespace, ContainerID: e.ContainerID, At: env.Timestamp}, nil)
					}
				}
			}
		}
	}()
	return w
}

// record adds a start, or the error that broke the stream, and wakes the
// waiters.
func (w *startWatcher) record(s *taskStart, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s != nil {
		w.starts = append(w.starts, *s)
	}
	if err != nil {
		w.err = err
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *startWatcher) stop() {
	w.cancel()
	<-w.done
}

// wait returns the time of the first start of container id in ns at or
// after since, waiting up to timeout for it.
func (w *startWatcher) wait(ctx context.Context, ns, id string, since time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for _, s := range w.starts {
			if s.Namespace == ns && s.ContainerID == id && !s.At.Before(since) {
				w.mu.Unlock()
				return s.At, nil
			}
		}
		changed, err := w.changed, w.err
		w.mu.Unlock()
		if err != nil {
			return time.Time{}, err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("container %s in %s did not start within %s", id, ns, timeout)
		case <-changed:
		}
	}
}

// since lists the starts in ns at or after t.
func (w *startWatcher) since(ns string, t time.Time) []taskStart {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []taskStart
	for _, s := range w.starts {
		if s.Namespace == ns && !s.At.Before(t) {
			out = append(out, s)
		}
	}
	return out
}
