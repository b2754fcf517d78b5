// Package metrics exposes the reconciler daemon's Prometheus metrics and its liveness and
// readiness, and serves both over HTTP (/metrics, /healthz, /readyz).
//
// Nothing here touches global state: every Metrics owns its registry, so tests and several
// daemons in one process do not collide.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every metric name: reconciler_<name>.
const namespace = "reconciler"

// Label values known in advance. New sets their series to zero so that dashboards and
// rate() see a series from the first scrape instead of one that appears on first use.
var (
	levels   = []string{"realm", "space", "stack", "cell", "pass"}
	results  = []string{"success", "error"}
	kinds    = []string{"Realm", "Space", "Stack", "Cell"}
	states   = []string{"Pending", "Ready", "Degraded", "Failed", "Blocked", "Orphaned"}
	policies = []string{"on-failure", "always"}
)

// durationBuckets spans a no-op cell check (about a millisecond) to a pass that pulls
// images (minutes).
var durationBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
}

// Metrics holds the reconciler's collectors in their own registry (no global state; the Go
// and process collectors are registered too). All names are prefixed "reconciler_".
// All methods are safe for concurrent use.
type Metrics struct {
	registry *prometheus.Registry

	reconciles       *prometheus.CounterVec
	reconcileSeconds *prometheus.HistogramVec
	queueDepth       prometheus.Gauge
	objects          *prometheus.GaugeVec
	restarts         *prometheus.CounterVec
	manifestErrors   prometheus.Gauge
	manifestWarnings prometheus.Gauge
	lastSuccess      prometheus.Gauge
	containerdUp     prometheus.Gauge
	cgroupMemory     *prometheus.GaugeVec
	cgroupCPU        *prometheus.GaugeVec
	cgroupPids       *prometheus.GaugeVec

	// mu guards objectKeys, the (kind, state) series SetObjectStates has set, so that a
	// later call without them can reset them to zero.
	mu         sync.Mutex
	objectKeys map[[2]string]struct{}
}

// New returns Metrics with every collector registered in a fresh registry. Series for the
// known levels, results, kinds, states and restart policies start at zero.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "reconcile_total",
			Help:      "Reconciles of one object level, or of a whole pass (level=\"pass\"), by result.",
		}, []string{"level", "result"}),
		reconcileSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "reconcile_duration_seconds",
			Help:      "Duration of reconciles of one object level, or of a whole pass (level=\"pass\").",
			Buckets:   durationBuckets,
		}, []string{"level"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "queue_depth",
			Help:      "Keys waiting in the work queue.",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "objects",
			Help:      "Desired objects by kind and state.",
		}, []string{"kind", "state"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "container_restarts_total",
			Help:      "Container restarts made by a restart policy.",
		}, []string{"policy"}),
		manifestErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "manifest_errors",
			Help:      "Errors found in the manifest directory by the last load.",
		}),
		manifestWarnings: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "manifest_warnings",
			Help:      "Warnings found in the manifest directory by the last load.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "last_successful_pass_timestamp_seconds",
			Help:      "Unix time of the end of the last pass that succeeded; 0 before the first.",
		}),
		containerdUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "containerd_up",
			Help:      "1 if containerd answered the last check, 0 otherwise.",
		}),
		cgroupMemory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "cgroup_memory_bytes",
			Help:      "memory.current of an object's cgroup (realm, space, stack or cell) at the last full pass.",
		}, objectLabels),
		cgroupCPU: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "cgroup_cpu_seconds",
			Help:      "CPU time used by an object's cgroup since it was created (usage_usec of cpu.stat), at the last full pass.",
		}, objectLabels),
		cgroupPids: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "cgroup_pids",
			Help:      "pids.current of an object's cgroup at the last full pass.",
		}, objectLabels),
		objectKeys: make(map[[2]string]struct{}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.reconciles, m.reconcileSeconds, m.queueDepth, m.objects, m.restarts,
		m.manifestErrors, m.manifestWarnings, m.lastSuccess, m.containerdUp,
		m.cgroupMemory, m.cgroupCPU, m.cgroupPids,
	)
	for _, level := range levels {
		m.reconcileSeconds.WithLabelValues(level)
		for _, result := range results {
			m.reconciles.WithLabelValues(level, result)
		}
	}
	for _, kind := range kinds {
		for _, state := range states {
			m.objects.WithLabelValues(kind, state)
			m.objectKeys[[2]string{kind, state}] = struct{}{}
		}
	}
	for _, policy := range policies {
		m.restarts.WithLabelValues(policy)
	}
	return m
}

