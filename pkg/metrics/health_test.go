package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// response is what a probe answered.
type response struct {
	Code int
	Body string
}

// get serves one GET through handler without a listener.
func get(t *testing.T, handler http.Handler, path string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatalf("read %s body: %v", path, err)
	}
	return response{Code: rec.Code, Body: string(body)}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name          string
		firstPassDone bool
		containerdUp  []bool // SetContainerdUp calls in order
		want          response
	}{
		{
			name: "is not ready before anything happened",
			want: response{503, "first pass not done; containerd unreachable\n"},
		},
		{
			name:         "is not ready before the first pass even with containerd up",
			containerdUp: []bool{true},
			want:         response{503, "first pass not done\n"},
		},
		{
			name:          "is not ready after the first pass while containerd was never seen",
			firstPassDone: true,
			want:          response{503, "containerd unreachable\n"},
		},
		{
			name:          "is not ready when containerd went down after the first pass",
			firstPassDone: true,
			containerdUp:  []bool{true, false},
			want:          response{503, "containerd unreachable\n"},
		},
		{
			name:          "is ready after the first pass with containerd up",
			firstPassDone: true,
			containerdUp:  []bool{true},
			want:          response{200, "ok\n"},
		},
		{
			name:          "is ready again once containerd comes back",
			firstPassDone: true,
			containerdUp:  []bool{true, false, true},
			want:          response{200, "ok\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealth(time.Minute)
			if tt.firstPassDone {
				h.SetFirstPassDone()
			}
			for _, up := range tt.containerdUp {
				h.SetContainerdUp(up)
			}
			s := NewServer("127.0.0.1:0", New(), h)
			if diff := cmp.Diff(tt.want, get(t, s.srv.Handler, "/readyz")); diff != "" {
				t.Errorf("GET /readyz (-want +got):\n%s", diff)
			}
			// Readiness never affects liveness: a daemon waiting for containerd must not be killed.
			if diff := cmp.Diff(response{200, "ok\n"}, get(t, s.srv.Handler, "/healthz")); diff != "" {
				t.Errorf("GET /healthz (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	const staleAfter = 90 * time.Second // 3 × a 30 s resync
	tests := []struct {
		name  string
		steps []time.Duration // after construction: advance the clock by each, beating in between
		idle  time.Duration   // then advance by this without a beat
		want  response
	}{
		{
			name: "is healthy right after start",
			want: response{200, "ok\n"},
		},
		{
			name: "is healthy without a beat until the limit",
			idle: staleAfter,
			want: response{200, "ok\n"},
		},
		{
			name: "fails when no beat came since start for longer than the limit",
			idle: staleAfter + time.Second,
			want: response{503, "no loop beat for 1m31s (limit 1m30s)\n"},
		},
		{
			name:  "stays healthy while beats come every resync",
			steps: []time.Duration{30 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second},
			idle:  30 * time.Second,
			want:  response{200, "ok\n"},
		},
		{
			name:  "fails when beats stop",
			steps: []time.Duration{30 * time.Second, 30 * time.Second},
			idle:  2 * time.Minute,
			want:  response{503, "no loop beat for 2m0s (limit 1m30s)\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			h := newHealth(staleAfter, clock.Now)
			for _, d := range tt.steps {
				clock.Advance(d)
				h.Beat()
			}
			clock.Advance(tt.idle)
			s := NewServer("127.0.0.1:0", New(), h)
			if diff := cmp.Diff(tt.want, get(t, s.srv.Handler, "/healthz")); diff != "" {
				t.Errorf("GET /healthz (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHealthzRecoversWhenBeatsResume(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	h := newHealth(time.Second, clock.Now)
	clock.Advance(2 * time.Second)
	if ok, reason := h.Healthy(); ok {
		t.Fatalf("Healthy() = true after a stale period, want false")
	} else if !strings.HasPrefix(reason, "no loop beat for 2s") {
		t.Errorf("Healthy() reason = %q, want it to start with %q", reason, "no loop beat for 2s")
	}
	h.Beat()
	if ok, reason := h.Healthy(); !ok {
		t.Errorf("Healthy() = false, %q after a beat, want true", reason)
	}
}

func TestHealthzWithoutLimitNeverGoesStale(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	h := newHealth(0, clock.Now)
	clock.Advance(24 * time.Hour)
	if ok, reason := h.Healthy(); !ok {
		t.Errorf("Healthy() = false, %q with staleAfter 0, want true", reason)
	}
}

func TestProbesRejectWrites(t *testing.T) {
	s := NewServer("127.0.0.1:0", New(), NewHealth(time.Minute))
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		rec := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want %d", path, rec.Code, http.StatusMethodNotAllowed)
		}
	}
}

func TestAStateDirThatCannotBeWrittenMakesTheDaemonUnready(t *testing.T) {
	h := NewHealth(0)
	h.SetFirstPassDone()
	h.SetContainerdUp(true)
	h.SetStateError(errors.New("write /var/lib/x/inventory.json: read-only file system"))
	if ok, why := h.Ready(); ok || !strings.Contains(why, "state dir not writable: write /var/lib/x/inventory.json: read-only file system") {
		t.Errorf("Ready = %v %q, want unready naming the state dir error", ok, why)
	}
	h.SetStateError(nil)
	if ok, why := h.Ready(); !ok {
		t.Errorf("Ready = false (%s) after the state dir is writable again", why)
	}
}
