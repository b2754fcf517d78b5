package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics from handler and parses the text exposition format.
func scrape(t *testing.T, handler http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200:\n%s", rec.Code, rec.Body)
	}
	return parse(t, rec.Result().Body)
}

func parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// series flattens the reconciler_ families to `name{label="value",…} → value`; a histogram
// gives its _count and _sum.
func series(families map[string]*dto.MetricFamily) map[string]float64 {
	out := make(map[string]float64)
	for name, f := range families {
		if !strings.HasPrefix(name, namespace+"_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[name+key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name+key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+key] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func TestMetricsExposeEveryFamilyWithItsType(t *testing.T) {
	got := make(map[string]string)
	for name, f := range scrape(t, New().Handler()) {
		if strings.HasPrefix(name, namespace+"_") {
			got[name] = f.GetType().String()
		}
	}
	want := map[string]string{
		"reconciler_reconcile_total":                        "COUNTER",
		"reconciler_reconcile_duration_seconds":             "HISTOGRAM",
		"reconciler_queue_depth":                            "GAUGE",
		"reconciler_objects":                                "GAUGE",
		"reconciler_container_restarts_total":               "COUNTER",
		"reconciler_manifest_errors":                        "GAUGE",
		"reconciler_manifest_warnings":                      "GAUGE",
		"reconciler_last_successful_pass_timestamp_seconds": "GAUGE",
		"reconciler_containerd_up":                          "GAUGE",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reconciler_ families (-want +got):\n%s", diff)
	}
}

func TestMetricsIncludeGoAndProcessCollectors(t *testing.T) {
	families := scrape(t, New().Handler())
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

func TestMetricsAfterObservations(t *testing.T) {
	m := New()
	m.ObserveReconcile("cell", "success", 20*time.Millisecond)
	m.ObserveReconcile("cell", "success", 30*time.Millisecond)
	m.ObserveReconcile("cell", "error", 50*time.Millisecond)
	m.ObserveReconcile("realm", "success", 2*time.Millisecond)
	m.ObserveReconcile("pass", "success", 1500*time.Millisecond)
	m.SetQueueDepth(7)
	m.SetObjectStates(map[[2]string]int{
		{"Realm", "Ready"}:   1,
		{"Space", "Ready"}:   2,
		{"Stack", "Pending"}: 3,
		{"Cell", "Ready"}:    4,
		{"Cell", "Failed"}:   1,
	})
	m.IncRestarts("always")
	m.IncRestarts("always")
	m.IncRestarts("on-failure")
	m.SetManifestErrors(2)
	m.SetManifestWarnings(5)
	m.PassSucceeded(time.Unix(1767323045, 500_000_000))
	m.SetContainerdUp(true)

	got := series(scrape(t, m.Handler()))
	want := map[string]float64{
		`reconciler_reconcile_total{level="cell",result="success"}`:  2,
		`reconciler_reconcile_total{level="cell",result="error"}`:    1,
		`reconciler_reconcile_total{level="realm",result="success"}`: 1,
		`reconciler_reconcile_total{level="realm",result="error"}`:   0,
		`reconciler_reconcile_total{level="space",result="success"}`: 0,
		`reconciler_reconcile_total{level="pass",result="success"}`:  1,
		`reconciler_reconcile_duration_seconds_count{level="cell"}`:  3,
		`reconciler_reconcile_duration_seconds_sum{level="cell"}`:    0.1,
		`reconciler_reconcile_duration_seconds_count{level="realm"}`: 1,
		`reconciler_reconcile_duration_seconds_count{level="stack"}`: 0,
		`reconciler_reconcile_duration_seconds_count{level="pass"}`:  1,
		`reconciler_reconcile_duration_seconds_sum{level="pass"}`:    1.5,
		`reconciler_queue_depth{}`:                                   7,
		`reconciler_objects{kind="Realm",state="Ready"}`:             1,
		`reconciler_objects{kind="Space",state="Ready"}`:             2,
		`reconciler_objects{kind="Stack",state="Pending"}`:           3,
		`reconciler_objects{kind="Cell",state="Ready"}`:              4,
		`reconciler_objects{kind="Cell",state="Failed"}`:             1,
		`reconciler_objects{kind="Cell",state="Blocked"}`:            0,
		`reconciler_objects{kind="Cell",state="Degraded"}`:           0,
		`reconciler_container_restarts_total{policy="always"}`:       2,
		`reconciler_container_restarts_total{policy="on-failure"}`:   1,
		`reconciler_manifest_errors{}`:                               2,
		`reconciler_manifest_warnings{}`:                             5,
		`reconciler_last_successful_pass_timestamp_seconds{}`:        1767323045.5,
		`reconciler_containerd_up{}`:                                 1,
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			delete(got, key) // the remaining pre-initialised zero series are checked elsewhere
		}
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
		t.Errorf("/metrics series (-want +got):\n%s", diff)
	}
}

func TestMetricsStartWithEveryKnownSeriesAtZero(t *testing.T) {
	got := series(scrape(t, New().Handler()))
	var nonZero []string
	for key, v := range got {
		if v != 0 {
			nonZero = append(nonZero, key)
		}
	}
	if len(nonZero) > 0 {
		t.Errorf("series not zero on a fresh registry: %v", nonZero)
	}
	count := func(prefix string) int {
		n := 0
		for key := range got {
			if strings.HasPrefix(key, prefix+"{") {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		family string
		want   int
	}{
		{"reconciler_reconcile_total", len(levels) * len(results)},
		{"reconciler_reconcile_duration_seconds_count", len(levels)},
		{"reconciler_objects", len(kinds) * len(states)},
		{"reconciler_container_restarts_total", len(policies)},
	} {
		if n := count(tc.family); n != tc.want {
			t.Errorf("%s has %d series, want %d", tc.family, n, tc.want)
		}
	}
}

func TestSetObjectStates(t *testing.T) {
	tests := []struct {
		name  string
		calls []map[[2]string]int
		want  map[string]float64 // the non-zero reconciler_objects series
	}{
		{
			name:  "sets the given counts",
			calls: []map[[2]string]int{{{"Cell", "Ready"}: 3, {"Stack", "Degraded"}: 1}},
			want: map[string]float64{
				`reconciler_objects{kind="Cell",state="Ready"}`:     3,
				`reconciler_objects{kind="Stack",state="Degraded"}`: 1,
			},
		},
		{
			name: "resets a state that the next call leaves out",
			calls: []map[[2]string]int{
				{{"Cell", "Ready"}: 3, {"Cell", "Failed"}: 2},
				{{"Cell", "Ready"}: 5},
			},
			want: map[string]float64{`reconciler_objects{kind="Cell",state="Ready"}`: 5},
		},
		{
			name: "resets everything on an empty map",
			calls: []map[[2]string]int{
				{{"Realm", "Ready"}: 1, {"Cell", "Blocked"}: 4},
				{},
			},
			want: map[string]float64{},
		},
		{
			name: "resets an unknown state it was given before",
			calls: []map[[2]string]int{
				{{"Cell", "Exited"}: 2},
				{{"Cell", "Ready"}: 1},
			},
			want: map[string]float64{`reconciler_objects{kind="Cell",state="Ready"}`: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			for _, counts := range tt.calls {
				m.SetObjectStates(counts)
			}
			got := make(map[string]float64)
			for key, v := range series(scrape(t, m.Handler())) {
				if strings.HasPrefix(key, "reconciler_objects{") && v != 0 {
					got[key] = v
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("non-zero reconciler_objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetObjectStatesKeepsAnUnknownStateItZeroed(t *testing.T) {
	m := New()
	m.SetObjectStates(map[[2]string]int{{"Cell", "Exited"}: 2})
	m.SetObjectStates(map[[2]string]int{})
	got := series(scrape(t, m.Handler()))
	v, ok := got[`reconciler_objects{kind="Cell",state="Exited"}`]
	if !ok || v != 0 {
		t.Errorf(`reconciler_objects{kind="Cell",state="Exited"} = %v (present %v), want 0 (present true)`, v, ok)
	}
}

func TestContainerdUpFollowsTheLastCall(t *testing.T) {
	m := New()
	var got []float64
	for _, up := range []bool{true, false, true} {
		m.SetContainerdUp(up)
		got = append(got, series(scrape(t, m.Handler()))[`reconciler_containerd_up{}`])
	}
	if want := []float64{1, 0, 1}; !slices.Equal(want, got) {
		t.Errorf("reconciler_containerd_up after true, false, true = %v, want %v", got, want)
	}
}

func TestMetricsAndHealthAreSafeForConcurrentUse(t *testing.T) {
	m := New()
	h := NewHealth(time.Minute)
	s := NewServer("127.0.0.1:0", m, h)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				m.ObserveReconcile("cell", "success", time.Millisecond)
				m.SetQueueDepth(j)
				m.SetObjectStates(map[[2]string]int{{"Cell", states[(i+j)%len(states)]}: j})
				m.IncRestarts("always")
				m.SetManifestErrors(j)
				m.SetManifestWarnings(j)
				m.PassSucceeded(time.Now())
				m.SetContainerdUp(j%2 == 0)
				h.Beat()
				h.SetFirstPassDone()
				h.SetContainerdUp(j%2 == 0)
				h.Ready()
				h.Healthy()
			}
		}()
	}
	for range 10 {
		get(t, s.srv.Handler, "/metrics")
		get(t, s.srv.Handler, "/readyz")
	}
	wg.Wait()
	got := series(scrape(t, m.Handler()))
	if v := got[`reconciler_reconcile_total{level="cell",result="success"}`]; v != 200 {
		t.Errorf(`reconciler_reconcile_total{level="cell",result="success"} = %v, want 200`, v)
	}
	if v := got[`reconciler_container_restarts_total{policy="always"}`]; v != 200 {
		t.Errorf(`reconciler_container_restarts_total{policy="always"} = %v, want 200`, v)
	}
}

func TestCgroupUsageReplacesItsSeries(t *testing.T) {
	m := New()
	m.SetCgroupUsage([]CgroupUsage{
		{Realm: "lab", MemoryBytes: 4096, CPUUsec: 1_500_000, Pids: 3},
		{Realm: "lab", Space: "web", Stack: "blog", Cell: "frontend", MemoryBytes: 1024, Pids: 2},
	})
	got := series(scrape(t, m.Handler()))
	for k, want := range map[string]float64{
		`reconciler_cgroup_memory_bytes{cell="",realm="lab",space="",stack=""}`:                1 << 12,
		`reconciler_cgroup_cpu_seconds{cell="",realm="lab",space="",stack=""}`:                 1.5,
		`reconciler_cgroup_pids{cell="frontend",realm="lab",space="web",stack="blog"}`:         2,
		`reconciler_cgroup_memory_bytes{cell="frontend",realm="lab",space="web",stack="blog"}`: 1024,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	m.SetCgroupUsage([]CgroupUsage{{Realm: "lab", MemoryBytes: 1}})
	got = series(scrape(t, m.Handler()))
	if _, ok := got[`reconciler_cgroup_pids{cell="frontend",realm="lab",space="web",stack="blog"}`]; ok {
		t.Error("a pruned cell's series survived")
	}
}
