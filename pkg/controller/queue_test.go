package controller

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQueue(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }

	t.Run("coalesces a key added twice", func(t *testing.T) {
		q := newQueue(clock)
		q.Add("Cell a")
		q.Add("Cell a")
		q.Add("Cell b")
		keys, _ := q.take()
		if diff := cmp.Diff(map[string]bool{"Cell a": true, "Cell b": true}, keys); diff != "" {
			t.Errorf("keys (-want +got):\n%s", diff)
		}
		if q.Len() != 0 {
			t.Errorf("Len = %d after take, want 0", q.Len())
		}
	})

	t.Run("holds a delayed key until it is due", func(t *testing.T) {
		q := newQueue(clock)
		q.AddAfter("Cell a", time.Second)
		if keys, next := q.take(); keys != nil || next != time.Second {
			t.Fatalf("take = %v, %v; want nothing ready, next in 1s", keys, next)
		}
		now = now.Add(time.Second)
		if keys, _ := q.take(); !keys["Cell a"] {
			t.Fatalf("take = %v; want Cell a once due", keys)
		}
	})

	t.Run("backs off retries exponentially from 500ms to 5m and forgets on success", func(t *testing.T) {
		q := newQueue(clock)
		var got []time.Duration
		for i := 0; i < 12; i++ {
			q.AddRateLimited("Cell a")
			_, next := q.take()
			got = append(got, next)
			now = now.Add(next)
			q.take()
		}
		want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
			16 * time.Second, 32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, 5 * time.Minute, 5 * time.Minute}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("delays (-want +got):\n%s", diff)
		}
		q.Forget("Cell a")
		q.AddRateLimited("Cell a")
		if _, next := q.take(); next != 500*time.Millisecond {
			t.Errorf("delay after Forget = %v, want 500ms", next)
		}
	})

	t.Run("Wait returns nil when the context ends", func(t *testing.T) {
		q := newQueue(time.Now)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if keys := q.Wait(ctx); keys != nil {
			t.Errorf("Wait = %v, want nil", keys)
		}
	})
}

func TestRestartDelay(t *testing.T) {
	var got []time.Duration
	for n := 0; n <= 10; n++ {
		got = append(got, RestartDelay(time.Second, n))
	}
	want := []time.Duration{0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, 300 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restart delays (-want +got):\n%s", diff)
	}
}
