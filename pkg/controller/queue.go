package controller

import (
	"context"
	"sync"
	"time"
)

// FullPass is the queue key that asks for a full pass (load, prune, every
// object) rather than the reconcile of some objects.
const FullPass = "*"

// Retry backoff per key after an error.
const (
	retryBase = 500 * time.Millisecond
	retryMax  = 5 * time.Minute
)

// queue is the daemon's work queue: a set of object keys, each ready now
// or due later, with per-key exponential retry. Keys are coalesced: a key
// added while already queued is queued once. Taking keys hands out every
// ready key at once, so one pass converges them together (siblings in
// parallel) and no key is ever worked on twice at the same time.
type queue struct {
	mu       sync.Mutex
	now      func() time.Time
	ready    map[string]bool
	due      map[string]time.Time
	failures map[string]int
	wake     chan struct{}
}

func newQueue(now func() time.Time) *queue {
	return &queue{
		now:      now,
		ready:    map[string]bool{},
		due:      map[string]time.Time{},
		failures: map[string]int{},
		wake:     make(chan struct{}, 1),
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Add makes key ready now.
func (q *queue) Add(key string) {
	q.mu.Lock()
	q.ready[key] = true
	delete(q.due, key)
	q.mu.Unlock()
	q.signal()
}

// AddAfter makes key ready after d (an earlier due time wins).
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	at := q.now().Add(d)
	if cur, ok := q.due[key]; !q.ready[key] && (!ok || at.Before(cur)) {
		q.due[key] = at
	}
	q.mu.Unlock()
	q.signal()
}

// AddRateLimited re-adds key after its exponential retry delay (500 ms
// doubling to 5 min) and counts the failure.
func (q *queue) AddRateLimited(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	d := retryBase
	for i := 0; i < n && d < retryMax; i++ {
		d *= 2
	}
	q.AddAfter(key, min(d, retryMax))
}

// Forget resets the retry delay of key after a success.
func (q *queue) Forget(key string) {
	q.mu.Lock()
	delete(q.failures, key)
	q.mu.Unlock()
}

// Len is the number of queued keys, ready or due later.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready) + len(q.due)
}

// take returns the ready keys (moving due ones that are ready) and the time
// until the next due key (0 if none).
func (q *queue) take() (keys map[string]bool, next time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for k, at := range q.due {
		if !now.Before(at) {
			q.ready[k] = true
			delete(q.due, k)
		} else if d := at.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	if len(q.ready) == 0 {
		return nil, next
	}
	keys = q.ready
	q.ready = map[string]bool{}
	return keys, next
}

// Wait blocks until keys are ready and returns them, or returns nil when
// ctx ends.
func (q *queue) Wait(ctx context.Context) map[string]bool {
	for {
		keys, next := q.take()
		if keys != nil {
			return keys
		}
		var (
			timer <-chan time.Time
			t     *time.Timer
		)
		if next > 0 {
			t = time.NewTimer(next)
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}
