package ctr_test

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kukeon/reconciler/pkg/ctr"
)

func generate(t *testing.T, spec ctr.ContainerSpec) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: spec.ID}, ctr.SpecOpts(spec, nil, "/usr/bin/reconciler")...)
	if err != nil {
		t.Fatalf("GenerateSpec: %v", err)
	}
	return s
}

func namespacesOf(s *oci.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		out[n.Type] = n.Path
	}
	return out
}

func mountAt(s *oci.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func int64p(v int64) *int64 { return &v }

func TestSpecOpts(t *testing.T) {
	tests := []struct {
		name  string
		spec  ctr.ContainerSpec
		check func(t *testing.T, s *oci.Spec)
	}{
		{
			name: "command and args make the argv",
			spec: ctr.ContainerSpec{Command: "sh", Args: []string{"-c", "echo hi"}},
			check: func(t *testing.T, s *oci.Spec) {
				if diff := cmp.Diff([]string{"sh", "-c", "echo hi"}, s.Process.Args); diff != "" {
					t.Errorf("args (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "args alone replace the image entrypoint and cmd",
			spec: ctr.ContainerSpec{Args: []string{"sleep", "1"}},
			check: func(t *testing.T, s *oci.Spec) {
				if diff := cmp.Diff([]string{"sleep", "1"}, s.Process.Args); diff != "" {
					t.Errorf("args (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "a pause root runs the bind-mounted reconciler and ignores command",
			spec: ctr.ContainerSpec{Pause: true, Command: "ignored"},
			check: func(t *testing.T, s *oci.Spec) {
				if diff := cmp.Diff([]string{ctr.PauseMountPath, "pause"}, s.Process.Args); diff != "" {
					t.Errorf("args (-want +got):\n%s", diff)
				}
				m := mountAt(s, ctr.PauseMountPath)
				if m == nil || m.Source != "/usr/bin/reconciler" || !slices.Contains(m.Options, "ro") {
					t.Errorf("pause mount = %+v, want a read-only bind of the reconciler", m)
				}
			},
		},
		{
			name: "our env wins over earlier values",
			spec: ctr.ContainerSpec{Env: []string{"PATH=/bin", "FOO=bar"}},
			check: func(t *testing.T, s *oci.Spec) {
				if !slices.Contains(s.Process.Env, "PATH=/bin") || !slices.Contains(s.Process.Env, "FOO=bar") {
					t.Errorf("env = %v", s.Process.Env)
				}
				for _, e := range s.Process.Env {
					if e != "PATH=/bin" && len(e) > 5 && e[:5] == "PATH=" {
						t.Errorf("a second PATH survived: %v", s.Process.Env)
					}
				}
			},
		},
		{
			name: "a workload joins the root's net, ipc and uts and gets its own cgroup namespace",
			spec: ctr.ContainerSpec{JoinPID: 42, Hostname: "ignored", CgroupsPath: "/kukeon/r/s/t/c/id"},
			check: func(t *testing.T, s *oci.Spec) {
				got := namespacesOf(s)
				want := map[specs.LinuxNamespaceType]string{
					specs.PIDNamespace: "", specs.MountNamespace: "", specs.CgroupNamespace: "",
					specs.NetworkNamespace: "/proc/42/ns/net", specs.IPCNamespace: "/proc/42/ns/ipc", specs.UTSNamespace: "/proc/42/ns/uts",
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("namespaces (-want +got):\n%s", diff)
				}
				if s.Hostname != "" {
					t.Errorf("hostname = %q, want none in a joined UTS namespace", s.Hostname)
				}
				if s.Linux.CgroupsPath != "/kukeon/r/s/t/c/id" {
					t.Errorf("cgroupsPath = %q", s.Linux.CgroupsPath)
				}
			},
		},
		{
			name: "host network keeps the host netns even when joining a root",
			spec: ctr.ContainerSpec{JoinPID: 42, HostNetwork: true, HostPID: true},
			check: func(t *testing.T, s *oci.Spec) {
				got := namespacesOf(s)
				if _, ok := got[specs.NetworkNamespace]; ok {
					t.Errorf("network namespace present: %v", got)
				}
				if _, ok := got[specs.PIDNamespace]; ok {
					t.Errorf("pid namespace present with HostPID: %v", got)
				}
				if got[specs.IPCNamespace] != "/proc/42/ns/ipc" {
					t.Errorf("ipc = %q", got[specs.IPCNamespace])
				}
				if mountAt(s, "/etc/resolv.conf") == nil || mountAt(s, "/etc/hosts") == nil {
					t.Error("host resolv.conf and hosts are not mounted")
				}
			},
		},
		{
			name: "capabilities are added and dropped with or without the CAP_ prefix",
			spec: ctr.ContainerSpec{CapAdd: []string{"net_admin", "CAP_SYS_TIME"}, CapDrop: []string{"chown"}},
			check: func(t *testing.T, s *oci.Spec) {
				b := s.Process.Capabilities.Bounding
				if !slices.Contains(b, "CAP_NET_ADMIN") || !slices.Contains(b, "CAP_SYS_TIME") || slices.Contains(b, "CAP_CHOWN") {
					t.Errorf("bounding = %v", b)
				}
			},
		},
		{
			name: "volumes, tmpfs, read-only rootfs, user and cwd",
			spec: ctr.ContainerSpec{
				ReadOnlyRootfs: true, User: "1000:1000", WorkingDir: "/srv",
				Mounts: []ctr.Mount{
					{Kind: "bind", Source: "/data", Target: "/data", ReadOnly: true},
					{Kind: "tmpfs", Target: "/scratch", SizeBytes: 1 << 20},
				},
			},
			check: func(t *testing.T, s *oci.Spec) {
				if !s.Root.Readonly {
					t.Error("rootfs is writable")
				}
				if s.Process.User.UID != 1000 || s.Process.User.GID != 1000 || s.Process.Cwd != "/srv" {
					t.Errorf("user %+v cwd %q", s.Process.User, s.Process.Cwd)
				}
				if m := mountAt(s, "/data"); m == nil || m.Type != "bind" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rbind") {
					t.Errorf("bind mount = %+v", m)
				}
				if m := mountAt(s, "/scratch"); m == nil || m.Type != "tmpfs" || !slices.Contains(m.Options, "size=1048576") {
					t.Errorf("tmpfs mount = %+v", m)
				}
			},
		},
		{
			name: "per-container resources become linux.resources",
			spec: ctr.ContainerSpec{Resources: ctr.Resources{MemoryLimitBytes: int64p(64 << 20), PidsLimit: int64p(100), CPUShares: int64p(512)}},
			check: func(t *testing.T, s *oci.Spec) {
				r := s.Linux.Resources
				if *r.Memory.Limit != 64<<20 || r.Pids.Limit == nil || *r.Pids.Limit != 100 || *r.CPU.Shares != 512 {
					t.Errorf("resources = %+v %+v %+v", r.Memory, r.Pids, r.CPU)
				}
			},
		},
		{
			name: "a nested runtime gets a writable cgroup2 mount",
			spec: ctr.ContainerSpec{NestedCgroup: true},
			check: func(t *testing.T, s *oci.Spec) {
				m := mountAt(s, "/sys/fs/cgroup")
				if m == nil || m.Type != "cgroup2" || !slices.Contains(m.Options, "rw") {
					t.Errorf("cgroup mount = %+v", m)
				}
			},
		},
		{
			name: "privileged gets every device",
			spec: ctr.ContainerSpec{Privileged: true, Devices: []string{"/dev/null"}},
			check: func(t *testing.T, s *oci.Spec) {
				d := s.Linux.Resources.Devices
				if len(d) == 0 || !d[0].Allow || d[0].Access != "rwm" || d[0].Type != "" {
					t.Errorf("device rules = %+v, want allow all", d)
				}
				if s.Process.Capabilities == nil || !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
					t.Error("privileged lacks CAP_SYS_ADMIN")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.ID = "c"
			tt.check(t, generate(t, tt.spec))
		})
	}
}
