package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuSlices is how many parts the footprint window's CPU is measured in.
const cpuSlices = 6

// footprintKey names one sampling: n cells idle for window.
type footprintKey struct {
	n      int
	window time.Duration
}

// footprint is one window of samples of the idle daemon and of containerd,
// taken once for the RSS and the CPU scenario of the same N.
type footprint struct {
	rss, rssContainerd []float64 // MiB, once a second
	cpu, cpuContainerd []float64 // % of a core, per slice of the window
	counters           map[string]float64
	err                error
}

func (e *env) footprintRSS(ctx context.Context, sc *Scenario, n int, p params) error {
	f := e.footprint(ctx, n, p.window)
	sc.measured(f.rss, map[string][]float64{"containerd": f.rssContainerd})
	return f.note(sc, n, p.window)
}

func (e *env) footprintCPU(ctx context.Context, sc *Scenario, n int, p params) error {
	f := e.footprint(ctx, n, p.window)
	sc.measured(f.cpu, map[string][]float64{"containerd": f.cpuContainerd})
	sc.Counters = f.counters
	if err := f.note(sc, n, p.window); err != nil {
		return err
	}
	sc.note("CPU (user+system, 10 ms resolution) as %% of one core over %d equal slices of the window; the mean over the whole window is in the counters", cpuSlices)
	return nil
}

func (f *footprint) note(sc *Scenario, n int, window time.Duration) error {
	if f.err == nil {
		sc.note("one sample per second over %s of idle (default --resync 30s) after the daemon adopted %d running cells; containerd (the private daemon, without its shims) sampled in the same window", window, n)
	}
	return f.err
}

// footprint samples the daemon and containerd once a second for window
// while n cells of the steady site sit converged and nothing changes; a
// second call with the same n and window returns the same samples.
func (e *env) footprint(ctx context.Context, n int, window time.Duration) *footprint {
	key := footprintKey{n, window}
	if f, ok := e.footprints[key]; ok {
		return f
	}
	f := &footprint{}
	s, err := e.steadyAt(ctx, n)
	if err == nil {
		err = e.withDaemon(ctx, s, 2*time.Second, func(d *daemon) error {
			e.logf("sampling the idle daemon and containerd for %s", window)
			if err := f.sample(ctx, d.pid(), e.ctd.PID, window); err != nil {
				return fmt.Errorf("%w\n%s", err, d.logTail(10))
			}
			return nil
		})
	}
	if err != nil {
		*f = footprint{err: err}
	}
	if e.footprints == nil {
		e.footprints = map[footprintKey]*footprint{}
	}
	e.footprints[key] = f
	return f
}

// sample reads the memory and CPU time of the daemon and of containerd
// every second for window: RSS at every second, CPU time (10 ms
// resolution) over six equal slices of the window, so that an idle slice
// is not all zeros.
func (f *footprint) sample(ctx context.Context, daemon, containerd int, window time.Duration) error {
	firstD, err := sampleProc(daemon)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	firstC, err := sampleProc(containerd)
	if err != nil {
		return err
	}
	seconds := int(window / time.Second)
	slice := max(seconds/cpuSlices, 1)
	lastD, lastC, prevD, prevC := firstD, firstC, firstD, firstC
	for k := 1; k <= seconds; k++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(firstD.At.Add(time.Duration(k) * time.Second))):
		}
		if lastD, err = sampleProc(daemon); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		if lastC, err = sampleProc(containerd); err != nil {
			return err
		}
		f.rss, f.rssContainerd = append(f.rss, lastD.RSSMiB), append(f.rssContainerd, lastC.RSSMiB)
		if k%slice == 0 {
			f.cpu, f.cpuContainerd = append(f.cpu, cpuPercent(prevD, lastD)), append(f.cpuContainerd, cpuPercent(prevC, lastC))
			prevD, prevC = lastD, lastC
		}
	}
	if len(f.rss) == 0 {
		return errors.New("window shorter than one sample")
	}
	f.counters = map[string]float64{
		"daemonCPUSeconds":      round((lastD.CPU - firstD.CPU).Seconds()),
		"containerdCPUSeconds":  round((lastC.CPU - firstC.CPU).Seconds()),
		"daemonMeanPercent":     round(cpuPercent(firstD, lastD)),
		"containerdMeanPercent": round(cpuPercent(firstC, lastC)),
		"windowSeconds":         window.Seconds(),
	}
	return nil
}

// procSample is one reading of a process's memory and CPU time.
type procSample struct {
	At     time.Time
	RSSMiB float64
	CPU    time.Duration // user + system
}

// sampleProc reads /proc/<pid>/statm (resident pages) and /proc/<pid>/stat
// (utime + stime, in USER_HZ = 100 ticks per second).
func sampleProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return s, fmt.Errorf("sample %d: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("sample %d: %w", pid, err)
	}
	// The command name in parentheses may hold spaces; the fields after
	// the last ')' are fixed: utime and stime are the 12th and 13th.
	var f []string
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
		f = strings.Fields(string(stat[i+1:]))
	}
	m := strings.Fields(string(statm))
	if len(f) < 13 || len(m) < 2 {
		return s, fmt.Errorf("sample %d: malformed stat or statm", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	pages, err3 := strconv.ParseInt(m[1], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return s, fmt.Errorf("sample %d: %w", pid, err)
	}
	s.CPU = time.Duration(utime+stime) * time.Second / 100
	s.RSSMiB = float64(pages*int64(os.Getpagesize())) / (1 << 20)
	return s, nil
}

func cpuPercent(a, b procSample) float64 {
	dt := b.At.Sub(a.At)
	if dt <= 0 {
		return 0
	}
	return 100 * float64(b.CPU-a.CPU) / float64(dt)
}
