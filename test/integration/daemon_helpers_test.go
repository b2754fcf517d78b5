package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/hierarchy"
)

// Daemon timings of these tests: a short resync so drift is seen quickly,
// a short debounce so manifest edits converge quickly.
const (
	resync   = 2 * time.Second
	debounce = 100 * time.Millisecond
	// deadline bounds every wait for the daemon to converge.
	deadline = 30 * time.Second
	// stopTimeout is how long a SIGTERM'd daemon may take to exit: the
	// in-flight pass is bounded by 10 s, plus status and shutdown.
	stopTimeout = 15 * time.Second
)

// Actions the daemon logs, one line per changed object.
var actions = []string{"created", "updated", "recreated", "deleted"}

// daemonHost is a host whose realm lab lives in a containerd namespace of
// its own, lab.<suffix> (--namespace-suffix). Hazard: runc keeps task state
// in /run/containerd/runc/<namespace>/<id>, shared by every containerd on
// the machine, so two concurrent runs with the same namespace and container
// IDs fail with "container with given ID already exists".
type daemonHost struct {
	*host
}

func newDaemonHost(t *testing.T) *daemonHost {
	t.Helper()
	return &daemonHost{host: newHost(t)}
}

// daemon is one reconciler daemon run as a subprocess of the test, logging
// JSON to its own file.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	// addr is the host:port of /healthz, /readyz and /metrics, read from
	// the "serving health and metrics" log line.
	addr string
	done chan struct{}
	err  error // cmd.Wait's result, set before done is closed
}

// startDaemon starts the daemon on the host's manifests, containerd, state
// and cgroup root, and returns once it serves health and metrics. A cleanup
// stops it (SIGTERM, SIGKILL after stopTimeout) and, when the test failed,
// prints its log. Call it after newHost, so that cleanup runs before the
// host's: the daemon must be gone before containers are deleted and
// containerd stops. Flags in extra come last and so win over these (a
// longer --resync, say).
func (h *daemonHost) startDaemon(extra ...string) *daemon {
	h.t.Helper()
	t := h.t
	f, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child holds its own descriptor
	args := []string{
		"--manifests", h.manifests, "--containerd-address", h.ctd.Address,
		"--state-dir", h.state, "--image-archives", h.archives, "--cgroup-root", h.cgroupRoot,
		"--resync", resync.String(), "--debounce", debounce.String(),
		"--namespace-suffix", h.suffix,
		"--listen", "127.0.0.1:0", "--log-format", "json", "-v", "1",
	}
	args = append(args, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig ends the daemon if the test binary dies without cleanups;
	// its own process group keeps a terminal's ^C for the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	d := &daemon{t: t, cmd: cmd, logPath: f.Name(), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if d.running() {
			if _, err := d.stop(); err != nil {
				t.Errorf("stop daemon: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("daemon log %s (last 300 lines):\n%s", d.logPath, d.tail(300))
		}
	})
	waitFor(t, "the daemon serves health and metrics", deadline, func() (bool, string) {
		if !d.running() {
			t.Fatalf("daemon exited during start-up: %v\n%s", d.err, d.tail(50))
		}
		for _, l := range d.lines() {
			if l.msg() == "serving health and metrics" {
				d.addr = l.str("address")
				return d.addr != "", "no address in " + l.raw
			}
		}
		return false, "no \"serving health and metrics\" line yet"
	})
	return d
}

// firstPass waits for the "first pass done" line and returns the lines
// logged up to it.
func (d *daemon) firstPass() []logLine {
	d.t.Helper()
	var first []logLine
	waitFor(d.t, "first pass done", deadline, func() (bool, string) {
		ls := d.lines()
		for i, l := range ls {
			if l.msg() == "first pass done" {
				first = ls[:i+1]
				return true, ""
			}
		}
		return false, "no \"first pass done\" line"
	})
	return first
}

