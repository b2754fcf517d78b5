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

// plannerScale measures planning n cells from a directory against a
// converged in-memory runtime of the same size: the planner alone, no
// containerd (e is only its log).
func (e *env) plannerScale(ctx context.Context, sc *Scenario, n int, p params) error {
	sc.note("reconciler = Reconciler.Plan (what --once --dry-run runs): load the directory with a fresh loader, build the tree, read the inventory, observe the fake runtime and cgroup tree, plan; the fake was converged by one pass first, so the plan is all unchanged")
	sc.note("yaml-decode = reading every file and decoding each document into a generic map with yaml.v3: the floor of any tool that reads this directory")
	scratch, err := os.MkdirTemp("", "rbench-plan-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(scratch); err != nil {
			e.logf("cleanup: %v", err)
		}
	}()
	dir, state := filepath.Join(scratch, "manifests"), filepath.Join(scratch, "state")
	if err := plannerTree(dir, n); err != nil {
		return err
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	rt := ctrfake.NewRuntime(ctrfake.WithImages(image))
	cg := ctrfake.NewCgroups("cpu", "io", "memory", "pids")
	hopts := hierarchy.Options{CgroupRoot: "/kukeon-bench-plan"}
	rc := &controller.Reconciler{
		Runtime: rt, Cgroups: cg, Loader: manifest.NewLoader(manifest.Options{}),
		Opts: controller.Options{Manifests: []string{dir}, StateDir: state, Hierarchy: hopts, Prune: true, Workers: coldParallelism},
	}
	e.logf("%s: converging the fake runtime", sc.Name)
	start := time.Now()
	if pr := rc.Pass(ctx); !pr.OK() {
		return fmt.Errorf("converge the fake: %v", pr.Errors())
	}
	convergeMs := ms(time.Since(start))

	var total, decode []float64
	begun := time.Now()
	for r := range p.runs {
		if r > 0 && time.Since(begun) > plannerBudget {
			sc.note("stopped after %d of %d runs: the runs took over %s", r, p.runs, plannerBudget)
			break
		}
		e.logf("%s run %d/%d", sc.Name, r+1, p.runs)
		rc.Loader = manifest.NewLoader(manifest.Options{})
		start := time.Now()
		pr := rc.Plan(ctx)
		total = append(total, ms(time.Since(start)))
		if pr.Err != nil {
			return pr.Err
		}
		if got := len(pr.Tree.Cells()); got != n {
			return fmt.Errorf("plan saw %d cells, want %d", got, n)
		}
		if pr.Plan.HasChanges() {
			sc.note("run %d: the plan of a converged fake has changes: %v", r+1, pr.Plan.Counts())
		}
		t := time.Now()
		docs, err := decodeAll(dir)
		if err != nil {
			return err
		}
		if want := n + n/plannerPerFile + 2; docs != want {
			return fmt.Errorf("yaml-decode read %d documents, want %d", docs, want)
		}
		decode = append(decode, ms(time.Since(t)))
		if r == 0 {
			steps, err := planSteps(ctx, dir, state, hopts, rt, cg)
			if err != nil {
				return err
			}
			sc.Counters = steps
		}
	}
	sc.measured(total, map[string][]float64{"yaml-decode": decode})
	sc.Counters["convergeFakeMs"] = round(convergeMs)
	sc.Counters["cells"] = float64(n)
	sc.note("counters: the steps of one plan timed one by one (first run), and convergeFakeMs = the one full pass that converged the fake (plan, apply in memory, status)")
	return nil
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

// decodeAll reads every *.yaml file under dir (skipping what the loader
// skips) and decodes each document into a generic map; it returns the
// number of documents.
func decodeAll(dir string) (int, error) {
	docs := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case p != dir && manifest.Skipped(d.Name()) && d.IsDir():
			return filepath.SkipDir
		case p != dir && manifest.Skipped(d.Name()), d.IsDir(), !strings.HasSuffix(p, ".yaml"):
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for dec := yaml.NewDecoder(f); ; docs++ {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return fmt.Errorf("decode %s: %w", p, err)
			}
		}
	})
	if err != nil {
		return docs, fmt.Errorf("yaml-decode: %w", err)
	}
	return docs, nil
}
