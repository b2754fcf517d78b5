package ctr_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kukeon/reconciler/pkg/ctr"
	"github.com/kukeon/reconciler/pkg/testenv"
)

const (
	benchCells       = 20
	benchParallelism = 4
)

// BenchmarkCells brings up 20 cells (a synthesized root plus one workload
// joining its namespaces, 40 containers) at parallelism 4, three ways in
// the same run on the same containerd: through ctr.Client, through
// ctr.Client with one shim per cell, and with the containerd client
// directly (the same OCI options, no ownership checks). It reports
// milliseconds per 20 cells for each and the ratios to direct. Teardown
// is not timed.
func BenchmarkCells(b *testing.B) {
	e := newEnv(b, ctr.Config{})
	grouped := ctr.New(ctr.Config{Address: e.cd.Address, StateDir: e.state, PauseBinary: pauseBinary(b), GroupShims: true})
	defer grouped.Close()
	ctx := context.Background()
	ns := "bench.kukeon.io"
	if err := e.client.EnsureNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	if err := e.client.EnsureImage(ctx, ns, busybox, ctr.PullIfNotPresent, nil); err != nil {
		b.Fatal(err)
	}
	root := testenv.CgroupRoot(b)
	pause := pauseBinary(b)

	ways := []struct {
		name string
		cell func(ctx context.Context, i int) error
	}{
		{"direct", func(ctx context.Context, i int) error { return directCell(ctx, e.raw, ns, root, pause, e.state, i) }},
		{"ctr", func(ctx context.Context, i int) error { return ctrCell(ctx, e.client, ns, root, i) }},
		{"grouped", func(ctx context.Context, i int) error { return ctrCell(ctx, grouped, ns, root, i) }},
	}
	total := map[string]time.Duration{}
	b.ResetTimer()
	for range b.N {
		for _, w := range ways {
			start := time.Now()
			if err := parallel(benchCells, benchParallelism, func(i int) error { return w.cell(ctx, i) }); err != nil {
				b.Fatalf("%s: %v", w.name, err)
			}
			total[w.name] += time.Since(start)
			b.StopTimer()
			if err := parallel(benchCells, benchParallelism, func(i int) error { return teardown(ctx, e.client, ns, i) }); err != nil {
				b.Fatalf("teardown: %v", err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	for _, w := range ways {
		b.ReportMetric(ms(total[w.name]), w.name+"-ms/20cells")
	}
	b.ReportMetric(float64(total["ctr"])/float64(total["direct"]), "ctr/direct")
	b.ReportMetric(float64(total["grouped"])/float64(total["direct"]), "grouped/direct")
}

func cellIDs(i int) (rootID, workID string) {
	return fmt.Sprintf("s_t_c%02d_root", i), fmt.Sprintf("s_t_c%02d_app", i)
}

func ctrCell(ctx context.Context, c *ctr.Client, ns, cgRoot string, i int) error {
	rootID, workID := cellIDs(i)
	cell := cgRoot + "/c" + strconv.Itoa(i)
	labels := map[string]string{ctr.LabelSpace: "s", ctr.LabelStack: "t", ctr.LabelCell: "c" + strconv.Itoa(i)}
	if err := c.CreateContainer(ctx, ns, ctr.ContainerSpec{ID: rootID, Image: busybox, Pause: true, CgroupsPath: cell + "/" + rootID, Labels: labels}); err != nil {
		return err
	}
	pid, err := c.StartContainer(ctx, ns, rootID)
	if err != nil {
		return err
	}
	if err := c.CreateContainer(ctx, ns, ctr.ContainerSpec{
		ID: workID, Image: busybox, Command: "sleep", Args: []string{"3600"},
		JoinPID: pid, CgroupsPath: cell + "/" + workID, Labels: labels,
	}); err != nil {
		return err
	}
	_, err = c.StartContainer(ctx, ns, workID)
	return err
}

// directCell does what ctrCell does with the containerd client alone.
func directCell(ctx context.Context, c *client.Client, ns, cgRoot, pause, state string, i int) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	rootID, workID := cellIDs(i)
	cell := cgRoot + "/c" + strconv.Itoa(i)
	labels := map[string]string{ctr.LabelManagedBy: ctr.ManagedByValue}
	run := func(id string, opts ...oci.SpecOpts) (uint32, error) {
		img, err := c.GetImage(ctx, busybox)
		if err != nil {
			return 0, err
		}
		opts = append([]oci.SpecOpts{oci.WithImageConfig(img)}, opts...)
		opts = append(opts, oci.WithCgroup(cell+"/"+id), oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace}))
		cont, err := c.NewContainer(ctx, id, client.WithImage(img), client.WithNewSnapshot(id, img),
			client.WithNewSpec(opts...), client.WithContainerLabels(labels))
		if err != nil {
			return 0, err
		}
		task, err := cont.NewTask(ctx, cio.LogFile(state+"/logs/"+ns+"/"+id+".log"))
		if err != nil {
			return 0, err
		}
		return task.Pid(), task.Start(ctx)
	}
	pid, err := run(rootID, oci.WithProcessArgs(ctr.PauseMountPath, "pause"),
		oci.WithMounts([]specs.Mount{{Type: "bind", Source: pause, Destination: ctr.PauseMountPath, Options: []string{"rbind", "ro"}}}))
	if err != nil {
		return err
	}
	var joins []oci.SpecOpts
	for _, k := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		file := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[k]
		joins = append(joins, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: k, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, file)}))
	}
	_, err = run(workID, append(joins, oci.WithProcessArgs("sleep", "3600"))...)
	return err
}

func teardown(ctx context.Context, c *ctr.Client, ns string, i int) error {
	rootID, workID := cellIDs(i)
	for _, id := range []string{workID, rootID} {
		if err := c.DeleteContainer(ctx, ns, id, 0); err != nil {
			return err
		}
	}
	return nil
}

// parallel runs fn(0..n-1) with at most p at a time and returns the first
// error.
func parallel(n, p int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, p)
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
