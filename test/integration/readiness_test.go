package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// outageSeen bounds how long the daemon may take to report a containerd it
// lost. The event stream fails the moment containerd's socket closes, so
// this is latency under load, not a wait for anything; the daemon's
// resync (10 min here) is what readiness would wait for without it.
const outageSeen = time.Second

// TestReadinessFollowsContainerd: /readyz and reconciler_containerd_up
// follow containerd's connection as the event stream sees it, at once
// rather than at the next resync, with one log line each way, and the
// workload is left running throughout.
func TestReadinessFollowsContainerd(t *testing.T) {
	h := newDaemonHost(t)
	h.writeFile("one.yaml", cellDoc("one", "", "s"))
	one := cellContainerIDs("one", "s")
	d := h.startDaemon("--resync", "10m")
	d.firstPass()
	before := pick(h.waitRunning(one...), one...)
	waitFor(t, "ready with containerd up", deadline, d.readiness(200, 1))

	for i := range 2 {
		mark := d.mark()
		if err := h.ctd.Kill(); err != nil {
			t.Fatal(err)
		}
		down := time.Now()
		waitFor(t, "not ready with containerd down", outageSeen, d.readiness(503, 0))
		t.Logf("outage %d: not ready %s after containerd died", i+1, time.Since(down).Round(time.Millisecond))

		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		err := h.ctd.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "ready again with containerd back", deadline, d.readiness(200, 1))
		// The reconnection's full pass has run once its line is logged.
		waitFor(t, "one line each way", deadline, func() (bool, string) {
			got := map[string]int{}
			for _, l := range d.since(mark) {
				got[l.msg()]++
			}
			lost, back := got["containerd connection lost"], got["containerd connection re-established"]
			return lost == 1 && back == 1, fmt.Sprintf("%d lines \"containerd connection lost\", %d \"containerd connection re-established\"", lost, back)
		})
	}
	equalExcept(t, before, pick(h.tasks(h.ns), one...))
}

// readiness is a waitFor condition: /readyz answers code and /metrics says
// reconciler_containerd_up up.
func (d *daemon) readiness(code, up int) func() (bool, string) {
	return func() (bool, string) {
		gotCode, body := d.get("/readyz")
		_, metrics := d.get("/metrics")
		metric := fmt.Sprintf("\nreconciler_containerd_up %d\n", up)
		return gotCode == code && strings.Contains(metrics, metric),
			fmt.Sprintf("/readyz %d %q; /metrics has %q: %v", gotCode, strings.TrimSpace(body), strings.TrimSpace(metric), strings.Contains(metrics, metric))
	}
}
