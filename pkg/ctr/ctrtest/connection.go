package ctrtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/ctr"
)

// Outage takes a backend's containerd away and brings it back: Down as a
// crash would (the real one is killed), Up once it may answer again.
type Outage struct {
	Down func(t *testing.T)
	Up   func(t *testing.T)
}

// RunConnectionContract runs the behaviour every Runtime's event stream must
// show around a containerd outage. newRT returns a backend whose containerd
// outage controls.
func RunConnectionContract(t *testing.T, newRT func(t *testing.T) Runtime, outage Outage) {
	t.Run("the event stream says once that containerd is gone and once that it is back, every time", func(t *testing.T) {
		rt := newRT(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := rt.Events(ctx)
		if err := rt.Ping(ctx); err != nil {
			t.Fatalf("Ping before the outage: %v", err)
		}
		var got []ctr.EventKind
		for range 2 {
			outage.Down(t)
			got = append(got, connectionEvents(t, events, ctr.EventDisconnected)...)
			if err := rt.Ping(ctx); !errors.Is(err, ctr.ErrUnavailable) {
				t.Errorf("Ping during the outage = %v, want ErrUnavailable", err)
			}
			// The stream retries meanwhile; no retry may repeat the news.
			got = append(got, connectionEventsFor(events, time.Second)...)
			outage.Up(t)
			got = append(got, connectionEvents(t, events, ctr.EventReconnected)...)
		}
		want := []ctr.EventKind{ctr.EventDisconnected, ctr.EventReconnected, ctr.EventDisconnected, ctr.EventReconnected}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("connection events over two outages (-want +got):\n%s", diff)
		}
		if err := rt.Ping(ctx); err != nil {
			t.Errorf("Ping after the outage: %v", err)
		}
	})
}

func isConnection(k ctr.EventKind) bool {
	return k == ctr.EventDisconnected || k == ctr.EventReconnected
}

// connectionEvents returns the connection events read from events up to and
// including the first of kind until, failing the test after 20 s.
func connectionEvents(t *testing.T, events <-chan ctr.Event, until ctr.EventKind) []ctr.EventKind {
	t.Helper()
	var got []ctr.EventKind
	WaitEvent(t, events, 20*time.Second, func(e ctr.Event) bool {
		if isConnection(e.Kind) {
			got = append(got, e.Kind)
		}
		return e.Kind == until
	})
	return got
}

// connectionEventsFor returns the connection events read from events for d.
func connectionEventsFor(events <-chan ctr.Event, d time.Duration) []ctr.EventKind {
	var got []ctr.EventKind
	end := time.After(d)
	for {
		select {
		case e, open := <-events:
			if !open {
				return got
			}
			if isConnection(e.Kind) {
				got = append(got, e.Kind)
			}
		case <-end:
			return got
		}
	}
}
