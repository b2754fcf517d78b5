package hierarchy

import (
	"maps"
	"slices"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

// The tree never shares memory with the decoded documents: a Loader caches
// documents across passes, so a tree that aliased them could be corrupted by
// (or corrupt) a later pass. These copies are deep for everything mutable.

func copyContainer(in *v1beta1.Container) v1beta1.Container {
	out := *in
	out.Args = slices.Clone(in.Args)
	out.Env = slices.Clone(in.Env)
	out.Devices = slices.Clone(in.Devices)
	if in.Capabilities != nil {
		out.Capabilities = &v1beta1.Capabilities{
			Add:  slices.Clone(in.Capabilities.Add),
			Drop: slices.Clone(in.Capabilities.Drop),
		}
	}
	out.Volumes = slices.Clone(in.Volumes)
	for i := range out.Volumes {
		out.Volumes[i].SizeBytes = copyPtr(in.Volumes[i].SizeBytes)
	}
	out.Tmpfs = slices.Clone(in.Tmpfs)
	for i := range out.Tmpfs {
		out.Tmpfs[i].SizeBytes = copyPtr(in.Tmpfs[i].SizeBytes)
		out.Tmpfs[i].Options = slices.Clone(in.Tmpfs[i].Options)
	}
	if in.Resources != nil {
		out.Resources = &v1beta1.ContainerResources{
			MemoryLimitBytes: copyPtr(in.Resources.MemoryLimitBytes),
			CPUShares:        copyPtr(in.Resources.CPUShares),
			PidsLimit:        copyPtr(in.Resources.PidsLimit),
		}
	}
	out.RestartBackoffSeconds = copyPtr(in.RestartBackoffSeconds)
	out.RestartMaxRetries = copyPtr(in.RestartMaxRetries)
	out.StopGracePeriodSeconds = copyPtr(in.StopGracePeriodSeconds)
	return out
}

func copyResources(in *v1beta1.Resources) *v1beta1.Resources {
	if in == nil {
		return nil
	}
	out := &v1beta1.Resources{}
	if c := in.CPU; c != nil {
		out.CPU = &v1beta1.CPUResources{Weight: copyPtr(c.Weight), Max: c.Max, Cpus: c.Cpus, Mems: c.Mems}
	}
	if m := in.Memory; m != nil {
		out.Memory = &v1beta1.MemoryResources{
			Min: copyPtr(m.Min), Low: copyPtr(m.Low), High: copyPtr(m.High),
			Max: copyPtr(m.Max), SwapMax: copyPtr(m.SwapMax),
		}
	}
	if io := in.IO; io != nil {
		out.IO = &v1beta1.IOResources{Weight: copyPtr(io.Weight)}
		for _, l := range io.Max {
			out.IO.Max = append(out.IO.Max, v1beta1.IOLimit{
				Device: l.Device, Rbps: copyPtr(l.Rbps), Wbps: copyPtr(l.Wbps),
				Riops: copyPtr(l.Riops), Wiops: copyPtr(l.Wiops),
			})
		}
	}
	if p := in.Pids; p != nil {
		out.Pids = &v1beta1.PidsResources{Max: copyPtr(p.Max)}
	}
	return out
}

func copyCredentials(in []v1beta1.RegistryCredential) []v1beta1.RegistryCredential {
	return slices.Clone(in)
}

func copyMap(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	return maps.Clone(in)
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
