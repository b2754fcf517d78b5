// Package testenv runs a private containerd for integration tests,
// benchmarks and the demo, gives each test its own cgroup root, and builds
// the busybox test image once per test binary.
//
// A private instance shares nothing with the host's containerd: its own root,
// state, gRPC and ttrpc sockets, and opt directory. Two things stay global
// because containerd 1.6 and its runc shim hard-code them: shim sockets live in
// /run/containerd/s (named by a hash that includes this instance's address,
// so they never collide), and runc keeps container state in
// /run/containerd/runc/<namespace>/<id> unless the client passes a runc Root
// option. Stop removes both for the containers this instance ran.
package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// ContainerdBinary is the daemon StartContainerd runs.
const ContainerdBinary = "/usr/bin/containerd"

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	// maxSocketPath leaves room under the 107-byte sun_path limit for the
	// ".ttrpc" suffix of the second socket.
	maxSocketPath = 100
)

// disabledPlugins keeps start-up near one second and the instance inert:
// no CRI (it would start networking and a stream server), no snapshotters
// that probe for other filesystems, no tracing. The v1 linux runtime stays:
// containerd 1.6's tasks service refuses to load without it.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.internal.v1.tracing",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.tracing.processor.v1.otlp",
}

// Containerd is one private containerd daemon. Its fields are read-only once
// StartContainerd returns; PID changes on Restart.
type Containerd struct {
	Dir        string // everything below is inside Dir, except a long Dir's socket
	Root       string // containerd root (content, snapshots, metadata)
	State      string // containerd state (task bundles, fifos)
	Address    string // gRPC unix socket; the ttrpc socket is Address+".ttrpc"
	ConfigPath string
	LogPath    string
	PID        int

	sockDir string // a short directory under /tmp holding Address, when Dir is too long
	done    chan struct{}
}

// StartContainerd writes a config under dir (which it creates) and starts a
// containerd on it, returning once the daemon answers a Version call. It
// gives up after 20 s (or when ctx ends) with an error that carries the tail
// of the daemon's log. On error nothing is left running; dir is left for
// inspection.
func StartContainerd(ctx context.Context, dir string) (*Containerd, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	c := &Containerd{
		Dir:        dir,
		Root:       filepath.Join(dir, "root"),
		State:      filepath.Join(dir, "state"),
		Address:    filepath.Join(dir, "containerd.sock"),
		ConfigPath: filepath.Join(dir, "config.toml"),
		LogPath:    filepath.Join(dir, "containerd.log"),
	}
	for _, d := range []string{c.Root, c.State} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create containerd dir: %w", err)
		}
	}
	if len(c.Address) > maxSocketPath {
		s, err := os.MkdirTemp("/tmp", "ctd-")
		if err != nil {
			return nil, fmt.Errorf("create socket dir: %w", err)
		}
		c.sockDir = s
		c.Address = filepath.Join(s, "c.sock")
	}
	if err := os.WriteFile(c.ConfigPath, []byte(c.config()), 0o644); err != nil {
		return nil, fmt.Errorf("write containerd config: %w", err)
	}
	if err := c.start(ctx); err != nil {
		if c.sockDir != "" {
			os.RemoveAll(c.sockDir)
		}
		return nil, err
	}
	return c, nil
}

