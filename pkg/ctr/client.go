package ctr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config configures a Client. Host paths are parameters, never constants.
type Config struct {
	// Address is the containerd socket path.
	Address string
	// StateDir holds task logs under StateDir/logs/<ns>/<id>.log unless a
	// ContainerSpec sets LogPath.
	StateDir string
	// ImageArchives is a directory of OCI or docker archives (*.tar,
	// *.tar.gz, *.tgz, *.oci) imported instead of pulling; "" disables it.
	ImageArchives string
	// PauseBinary is the host path of the static binary run as "pause" in
	// synthesized root containers; "" means os.Executable().
	PauseBinary string
	// DialTimeout bounds connection attempts and Ping; 0 means 5 s.
	DialTimeout time.Duration
	// GroupShims runs all containers of one cell in one runc shim (the
	// io.containerd.runc.v2.group label keyed by space, stack and cell).
	GroupShims bool
	// CgroupParent is the group under which a container whose spec has no
	// CgroupsPath is placed, as <CgroupParent>/<namespace>/<id>. Empty
	// means "/" — containerd's own default, which the controller never
	// relies on: it always sets CgroupsPath.
	CgroupParent string
}

// Client talks to one containerd daemon. It connects lazily on first use
// and replaces its connection after an unavailable error, so it survives
// containerd restarts. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu     sync.Mutex
	cc     *client.Client
	closed bool

	archives archiveIndex
	flights  flightGroup

	createMu sync.Mutex
	creating map[string]bool // "ns/id" of creates in flight (claimCreate)
}

// New returns a client for cfg. It does not dial: the first call does.
func New(cfg Config) *Client {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.PauseBinary == "" {
		if exe, err := os.Executable(); err == nil {
			cfg.PauseBinary = exe
		}
	}
	return &Client{cfg: cfg, archives: archiveIndex{dir: cfg.ImageArchives}}
}

// Close releases the connection. Later calls fail with ErrUnavailable.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cc == nil {
		return nil
	}
	err := c.cc.Close()
	c.cc = nil
	return err
}

// Ping checks that containerd answers within the dial timeout. It returns
// an error matching ErrUnavailable when it does not.
func (c *Client) Ping(parent context.Context) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(parent, c.cfg.DialTimeout)
	defer cancel()
	if _, err := cc.Version(ctx); err != nil {
		if ctx.Err() != nil && parent.Err() == nil {
			// Our dial timeout expired: containerd does not answer.
			c.drop(cc)
			return fmt.Errorf("ping %s: %w: %v", c.cfg.Address, ErrUnavailable, err)
		}
		return c.fail(cc, "ping "+c.cfg.Address, err)
	}
	return nil
}

// Raw returns the underlying containerd client (connecting if needed). It
// exists for tests and benchmarks that compare against direct use; the
// connection may be replaced after a containerd restart.
func (c *Client) Raw() (*client.Client, error) { return c.conn() }

// conn returns the current connection, dialing lazily.
func (c *Client) conn() (*client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("client closed: %w", ErrUnavailable)
	}
	if c.cc != nil {
		return c.cc, nil
	}
	cc, err := client.New(c.cfg.Address, client.WithTimeout(c.cfg.DialTimeout))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w: %v", c.cfg.Address, ErrUnavailable, err)
	}
	c.cc = cc
	return cc, nil
}

// drop discards cc if it is still the current connection, so the next call
// dials afresh.
func (c *Client) drop(cc *client.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc == cc && cc != nil {
		// Deliberately unchecked: drop runs after a call found the
		// connection broken, and closing a broken gRPC connection fails
		// with nothing the caller's error does not already say; the next
		// call dials afresh either way.
		_ = cc.Close()
		c.cc = nil
	}
}

// fail maps a containerd error to this package's sentinels, wrapped with
// the short context op. Unavailable errors also drop the connection.
func (c *Client) fail(cc *client.Client, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isUnavailable(err):
		c.drop(cc)
		return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %v", op, ErrNotFound, err)
	case errdefs.IsAlreadyExists(err):
		return fmt.Errorf("%s: %w: %v", op, ErrAlreadyExists, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUnavailable(err error) bool {
	if errors.Is(err, ErrUnavailable) || errdefs.IsUnavailable(err) {
		return true
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

// nsCtx scopes ctx to containerd namespace ns.
func nsCtx(ctx context.Context, ns string) context.Context {
	return namespaces.WithNamespace(ctx, ns)
}

// logPath is where a container's output goes when its spec sets none.
func (c *Client) logPath(ns, id string) string {
	return filepath.Join(c.cfg.StateDir, "logs", ns, id+".log")
}

// flightGroup runs one function per key at a time; concurrent callers with
// the same key wait for and share the first caller's result.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

func (g *flightGroup) do(key string, fn func() error) error {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flight{}
	}
	if f, ok := g.calls[key]; ok {
		g.mu.Unlock()
		<-f.done
		return f.err
	}
	f := &flight{done: make(chan struct{})}
	g.calls[key] = f
	g.mu.Unlock()

	f.err = fn()
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
	close(f.done)
	return f.err
}
