package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// vmTimeout bounds the whole VM run (boot, job, poweroff). The suite is
// sized to finish well inside it under TCG on 2 cores.
const vmTimeout = 10 * time.Minute

// outDir keeps runs for inspection, one directory per run (concurrent runs,
// e.g. two `go test ./...`, must not share a job share): console.log,
// initramfs.cpio and the job share (results.txt, timing.txt, logs/).
// .out/latest points at the newest run; runs older than keepRuns are
// removed. It is git-ignored.
const (
	outDir   = ".out"
	keepRuns = 24 * time.Hour
)

// expectedChecks are the checks job.sh runs, in its order. A check that
// stops running (the job skipped it, a rename, a crash before it) or one
// that is not listed fails the suite: results.txt alone cannot show that
// something is missing. TestExpectedChecksAreTheJobs keeps this list and
// job.sh in step without booting anything.
var expectedChecks = []string{
	"vm-boots",
	"lab-converges",
	"lab-cgroup-tree",
	"lab-status-controllers",
	"lab-no-internal-process",
	"vmt-converges",
	"prune-realm",
	"vmt-cgroup-tree",
	"vmt-status-controllers",
	"reconciler-delegates",
	"level-limits",
	"container-limits",
	"pids-enforced",
	"vmt-no-internal-process",
	"nested-delegation",
	"limit-change-in-place",
	"hand-edit-restored",
	"prune-cell",
	"oom-killed",
	"oom-restarted",
	"daemon-resync-restores-limit",
}

