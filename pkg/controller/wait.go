package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// waitReady polls until every container that should run is running, or
// the timeout passes. It returns the last observation.
func (rc *Reconciler) waitReady(ctx context.Context, o *Observer, pr *PassResult, inv *Inventory, restarts *RestartBook) (*Observed, error) {
	deadline := rc.now().Add(rc.Opts.Timeout)
	delay := 50 * time.Millisecond
	for {
		obs, err := o.Observe(ctx, pr.Tree, inv)
		if err != nil {
			return nil, err
		}
		sts := buildStatus(pr.Tree, obs, pr.Outcomes, restarts, inv)
		pending := false
		for _, s := range sts {
			if s.State == StatePending || s.State == StateDegraded {
				pending = true
			}
		}
		if !pending || rc.Opts.Timeout <= 0 || rc.now().After(deadline) {
			return obs, nil
		}
		select {
		case <-ctx.Done():
			return obs, nil
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// notReady lists the containers that should run and do not, with the
// tail of their log.
func notReady(st *Status, stateDir string) []string {
	var out []string
	for _, o := range st.Objects {
		if o.Kind != "Cell" || o.State == StateReady || o.State == StateBlocked || o.State == StateCompleted {
			continue
		}
		for _, c := range o.Containers {
			// A clean exit is done, unless its policy restarts it (always):
			// then it has a next restart and is not ready.
			if c.State == ContainerRunning || (c.State == ContainerExited && c.ExitCode != nil && *c.ExitCode == 0 && c.NextRestartAt == nil) {
				continue
			}
			line := fmt.Sprintf("%s: container %s is %s", o.Key, c.ID, strings.ToLower(stateWords(c)))
			if c.Message != "" {
				line += " (" + c.Message + ")"
			}
			if tail := logTail(filepath.Join(stateDir, "logs", o.Namespace, c.ContainerdID+".log"), 5); tail != "" {
				line += "\n    " + strings.ReplaceAll(tail, "\n", "\n    ")
			}
			out = append(out, line)
		}
		if len(o.Containers) == 0 && o.Message != "" {
			out = append(out, o.Key+": "+o.Message)
		}
	}
	return out
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