// ObserveReconcile records one reconcile of an object level ("realm", "space", "stack",
// "cell") or of a whole pass ("pass") with result "success" or "error": counter
// reconciler_reconcile_total{level,result} and histogram
// reconciler_reconcile_duration_seconds{level}. Other values are recorded as given.
func (m *Metrics) ObserveReconcile(level, result string, d time.Duration) {
	m.reconciles.WithLabelValues(level, result).Inc()
	m.reconcileSeconds.WithLabelValues(level).Observe(d.Seconds())
}

// SetQueueDepth sets gauge reconciler_queue_depth.
func (m *Metrics) SetQueueDepth(n int) {
	m.queueDepth.Set(float64(n))
}

// SetObjectStates replaces gauge reconciler_objects{kind,state}; counts is keyed by
// {kind, state} (kind Realm|Space|Stack|Cell, state Pending|Ready|Degraded|Failed|Blocked).
// Series absent from counts are set to 0 if they were set before (the known kinds and
// states always are), so a state that empties reads 0 rather than its last count.
func (m *Metrics) SetObjectStates(counts map[[2]string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key := range m.objectKeys {
		if _, ok := counts[key]; !ok {
			m.objects.WithLabelValues(key[0], key[1]).Set(0)
		}
	}
	for key, n := range counts {
		m.objects.WithLabelValues(key[0], key[1]).Set(float64(n))
		m.objectKeys[key] = struct{}{}
	}
}

// objectLabels name an object in the cgroup gauges; a realm has only realm,
// a cell all four.
var objectLabels = []string{"realm", "space", "stack", "cell"}

// CgroupUsage is one object's cgroup usage for SetCgroupUsage.
type CgroupUsage struct {
	// Realm, Space, Stack, Cell name the object ("" below its level).
	Realm, Space, Stack, Cell  string
	MemoryBytes, CPUUsec, Pids uint64
}

// SetCgroupUsage replaces gauges reconciler_cgroup_memory_bytes,
// reconciler_cgroup_cpu_seconds and reconciler_cgroup_pids
// {realm,space,stack,cell}: series of objects absent from usage are
// removed (a pruned cell leaves no stale series).
func (m *Metrics) SetCgroupUsage(usage []CgroupUsage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cgroupMemory.Reset()
	m.cgroupCPU.Reset()
	m.cgroupPids.Reset()
	for _, u := range usage {
		l := prometheus.Labels{"realm": u.Realm, "space": u.Space, "stack": u.Stack, "cell": u.Cell}
		m.cgroupMemory.With(l).Set(float64(u.MemoryBytes))
		m.cgroupCPU.With(l).Set(float64(u.CPUUsec) / 1e6)
		m.cgroupPids.With(l).Set(float64(u.Pids))
	}
}

// IncRestarts increments counter reconciler_container_restarts_total{policy}.
func (m *Metrics) IncRestarts(policy string) {
	m.restarts.WithLabelValues(policy).Inc()
}

// SetManifestErrors sets gauge reconciler_manifest_errors.
func (m *Metrics) SetManifestErrors(n int) {
	m.manifestErrors.Set(float64(n))
}

// SetManifestWarnings sets gauge reconciler_manifest_warnings.
func (m *Metrics) SetManifestWarnings(n int) {
	m.manifestWarnings.Set(float64(n))
}

// PassSucceeded sets gauge reconciler_last_successful_pass_timestamp_seconds to t.
func (m *Metrics) PassSucceeded(t time.Time) {
	m.lastSuccess.Set(float64(t.UnixNano()) / 1e9)
}

// SetContainerdUp sets gauge reconciler_containerd_up to 1 or 0.
func (m *Metrics) SetContainerdUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.containerdUp.Set(v)
}

// Handler serves the registry in the Prometheus text (or negotiated) exposition format.
// A collector that fails is reported in the response and does not hide the others.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}
