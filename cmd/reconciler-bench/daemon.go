package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	return []string{"--manifests", s.manifests, "--containerd-address", e.ctd.Address,
		"--state-dir", s.state, "--image-archives", e.archives, "--cgroup-root", e.cgroupRoot}
}

// once runs `reconciler --once` on the site and returns its wall time. A
// non-zero exit is an error carrying the output.
func (e *env) once(ctx context.Context, s *site, extra ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, e.binary, append(append([]string{"--once", "--timeout", "5m"}, e.args(s)...), extra...)...)
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
	started time.Time
	site    *site
}

// startDaemon starts the daemon on the site and waits until it has
// finished its first pass (status.json written after the start).
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
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	e.daemons = append(e.daemons, d)
	if err := d.waitPass(ctx, d.started, 5*time.Minute); err != nil {
		return d, err
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

// waitPass waits until the daemon records a status newer than since.
func (d *daemon) waitPass(ctx context.Context, since time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	status := filepath.Join(d.site.state, "status.json")
	for {
		if st, err := os.Stat(status); err == nil && st.ModTime().After(since) {
			return nil
		}
		if !d.running() {
			return fmt.Errorf("daemon exited (%s)\n%s", d.cmd.ProcessState, d.logTail(20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon wrote no status within %s\n%s", timeout, d.logTail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// settle waits until status.json has not changed for quiet (the daemon is
// idle), up to timeout.
func (d *daemon) settle(ctx context.Context, quiet, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	status := filepath.Join(d.site.state, "status.json")
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := os.Stat(status)
		if err == nil && time.Since(st.ModTime()) >= quiet {
			return
		}
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
	_ = syscall.Kill(d.pid(), syscall.SIGKILL)
	<-d.done
	return fmt.Errorf("daemon %d ignored SIGTERM for 20 s and was killed", d.pid())
}

func (d *daemon) logTail(n int) string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return ""
	}
	return "daemon log (tail):\n" + tail(b, n)
}

// procSample is one reading of a process's memory and CPU time.
type procSample struct {
	At     time.Time
	RSSKiB int64
	CPU    time.Duration // user + system
}

// sampleProc reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat
// (utime + stime, in USER_HZ = 100 ticks per second).
func sampleProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("sample %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				s.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("sample %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("sample %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("sample %d: malformed stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(utime+stime) * time.Second / 100
	return s, nil
}
