package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fetch does a GET on a real listener.
func fetch(t *testing.T, url string) response {
	t.Helper()
	resp, err := tryFetch(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// tryFetch is fetch for goroutines other than the test's, which must not call t.Fatal.
func tryFetch(url string) (response, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return response{}, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read %s: %w", url, err)
	}
	return response{Code: resp.StatusCode, Body: string(body)}, nil
}

// startServer starts a Server on a free loopback port and shuts it down at the end of the test.
func startServer(t *testing.T, m *Metrics, h *Health) *Server {
	t.Helper()
	s := NewServer("127.0.0.1:0", m, h)
	if got := s.Addr(); got != "" {
		t.Errorf("Addr() before Start = %q, want empty", got)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func TestServerAnswersOnALoopbackListener(t *testing.T) {
	m := New()
	h := NewHealth(time.Minute)
	s := startServer(t, m, h)
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q (%v), want 127.0.0.1 with a chosen port", s.Addr(), err)
	}
	base := "http://" + s.Addr()

	if diff := cmp.Diff(response{503, "first pass not done; containerd unreachable\n"}, fetch(t, base+"/readyz")); diff != "" {
		t.Errorf("GET /readyz at start (-want +got):\n%s", diff)
	}
	h.SetFirstPassDone()
	if diff := cmp.Diff(response{503, "containerd unreachable\n"}, fetch(t, base+"/readyz")); diff != "" {
		t.Errorf("GET /readyz with containerd down (-want +got):\n%s", diff)
	}
	h.SetContainerdUp(true)
	if diff := cmp.Diff(response{200, "ok\n"}, fetch(t, base+"/readyz")); diff != "" {
		t.Errorf("GET /readyz once ready (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(response{200, "ok\n"}, fetch(t, base+"/healthz")); diff != "" {
		t.Errorf("GET /healthz (-want +got):\n%s", diff)
	}

	m.ObserveReconcile("stack", "error", time.Second)
	resp := fetch(t, base+"/metrics")
	if resp.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200", resp.Code)
	}
	got := series(parse(t, strings.NewReader(resp.Body)))
	if v := got[`reconciler_reconcile_total{level="stack",result="error"}`]; v != 1 {
		t.Errorf(`reconciler_reconcile_total{level="stack",result="error"} = %v, want 1`, v)
	}

	if resp := fetch(t, base+"/nothing"); resp.Code != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", resp.Code)
	}
}

func TestServerReportsAnAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer taken.Close()

	s := NewServer(taken.Addr().String(), New(), NewHealth(time.Minute))
	err = s.Start()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start on a taken address = %v, want an error matching EADDRINUSE", err)
	}
	if got := s.Addr(); got != "" {
		t.Errorf("Addr() after a failed Start = %q, want empty", got)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed Start = %v, want nil", err)
	}

	done := make(chan error, 1)
	go func() {
		done <- NewServer(taken.Addr().String(), New(), NewHealth(time.Minute)).ListenAndServe(context.Background())
	}()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("ListenAndServe on a taken address = %v, want an error matching EADDRINUSE", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe on a taken address did not return")
	}
}

func TestServerRejectsABadAddress(t *testing.T) {
	if err := NewServer("127.0.0.1:notaport", New(), NewHealth(time.Minute)).Start(); err == nil {
		t.Error("Start on 127.0.0.1:notaport = nil, want an error")
	}
}

func TestServerStartsOnce(t *testing.T) {
	s := startServer(t, New(), NewHealth(time.Minute))
	if err := s.Start(); err == nil {
		t.Error("second Start = nil, want an error")
	}
}

func TestListenAndServeStopsWhenTheContextEnds(t *testing.T) {
	s := NewServer("127.0.0.1:0", New(), NewHealth(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for s.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("server did not bind within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	addr := s.Addr()
	if diff := cmp.Diff(response{200, "ok\n"}, fetch(t, "http://"+addr+"/healthz")); diff != "" {
		t.Errorf("GET /healthz while serving (-want +got):\n%s", diff)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe after cancel = %v, want nil", err)
		}
	case <-time.After(ShutdownTimeout + time.Second):
		t.Fatal("ListenAndServe did not return after its context ended")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after shutdown", addr)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestShutdownWaitsForAnInFlightScrape(t *testing.T) {
	m := New()
	release := make(chan struct{})
	entered := make(chan struct{})
	s := NewServer("127.0.0.1:0", m, NewHealth(time.Minute))
	// Wrap the handler so a request is held open while Shutdown starts.
	inner := s.srv.Handler
	s.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
			r.URL.Path = "/healthz"
		}
		inner.ServeHTTP(w, r)
	})
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	got := make(chan response, 1)
	go func() {
		resp, err := tryFetch("http://" + s.Addr() + "/slow")
		if err != nil {
			resp.Body = err.Error()
		}
		got <- resp
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request did not reach the handler within 5s")
	}

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdown <- s.Shutdown(ctx)
	}()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if diff := cmp.Diff(response{200, "ok\n"}, <-got); diff != "" {
		t.Errorf("in-flight GET (-want +got):\n%s", diff)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestListenErrorNamesTheAddressOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err = NewServer(addr, New(), NewHealth(time.Minute)).Start()
	if err == nil {
		t.Fatal("Start on a taken address = nil, want an error")
	}
	if n := strings.Count(err.Error(), addr); n != 1 {
		t.Errorf("Start error %q names %s %d times, want once", err, addr, n)
	}
}