func (c *Containerd) config() string {
	quoted := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [%s]
oom_score = 0

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %q
`, c.Root, c.State, strings.Join(quoted, ", "), c.Address, c.Address+".ttrpc",
		filepath.Join(c.Root, "opt"))
}

// start runs the daemon on the existing config and waits until it answers.
func (c *Containerd) start(ctx context.Context) error {
	// A socket left by a killed daemon would make the readiness probe race
	// the new daemon's listen; containerd replaces it anyway.
	os.Remove(c.Address)
	os.Remove(c.Address + ".ttrpc")

	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open containerd log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(ContainerdBinary, "--config", c.ConfigPath)
	cmd.Dir = c.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group keeps a terminal's ^C away from it; Pdeathsig
	// ends it if the test binary dies without calling Stop. Hazard: the
	// kernel ties Pdeathsig to the starting OS thread, so calling this from
	// a goroutine that locked its thread and exits without unlocking (as
	// netns code does) kills the daemon when that goroutine ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	c.PID = cmd.Process.Pid
	c.done = done

	if err := c.waitReady(ctx); err != nil {
		c.signalAndWait(syscall.SIGKILL, stopTimeout)
		return fmt.Errorf("containerd %s: %w\n%s", c.Address, err, c.logTail(30))
	}
	return nil
}

func (c *Containerd) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-c.done:
			return errors.New("exited during start-up")
		default:
		}
		if _, err := os.Stat(c.Address); err == nil {
			last = c.ping(ctx)
			if last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("socket never appeared")
			}
			return fmt.Errorf("not ready: %w: %w", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Containerd) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cl, err := client.New(c.Address, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Version(ctx)
	return err
}

// Running reports whether the daemon process started last is still alive.
func (c *Containerd) Running() bool {
	if c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// signalAndWait sends sig to the daemon (its PID only, not its group) and
// waits up to timeout for it to exit. It reports whether it exited.
func (c *Containerd) signalAndWait(sig syscall.Signal, timeout time.Duration) bool {
	if !c.Running() {
		return true
	}
	if err := syscall.Kill(c.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false
	}
	select {
	case <-c.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill ends the daemon with SIGKILL and waits for it, leaving its shims and
// containers running, as a crash would. Restart brings it back.
func (c *Containerd) Kill() error {
	if !c.signalAndWait(syscall.SIGKILL, stopTimeout) {
		return fmt.Errorf("kill containerd %d: still running after %s", c.PID, stopTimeout)
	}
	return nil
}

// Restart starts the daemon again on the same config, dirs and address,
// stopping it first (SIGTERM, then SIGKILL) if it is still running. Shims and
// containers from before are adopted by the new daemon.
func (c *Containerd) Restart(ctx context.Context) error {
	if !c.signalAndWait(syscall.SIGTERM, stopTimeout) && !c.signalAndWait(syscall.SIGKILL, stopTimeout) {
		return fmt.Errorf("restart containerd %d: old daemon still running", c.PID)
	}
	return c.start(ctx)
}

// Stop ends the daemon (SIGTERM, SIGKILL after 10 s), then everything it left:
// its shims and their containers, runc state and cgroups of its containers,
// shim sockets, mounts under its dirs; then it removes Dir. It is safe to
// call after Kill and more than once. The error lists every step that failed;
// later steps run regardless.
func (c *Containerd) Stop() error {
	var errs []error
	nss, err := c.namespaces()
	if err != nil {
		errs = append(errs, err)
	}
	if !c.signalAndWait(syscall.SIGTERM, stopTimeout) && !c.signalAndWait(syscall.SIGKILL, stopTimeout) {
		errs = append(errs, fmt.Errorf("stop containerd %d: still running", c.PID))
	}
	if err := c.reapShims(); err != nil {
		errs = append(errs, err)
	}
	// runc leaves an empty <root>/<namespace> directory; rmdir, not
	// RemoveAll, so a namespace another daemon still uses is kept.
	for _, ns := range nss {
		os.Remove(filepath.Join(defaultRuncRoot, ns))
	}
	if err := unmountUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
		}
	}
	if c.sockDir != "" {
		if err := os.RemoveAll(c.sockDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.sockDir, err))
		}
	}
	return errors.Join(errs...)
}

// namespaces lists the daemon's namespaces; nothing when it is not
// running. A running daemon that does not answer is an error.
func (c *Containerd) namespaces() ([]string, error) {
	if !c.Running() {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cl, err := client.New(c.Address, client.WithTimeout(time.Second))
	if err != nil {
		return nil, fmt.Errorf("list namespaces of containerd %d: %w", c.PID, err)
	}
	defer cl.Close()
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list namespaces of containerd %d: %w", c.PID, err)
	}
	return nss, nil
}

// logTail returns the last n lines of the daemon log.
func (c *Containerd) logTail(n int) string {
	f, err := os.Open(c.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return "containerd log " + c.LogPath + " (tail):\n" + strings.Join(lines, "\n")
}
