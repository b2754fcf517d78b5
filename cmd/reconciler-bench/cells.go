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

// namespaceOf is a realm's default containerd namespace.
func namespaceOf(realm string) string { return realm + ".kukeon.io" }

// workloadContainerdID is the containerd ID of cell i's workload.
func workloadContainerdID(i int) string {
	return hierarchy.ContainerdID(benchSpace, benchStack, cellName(i), workloadID)
}

// rootContainerdID is the containerd ID of cell i's synthesized root.
func rootContainerdID(i int) string {
	return hierarchy.RootContainerdID(benchSpace, benchStack, cellName(i))
}

// cellYAML is the manifest of cell i of realm; rev goes into the workload's
// env, so changing it recreates exactly that container.
func cellYAML(realm string, i, rev int) string {
	return fmt.Sprintf(`apiVersion: v1beta1
kind: Cell
metadata:
  name: %s
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
`, cellName(i), realm, benchSpace, benchStack, workloadID, image, rev)
}

// parentsYAML declares the realm, space and stack of the cells.
func parentsYAML(realm string) string {
	return fmt.Sprintf(`apiVersion: v1beta1
kind: Realm
metadata: {name: %s}
spec: {}
---
apiVersion: v1beta1
kind: Space
metadata: {name: %s}
spec: {realmId: %s}
---
apiVersion: v1beta1
kind: Stack
metadata: {name: %s}
spec: {realmId: %s, spaceId: %s}
`, realm, benchSpace, realm, benchStack, realm, benchSpace)
}

// cellFile is the manifest file of cell i in dir.
func cellFile(dir string, i int) string { return filepath.Join(dir, cellName(i)+".yaml") }

// writeCells writes the parents and cells [from, to) of realm into dir,
// one file per cell.
func writeCells(dir, realm string, from, to int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("manifest dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "parents.yaml"), []byte(parentsYAML(realm)), 0o644); err != nil {
		return fmt.Errorf("write manifests: %w", err)
	}
	for i := from; i < to; i++ {
		if err := os.WriteFile(cellFile(dir, i), []byte(cellYAML(realm, i, 0)), 0o644); err != nil {
			return fmt.Errorf("write manifests: %w", err)
		}
	}
	return nil
}

// replaceCell atomically replaces cell i's file with revision rev, the way
// editors and git-sync do: write a dotfile (which the loader skips), then
// rename it over the old file.
func replaceCell(dir, realm string, i, rev int) (rename func() error, err error) {
	tmp := filepath.Join(dir, "."+cellName(i)+".yaml.tmp")
	if err := os.WriteFile(tmp, []byte(cellYAML(realm, i, rev)), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", tmp, err)
	}
	return func() error { return os.Rename(tmp, cellFile(dir, i)) }, nil
}

// plannerTree writes files × perFile cells (with their realm, space and
// stacks) under dir, the shape of the 1,000-file directory: one
// stack per file, files spread over subdirectories of 100.
func plannerTree(dir string, files, perFile int) error {
	for f := range files {
		var b strings.Builder
		stack := fmt.Sprintf("st%04d", f)
		if f == 0 {
			fmt.Fprintf(&b, "apiVersion: v1beta1\nkind: Realm\nmetadata: {name: plan}\nspec: {}\n---\n")
			fmt.Fprintf(&b, "apiVersion: v1beta1\nkind: Space\nmetadata: {name: web}\nspec: {realmId: plan}\n---\n")
		}
		fmt.Fprintf(&b, "apiVersion: v1beta1\nkind: Stack\nmetadata: {name: %s}\nspec: {realmId: plan, spaceId: web}\n", stack)
		for c := range perFile {
			fmt.Fprintf(&b, `---
apiVersion: v1beta1
kind: Cell
metadata: {name: c%02d, labels: {app: bench}}
spec:
  realmId: plan
  spaceId: web
  stackId: %s
  containers:
    - id: app
      image: %s
      command: sleep
      args: ["3600"]
      env: ["INDEX=%d"]
      restartPolicy: always
      stopGracePeriodSeconds: 1
`, c, stack, image, c)
		}
		name := filepath.Join(dir, fmt.Sprintf("d%02d", f/100), fmt.Sprintf("f%04d.yaml", f))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return fmt.Errorf("planner tree: %w", err)
		}
		if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("planner tree: %w", err)
		}
	}
	return nil
}