// waitAction waits until the runner has logged, after mark, each action
// line of want ("msg object detail container", as actionLines gives them),
// in any order and among others. The runner logs a pass's actions after it
// has written status.json, so a test that saw the containers or the status
// change waits for the lines before it takes its next mark.
func (d *daemon) waitAction(mark int, want ...string) {
	d.t.Helper()
	waitFor(d.t, "logged "+strings.Join(want, "; "), deadline, func() (bool, string) {
		got := actionLines(d.since(mark))
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false, "logged so far:\n" + strings.Join(got, "\n")
			}
		}
		return true, ""
	})
}

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to stopTimeout, then SIGKILLs. It returns
// the exit code and how long the daemon took; the error says it had to be
// killed.
func (d *daemon) stop() (int, error) {
	if !d.running() {
		return d.exitCode(), nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, fmt.Errorf("sigterm daemon %d: %w", d.cmd.Process.Pid, err)
	}
	select {
	case <-d.done:
		return d.exitCode(), nil
	case <-time.After(stopTimeout):
	}
	d.kill()
	return d.exitCode(), fmt.Errorf("daemon %d still running %s after SIGTERM; killed", d.cmd.Process.Pid, stopTimeout)
}

// kill ends the daemon with SIGKILL, as a crash would, and waits for it.
func (d *daemon) kill() {
	if err := d.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		d.t.Errorf("kill daemon %d: %v", d.cmd.Process.Pid, err)
	}
	<-d.done
}

func (d *daemon) exitCode() int {
	return d.cmd.ProcessState.ExitCode()
}

// get fetches path from the daemon's health and metrics server and returns
// the status code (0 when the request failed) and body.
func (d *daemon) get(path string) (int, string) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + d.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// logLine is one line of the daemon's JSON log.
type logLine struct {
	raw    string
	fields map[string]any
}

