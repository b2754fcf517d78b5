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
	"time"
)

// systemContainersConf is the file --install-podman completes with the
// rlimit setting podman needs on hosts without CAP_SYS_RESOURCE.
const systemContainersConf = "/etc/containers/containers.conf"

// podman runs the `podman kube play` baseline: N one-container pods, the
// same image (loaded with `podman load`), no network.
type podman struct {
	bin     string
	version string
	global  []string // flags before the subcommand
	env     []string
	dir     string // for pod files
	prefix  string // pod names are <prefix>-<i>
	created map[string]bool
	// loaded is true when the image was not there before and we loaded it.
	loaded bool
}

// findPodman finds (or, with install, apt-get installs) podman and makes
// it runnable here. It returns nil and a note when the baseline is skipped.
func findPodman(ctx context.Context, e *env, install bool) (*podman, []string, error) {
	var notes []string
	bin, err := exec.LookPath("podman")
	if err != nil {
		if !install {
			return nil, []string{"podman is not installed: the podman baseline is skipped (--install-podman apt-get installs it)"}, nil
		}
		e.logf("apt-get install -y podman")
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "podman")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("apt-get install podman: %w\n%s", err, tail(out, 20))
		}
		notes = append(notes, "installed podman with apt-get (--install-podman)")
		if bin, err = exec.LookPath("podman"); err != nil {
			return nil, nil, fmt.Errorf("podman not on PATH after apt-get install: %w", err)
		}
	}
	p := &podman{bin: bin, created: map[string]bool{}, env: os.Environ(), dir: e.dir, prefix: "kukeon-bench-" + e.id}

	// Without systemd as init podman's default cgroup manager and event
	// logger (systemd, journald) do not work; cgroupfs puts pods under
	// /libpod_parent, podman's own place.
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		p.global = append(p.global, "--cgroup-manager=cgroupfs")
		notes = append(notes, "no systemd: podman runs with --cgroup-manager=cgroupfs (its pods live under /libpod_parent)")
	}
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		p.global = append(p.global, "--events-backend=file")
	}

	conf, err := os.ReadFile(systemContainersConf)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, fmt.Errorf("read %s: %w", systemContainersConf, err)
	}
	if fixed, changed := withDefaultUlimits(string(conf)); changed {
		if install {
			if err := os.MkdirAll(filepath.Dir(systemContainersConf), 0o755); err != nil {
				return nil, nil, fmt.Errorf("write %s: %w", systemContainersConf, err)
			}
			if err := os.WriteFile(systemContainersConf, []byte(fixed), 0o644); err != nil {
				return nil, nil, fmt.Errorf("write %s: %w", systemContainersConf, err)
			}
			notes = append(notes, "wrote `default_ulimits = []` into "+systemContainersConf+" (--install-podman; it lacked the setting)")
		} else {
			private := e.path("containers.conf")
			if err := os.WriteFile(private, []byte(fixed), 0o644); err != nil {
				return nil, nil, fmt.Errorf("write %s: %w", private, err)
			}
			p.env = append(p.env, "CONTAINERS_CONF="+private)
			notes = append(notes, systemContainersConf+" lacks `default_ulimits = []`: podman runs with a private copy that has it (CONTAINERS_CONF; --install-podman writes it to the system file)")
		}
	}
	out, err := p.output(ctx, "version", "--format", "{{.Client.Version}}")
	if err != nil {
		return nil, nil, err
	}
	p.version = strings.TrimSpace(out)
	return p, notes, nil
}

// withDefaultUlimits returns conf with `default_ulimits = []` in its
// [containers] table, and whether it had to add it.
func withDefaultUlimits(conf string) (string, bool) {
	for _, line := range strings.Split(conf, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "default_ulimits") {
			return conf, false
		}
	}
	lines := strings.Split(conf, "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) == "[containers]" {
			out := append(append(append([]string{}, lines[:i+1]...), "default_ulimits = []"), lines[i+1:]...)
			return strings.Join(out, "\n"), true
		}
	}
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	return conf + "[containers]\ndefault_ulimits = []\n", true
}

func (p *podman) output(ctx context.Context, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p.bin, append(append([]string{}, p.global...), args...)...)
	cmd.Env, cmd.Stderr = p.env, &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes(), 10))
	}
	return string(out), nil
}

// load makes the test image available to podman, remembering whether it
// was already there (then it is kept at cleanup).
func (p *podman) load(ctx context.Context, archive string) error {
	if _, err := p.output(ctx, "image", "exists", image); err == nil {
		return nil
	}
	if _, err := p.output(ctx, "load", "-q", "-i", archive); err != nil {
		return err
	}
	p.loaded = true
	if _, err := p.output(ctx, "image", "exists", image); err != nil {
		return fmt.Errorf("podman load did not provide %s: %w", image, err)
	}
	return nil
}

func (p *podman) podName(i int) string { return fmt.Sprintf("%s-%d", p.prefix, i) }

// writePods writes n pods equivalent to the cells (one container,
// `sleep 3600`, grace 1 s) as one multi-document file.
func (p *podman) writePods(file string, n int) error {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers:
    - name: %s
      image: %s
      imagePullPolicy: IfNotPresent
      command: ["sleep", "3600"]
      env: [{name: REV, value: "0"}]
`, p.podName(i), workloadID, image)
	}
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

// coldPlay runs `podman kube play --network none` of pods [0, n) and
// returns its wall time: kube play returns once every pod is started.
func (p *podman) coldPlay(ctx context.Context, _ string, n int) (time.Duration, error) {
	file := filepath.Join(p.dir, fmt.Sprintf("pods-%d.yaml", n))
	if err := p.writePods(file, n); err != nil {
		return 0, fmt.Errorf("pod file: %w", err)
	}
	for i := range n {
		p.created[p.podName(i)] = true
	}
	start := time.Now()
	if _, err := p.output(ctx, "kube", "play", "--network", "none", file); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// coldRemove deletes pods [0, n) by name, untimed.
func (p *podman) coldRemove(ctx context.Context, _ string, n int) error {
	names := make([]string, n)
	for i := range n {
		names[i] = p.podName(i)
	}
	return p.rm(ctx, names)
}

// rm stops (without grace) and removes pods by name. Hazard: `pod rm
// --force` alone stops container by container with a 10 s grace each, and
// `pod rm --time 0` is slow too on podman 4.3; a `pod stop -t 0` first
// makes removal take about a second for ten pods.
func (p *podman) rm(ctx context.Context, names []string) error {
	if _, err := p.output(ctx, append([]string{"pod", "stop", "--ignore", "--time", "0"}, names...)...); err != nil {
		return err
	}
	_, err := p.output(ctx, append([]string{"pod", "rm", "--force", "--ignore"}, names...)...)
	return err
}

// cleanup removes every pod we created and the image if we loaded it.
func (p *podman) cleanup(ctx context.Context) error {
	var names []string
	for n := range p.created {
		names = append(names, n)
	}
	var errs []error
	if len(names) > 0 {
		errs = append(errs, p.rm(ctx, names))
	}
	if p.loaded {
		_, err := p.output(ctx, "rmi", "--ignore", image)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
