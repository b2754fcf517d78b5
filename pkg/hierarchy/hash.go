package hierarchy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

// specHashVersion is part of every hash. Bump it when the set of inputs below
// changes: every container created under the old version is then recreated
// once, which is the honest consequence of changing what "recreate" means.
const specHashVersion = 1

// SpecHash is the contract of "what recreates a container": a change of any
// input below changes the hash, and the controller recreates a container
// whose kukeon.io/spec-hash label differs from the desired hash.
//
// Inputs (everything that is baked into the container's OCI spec or rootfs):
//   - the container's image, command, args, workingDir, env (order kept: a
//     later duplicate wins), user, privileged, hostNetwork, hostPID,
//     readOnlyRootFilesystem, capabilities (add and drop, as sets), volumes
//     (with the kind defaulted to bind), tmpfs, devices and resources
//     (memoryLimitBytes, cpuShares, pidsLimit);
//   - of the cell: its id (the hostname of every container in it) and
//     nestedCgroupRuntime (it adds a cgroup2 mount);
//   - whether the container is a synthesized root (it runs the reconciler's
//     own binary instead of the image's entrypoint).
//
// Not inputs, because they are acted on without touching the container:
// restartPolicy, restartBackoffSeconds, restartMaxRetries, imagePullPolicy,
// stopGracePeriodSeconds, labels and annotations. The container's id and root
// flag are not inputs either: they are its identity, not its spec.
//
// Nil and empty slices hash the same, and so do a nil and an all-empty
// capabilities or resources block. The result is the first 16 hex digits of a
// sha256 over a canonical JSON projection.
func SpecHash(cell *Cell, c *Container) string {
	in := hashInput{
		Version:                specHashVersion,
		CellID:                 cell.ID,
		NestedCgroupRuntime:    cell.NestedCgroupRuntime,
		Synthesized:            c.Synthesized,
		Image:                  c.Spec.Image,
		Command:                c.Spec.Command,
		Args:                   c.Spec.Args,
		WorkingDir:             c.Spec.WorkingDir,
		Env:                    c.Spec.Env,
		User:                   c.Spec.User,
		Privileged:             c.Spec.Privileged,
		HostNetwork:            c.Spec.HostNetwork,
		HostPID:                c.Spec.HostPID,
		ReadOnlyRootFilesystem: c.Spec.ReadOnlyRootFilesystem,
		Devices:                c.Spec.Devices,
	}
	if caps := c.Spec.Capabilities; caps != nil && (len(caps.Add) > 0 || len(caps.Drop) > 0) {
		in.Capabilities = &hashCapabilities{Add: sortedSet(caps.Add), Drop: sortedSet(caps.Drop)}
	}
	for _, v := range c.Spec.Volumes {
		kind := v.Kind
		if kind == "" {
			kind = v1beta1.VolumeBind
		}
		in.Volumes = append(in.Volumes, hashVolume{
			Kind: kind, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly,
			SizeBytes: quantityString(v.SizeBytes),
		})
	}
	for _, t := range c.Spec.Tmpfs {
		in.Tmpfs = append(in.Tmpfs, hashTmpfs{
			Path: t.Path, SizeBytes: quantityString(t.SizeBytes), Options: t.Options,
		})
	}
	if r := c.Spec.Resources; r != nil && (r.MemoryLimitBytes != nil || r.CPUShares != nil || r.PidsLimit != nil) {
		in.Resources = &hashResources{
			MemoryLimitBytes: quantityString(r.MemoryLimitBytes),
			CPUShares:        r.CPUShares,
			PidsLimit:        r.PidsLimit,
		}
	}
	b, err := json.Marshal(in)
	if err != nil {
		// The projection holds only strings, bools, ints and slices of them.
		panic("hierarchy: marshal spec hash input: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// hashInput is the canonical projection SpecHash hashes. It deliberately does
// not reuse the manifest types, so that a change of their JSON encoding (a
// Quantity rendered differently, a field added) cannot change hashes and
// recreate containers by accident. omitempty makes nil and empty equal.
type hashInput struct {
	Version                int               `json:"v"`
	CellID                 string            `json:"cellId"`
	NestedCgroupRuntime    bool              `json:"nestedCgroupRuntime,omitempty"`
	Synthesized            bool              `json:"synthesized,omitempty"`
	Image                  string            `json:"image"`
	Command                string            `json:"command,omitempty"`
	Args                   []string          `json:"args,omitempty"`
	WorkingDir             string            `json:"workingDir,omitempty"`
	Env                    []string          `json:"env,omitempty"`
	User                   string            `json:"user,omitempty"`
	Privileged             bool              `json:"privileged,omitempty"`
	HostNetwork            bool              `json:"hostNetwork,omitempty"`
	HostPID                bool              `json:"hostPID,omitempty"`
	ReadOnlyRootFilesystem bool              `json:"readOnlyRootFilesystem,omitempty"`
	Capabilities           *hashCapabilities `json:"capabilities,omitempty"`
	Volumes                []hashVolume      `json:"volumes,omitempty"`
	Tmpfs                  []hashTmpfs       `json:"tmpfs,omitempty"`
	Devices                []string          `json:"devices,omitempty"`
	Resources              *hashResources    `json:"resources,omitempty"`
}

type hashCapabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

type hashVolume struct {
	Kind      string `json:"kind"`
	Source    string `json:"source,omitempty"`
	Target    string `json:"target"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	SizeBytes string `json:"sizeBytes,omitempty"`
}

type hashTmpfs struct {
	Path      string   `json:"path"`
	SizeBytes string   `json:"sizeBytes,omitempty"`
	Options   []string `json:"options,omitempty"`
}

type hashResources struct {
	MemoryLimitBytes string `json:"memoryLimitBytes,omitempty"`
	CPUShares        *int64 `json:"cpuShares,omitempty"`
	PidsLimit        *int64 `json:"pidsLimit,omitempty"`
}

// quantityString renders q for hashing: "" for nil, "max", or the byte count,
// so 1Mi and 1048576 hash the same.
func quantityString(q *v1beta1.Quantity) string {
	switch {
	case q == nil:
		return ""
	case q.Max:
		return "max"
	default:
		return strconv.FormatInt(q.Bytes, 10)
	}
}

// sortedSet returns a sorted copy of s without duplicates (nil when empty).
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