func (l logLine) str(key string) string {
	if v, ok := l.fields[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

func (l logLine) msg() string { return l.str("msg") }

func (l logLine) isAction() bool { return slices.Contains(actions, l.msg()) }

// lines returns every line logged so far; a line that is not JSON (a
// panic, say) keeps only raw.
func (d *daemon) lines() []logLine {
	f, err := os.Open(d.logPath)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for s.Scan() {
		l := logLine{raw: s.Text()}
		_ = json.Unmarshal(s.Bytes(), &l.fields)
		out = append(out, l)
	}
	return out
}

// mark returns the number of lines logged so far, for since.
func (d *daemon) mark() int { return len(d.lines()) }

// since returns the lines logged after mark.
func (d *daemon) since(mark int) []logLine {
	ls := d.lines()
	if mark > len(ls) {
		return nil
	}
	return ls[mark:]
}

func (d *daemon) tail(n int) string {
	ls := d.lines()
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// actionLines returns the runner's action lines (created, updated,
// recreated, deleted) and restarts among ls, as "msg object detail
// container" strings. With -v 1 the executor also logs each action at V(1)
// (level DEBUG+3); those are left out, the runner's INFO line is the record.
func actionLines(ls []logLine) []string {
	var out []string
	for _, l := range ls {
		if l.str("level") != "INFO" {
			continue
		}
		if l.isAction() || l.msg() == "restarted container" {
			var parts []string
			for _, p := range []string{l.msg(), l.str("object"), l.str("detail"), l.str("container")} {
				if p != "" {
					parts = append(parts, p)
				}
			}
			out = append(out, strings.Join(parts, " "))
		}
	}
	return out
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// timeout with what, and cond's last explanation of why it does not hold.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tryStatus reads status.json, or returns nil when it is missing or being
// replaced.
func (h *host) tryStatus() *controller.Status {
	st, err := controller.LoadStatus(filepath.Join(h.state, "status.json"))
	if err != nil {
		return nil
	}
	return st
}

// waitResync waits until status.json comes from a pass that started more
// than one resync period after the call, so at least one periodic full pass
// has run since.
func (h *daemonHost) waitResync() {
	h.t.Helper()
	after := time.Now().Add(resync)
	waitFor(h.t, "a pass after the next resync", deadline, func() (bool, string) {
		st := h.tryStatus()
		if st == nil {
			return false, "no status"
		}
		return st.Pass.StartedAt.After(after), "last pass started " + st.Pass.StartedAt.Format(time.RFC3339Nano)
	})
}

// cellStatus returns the status of cell (a cell name in lab/web/blog), or
// nil.
func cellStatus(st *controller.Status, cell string) *controller.ObjectStatus {
	if st == nil {
		return nil
	}
	key := hierarchy.CellKey("lab", "web", "blog", cell)
	for i := range st.Objects {
		if st.Objects[i].Key == key {
			return &st.Objects[i]
		}
	}
	return nil
}

// cellContainerIDs returns the containerd IDs a cell named cell in
// lab/web/blog with containers ids has: its root and its containers.
func cellContainerIDs(cell string, ids ...string) []string {
	out := []string{hierarchy.RootContainerdID("web", "blog", cell)}
	for _, id := range ids {
		out = append(out, hierarchy.ContainerdID("web", "blog", cell, id))
	}
	return out
}

// waitRunning waits until every container of ids has a running task.
func (h *daemonHost) waitRunning(ids ...string) map[string]string {
	h.t.Helper()
	var tasks map[string]string
	waitFor(h.t, "containers "+strings.Join(ids, " ")+" running", deadline, func() (bool, string) {
		tasks = h.tasks(h.ns)
		for _, id := range ids {
			if !strings.HasPrefix(tasks[id], "running ") {
				return false, fmt.Sprintf("%s is %q", id, tasks[id])
			}
		}
		return true, ""
	})
	return tasks
}

// waitGone waits until no container of ids exists.
func (h *daemonHost) waitGone(ids ...string) {
	h.t.Helper()
	waitFor(h.t, "containers "+strings.Join(ids, " ")+" deleted", deadline, func() (bool, string) {
		tasks := h.tasks(h.ns)
		for _, id := range ids {
			if s, ok := tasks[id]; ok {
				return false, fmt.Sprintf("%s is %q", id, s)
			}
		}
		return true, ""
	})
}

// pick returns the entries of tasks named by ids.
func pick(tasks map[string]string, ids ...string) map[string]string {
	out := map[string]string{}
	for _, id := range ids {
		out[id] = tasks[id]
	}
	return out
}

// cgroupDirs lists every directory below the host's cgroup root in the
// unified hierarchy, relative to it, sorted.
func (h *host) cgroupDirs() []string {
	h.t.Helper()
	root := filepath.Join(h.mount, h.cgroupRoot)
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// writeAtomic writes content to a temp file next to path and renames it
// over path, as editors and sync tools do.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// killPID sends SIGKILL to a process the test's daemon started in a
// container.
func killPID(t *testing.T, pid int) {
	t.Helper()
	if pid <= 1 {
		t.Fatalf("refusing to kill pid %d", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}

// containerIDs lists every container in the host's namespace, ours or not,
// with or without a task, sorted.
func (h *daemonHost) containerIDs() []string {
	h.t.Helper()
	cl, err := h.client.Raw()
	if err != nil {
		h.t.Fatal(err)
	}
	cs, err := cl.Containers(namespaces.WithNamespace(context.Background(), h.ns))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.ID())
	}
	sort.Strings(out)
	return out
}

// taskPID returns the PID of container id's task, failing when it has none.
func (h *daemonHost) taskPID(id string) int {
	h.t.Helper()
	cs, err := h.client.ListContainers(context.Background(), h.ns)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range cs {
		if c.ID == id && c.Task.PID > 0 {
			return int(c.Task.PID)
		}
	}
	h.t.Fatalf("container %s has no task", id)
	return 0
}
