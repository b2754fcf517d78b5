package main

import (
	"context"
	"fmt"
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

// coldConverge measures N cells from an empty host to all running, runs
// times: `reconciler --once` on a fresh state dir, the direct client
// sequentially and four at a time, and podman kube play of N pods. Every
// way gets a fresh namespace (so it imports and unpacks the image, as a
// new host would) and is torn down, untimed, before the next.
func (e *env) coldConverge(ctx context.Context, n, runs int, podmanNotes []string) Scenario {
	sc := Scenario{
		Name:    fmt.Sprintf("cold-converge-n%d", n),
		Title:   fmt.Sprintf("cold converge, %d cells", n),
		Unit:    "ms",
		Target:  "≤ 1.2 × direct-p4; ≤ 0.5 × podman",
		Verdict: VerdictNone,
	}
	sc.note("cell = synthesized root (reconciler pause) + `sleep 3600`; wall time from start to every task started, including namespace creation and image import+unpack")
	sc.note("reconciler = `reconciler --once` (process start to exit, --workers %d); direct-p4 = the same containerd calls and OCI specs with %d cells at a time (the floor at equal parallelism); direct-seq = one at a time", coldParallelism, coldParallelism)
	sc.Notes = append(sc.Notes, podmanNotes...)
	times := map[string][]float64{}

	ways := []struct {
		name string
		run  func(realm string) (time.Duration, error)
	}{
		{"reconciler", func(realm string) (time.Duration, error) { return e.coldReconciler(ctx, realm, n) }},
		{baseDirectSeq, func(realm string) (time.Duration, error) { return e.coldDirect(ctx, realm, n, 1) }},
		{baseDirectP4, func(realm string) (time.Duration, error) { return e.coldDirect(ctx, realm, n, coldParallelism) }},
	}
	if e.podman != nil {
		ways = append(ways, struct {
			name string
			run  func(realm string) (time.Duration, error)
		}{basePodman, func(string) (time.Duration, error) { return e.coldPodman(ctx, n) }})
	}
	// A warm-up of one cell each: first-use costs (page cache, podman's
	// pause image build) are not what the scenario measures.
	for _, w := range ways {
		if err := e.warmUp(ctx, w.name); err != nil {
			sc.fail(fmt.Errorf("warm-up %s: %w", w.name, err))
			return sc
		}
	}
	for r := range runs {
		// Rotate the order so that drift on a noisy machine does not
		// always favour the same way.
		for k := range ways {
			w := ways[(k+r)%len(ways)]
			realm := fmt.Sprintf("cold-n%d-r%d-%s", n, r, shortName(w.name))
			e.logf("%s run %d/%d: %s", sc.Name, r+1, runs, w.name)
			took, err := w.run(realm)
			t := time.Now()
			if terr := e.teardownCold(ctx, w.name, realm, n); terr != nil && err == nil {
				err = terr
			}
			e.logf("%s took %s, teardown %s", w.name, took.Round(time.Millisecond), time.Since(t).Round(time.Millisecond))
			if err != nil {
				sc.fail(fmt.Errorf("%s: %w", w.name, err))
				return sc
			}
			times[w.name] = append(times[w.name], ms(took))
		}
	}
	rec := summarize(times["reconciler"])
	sc.Reconciler = &rec
	sc.Baselines = map[string]Stats{}
	for _, w := range ways[1:] {
		sc.Baselines[w.name] = summarize(times[w.name])
	}
	sc.setRatios()
	sc.Verdict = VerdictMet
	if sc.Ratios[baseDirectP4] > 1.2 {
		sc.Verdict = VerdictMissed
	}
	if r, ok := sc.Ratios[basePodman]; ok && r > 0.5 {
		sc.Verdict = VerdictMissed
	}
	return sc
}

func shortName(way string) string {
	switch way {
	case "reconciler":
		return "rec"
	case baseDirectSeq:
		return "seq"
	case baseDirectP4:
		return "p4"
	}
	return "pod"
}

func (e *env) warmUp(ctx context.Context, way string) error {
	realm := "warm-" + shortName(way)
	var err error
	switch way {
	case "reconciler":
		_, err = e.coldReconciler(ctx, realm, 1)
	case baseDirectSeq, baseDirectP4:
		_, err = e.coldDirect(ctx, realm, 1, 1)
	case basePodman:
		_, err = e.coldPodman(ctx, 1)
	}
	if terr := e.teardownCold(ctx, way, realm, 1); err == nil {
		err = terr
	}
	return err
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

func (e *env) coldDirect(ctx context.Context, realm string, n, p int) (time.Duration, error) {
	start := time.Now()
	d, err := e.newDirect(ctx, realm)
	if err != nil {
		return 0, err
	}
	if err := d.converge(n, p); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (e *env) coldPodman(ctx context.Context, n int) (time.Duration, error) {
	file := e.path(fmt.Sprintf("pods-%d.yaml", n))
	if err := e.podman.writePods(file, n); err != nil {
		return 0, fmt.Errorf("pod file: %w", err)
	}
	return e.podman.play(ctx, file, n)
}

func (e *env) teardownCold(ctx context.Context, way, realm string, n int) error {
	if way == basePodman {
		return e.podman.remove(ctx, n)
	}
	return e.teardownRealm(ctx, realm)
}
