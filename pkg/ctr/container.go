package ctr

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// annotationLogPath carries ContainerSpec.LogPath in the OCI spec so that
// StartContainer, given only an ID, knows where output goes.
const annotationLogPath = "io.kukeon.reconciler.log-path"

// shimGroupLabel makes the runc v2 shim serve every container with the same
// value from one process.
const shimGroupLabel = "io.containerd.runc.v2.group"

// CreateContainer creates container spec.ID in namespace ns from an image
// already present there (see EnsureImage), with a new snapshot of it (key
// spec.ID, carrying our managed-by label). The task is not started.
//
// It is idempotent over an interrupted create of the same ID: what such a
// create left (see clearLeftovers for exactly what counts) is removed and
// the container created anew. It returns an error matching
// ErrAlreadyExists if a container with that ID exists — matching
// ErrNotOwned as well when that container, or a snapshot holding the key,
// is not ours, which is then left untouched — and ErrImageNotPresent if the
// image is missing.
//
// The create runs under a lease of its own (see openCreateLease), so a
// failure leaks nothing: on error the lease is deleted synchronously and
// containerd's garbage collector takes the prepared snapshot with it.
func (c *Client) CreateContainer(ctx context.Context, ns string, spec ContainerSpec) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	nctx := nsCtx(ctx, ns)
	name := NormalizeImage(spec.Image)
	meta, err := cc.ImageService().Get(nctx, name)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("create container %s: image %s in namespace %s: %w", spec.ID, name, ns, ErrImageNotPresent)
	}
	if err != nil {
		return c.fail(cc, "create container "+spec.ID, err)
	}
	img := client.NewImage(cc, meta)
	if spec.LogPath == "" {
		spec.LogPath = c.logPath(ns, spec.ID)
	}

	labels := make(map[string]string, len(spec.Labels)+2)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[LabelManagedBy] = ManagedByValue
	if g := shimGroup(spec.Labels); c.cfg.GroupShims && g != "" {
		labels[shimGroupLabel] = g
	}
	opts := []client.NewContainerOpts{
		client.WithImage(img),
		client.WithNewSnapshot(spec.ID, img, snapshots.WithLabels(map[string]string{LabelManagedBy: ManagedByValue})),
		client.WithNewSpec(SpecOpts(c.withCgroupsPath(ns, spec), img, c.cfg.PauseBinary)...),
		client.WithContainerLabels(labels),
	}

	release, err := c.claimCreate(ns, spec.ID)
	if err != nil {
		return err
	}
	defer release()
	lease, interrupted, err := c.openCreateLease(nctx, cc, ns, spec.ID)
	if err != nil {
		return err
	}
	lctx := leases.WithLease(nctx, lease.ID)
	_, err = cc.NewContainer(lctx, spec.ID, opts...)
	if errdefs.IsNotFound(err) {
		// The image is present but not unpacked for this snapshotter yet.
		if uerr := img.Unpack(nctx, ""); uerr != nil {
			return c.closeCreateLease(nctx, cc, ns, spec.ID, lease, c.fail(cc, "unpack image "+name+" in "+ns, uerr))
		}
		_, err = cc.NewContainer(lctx, spec.ID, opts...)
	}
	if errdefs.IsAlreadyExists(err) {
		if cerr := c.clearLeftovers(nctx, cc, ns, spec.ID, interrupted); cerr != nil {
			return c.closeCreateLease(nctx, cc, ns, spec.ID, lease, cerr)
		}
		_, err = cc.NewContainer(lctx, spec.ID, opts...)
	}
	return c.closeCreateLease(nctx, cc, ns, spec.ID, lease, c.fail(cc, "create container "+spec.ID+" in "+ns, err))
}

// shimGroup is the cell key of a container's labels, "" when incomplete.
func shimGroup(l map[string]string) string {
	if l[LabelSpace] == "" || l[LabelStack] == "" || l[LabelCell] == "" {
		return ""
	}
	return l[LabelSpace] + "_" + l[LabelStack] + "_" + l[LabelCell]
}

