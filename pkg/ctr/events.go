package ctr

import (
	"context"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/typeurl/v2"
)

// eventBuffer is how many events wait for a slow consumer before the
// oldest are dropped: events are hints, the periodic relist is the truth.
const eventBuffer = 256

// Events subscribes to task exits and container deletions in every
// namespace and delivers them until ctx ends, when the channel is closed.
//
// The connection is reported too, by EventDisconnected and
// EventReconnected, strictly alternating and never repeated:
// EventDisconnected as soon as the stream breaks (containerd died or its
// socket went away; gRPC fails the stream at once) or, at start, when
// containerd cannot be reached; then it resubscribes with backoff (100 ms
// doubling to 5 s) and sends EventReconnected once containerd answers a Ping
// and a new stream is open. Events in between are lost, so consumers relist
// on EventReconnected. The first successful subscription sends nothing.
//
// The stream is the signal, not the gRPC connectivity state: the client
// dials lazily, and a channel whose transport closed goes idle rather than
// to a failure state until the next call, so the state would say nothing
// the failed stream has not said first.
//
// It never blocks on a slow consumer: when the buffer is full the oldest
// event is dropped (a consumer that far behind relists anyway).
func (c *Client) Events(ctx context.Context) <-chan Event {
	out := make(chan Event, eventBuffer)
	go func() {
		defer close(out)
		backoff := 100 * time.Millisecond
		down := false
		lost := func() {
			if !down && ctx.Err() == nil {
				down = true
				send(out, Event{Kind: EventDisconnected, At: time.Now()})
			}
		}
		for attempt := 0; ctx.Err() == nil; attempt++ {
			if attempt > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 5*time.Second)
			}
			// Do not announce a reconnection before containerd answers.
			if down {
				if err := c.Ping(ctx); err != nil {
					continue
				}
			}
			cc, err := c.conn()
			if err != nil {
				lost()
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			envs, errs := cc.Subscribe(sctx, `topic=="/tasks/exit"`, `topic=="/containers/delete"`)
			if down {
				down = false
				send(out, Event{Kind: EventReconnected, At: time.Now()})
				backoff = 100 * time.Millisecond
			}
			c.pump(sctx, envs, errs, out)
			cancel()
			lost()
		}
	}()
	return out
}

// pump forwards envelopes until the stream fails or ctx ends.
func (c *Client) pump(ctx context.Context, envs <-chan *events.Envelope, errs <-chan error, out chan Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-errs:
			return
		case env, ok := <-envs:
			if !ok {
				return
			}
			if ev, ok := decode(env); ok {
				send(out, ev)
			}
		}
	}
}

func decode(env *events.Envelope) (Event, bool) {
	if env == nil || env.Event == nil {
		return Event{}, false
	}
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		return Event{}, false
	}
	switch e := v.(type) {
	case *apievents.TaskExit:
		if e.ID != "" && e.ID != e.ContainerID {
			return Event{}, false // an exec'd process, not the task
		}
		at := env.Timestamp
		if e.ExitedAt != nil {
			at = e.ExitedAt.AsTime()
		}
		return Event{Kind: EventTaskExit, Namespace: env.Namespace, ContainerID: e.ContainerID, ExitCode: e.ExitStatus, At: at}, true
	case *apievents.ContainerDelete:
		return Event{Kind: EventContainerDelete, Namespace: env.Namespace, ContainerID: e.ID, At: env.Timestamp}, true
	}
	return Event{}, false
}

// send delivers ev without blocking, dropping the oldest buffered event
// when the consumer is behind. Only one goroutine sends on out.
func send(out chan Event, ev Event) {
	select {
	case out <- ev:
		return
	default:
	}
	select {
	case <-out:
	default:
	}
	select {
	case out <- ev:
	default:
	}
}
