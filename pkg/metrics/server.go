package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// ShutdownTimeout bounds how long ListenAndServe waits for in-flight requests once its
// context ends.
const ShutdownTimeout = 5 * time.Second

// Server serves /healthz (200 "ok" / 503 reason), /readyz (200 "ok" / 503 reason) and
// /metrics on one address. It binds exactly the address it is given; exposure beyond
// loopback is the operator's choice through --listen.
type Server struct {
	addr string
	srv  *http.Server

	mu      sync.Mutex
	ln      net.Listener
	serveCh chan error // receives Serve's result once, then is closed
}

// NewServer returns a Server for addr (host:port; port 0 picks a free port, see Addr).
// m and h must not be nil.
func NewServer(addr string, m *Metrics, h *Health) *Server {
	mux := http.NewServeMux()
	// "GET" patterns answer HEAD too; other methods get 405 from the mux.
	mux.HandleFunc("GET /healthz", probe(h.Healthy))
	mux.HandleFunc("GET /readyz", probe(h.Ready))
	mux.Handle("GET /metrics", m.Handler())
	return &Server{
		addr: addr,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
		},
	}
}

// probe answers 200 "ok" when check passes and 503 with its reason otherwise.
func probe(check func() (bool, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		ok, reason := check()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			writeBody(w, reason+"\n")
			return
		}
		writeBody(w, "ok\n")
	}
}

// Start binds the address and serves in a goroutine. It returns the listen error (address
// in use, bad address, permission) synchronously so the CLI can report it, and an error if
// the server was already started. Call Shutdown to stop serving.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return fmt.Errorf("serve http on %s: already started", s.addr)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("serve http: %w", err) // err names the address: "listen tcp ADDR: bind: …"
	}
	s.ln = ln
	s.serveCh = make(chan error, 1)
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveCh <- err
		close(s.serveCh)
	}()
	return nil
}

// Addr returns the bound address (with the chosen port when addr had port 0) once Start
// succeeded, and "" before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits, until ctx ends, for in-flight requests.
// It returns ctx's error if they did not finish in time (the remaining connections are then
// closed), or the error that ended serving early. It is a no-op before Start and is safe to
// call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.ln != nil
	serveCh := s.serveCh
	s.mu.Unlock()
	if !started {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		return errors.Join(fmt.Errorf("shut down http server: %w", err), s.srv.Close())
	}
	if serveErr, ok := <-serveCh; ok && serveErr != nil {
		return fmt.Errorf("serve http: %w", serveErr)
	}
	return nil
}

// ListenAndServe starts the server, serves until ctx ends, then shuts down gracefully
// within ShutdownTimeout. A listen error is returned at once; an error that ends serving
// early (not caused by ctx) is returned when it happens.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	serveCh := s.serveCh
	s.mu.Unlock()
	select {
	case err, ok := <-serveCh:
		if ok && err != nil {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	return s.Shutdown(shutdownCtx)
}

// writeBody writes a probe's one-line body. Deliberately unchecked: the
// status code is already sent, and a client that hung up mid-body (a probe
// that timed out) has nothing left to tell.
func writeBody(w io.Writer, s string) {
	_, _ = io.WriteString(w, s)
}
