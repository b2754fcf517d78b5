package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kukeon/reconciler/pkg/hierarchy"
	"github.com/kukeon/reconciler/pkg/testimage"
)

// The cells every scenario runs: a synthesized root (the reconciler binary
// as "pause") plus one workload, `sleep 3600`, that ignores SIGTERM as PID
// 1 and so is stopped by the grace period of one second.
const (
	benchSpace = "bench"
	benchStack = "s"
	workloadID = "app"
	image      = testimage.DefaultImageName
)

// cellName is the name (and ID) of cell i.
func cellName(i int) string { return fmt.Sprintf("c%04d", i) }

// workloadContainerdID is the containerd ID of cell i's workload.
func workloadContainerdID(i int) string {
	return hierarchy.ContainerdID(benchSpace, benchStack, cellName(i), workloadID)
}

// cellDoc is the manifest of one cell; rev goes into the workload's env, so
// changing it recreates exactly that container.
func cellDoc(realm, space, stack, name string, rev int) string {
	return fmt.Sprintf(`apiVersion: v1beta1
kind: Cell
metadata: {name: %s, labels: {app: bench}}
spec:
  realmId: %s
  spaceId: %s
  stackId: %s
  containers:
    - id: %s
      image: %s
      command: sleep
      args: ["3600"]
      env: ["REV=%d"]
      restartPolicy: always
      stopGracePeriodSeconds: 1
`, name, realm, space, stack, workloadID, image, rev)
}

// parentsDoc declares a realm, one space and its stacks.
func parentsDoc(realm, space string, stacks ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1beta1\nkind: Realm\nmetadata: {name: %s}\nspec: {}\n", realm)
	fmt.Fprintf(&b, "---\napiVersion: v1beta1\nkind: Space\nmetadata: {name: %s}\nspec: {realmId: %s}\n", space, realm)
	for _, st := range stacks {
		fmt.Fprintf(&b, "---\napiVersion: v1beta1\nkind: Stack\nmetadata: {name: %s}\nspec: {realmId: %s, spaceId: %s}\n", st, realm, space)
	}
	return b.String()
}

// cellFile is the manifest file of cell i in dir.
func cellFile(dir string, i int) string { return filepath.Join(dir, cellName(i)+".yaml") }

// writeFile writes body to name, creating its directory.
func writeFile(name, body string) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("write manifests: %w", err)
	}
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		return fmt.Errorf("write manifests: %w", err)
	}
	return nil
}

// writeCells writes the parents and cells [from, to) of realm into dir,
// one file per cell.
func writeCells(dir, realm string, from, to int) error {
	if err := writeFile(filepath.Join(dir, "parents.yaml"), parentsDoc(realm, benchSpace, benchStack)); err != nil {
		return err
	}
	for i := from; i < to; i++ {
		if err := writeFile(cellFile(dir, i), cellDoc(realm, benchSpace, benchStack, cellName(i), 0)); err != nil {
			return err
		}
	}
	return nil
}

// replaceCell atomically replaces cell i's file with revision rev, the way
// editors and git-sync do: write a dotfile (which the loader skips), then
// rename it over the old file.
func replaceCell(dir, realm string, i, rev int) (rename func() error, err error) {
	tmp := filepath.Join(dir, "."+cellName(i)+".yaml.tmp")
	if err := writeFile(tmp, cellDoc(realm, benchSpace, benchStack, cellName(i), rev)); err != nil {
		return nil, err
	}
	return func() error { return os.Rename(tmp, cellFile(dir, i)) }, nil
}

// plannerPerFile is how many cells each file of the planner tree holds.
const plannerPerFile = 10

// plannerTree writes cells/plannerPerFile files of plannerPerFile cells
// (with their realm, space and stacks) under dir, the shape of the issue's
// 1,000-file directory: one stack per file, files spread over
// subdirectories of 100.
func plannerTree(dir string, cells int) error {
	for f := range cells / plannerPerFile {
		stack := fmt.Sprintf("st%04d", f)
		var b strings.Builder
		if f == 0 {
			b.WriteString(parentsDoc("plan", "web") + "---\n")
		}
		fmt.Fprintf(&b, "apiVersion: v1beta1\nkind: Stack\nmetadata: {name: %s}\nspec: {realmId: plan, spaceId: web}\n", stack)
		for c := range plannerPerFile {
			b.WriteString("---\n" + cellDoc("plan", "web", stack, fmt.Sprintf("c%02d", c), c))
		}
		name := filepath.Join(dir, fmt.Sprintf("d%02d", f/100), fmt.Sprintf("f%04d.yaml", f))
		if err := writeFile(name, b.String()); err != nil {
			return err
		}
	}
	return nil
}
