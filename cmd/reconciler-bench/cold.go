package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Baseline names of the cold converge.
const (
	baseDirectSeq = "direct-seq"
	baseDirectP4  = "direct-p4"
	basePodman    = "podman"
)

// coldParallelism is the reconciler's default --workers, and the
// parallelism of the direct baseline the ratio is taken against.
const coldParallelism = 4

// way is one way of bringing up n cells of a new realm from nothing.
type way struct {
	name, short string // short goes into realm names
	// converge brings the cells up and returns the time it took.
	converge func(ctx context.Context, realm string, n int) (time.Duration, error)
	// teardown removes them again, untimed.
	teardown func(ctx context.Context, realm string, n int) error
}

// coldConverge measures n cells from an empty host to all running, p.runs
// times: `reconciler --once` on a fresh state dir, the direct client
// sequentially and four at a time, and podman kube play of n pods. Every
// way gets a fresh namespace (so it imports and unpacks the image, as a
// new host would) and is torn down, untimed, before the next.
func (e *env) coldConverge(ctx context.Context, sc *Scenario, n int, p params) error {
	sc.note("cell = synthesized root (reconciler pause) + `sleep 3600`; wall time from start to every task started, including namespace creation and image import+unpack")
	sc.note("reconciler = `reconciler --once` (process start to exit, --workers %d); direct-p4 = the same containerd calls and OCI specs with %d cells at a time (the floor at equal parallelism); direct-seq = one at a time", coldParallelism, coldParallelism)
	sc.Notes = append(sc.Notes, e.preparePodman(ctx)...)
	ways := []way{
		{"reconciler", "rec", e.coldReconciler, e.teardownCold},
		{baseDirectSeq, "seq", e.coldDirect(1), e.teardownCold},
		{baseDirectP4, "p4", e.coldDirect(coldParallelism), e.teardownCold},
	}
	if e.podman != nil {
		ways = append(ways, way{basePodman, "pod", e.podman.coldPlay, e.podman.coldRemove})
	}
	// A warm-up of one cell each: first-use costs (page cache, podman's
	// pause image build) are not what the scenario measures.
	for _, w := range ways {
		if _, err := e.coldRun(ctx, w, "warm-"+w.short, 1); err != nil {
			return fmt.Errorf("warm-up %s: %w", w.name, err)
		}
	}
	times := map[string][]float64{}
	for r := range p.runs {
		// Rotate the order so that drift on a noisy machine does not
		// always favour the same way.
		for k := range ways {
			w := ways[(k+r)%len(ways)]
			e.logf("%s run %d/%d: %s", sc.Name, r+1, p.runs, w.name)
			took, err := e.coldRun(ctx, w, fmt.Sprintf("cold-n%d-r%d-%s", n, r, w.short), n)
			if err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			times[w.name] = append(times[w.name], ms(took))
		}
	}
	rec := times["reconciler"]
	delete(times, "reconciler")
	sc.measured(rec, times)
	sc.Verdict = VerdictMet
	if sc.Ratios[baseDirectP4] > 1.2 {
		sc.Verdict = VerdictMissed
	}
	if r, ok := sc.Ratios[basePodman]; ok && r > 0.5 {
		sc.Verdict = VerdictMissed
	}
	return nil
}

// coldRun converges n cells of realm one way and tears them down again.
func (e *env) coldRun(ctx context.Context, w way, realm string, n int) (time.Duration, error) {
	took, err := w.converge(ctx, realm, n)
	t := time.Now()
	if terr := w.teardown(ctx, realm, n); err == nil {
		err = terr
	}
	e.logf("%s took %s, teardown %s", w.name, took.Round(time.Millisecond), time.Since(t).Round(time.Millisecond))
	return took, err
}

// coldReconciler converges n cells of a new realm with `reconciler --once`
// on a fresh state dir.
func (e *env) coldReconciler(ctx context.Context, realm string, n int) (time.Duration, error) {
	s, err := e.newSite(realm, realm)
	if err != nil {
		return 0, err
	}
	if err := writeCells(s.manifests, realm, 0, n); err != nil {
		return 0, err
	}
	return e.once(ctx, s)
}

// coldDirect converges with the direct client, p cells at a time.
func (e *env) coldDirect(p int) func(ctx context.Context, realm string, n int) (time.Duration, error) {
	return func(ctx context.Context, realm string, n int) (time.Duration, error) {
		d, err := e.newDirect(ctx, realm, n)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		if err := d.up(); err != nil {
			return 0, err
		}
		if err := d.converge(p); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
}

func (e *env) teardownCold(ctx context.Context, realm string, _ int) error {
	return e.teardownRealm(ctx, realm)
}

// preparePodman sets up the podman baseline once; the notes it returns
// say how, or why it is skipped.
func (e *env) preparePodman(ctx context.Context) []string {
	if e.podmanDone {
		return e.podmanNotes
	}
	e.podmanDone = true
	if e.cfg.noPodman {
		e.podmanNotes = []string{"podman baseline skipped (--no-podman)"}
		return e.podmanNotes
	}
	p, notes, err := findPodman(ctx, e, e.cfg.installPodman)
	if err == nil && p != nil {
		err = p.load(ctx, e.archive)
	}
	switch {
	case err != nil:
		notes = append(notes, "podman baseline skipped: "+err.Error())
	case p == nil:
		e.logf("%s", strings.Join(notes, "; "))
	default:
		e.podman = p
		notes = append(notes, "podman = `podman kube play --network none` of N one-container pods (each also gets podman's infra container), image loaded with `podman load`; kube play has no parallelism setting")
	}
	e.podmanNotes = notes
	return notes
}
