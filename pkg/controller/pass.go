package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/manifest"
)

// Options configure a Reconciler.
type Options struct {
	// Manifests are the manifest directories or files.
	Manifests []string
	// StateDir holds inventory.json, status.json and container logs.
	StateDir   string
	Hierarchy  hierarchy.Options
	Prune      bool
	AllowEmpty bool
	Workers    int
	// Timeout bounds the readiness wait after apply (0: no wait).
	Timeout time.Duration
	// Usage reads every object's cgroup usage into status at the end of a
	// full pass (a cgroup Stat per object).
	Usage bool
	// PruneGrace defers deleting objects that are no longer declared until
	// no manifest file or directory has changed for this long (0: no
	// grace). A file in the middle of a rewrite is not intent.
	PruneGrace time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Reconciler runs passes.
type Reconciler struct {
	Runtime Runtime
	Cgroups Cgroups
	Loader  *manifest.Loader
	Opts    Options

	// loggedDiags is the manifest diagnostics last logged, so that a
	// daemon logs a bad manifest once, not on every resync.
	loggedDiags string
	// cache is what the last successful pass knew; event-driven passes of
	// cells reuse it (see passCache).
	cache *passCache
	// onTree, when set, sees the desired tree of every pass before anything
	// is applied: the daemon indexes containers by it, so that an exit
	// right after a start finds its cell.
	onTree func(*hierarchy.Tree)
}

// passCache is what a daemon's event-driven pass of some cells reuses from
// the pass before it: the desired tree (manifests change only through full
// passes, which the watcher triggers), the inventory and the restart
// bookkeeping (this process is their only writer), and the last
// observation, of which only the scoped cells' namespaces and cgroups are
// read again. Every full pass rebuilds it from the manifests and the host.
type passCache struct {
	load     *manifest.Result
	tree     *hierarchy.Tree
	diags    []manifest.Diagnostic
	failed   map[string]bool
	inv      *Inventory
	restarts *RestartBook
	obs      *Observed
}

// scopedCells returns the cells of keys when every key is a cell of tree.
func scopedCells(tree *hierarchy.Tree, keys map[string]bool) ([]*hierarchy.Cell, bool) {
	byKey := map[string]*hierarchy.Cell{}
	for _, c := range tree.Cells() {
		byKey[c.Key()] = c
	}
	var out []*hierarchy.Cell
	for k := range keys {
		c, ok := byKey[k]
		if !ok {
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}

// PassResult is what one pass found and did.
type PassResult struct {
	StartedAt   time.Time
	Duration    time.Duration
	Load        *manifest.Result
	Diagnostics []manifest.Diagnostic
	Tree        *hierarchy.Tree
	Plan        *Plan
	Outcomes    []Outcome
	Status      *Status
	// NotReady lists containers that should run and do not, with the tail
	// of their log.
	NotReady []string
	// Err is a pass-level error (containerd unreachable, state unreadable).
	Err error
	// StateErr is set when the pass could not write the state dir (the
	// inventory or status): the daemon is not ready while it is.
	StateErr error
	// Restarts are the restarts this pass performed.
	Restarts []Restart
}

// OK reports whether the pass converged: no manifest errors, no failed or
// blocked change, every container that should run runs.
func (r *PassResult) OK() bool {
	if r.Err != nil || len(r.NotReady) > 0 {
		return false
	}
	for _, d := range r.Diagnostics {
		if d.Severity == manifest.SeverityError {
			return false
		}
	}
	for _, o := range r.Outcomes {
		if o.Err != nil || o.Blocked != "" {
			return false
		}
	}
	if r.Plan != nil {
		for _, k := range r.Plan.Kept {
			if k.Why == KeptUnsafe {
				return false
			}
		}
	}
	return true
}

// PlanFailed reports whether the planning half found an error: a pass-level
// error, a manifest error or a refused change. --dry-run exits 1 on it
// whatever else the plan holds.
func (r *PassResult) PlanFailed() bool {
	if r.Err != nil || (r.Plan != nil && r.Plan.Refused()) {
		return true
	}
	for _, d := range r.Diagnostics {
		if d.Severity == manifest.SeverityError {
			return true
		}
	}
	return false
}

// PlanErrors lists what makes PlanFailed true, as lines.
func (r *PassResult) PlanErrors() []string {
	var out []string
	if r.Err != nil {
		out = append(out, r.Err.Error())
	}
	for _, d := range r.Diagnostics {
		if d.Severity == manifest.SeverityError {
			out = append(out, d.String())
		}
	}
	if r.Plan != nil {
		for _, ch := range r.Plan.Changes {
			if ch.Refused != "" {
				out = append(out, ch.Key+": refused: "+ch.Refused)
			}
		}
	}
	return out
}

// Errors lists the failures of the pass as lines.
func (r *PassResult) Errors() []string {
	var out []string
	if r.Err != nil {
		out = append(out, r.Err.Error())
	}
	for _, o := range r.Outcomes {
		if o.Err != nil {
			out = append(out, fmt.Sprintf("%s: %v", o.Change.Key, o.Err))
		} else if o.Blocked != "" {
			out = append(out, fmt.Sprintf("%s: blocked: %s failed", o.Change.Key, o.Blocked))
		}
	}
	if r.Plan != nil {
		for _, k := range r.Plan.Kept {
			if k.Why == KeptUnsafe {
				out = append(out, k.describe())
			}
		}
	}
	out = append(out, r.NotReady...)
	return out
}

func (rc *Reconciler) now() time.Time {
	if rc.Opts.Now != nil {
		return rc.Opts.Now()
	}
	return time.Now()
}

func (rc *Reconciler) inventoryPath() string {
	return filepath.Join(rc.Opts.StateDir, "inventory.json")
}
func (rc *Reconciler) statusPath() string { return filepath.Join(rc.Opts.StateDir, "status.json") }

// Desired loads the manifests and builds the tree. The returned map holds
// the files of every manifest error (the loader's failed files and
// directories are in the result: Result.FailedSource).
func (rc *Reconciler) Desired() (*manifest.Result, *hierarchy.Tree, []manifest.Diagnostic, map[string]bool) {
	if rc.Loader == nil {
		rc.Loader = manifest.NewLoader(manifest.Options{})
	}
	res := rc.Loader.Load(rc.Opts.Manifests, os.Stdin)
	tree, hdiags := hierarchy.Build(res.Documents, rc.Opts.Hierarchy)
	diags := append(append([]manifest.Diagnostic{}, res.Diagnostics...), hdiags...)
	failed := map[string]bool{}
	for _, d := range diags {
		if d.Severity == manifest.SeverityError && d.Position.File != "" {
			failed[d.Position.File] = true
		}
	}
	return res, tree, diags, failed
}

// Plan computes the plan of a pass without changing anything: it is all
// that --dry-run runs.
func (rc *Reconciler) Plan(ctx context.Context) *PassResult {
	pr := &PassResult{StartedAt: rc.now()}
	// The grace is not applied: a dry run predicts what the pass will
	// delete once the manifests are quiet.
	if _, err := rc.plan(ctx, pr, PassScope{dryRun: true}, nil); err != nil {
		pr.Err = err
	}
	pr.Duration = rc.now().Sub(pr.StartedAt)
	return pr
}

// planned is what the planning half of a pass read, for the acting half.
type planned struct {
	failed   map[string]bool
	inv      *Inventory
	restarts *RestartBook
	obs      *Observed
	observer *Observer
}

// plan is the side-effect-free half of every pass: get the desired tree and
// the inventory and restart bookkeeping — from cache for an event-driven
// pass of cells (see passCache), else from the manifests and the state dir —
// observe, and fill pr.Load, pr.Tree, pr.Diagnostics and pr.Plan (narrowed
// to scope.Only when set). --dry-run runs exactly this.
func (rc *Reconciler) plan(ctx context.Context, pr *PassResult, scope PassScope, cache *passCache) (*planned, error) {
	p := &planned{observer: &Observer{Runtime: rc.Runtime, Cgroups: rc.Cgroups, Workers: rc.workers()}}
	var cells []*hierarchy.Cell
	fast := false
	if scope.Only != nil && cache != nil {
		cells, fast = scopedCells(cache.tree, scope.Only)
	}
	var (
		err     error
		rebuilt int   // containers an inventory was rebuilt from
		serr    error // an unreadable status file
	)
	if fast {
		pr.Load, pr.Tree, pr.Diagnostics, p.failed = cache.load, cache.tree, cache.diags, cache.failed
		p.inv, p.restarts = cache.inv, cache.restarts
		if p.obs, err = p.observer.RefreshCells(ctx, cache.obs, cells); err != nil {
			return nil, err
		}
	} else {
		pr.Load, pr.Tree, pr.Diagnostics, p.failed = rc.Desired()
		if p.inv, err = LoadInventory(rc.inventoryPath()); err != nil {
			return nil, err
		}
		if p.inv.Missing {
			if rebuilt, err = p.inv.rebuild(ctx, rc.Runtime, pr.Tree, rc.Opts.Hierarchy.CgroupRoot); err != nil {
				return nil, fmt.Errorf("rebuild inventory %s: %w", rc.inventoryPath(), err)
			}
		}
		prev, err := LoadStatus(rc.statusPath())
		serr = err
		p.restarts = restartBookFrom(prev)
		if p.obs, err = p.observer.Observe(ctx, pr.Tree, p.inv); err != nil {
			return nil, err
		}
	}
	p.restarts.resetLongRuns(p.obs)
	in := PlanInput{
		Desired: pr.Tree, Observed: p.obs, Inventory: p.inv, Restarts: p.restarts,
		Sources:  Sources{Load: pr.Load, Failed: p.failed, Empty: emptySources(pr.Load)},
		Excluded: pr.Tree.Excluded,
		Prune:    rc.Opts.Prune && scope.Only == nil, AllowEmpty: rc.Opts.AllowEmpty,
		Now: rc.now(), Backoff: scope.Backoff,
	}
	if scope.Only == nil && !scope.dryRun && rc.Opts.PruneGrace > 0 && hasUndeclared(pr.Tree, p.inv) {
		in.PruneNotBefore = lastManifestChange(pr.Load, rc.Opts.Manifests).Add(rc.Opts.PruneGrace)
	}
	pr.Plan = ComputePlan(in)
	if rebuilt > 0 {
		pr.Plan.Warnings = append(pr.Plan.Warnings, fmt.Sprintf("inventory %s was missing: rebuilt from the labels of %d containers", rc.inventoryPath(), rebuilt))
	}
	if serr != nil {
		// A torn status only loses restart counts: say so, go on.
		pr.Plan.Warnings = append(pr.Plan.Warnings, fmt.Sprintf("%v: restart counts start afresh", serr))
	}
	if scope.Only != nil {
		scoped := &Plan{RequeueAfter: pr.Plan.RequeueAfter}
		for _, ch := range pr.Plan.Changes {
			if scope.Only[ch.Key] {
				scoped.Changes = append(scoped.Changes, ch)
			}
		}
		pr.Plan = scoped
	}
	return p, nil
}

func (rc *Reconciler) workers() int { return max(rc.Opts.Workers, 1) }

// Pass runs one full pass: plan, apply, wait for readiness (up to
// Opts.Timeout), record status. Deletions deferred by the prune grace are
// waited for: the pass plans again once the manifests are quiet.
func (rc *Reconciler) Pass(ctx context.Context) *PassResult {
	return rc.pass(ctx, PassScope{waitQuiet: true})
}

// PassScope narrows a pass.
type PassScope struct {
	// Only, when non-nil, limits the changes applied to these object keys
	// (and disables prune): the daemon's event-driven reconciles.
	Only map[string]bool
	// Backoff applies restart backoff (the daemon).
	Backoff bool
	// waitQuiet makes a pass whose deletions are deferred by the prune
	// grace wait and plan again (--once; the daemon requeues instead).
	waitQuiet bool
	// dryRun plans without the prune grace.
	dryRun bool
}

// Reconcile runs a pass with the given scope.
func (rc *Reconciler) Reconcile(ctx context.Context, scope PassScope) *PassResult {
	return rc.pass(ctx, scope)
}

func (rc *Reconciler) pass(ctx context.Context, scope PassScope) *PassResult {
	log := logr.FromContextOrDiscard(ctx)
	pr := &PassResult{StartedAt: rc.now()}
	defer func() { pr.Duration = rc.now().Sub(pr.StartedAt) }()
	cache := rc.cache
	rc.cache = nil // rebuilt at the end of a pass that succeeds
	p, err := rc.plan(ctx, pr, scope, cache)
	for range maxQuietWaits {
		if err != nil || !scope.waitQuiet || !pr.Plan.deferred() {
			break
		}
		if !sleepCtx(ctx, pr.Plan.RequeueAfter) {
			break
		}
		p, err = rc.plan(ctx, pr, scope, nil)
	}
	if scope.Only == nil {
		var warnings []string
		if pr.Plan != nil {
			warnings = pr.Plan.Warnings
		}
		rc.logDiagnostics(log, pr.Diagnostics, warnings)
	}
	if err != nil {
		pr.Err = err
		return pr
	}
	if rc.onTree != nil {
		rc.onTree(pr.Tree)
	}
	failed, inv, restarts, obs, observer := p.failed, p.inv, p.restarts, p.obs, p.observer

	creds := map[string][]ctr.Credential{}
	for _, r := range pr.Tree.Realms {
		for _, c := range r.RegistryCredentials {
			creds[r.Namespace] = append(creds[r.Namespace], ctr.Credential{ServerAddress: c.ServerAddress, Username: c.Username, Password: c.Password})
		}
	}
	ex := &Executor{
		Runtime: rc.Runtime, Cgroups: rc.Cgroups, StateDir: rc.Opts.StateDir,
		Workers: rc.workers(), Credentials: creds,
		SaveInventory: func(inv *Inventory, force bool) error { return inv.Save(rc.inventoryPath(), force) },
	}
	if pr.Plan.HasChanges() || needsRecord(pr.Plan, inv) || inv.Missing {
		pr.Outcomes, err = ex.Apply(ctx, pr.Plan, inv)
		if err != nil {
			pr.StateErr = err
			pr.Err = fmt.Errorf("state dir %s: %w", rc.Opts.StateDir, err)
		}
	} else {
		for i := range pr.Plan.Changes {
			pr.Outcomes = append(pr.Outcomes, Outcome{Change: &pr.Plan.Changes[i]})
		}
	}
	// Restarts performed this pass count against the restart policy.
	now := rc.now()
	for _, o := range pr.Outcomes {
		if o.Change == nil || o.Change.Cell == nil || o.Err != nil {
			continue
		}
		c := o.Change.Cell
		for _, cc := range o.Change.Containers {
			if cc.Action != ContainerStart {
				continue
			}
			var exit uint32
			for _, oc := range obs.ContainersOfCell(c.Namespace, c.Space, c.Stack, c.ID) {
				if oc.ID == cc.ContainerdID {
					exit = oc.Task.ExitCode
				}
			}
			restarts.recordRestart(c.Namespace, cc.ContainerdID, exit, now)
			pr.Restarts = append(pr.Restarts, Restart{Cell: o.Change.Key, Container: cc.ID, Policy: containerPolicy(c, cc.ContainerdID)})
		}
	}

	final := obs
	switch {
	case !pr.Plan.HasChanges():
	case rc.Opts.Timeout > 0:
		final, err = rc.waitReady(ctx, observer, pr, inv, restarts)
	default:
		// No wait: re-read only what the pass changed.
		final, err = observer.Refresh(ctx, obs, pr.Plan, pr.Tree, inv)
	}
	if err != nil {
		pr.Err = err
		final = obs
	}
	restarts.resetRunning(final, now)
	pr.Status = &Status{GeneratedAt: rc.now(), Objects: buildStatus(pr.Tree, final, pr.Outcomes, restarts, inv)}
	pr.Status.Objects = append(pr.Status.Objects, orphanStatus(pr.Plan.Kept, final)...)
	for _, d := range pr.Diagnostics {
		pr.Status.Diagnostics = append(pr.Status.Diagnostics, d.String())
	}
	if rc.Opts.Usage && scope.Only == nil {
		rc.readUsage(pr.Status)
	}
	pr.NotReady = notReady(pr.Status, rc.Opts.StateDir)
	pr.Status.Pass = PassSummary{StartedAt: pr.StartedAt, Duration: rc.now().Sub(pr.StartedAt).Round(time.Millisecond).String(),
		OK: pr.OK(), Counts: pr.Plan.Counts(), Errors: pr.Errors()}
	if err := pr.Status.Save(rc.statusPath()); err != nil {
		pr.StateErr = errors.Join(pr.StateErr, err)
		if pr.Err == nil {
			pr.Err = err
		}
	}
	if pr.Err == nil {
		rc.cache = &passCache{load: pr.Load, tree: pr.Tree, diags: pr.Diagnostics, failed: failed,
			inv: inv, restarts: restarts, obs: final}
	}
	return pr
}

// maxQuietWaits bounds how often one --once pass waits for quiet manifests
// before it goes on without the deferred deletions.
const maxQuietWaits = 5

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// emptySources are the files that loaded and declare no objects.
func emptySources(res *manifest.Result) map[string]bool {
	out := map[string]bool{}
	for _, f := range res.Files {
		if !f.Failed && f.Objects == 0 {
			out[f.Path] = true
		}
	}
	return out
}

// hasUndeclared reports whether the inventory records an object the tree
// does not declare: only then is the prune grace worth a look at mtimes.
func hasUndeclared(tree *hierarchy.Tree, inv *Inventory) bool {
	declared, _ := desiredKeys(tree)
	for k := range inv.Objects {
		if !declared[k] {
			return true
		}
	}
	return false
}

// lastManifestChange is the newest modification time of the manifest
// roots, of every file loaded and of the directories holding them (a
// deleted or renamed file shows only there), taken with lstat so that a
// symlink swap counts.
func lastManifestChange(res *manifest.Result, roots []string) time.Time {
	var last time.Time
	seen := map[string]bool{}
	look := func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, stat := range []func(string) (os.FileInfo, error){os.Lstat, os.Stat} {
			if fi, err := stat(p); err == nil && fi.ModTime().After(last) {
				last = fi.ModTime()
			}
		}
	}
	for _, r := range roots {
		look(r)
	}
	for _, f := range res.Files {
		if f.Path == manifest.StdinName {
			continue
		}
		look(f.Path)
		look(filepath.Dir(f.Path))
	}
	return last
}

// logDiagnostics logs manifest diagnostics and plan warnings when they
// differ from the ones logged last: a daemon says it once, not every resync.
func (rc *Reconciler) logDiagnostics(log logr.Logger, diags []manifest.Diagnostic, warnings []string) {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	for _, w := range warnings {
		b.WriteString(w)
		b.WriteByte('\n')
	}
	if b.String() == rc.loggedDiags {
		return
	}
	rc.loggedDiags = b.String()
	for _, d := range diags {
		kv := []any{"position", d.Position.String()}
		if d.Object != "" {
			kv = append(kv, "object", d.Object)
		}
		if d.Field != "" {
			kv = append(kv, "field", d.Field)
		}
		kv = append(kv, "message", d.Message)
		if d.Severity == manifest.SeverityError {
			log.Error(nil, "manifest error", kv...)
		} else {
			log.Info("manifest warning", kv...)
		}
	}
	for _, w := range warnings {
		log.Info("prune refused", "reason", w)
	}
}

// Restart records one restart performed by a pass.
type Restart struct {
	Cell, Container, Policy string
}

func containerPolicy(c *hierarchy.Cell, containerdID string) string {
	for _, dc := range c.Containers {
		if dc.ContainerdID == containerdID {
			return dc.Spec.RestartPolicy
		}
	}
	return ""
}

// needsRecord reports whether an unchanged object is missing from the
// inventory (adoption after the state dir was lost).
func needsRecord(p *Plan, inv *Inventory) bool {
	for _, ch := range p.Changes {
		if ch.Action != ActionDeleted && inv.Objects[ch.Key] == nil {
			return true
		}
	}
	return false
}
