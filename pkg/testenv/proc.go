package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procStopTimeout is how long a SIGTERM'd reconciler may take to exit: its
// in-flight pass is bounded by 10 s, plus status and shutdown.
const procStopTimeout = 15 * time.Second

// Proc is one reconciler process started by a test, its stdout and stderr
// going to one file.
type Proc struct {
	t       testing.TB
	Args    []string
	LogPath string

	cmd      *exec.Cmd
	done     chan struct{}
	exitedAt time.Time // set before done is closed
	waitErr  error     // set before done is closed
}

// Start starts the reconciler with the host's flags and args and returns
// without waiting. A cleanup ends it (SIGTERM, SIGKILL after 15 s) if the
// test has not; registered after the Host's own, it runs before containerd
// stops, as it must: a live daemon would restart what cleanup kills.
func (h *Host) Start(args ...string) *Proc {
	h.T.Helper()
	t := h.T
	f, err := os.CreateTemp(t.TempDir(), "reconciler-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child holds its own descriptor
	full := h.Args(args...)
	cmd := exec.Command(h.Binary, full...)
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig ends it if the test binary dies without cleanups; its own
	// process group keeps a terminal's ^C for the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start reconciler: %v", err)
	}
	p := &Proc{t: t, Args: args, LogPath: f.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		// A non-zero exit is an ExitError and read from ProcessState; any
		// other error (the wait itself failed) is kept for the cleanup.
		var ee *exec.ExitError
		if err := cmd.Wait(); err != nil && !errors.As(err, &ee) {
			p.waitErr = err
		}
		p.exitedAt = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.Running() {
			if _, err := p.Stop(); err != nil {
				t.Errorf("stop reconciler %s: %v", strings.Join(args, " "), err)
			}
		}
		if p.waitErr != nil {
			t.Errorf("wait for reconciler %s: %v", strings.Join(args, " "), p.waitErr)
		}
	})
	return p
}

// PID is the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitedAt is when the process was seen to exit (zero while it runs).
func (p *Proc) ExitedAt() time.Time {
	if p.Running() {
		return time.Time{}
	}
	return p.exitedAt
}

// ExitCode is the exit code, -1 while the process runs or when a signal
// ended it.
func (p *Proc) ExitCode() int {
	if p.Running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it). At the timeout the process is killed
// and the error says so.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
	}
	p.Kill()
	return -1, fmt.Errorf("pid %d still running after %s; killed", p.PID(), timeout)
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Proc) Kill() {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("kill reconciler %d: %v", p.PID(), err)
	}
	<-p.done
}

// Stop sends SIGTERM and waits up to 15 s, then SIGKILLs. It returns the
// exit code; the error says the process had to be killed.
func (p *Proc) Stop() (int, error) {
	if !p.Running() {
		return p.cmd.ProcessState.ExitCode(), nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, fmt.Errorf("sigterm %d: %w", p.PID(), err)
	}
	code, err := p.Wait(procStopTimeout)
	if err != nil {
		return code, fmt.Errorf("after SIGTERM: %w", err)
	}
	return code, nil
}

// Output returns everything the process wrote so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no output: %v)", err)
	}
	return string(b)
}

// Tail returns the last n lines of the output.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogLine is one line of a reconciler's JSON log; a line that is not JSON
// (a panic, say) has only Raw.
type LogLine struct {
	Raw    string
	Fields map[string]any
}

// Str returns the field key as a string ("" when absent).
func (l LogLine) Str(key string) string {
	if v, ok := l.Fields[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// Lines parses the output as JSON log lines (--log-format json).
func (p *Proc) Lines() []LogLine {
	f, err := os.Open(p.LogPath)
	if err != nil {
		p.t.Fatalf("read reconciler log: %v", err)
	}
	defer f.Close()
	var out []LogLine
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for s.Scan() {
		l := LogLine{Raw: s.Text()}
		if json.Unmarshal(s.Bytes(), &l.Fields) != nil {
			l.Fields = nil
		}
		out = append(out, l)
	}
	return out
}

// Daemon is a reconciler daemon serving /healthz, /readyz and /metrics.
type Daemon struct {
	*Proc
	// Addr is host:port of the health server, from its start-up log line.
	Addr string
}

// StartDaemon starts the daemon (no --once) with the host's flags, a
// loopback --listen on a free port, JSON logs at -v 1, and args; it returns
// once the daemon logs the address it serves on. When the test fails, a
// cleanup logs the daemon's last 200 lines.
func (h *Host) StartDaemon(args ...string) *Daemon {
	h.T.Helper()
	all := append([]string{"--listen", "127.0.0.1:0", "--log-format", "json", "-v", "1"}, args...)
	d := &Daemon{Proc: h.Start(all...)}
	h.T.Cleanup(func() {
		if h.T.Failed() {
			h.T.Logf("daemon log %s (tail):\n%s", d.LogPath, d.Tail(200))
		}
	})
	WaitFor(h.T, "the daemon serves health and metrics", 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		if !d.Running() {
			h.T.Fatalf("daemon exited during start-up (exit %d):\n%s", d.cmd.ProcessState.ExitCode(), d.Tail(50))
		}
		for _, l := range d.Lines() {
			if l.Str("msg") == "serving health and metrics" {
				d.Addr = l.Str("address")
				return d.Addr != "", "no address in " + l.Raw
			}
		}
		return false, "no \"serving health and metrics\" line yet"
	})
	return d
}

// Get fetches path from the daemon's health server and returns the status
// code (0 when the request failed) and the body (or the request error).
func (d *Daemon) Get(path string) (int, string) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + d.Addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "read body: " + err.Error()
	}
	return resp.StatusCode, string(b)
}
