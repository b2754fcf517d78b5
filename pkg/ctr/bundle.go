package ctr

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
)

// A stale task bundle is what a create interrupted half-way leaves in
// containerd 1.6's state directory (runtime/v2/bundle.go, manager.go of
// v1.6.20). TaskManager.Create makes the bundle
// <state>/io.containerd.runtime.v2.task/<namespace>/<id> with os.Mkdir
// (config.json, an empty rootfs directory, a "work" symlink to
// <root>/io.containerd.runtime.v2.task/<namespace>/<id>), starts the shim,
// which writes the socket it serves on to the bundle's "address" file
// ("unix:///run/containerd/s/<hash>"), and asks it to create the task, which
// mounts the snapshot on rootfs. When the client's connection drops
// mid-create, containerd's clean-up (shim delete, then Bundle.Delete) can
// fail and leave the directory; every later create of the task then fails
// with "failed to start shim: mkdir <bundle>: file exists" until containerd
// restarts (loadShims deletes the bundles of dead shims).
//
// The rule for clearing one ourselves: the error is exactly that one (gRPC
// Unknown, that message) for the bundle path of this namespace and container,
// containerd has no task for the container (the caller has checked), nothing
// is mounted at or under the bundle but the snapshot on its rootfs, which is
// unmounted first as containerd's Bundle.Delete does (a RemoveAll across a
// mount would delete the snapshot's files), and no shim answers on the
// bundle's address. Only the bundle directory is removed: the work directory is
// re-created by the next create, and RemoveAll removes the symlink, not its
// target. Hazard: mounts are read from our own mount namespace, which is
// containerd's on the hosts this runs on (both in the host's namespace).
// The caller serialises creates of one container (one daemon per state dir),
// so the bundle cannot be one another create is making right now.

// bundleDirName is the directory of containerd 1.6's v2 runtime under its
// state directory.
const bundleDirName = "io.containerd.runtime.v2.task"

// shimDialTimeout bounds the probe of a leftover shim's socket.
const shimDialTimeout = time.Second

var staleBundleMsg = regexp.MustCompile(`failed to start shim: mkdir (/.+): file exists`)

// staleBundle reports whether err is containerd's refusal to create the task
// of container id in ns because its bundle directory exists, and returns
// that directory.
func staleBundle(err error, ns, id string) (string, bool) {
	if err == nil || !errdefs.IsUnknown(err) {
		return "", false
	}
	m := staleBundleMsg.FindStringSubmatch(err.Error())
	if m == nil {
		return "", false
	}
	dir := m[1]
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir ||
		filepath.Base(dir) != id ||
		filepath.Base(filepath.Dir(dir)) != ns ||
		filepath.Base(filepath.Dir(filepath.Dir(dir))) != bundleDirName {
		return "", false
	}
	return dir, true
}

// clearStaleBundle removes the bundle directory dir under the rule above.
// It returns an error naming dir, and removes nothing, if something is
// mounted in it, a shim still answers on its address, or either cannot be
// told.
func clearStaleBundle(dir string) error {
	refuse := func(why string) error {
		return fmt.Errorf("stale task bundle %s: %s; left in place, restarting containerd cleans it", dir, why)
	}
	live, err := shimAnswers(filepath.Join(dir, "address"))
	if err != nil {
		return refuse(err.Error())
	}
	if live {
		// An orphan: containerd has no task for this container (the
		// caller checked), yet the shim it started for the interrupted
		// create still runs. Ask it, as containerd would, to delete its
		// task and shut down.
		if err := stopOrphanShim(filepath.Join(dir, "address"), filepath.Base(dir)); err != nil {
			return refuse("its shim still answers and did not shut down: " + err.Error())
		}
	}
	mounts, err := mountsUnder("/proc/self/mountinfo", dir)
	if err != nil {
		return refuse(err.Error())
	}
	// The snapshot mounted on the bundle's rootfs by a half-made task is
	// unmounted, as containerd's own Bundle.Delete does; any other mount in
	// the bundle is not ours to touch.
	rootfs := filepath.Join(dir, "rootfs")
	for len(mounts) > 0 && !slices.ContainsFunc(mounts, func(m string) bool { return m != rootfs }) {
		if err := unix.Unmount(rootfs, 0); err != nil {
			return refuse(fmt.Sprintf("unmount %s: %v", rootfs, err))
		}
		if mounts, err = mountsUnder("/proc/self/mountinfo", dir); err != nil {
			return refuse(err.Error())
		}
	}
	if len(mounts) > 0 {
		return refuse("mounted: " + strings.Join(mounts, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove stale task bundle %s: %w", dir, err)
	}
	return nil
}

// mountsUnder returns the mount points in the mountinfo file at path that
// are dir or below it.
func mountsUnder(path, dir string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		// id parent major:minor root mountpoint options ...
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			return nil, fmt.Errorf("read mounts %s: malformed line %q", path, s.Text())
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read mounts %s: %w", path, err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// shimAnswers reports whether a shim accepts connections on the socket
// named in the address file at path. No file, or an empty one (the shim
// writes it atomically), means no shim was started; a socket that is gone
// or refuses connections means its shim is dead.
func shimAnswers(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read shim address: %w", err)
	}
	addr := strings.TrimSpace(string(b))
	if addr == "" {
		return false, nil
	}
	sock, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		return false, fmt.Errorf("shim address %q is not a unix socket", addr)
	}
	conn, err := net.DialTimeout("unix", sock, shimDialTimeout)
	if err == nil {
		conn.Close()
		return true, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	return false, fmt.Errorf("probe shim %s: %w", sock, err)
}

// orphanShimTimeout bounds the talk with an orphan shim and its exit.
const orphanShimTimeout = 3 * time.Second

// stopOrphanShim asks the shim serving on the socket named in the address
// file to delete task id (its half-made container, if any) and to shut down,
// then waits until the socket no longer answers.
func stopOrphanShim(addressFile, id string) error {
	b, err := os.ReadFile(addressFile)
	if err != nil {
		return fmt.Errorf("read shim address: %w", err)
	}
	sock, _ := strings.CutPrefix(strings.TrimSpace(string(b)), "unix://")
	ctx, cancel := context.WithTimeout(context.Background(), orphanShimTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("dial shim %s: %w", sock, err)
	}
	// The shim's pid, to wait for its exit: it cleans up after it stops
	// answering, and the next create must not race that clean-up.
	pid := 0
	if pb, err := os.ReadFile(filepath.Join(filepath.Dir(addressFile), "shim.pid")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(pb))); err == nil {
			pid = n // a torn pid file: only the socket is waited for
		}
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	tasks := taskv2.NewTTRPCTaskClient(client)
	// A shim that is exiting already closes the connection: then only
	// its exit is waited for.
	if _, err := tasks.Delete(ctx, &taskv2.DeleteRequest{ID: id}); err != nil &&
		!errdefs.IsNotFound(errgrpc.ToNative(err)) && !errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("delete task %s in orphan shim: %w", id, err)
	}
	// The shim exits while it answers, so an error here is expected; the
	// verdict is whether its socket still answers afterwards.
	_, serr := tasks.Shutdown(ctx, &taskv2.ShutdownRequest{ID: id, Now: true})
	for {
		live, err := shimAnswers(addressFile)
		if err != nil {
			return err
		}
		if !live && (pid <= 0 || !processAlive(pid)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("orphan shim on %s (pid %d) has not exited after shutdown (%v)", sock, pid, serr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// processAlive reports whether pid runs: it exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command's closing parenthesis.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}