// SpecOpts returns the OCI spec options for spec on top of containerd's
// default spec: image config (args, env, user, cwd) first, then ours, so
// ours win. img may be nil (no image config), which tests use.
func SpecOpts(spec ContainerSpec, img oci.Image, pauseBinary string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if img != nil {
		opts = append(opts, oci.WithImageConfig(img))
	}
	switch {
	case spec.Pause:
		opts = append(opts, oci.WithProcessArgs(PauseMountPath, "pause"))
	case spec.Command != "":
		opts = append(opts, oci.WithProcessArgs(append([]string{spec.Command}, spec.Args...)...))
	case len(spec.Args) > 0:
		opts = append(opts, oci.WithProcessArgs(spec.Args...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	// A joined UTS namespace belongs to the root container: runc refuses
	// to set a hostname without a private one.
	if spec.Hostname != "" && spec.JoinPID == 0 {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	if spec.User != "" {
		opts = append(opts, oci.WithUser(spec.User))
	}
	if spec.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	}
	opts = append(opts, capabilityOpts(spec.CapAdd, spec.CapDrop)...)
	if spec.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}

	var mounts []specs.Mount
	for _, m := range spec.Mounts {
		mounts = append(mounts, ociMount(m))
	}
	if spec.Pause {
		mounts = append(mounts, specs.Mount{
			Type: "bind", Source: pauseBinary, Destination: PauseMountPath,
			Options: []string{"rbind", "ro"},
		})
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	for _, d := range spec.Devices {
		opts = append(opts, oci.WithLinuxDevice(d, "rwm"))
	}

	if r := spec.Resources.MemoryLimitBytes; r != nil {
		opts = append(opts, oci.WithMemoryLimit(uint64(*r)))
	}
	if r := spec.Resources.PidsLimit; r != nil {
		opts = append(opts, oci.WithPidsLimit(*r))
	}
	if r := spec.Resources.CPUShares; r != nil {
		opts = append(opts, oci.WithCPUShares(uint64(*r)))
	}
	if spec.CgroupsPath != "" {
		opts = append(opts, oci.WithCgroup(spec.CgroupsPath))
	}

	if spec.HostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	}
	if spec.JoinPID != 0 {
		join := []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace}
		if !spec.HostNetwork {
			join = append(join, specs.NetworkNamespace)
		}
		for _, t := range join {
			opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{
				Type: t, Path: "/proc/" + strconv.FormatUint(uint64(spec.JoinPID), 10) + "/ns/" + nsFile(t),
			}))
		}
	}
	if spec.HostPID {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace}))
	if spec.NestedCgroup {
		opts = append(opts, withCgroup2Mount)
	}
	opts = append(opts, oci.WithAnnotations(map[string]string{annotationLogPath: spec.LogPath}))
	return opts
}

func nsFile(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "net"
	case specs.IPCNamespace:
		return "ipc"
	case specs.UTSNamespace:
		return "uts"
	}
	return string(t)
}

func ociMount(m Mount) specs.Mount {
	if m.Kind == "tmpfs" {
		opts := []string{"nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		if m.SizeBytes > 0 {
			opts = append(opts, "size="+strconv.FormatInt(m.SizeBytes, 10))
		}
		return specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Target, Options: append(opts, m.Options...)}
	}
	mode := "rw"
	if m.ReadOnly {
		mode = "ro"
	}
	return specs.Mount{Type: "bind", Source: m.Source, Destination: m.Target, Options: append([]string{"rbind", mode}, m.Options...)}
}

// capabilityOpts adds and drops capabilities given with or without the CAP_
// prefix, in any case; "ALL" drops or adds every capability.
func capabilityOpts(add, drop []string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	var dropped []string
	for _, d := range drop {
		if n := capName(d); n == "CAP_ALL" {
			opts = append(opts, oci.WithCapabilities(nil))
		} else {
			dropped = append(dropped, n)
		}
	}
	if len(dropped) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(dropped))
	}
	var added []string
	for _, a := range add {
		if n := capName(a); n == "CAP_ALL" {
			opts = append(opts, oci.WithAllKnownCapabilities)
		} else {
			added = append(added, n)
		}
	}
	if len(added) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(added))
	}
	return opts
}

func capName(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "CAP_") {
		s = "CAP_" + s
	}
	return s
}

// withCgroup2Mount replaces the /sys/fs/cgroup mount by a read-write cgroup2
// mount, for containers that run their own cgroup manager (nested
// runtimes). With the private cgroup namespace it shows the container's
// own subtree.
func withCgroup2Mount(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	out := s.Mounts[:0]
	for _, m := range s.Mounts {
		if m.Destination != "/sys/fs/cgroup" {
			out = append(out, m)
		}
	}
	s.Mounts = append(out, specs.Mount{
		Destination: "/sys/fs/cgroup", Type: "cgroup2", Source: "cgroup2",
		Options: []string{"nosuid", "noexec", "nodev", "rw"},
	})
	return nil
}

// withCgroupsPath fills an empty CgroupsPath from Config.CgroupParent, so
// no container of ours lands outside the tree we were given.
func (c *Client) withCgroupsPath(ns string, spec ContainerSpec) ContainerSpec {
	if spec.CgroupsPath == "" && c.cfg.CgroupParent != "" {
		spec.CgroupsPath = path.Join(c.cfg.CgroupParent, ns, spec.ID)
	}
	return spec
}
