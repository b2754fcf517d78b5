package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// site is one manifest directory with its state directory: what the
// reconciler binary is pointed at.
type site struct {
	realm     string
	manifests string
	state     string
}

func (e *env) newSite(name, realm string) (*site, error) {
	s := &site{realm: realm, manifests: e.path(name, "manifests"), state: e.path(name, "state")}
	for _, d := range []string{s.manifests, s.state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("site %s: %w", name, err)
		}
	}
	return s, nil
}

// args are the flags every reconciler invocation of the site gets.
func (e *env) args(s *site) []string {
	return []string{"--manifests", s.manifests, "--containerd-address", e.ctd.Address, "--state-dir", s.state,
		"--image-archives", e.archives, "--cgroup-root", e.cgroupRoot, "--namespace-suffix", e.nsSuffix}
}

// once runs `reconciler --once` on the site and returns its wall time. A
// non-zero exit is an error carrying the output.
func (e *env) once(ctx context.Context, s *site) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, e.binary, append([]string{"--once", "--timeout", "5m"}, e.args(s)...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("reconciler --once on %s: %w\n%s", s.manifests, err, tail(out.Bytes(), 15))
	}
	return took, nil
}

// daemon is a `reconciler` process without --once.
type daemon struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	site    *site
}

// withDaemon starts the daemon on s, waits for its first pass and until
// it has been idle for quiet (up to a minute), runs fn and stops it.
func (e *env) withDaemon(ctx context.Context, s *site, quiet time.Duration, fn func(d *daemon) error) error {
	d, err := e.startDaemon(ctx, s)
	if err != nil {
		return err
	}
	defer func() {
		if err := d.stop(); err != nil {
			e.logf("%v", err)
		}
	}()
	d.settle(ctx, quiet, time.Minute)
	return fn(d)
}

// startDaemon starts the daemon on the site and waits until it has
// finished its first pass (status.json written after the start). The
// daemon is stopped at close at the latest.
func (e *env) startDaemon(ctx context.Context, s *site) (*daemon, error) {
	d := &daemon{logPath: filepath.Join(s.state, "..", "daemon.log"), site: s, done: make(chan struct{})}
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	d.cmd = exec.Command(e.binary, e.args(s)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group keeps a terminal's ^C for us (we stop it);
	// Pdeathsig ends it if we die without doing so.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	e.daemons = append(e.daemons, d)
	deadline := started.Add(5 * time.Minute)
	for !d.statusTime().After(started) {
		switch {
		case !d.running():
			return nil, fmt.Errorf("daemon exited (%s)\n%s", d.cmd.ProcessState, d.logTail(20))
		case time.Now().After(deadline):
			return nil, fmt.Errorf("daemon wrote no status within 5 minutes\n%s", d.logTail(20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// statusTime is when the daemon last wrote its status (zero before).
func (d *daemon) statusTime() time.Time {
	st, err := os.Stat(filepath.Join(d.site.state, "status.json"))
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// settle waits until the status has not changed for quiet (the daemon is
// idle), up to timeout; a daemon still busy then is measured as it is.
func (d *daemon) settle(ctx context.Context, quiet, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil && time.Since(d.statusTime()) < quiet {
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM (to the daemon's PID only) and waits up to 20 s, then
// SIGKILL. Containers keep running: the daemon adopts them when started
// again.
func (d *daemon) stop() error {
	if !d.running() {
		return nil
	}
	if err := syscall.Kill(d.pid(), syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop daemon %d: %w", d.pid(), err)
	}
	select {
	case <-d.done:
		return nil
	case <-time.After(20 * time.Second):
	}
	err := syscall.Kill(d.pid(), syscall.SIGKILL)
	<-d.done
	return errors.Join(fmt.Errorf("daemon %d ignored SIGTERM for 20 s and was killed", d.pid()), err)
}

func (d *daemon) logTail(n int) string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return ""
	}
	return "daemon log (tail):\n" + tail(b, n)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
