package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kukeon/reconciler/pkg/controller"
	"github.com/kukeon/reconciler/pkg/ctr/ctrfake"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// plannerScale measures planning files × perFile cells from a directory
// against a converged in-memory runtime of the same size: the planner
// alone, no containerd. dir is a scratch directory it may fill.
func plannerScale(ctx context.Context, dir string, files, perFile, runs int, logf func(string, ...any)) Scenario {
	cells := files * perFile
	sc := Scenario{
		Name:    fmt.Sprintf("planner-scale-%d", cells),
		Title:   fmt.Sprintf("planner, %d cells in %d files", cells, files),
		Unit:    "ms",
		Target:  "none set (report)",
		Verdict: VerdictNone,
	}
	sc.note("reconciler = Reconciler.Plan (what --once --dry-run runs): load the directory with a fresh loader, build the tree, read the inventory, observe the fake runtime and cgroup tree, plan; the fake was converged by one pass first, so the plan is all unchanged")
	sc.note("yaml-decode = reading every file and decoding each document into a generic map with yaml.v3: the floor of any tool that reads this directory")
	state := filepath.Join(dir, "state")
	dir = filepath.Join(dir, "manifests")
	if err := plannerTree(dir, files, perFile); err != nil {
		sc.fail(err)
		return sc
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		sc.fail(fmt.Errorf("state dir: %w", err))
		return sc
	}
	rt := ctrfake.NewRuntime(ctrfake.WithImages(image))
	cg := ctrfake.NewCgroups("cpu", "io", "memory", "pids")
	hopts := hierarchy.Options{CgroupRoot: "/kukeon-bench-plan"}
	rc := &controller.Reconciler{
		Runtime: rt, Cgroups: cg, Loader: manifest.NewLoader(manifest.Options{}),
		Opts: controller.Options{Manifests: []string{dir}, StateDir: state, Hierarchy: hopts, Prune: true, Workers: coldParallelism},
	}
	logf("%s: converging the fake runtime", sc.Name)
	start := time.Now()
	if pr := rc.Pass(ctx); !pr.OK() {
		sc.fail(fmt.Errorf("converge the fake: %v", pr.Errors()))
		return sc
	}
	convergeMs := ms(time.Since(start))

	var total, decode []float64
	begun := time.Now()
	for r := range runs {
		if r > 0 && time.Since(begun) > plannerBudget {
			sc.note("stopped after %d of %d runs: the runs took over %s", r, runs, plannerBudget)
			break
		}
		logf("%s run %d/%d", sc.Name, r+1, runs)
		rc.Loader = manifest.NewLoader(manifest.Options{})
		start := time.Now()
		pr := rc.Plan(ctx)
		total = append(total, ms(time.Since(start)))
		if pr.Err != nil {
			sc.fail(pr.Err)
			return sc
		}
		if got := len(pr.Tree.Cells()); got != cells {
			sc.fail(fmt.Errorf("plan saw %d cells, want %d", got, cells))
			return sc
		}
		if pr.Plan.HasChanges() {
			sc.note("run %d: the plan of a converged fake has changes: %v", r+1, pr.Plan.Counts())
		}
		t := time.Now()
		docs, err := decodeAll(dir)
		if err != nil {
			sc.fail(err)
			return sc
		}
		if want := files*(perFile+1) + 2; docs != want {
			sc.fail(fmt.Errorf("yaml-decode read %d documents, want %d", docs, want))
			return sc
		}
		decode = append(decode, ms(time.Since(t)))
		if r == 0 {
			steps, err := planSteps(ctx, dir, state, hopts, rt, cg)
			if err != nil {
				sc.fail(err)
				return sc
			}
			sc.Counters = steps
		}
	}
	rec := summarize(total)
	sc.Reconciler = &rec
	sc.Baselines = map[string]Stats{"yaml-decode": summarize(decode)}
	sc.setRatios()
	sc.Counters["convergeFakeMs"] = round(convergeMs)
	sc.Counters["cells"] = float64(cells)
	sc.note("counters: the steps of one plan timed one by one (first run), and convergeFakeMs = the one full pass that converged the fake (plan, apply in memory, status)")
	return sc
}

// plannerBudget bounds the timed runs of the planner scenario: once they
// have taken this long, no further run starts.
const plannerBudget = 3 * time.Minute

// planSteps times the steps of Reconciler.Plan one by one: load, build,
// observe, plan.
func planSteps(ctx context.Context, dir, state string, hopts hierarchy.Options, rt controller.Runtime, cg controller.Cgroups) (map[string]float64, error) {
	t := time.Now()
	res := manifest.Load([]string{dir}, nil, manifest.Options{})
	load := ms(time.Since(t))
	t = time.Now()
	tree, _ := hierarchy.Build(res.Documents, hopts)
	build := ms(time.Since(t))
	inv, err := controller.LoadInventory(filepath.Join(state, "inventory.json"))
	if err != nil {
		return nil, err
	}
	t = time.Now()
	obs, err := (&controller.Observer{Runtime: rt, Cgroups: cg, Workers: coldParallelism}).Observe(ctx, tree, inv)
	if err != nil {
		return nil, err
	}
	observe := ms(time.Since(t))
	t = time.Now()
	controller.ComputePlan(controller.PlanInput{Desired: tree, Observed: obs, Inventory: inv, Prune: true})
	plan := ms(time.Since(t))
	return map[string]float64{"loadMs": round(load), "buildMs": round(build), "observeMs": round(observe), "computePlanMs": round(plan)}, nil
}

// decodeAll reads every *.yaml file under dir (skipping dot names) and
// decodes each document into a generic map; it returns the documents.
func decodeAll(dir string) (int, error) {
	docs := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		dec := yaml.NewDecoder(f)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return fmt.Errorf("decode %s: %w", p, err)
			}
			docs++
		}
	})
	if err != nil {
		return docs, fmt.Errorf("yaml-decode: %w", err)
	}
	return docs, nil
}