// TestPureCgroupV2 boots a VM whose only cgroup hierarchy is cgroup2 with
// every controller, runs job.sh in it, and reports each check of the job's
// results file as a subtest.
func TestPureCgroupV2(t *testing.T) {
	if testing.Short() {
		t.Skip("pure cgroup v2 VM suite: skipped with -short (boots qemu, ~2-4 min)")
	}
	env, missing := findHost()
	if len(missing) > 0 {
		testenv.SkipOrFail(t, "pure cgroup v2 VM suite needs: "+strings.Join(missing, ", "))
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out, err := newRunDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(out, "share")
	for _, d := range []string{"bin", "images", "manifests", "logs"} {
		if err := os.MkdirAll(filepath.Join(share, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	prepareShare(t, repo, share)
	initrd := filepath.Join(out, "initramfs.cpio")
	if err := buildInitramfs(initrd, env); err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	t.Logf("host side prepared in %s (kernel %s)", time.Since(start).Round(time.Millisecond), env.kernelVersion)

	console := filepath.Join(out, "console.log")
	// go test's own -timeout (10m by default) would kill the binary without
	// a word about the VM: stop the VM early enough to report.
	timeout := vmTimeout
	if d, ok := t.Deadline(); ok && time.Until(d)-30*time.Second < timeout {
		timeout = time.Until(d) - 30*time.Second
		if timeout < time.Minute {
			t.Fatalf("go test -timeout leaves %s for the VM; give it at least 5m", timeout.Round(time.Second))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bootStart := time.Now()
	runErr := runVM(ctx, env, initrd, share, console, timeout)
	wall := time.Since(bootStart)
	t.Logf("VM wall time %s; serial console log: %s", wall.Round(time.Millisecond), console)
	timing, err := os.ReadFile(filepath.Join(share, "timing.txt"))
	if err != nil && runErr == nil {
		runErr = fmt.Errorf("no timing from the VM job: %w", err)
	}
	t.Logf("guest timing (event, uptime s):\n%s", timing)
	if runErr == nil && !bytes.Contains(timing, []byte("suite-complete")) {
		// The job stopped early yet powered off (its EXIT trap): the results
		// below lack the checks it never reached.
		runErr = errors.New("the VM job did not run to its end")
	}
	if runErr != nil {
		t.Errorf("VM run: %v", runErr)
	}

	results, err := os.ReadFile(filepath.Join(share, "results.txt"))
	if err != nil || len(bytes.TrimSpace(results)) == 0 {
		t.Fatalf("no results from the VM job (%v); serial console log %s ends with:\n%s", err, console, tail(console, 60))
	}
	failed := false
	rs := parseResults(results)
	for _, r := range rs {
		t.Run(r.name, func(t *testing.T) {
			if !r.ok {
				failed = true
				t.Errorf("%s (log: %s)", r.detail, filepath.Join(share, "logs", r.name+".log"))
			}
		})
	}
	if missing, diff := compareChecks(expectedChecks, rs); diff != "" {
		failed = true
		for _, name := range missing {
			t.Run(name, func(t *testing.T) { t.Error("the check did not run: results.txt has no line for it") })
		}
		t.Errorf("checks in results.txt differ from expectedChecks (-want +got):\n%s", diff)
	}
	if failed || runErr != nil {
		t.Logf("serial console log %s ends with:\n%s", console, tail(console, 30))
		return
	}
	// A passing run keeps its logs, not its 60 MB of binaries and images.
	os.RemoveAll(filepath.Join(share, "bin"))
	os.RemoveAll(filepath.Join(share, "images"))
}

// newRunDir creates a fresh run directory under dir, points dir/latest at
// it and removes runs older than keepRuns.
func newRunDir(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			info, err := e.Info()
			if err == nil && e.IsDir() && strings.HasPrefix(e.Name(), "run-") && time.Since(info.ModTime()) > keepRuns {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	run, err := os.MkdirTemp(dir, "run-"+time.Now().Format("20060102-150405")+"-")
	if err != nil {
		return "", err
	}
	// Replace the link atomically: a concurrent run may be doing the same.
	tmp := filepath.Join(dir, ".latest-"+filepath.Base(run))
	if err := os.Symlink(filepath.Base(run), tmp); err == nil {
		if err := os.Rename(tmp, filepath.Join(dir, "latest")); err != nil {
			os.Remove(tmp)
		}
	}
	return run, nil
}

// host is what the VM needs from the machine running the test.
type host struct {
	qemu          string
	kernel        string // /boot/vmlinuz-<version>
	kernelVersion string
	moduleDir     string // /lib/modules/<version>
	busybox       string // a static busybox: /init's shell
}

// findHost locates qemu, a kernel with its modules, a static busybox, and
// the containerd, runc and ctr the job runs (from the host root shared into
// the VM). It returns the names of what is missing.
func findHost() (host, []string) {
	var h host
	var missing []string
	if p, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		h.qemu = p
	} else {
		missing = append(missing, "qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(kernels)))
	for _, k := range kernels {
		v := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		dir := filepath.Join("/lib/modules", v)
		if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
			continue
		}
		if f, err := os.Open(k); err == nil {
			f.Close()
			h.kernel, h.kernelVersion, h.moduleDir = k, v, dir
			break
		}
	}
	if h.kernel == "" {
		missing = append(missing, "a readable /boot/vmlinuz-* with /lib/modules (apt-get install linux-image-amd64)")
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) {
			h.busybox = p
			break
		}
	}
	if h.busybox == "" {
		missing = append(missing, "a static busybox (apt-get install busybox-static)")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (apt-get install containerd runc)")
		}
	}
	return h, missing
}

// isStatic reports whether path is an ELF executable without an
// interpreter, i.e. one that runs in an initramfs with no libc.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// prepareShare fills the job share: the static binaries, the test image,
// the manifests and job.sh. A reconciler that does not build is an error
// but not fatal: the job still runs vm-boots and reports every reconciler
// check as failed.
func prepareShare(t *testing.T, repo, share string) {
	t.Helper()
	if err := goBuild(repo, filepath.Join(share, "bin", "reconciler"), "./cmd/reconciler"); err != nil {
		t.Errorf("build reconciler: %v", err)
	}
	if err := goBuild(repo, filepath.Join(share, "bin", "flatjson"), "./test/vm/flatjson"); err != nil {
		t.Fatalf("build flatjson: %v", err)
	}
	testimage := filepath.Join(share, "bin", "testimage")
	if err := goBuild(repo, testimage, "./cmd/testimage"); err != nil {
		t.Fatalf("build testimage: %v", err)
	}
	img := exec.Command(testimage, "-o", filepath.Join(share, "images", "busybox.tar"))
	if b, err := img.CombinedOutput(); err != nil {
		t.Fatalf("testimage: %v\n%s", err, b)
	}
	if err := copyTree(filepath.Join(repo, "examples", "lab"), filepath.Join(share, "manifests", "lab")); err != nil {
		t.Errorf("copy examples/lab: %v", err)
	}
	if err := copyTree("testdata/manifests", filepath.Join(share, "manifests", "vmt")); err != nil {
		t.Fatalf("copy testdata/manifests: %v", err)
	}
	if err := copyFile("job.sh", filepath.Join(share, "job.sh")); err != nil {
		t.Fatal(err)
	}
}

// goBuild builds a static binary (CGO_ENABLED=0: it runs in the VM and, for
// the reconciler, is bind-mounted into containers as the synthesized root).
func goBuild(repo, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func buildInitramfs(path string, h host) error {
	var buf bytes.Buffer
	if err := writeInitramfs(&buf, h.busybox, h.moduleDir); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// runVM boots the VM and waits for it to power off. The host root is shared
// read-only (tag "host"), the job share read-write (tag "job"); there is no
// network device. Serial console output goes to console.
func runVM(ctx context.Context, h host, initrd, share, console string, timeout time.Duration) error {
	log, err := os.Create(console)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, h.qemu,
		"-accel", "tcg",
		"-m", "2048",
		"-smp", "2",
		"-kernel", h.kernel,
		"-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4",
		"-nographic", "-no-reboot",
		"-nic", "none",
		"-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path="+share+",mount_tag=job,security_model=none,multidevs=remap",
	)
	cmd.Stdin = nil
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("VM did not power off within %s: %w", timeout.Round(time.Second), ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

// result is one line of results.txt.
type result struct {
	name   string
	ok     bool
	detail string
}

// parseResults reads "ok NAME" and "FAIL NAME: detail" lines; any other
// non-empty line is reported as a failed check named "malformed".
func parseResults(b []byte) []result {
	var rs []result
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "ok "):
			rs = append(rs, result{name: strings.TrimPrefix(line, "ok "), ok: true})
		case strings.HasPrefix(line, "FAIL "):
			name, detail, _ := strings.Cut(strings.TrimPrefix(line, "FAIL "), ": ")
			rs = append(rs, result{name: name, detail: detail})
		default:
			rs = append(rs, result{name: "malformed", detail: "results line: " + line})
		}
	}
	return rs
}

// compareChecks compares the names of the results, in order, with want. It
// returns the wanted names that have no result and a (-want +got) diff,
// empty when every wanted check ran once, in order, and nothing else did.
func compareChecks(want []string, rs []result) (missing []string, diff string) {
	got := make([]string, len(rs))
	seen := map[string]bool{}
	for i, r := range rs {
		got[i] = r.name
		seen[r.name] = true
	}
	for _, name := range want {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	return missing, cmp.Diff(want, got)
}

// jobChecks returns the names job.sh gives run_check, in order.
func jobChecks(script []byte) []string {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "run_check" {
			names = append(names, f[1])
		}
	}
	return names
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func copyTree(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return errors.New("copy " + p + ": not a regular file")
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
