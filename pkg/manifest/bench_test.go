package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the user+system CPU time of the process so far. On a shared,
// loaded machine it is a steadier measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeBenchTree writes files × cells Cells (plus their realm, space and
// stack in the first file of each stack) under dir and returns the number
// of objects.
func writeBenchTree(tb testing.TB, dir string, files, cells int) int {
	objects := 0
	for f := 0; f < files; f++ {
		var b strings.Builder
		stack := fmt.Sprintf("stack-%d", f)
		if f == 0 {
			b.WriteString("apiVersion: v1beta1\nkind: Realm\nmetadata:\n  name: bench\nspec:\n  resources:\n    memory: {max: 8Gi}\n---\n")
			b.WriteString("apiVersion: v1beta1\nkind: Space\nmetadata:\n  name: web\nspec:\n  realmId: bench\n  resources:\n    cpu: {weight: 100}\n    pids: {max: 100000}\n---\n")
			objects += 2
		}
		fmt.Fprintf(&b, "apiVersion: v1beta1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n  realmId: bench\n  spaceId: web\n", stack)
		objects++
		for c := 0; c < cells; c++ {
			fmt.Fprintf(&b, `---
apiVersion: v1beta1
kind: Cell
metadata:
  name: cell-%d
  labels:
    app: bench
    tier: web
spec:
  realmId: bench
  spaceId: web
  stackId: %s
  resources:
    memory: {max: 128Mi}
  containers:
    - id: httpd
      image: docker.io/library/busybox:latest
      command: /bin/sh
      args: ["-c", "exec httpd -f -p 8080 -h /www"]
      env: ["MODE=prod", "INDEX=%d"]
      restartPolicy: always
      resources:
        memoryLimitBytes: 64Mi
        pidsLimit: 64
    - id: sidecar
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["3600"]
      volumes:
        - {kind: tmpfs, target: /scratch, sizeBytes: 16Mi}
`, c, stack, c)
			objects++
		}
		name := filepath.Join(dir, fmt.Sprintf("%03d", f/100), fmt.Sprintf("cells-%04d.yaml", f))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return objects
}

// BenchmarkLoad10kCells loads 1,000 files of 10 Cells each, cold (a new
// Loader per iteration).
func BenchmarkLoad10kCells(b *testing.B) {
	dir := b.TempDir()
	objects := writeBenchTree(b, dir, 1000, 10)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		r := Load([]string{dir}, nil, Options{})
		if len(r.Documents) != objects || r.HasErrors() {
			b.Fatalf("%d documents, errors %v; want %d documents and none", len(r.Documents), r.HasErrors(), objects)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*objects), "ns/object")
}

// BenchmarkReload10kCells reloads the same unchanged directory with one
// Loader: the daemon's periodic relist.
func BenchmarkReload10kCells(b *testing.B) {
	dir := b.TempDir()
	objects := writeBenchTree(b, dir, 1000, 10)
	l := NewLoader(Options{})
	l.Load([]string{dir}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if r := l.Load([]string{dir}, nil); len(r.Documents) != objects {
			b.Fatalf("%d documents, want %d", len(r.Documents), objects)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*objects), "ns/object")
}
