package hierarchy

import (
	"testing"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

func TestSpecHash(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	base := func() (*Cell, *Container) {
		c := &Cell{ID: "frontend"}
		ct := &Container{Spec: v1beta1.Container{
			ID:    "web",
			Image: "docker.io/library/busybox:latest",
			Args:  []string{"sleep", "3600"},
			Env:   []string{"A=1", "B=2"},
		}}
		return c, ct
	}
	tests := []struct {
		name   string
		change func(c *Cell, ct *Container)
		same   bool
	}{
		{"is stable when nothing changes", func(*Cell, *Container) {}, true},
		{"treats empty and nil slices alike", func(_ *Cell, ct *Container) {
			ct.Spec.Devices, ct.Spec.Volumes, ct.Spec.Tmpfs = []string{}, []v1beta1.Volume{}, []v1beta1.Tmpfs{}
		}, true},
		{"treats an empty capabilities or resources block as none", func(_ *Cell, ct *Container) {
			ct.Spec.Capabilities = &v1beta1.Capabilities{Add: []string{}}
			ct.Spec.Resources = &v1beta1.ContainerResources{}
		}, true},
		{"changes with capabilities", func(_ *Cell, ct *Container) {
			ct.Spec.Capabilities = &v1beta1.Capabilities{Add: []string{"NET_ADMIN", "SYS_TIME"}}
		}, false},
		{"ignores restartPolicy and its knobs", func(_ *Cell, ct *Container) {
			ct.Spec.RestartPolicy = v1beta1.RestartAlways
			ct.Spec.RestartBackoffSeconds = i64(9)
			ct.Spec.RestartMaxRetries = i64(9)
		}, true},
		{"ignores imagePullPolicy and stopGracePeriodSeconds", func(_ *Cell, ct *Container) {
			ct.Spec.ImagePullPolicy = v1beta1.PullAlways
			ct.Spec.StopGracePeriodSeconds = i64(60)
		}, true},
		{"ignores the cell's labels and annotations", func(c *Cell, _ *Container) {
			c.Labels = map[string]string{"b": "2", "a": "1"}
			c.Annotations = map[string]string{"x": "y"}
		}, true},
		{"changes with volumes", func(_ *Cell, ct *Container) {
			ct.Spec.Volumes = []v1beta1.Volume{{Kind: v1beta1.VolumeBind, Source: "/a", Target: "/b"}}
		}, false},
		{"changes with env", func(_ *Cell, ct *Container) { ct.Spec.Env = []string{"A=1", "B=3"} }, false},
		{"changes with env order", func(_ *Cell, ct *Container) { ct.Spec.Env = []string{"B=2", "A=1"} }, false},
		{"changes with user", func(_ *Cell, ct *Container) { ct.Spec.User = "1000:1000" }, false},
		{"changes with image", func(_ *Cell, ct *Container) { ct.Spec.Image = "alpine" }, false},
		{"changes with command", func(_ *Cell, ct *Container) { ct.Spec.Command = "/bin/sh" }, false},
		{"changes with args", func(_ *Cell, ct *Container) { ct.Spec.Args = []string{"sleep", "60"} }, false},
		{"changes with privileged", func(_ *Cell, ct *Container) { ct.Spec.Privileged = true }, false},
		{"changes with hostNetwork", func(_ *Cell, ct *Container) { ct.Spec.HostNetwork = true }, false},
		{"changes with resources", func(_ *Cell, ct *Container) {
			ct.Spec.Resources = &v1beta1.ContainerResources{MemoryLimitBytes: &v1beta1.Quantity{Bytes: 64 << 20}}
		}, false},
		{"changes with pidsLimit", func(_ *Cell, ct *Container) {
			ct.Spec.Resources = &v1beta1.ContainerResources{PidsLimit: i64(10)}
		}, false},
		{"changes with the cell id, the hostname", func(c *Cell, _ *Container) { c.ID = "other" }, false},
		{"changes with nestedCgroupRuntime", func(c *Cell, _ *Container) { c.NestedCgroupRuntime = true }, false},
		{"changes for a synthesized root", func(_ *Cell, ct *Container) { ct.Synthesized = true }, false},
	}
	c0, ct0 := base()
	want := SpecHash(c0, ct0)
	if len(want) != 16 {
		t.Fatalf("SpecHash = %q, want 16 hex digits", want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ct := base()
			tt.change(c, ct)
			got := SpecHash(c, ct)
			if tt.same && got != want {
				t.Errorf("SpecHash = %s, want unchanged %s", got, want)
			}
			if !tt.same && got == want {
				t.Errorf("SpecHash = %s, want it to change", got)
			}
		})
	}
}

func TestSpecHashEquivalences(t *testing.T) {
	tests := []struct {
		name string
		a, b v1beta1.Container
	}{
		{
			name: "capabilities are sets",
			a:    v1beta1.Container{Capabilities: &v1beta1.Capabilities{Add: []string{"NET_ADMIN", "SYS_TIME"}}},
			b:    v1beta1.Container{Capabilities: &v1beta1.Capabilities{Add: []string{"SYS_TIME", "NET_ADMIN", "SYS_TIME"}}},
		},
		{
			name: "an empty volume kind is bind",
			a:    v1beta1.Container{Volumes: []v1beta1.Volume{{Source: "/a", Target: "/b"}}},
			b:    v1beta1.Container{Volumes: []v1beta1.Volume{{Kind: v1beta1.VolumeBind, Source: "/a", Target: "/b"}}},
		},
		{
			name: "quantities compare by bytes",
			a:    v1beta1.Container{Resources: &v1beta1.ContainerResources{MemoryLimitBytes: &v1beta1.Quantity{Bytes: 1 << 20}}},
			b:    v1beta1.Container{Resources: &v1beta1.ContainerResources{MemoryLimitBytes: &v1beta1.Quantity{Bytes: 1048576}}},
		},
		{
			name: "nil and empty args are the same",
			a:    v1beta1.Container{Args: nil},
			b:    v1beta1.Container{Args: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cell := &Cell{ID: "c"}
			if a, b := SpecHash(cell, &Container{Spec: tt.a}), SpecHash(cell, &Container{Spec: tt.b}); a != b {
				t.Errorf("SpecHash differs: %s != %s", a, b)
			}
		})
	}
}
