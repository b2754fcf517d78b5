// Package v1beta1 holds the manifest types of the reconciler: Realm, Space,
// Stack and Cell, with the Container spec embedded in a Cell. The JSON keys
// are kukeon's (github.com/eminwux/kukeon), so a manifest written for kukeon
// decodes here unchanged.
package v1beta1

// APIVersion is the only apiVersion this package accepts. An empty apiVersion
// defaults to it.
const APIVersion = "v1beta1"

// Kinds of the hierarchy, in create order.
const (
	KindRealm = "Realm"
	KindSpace = "Space"
	KindStack = "Stack"
	KindCell  = "Cell"
)

// DefaultNamespaceSuffix is appended to a realm name to form its containerd
// namespace when spec.namespace is empty.
const DefaultNamespaceSuffix = "kukeon.io"

// SystemRealm is kukeon's own realm. It is never created, changed or pruned.
const SystemRealm = "kuke-system"

// TypeMeta is the apiVersion and kind of a document.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// ObjectMeta is the metadata of a document.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Realm is a containerd namespace plus the top cgroup of its subtree.
type Realm struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     RealmSpec  `json:"spec"`
}

// RealmSpec is the desired state of a Realm.
type RealmSpec struct {
	// Namespace is the containerd namespace; empty means <name>.<suffix>.
	Namespace           string               `json:"namespace,omitempty"`
	RegistryCredentials []RegistryCredential `json:"registryCredentials,omitempty"`
	Resources           *Resources           `json:"resources,omitempty"`
}

// RegistryCredential authenticates image pulls for one registry.
type RegistryCredential struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	ServerAddress string `json:"serverAddress,omitempty"`
}

// Space is a cgroup below a realm.
type Space struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     SpaceSpec  `json:"spec"`
}

// SpaceSpec is the desired state of a Space.
type SpaceSpec struct {
	RealmID   string     `json:"realmId"`
	Resources *Resources `json:"resources,omitempty"`
}

// Stack is a cgroup below a space.
type Stack struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     StackSpec  `json:"spec"`
}

// StackSpec is the desired state of a Stack. ID is cosmetic (kukeon keeps it).
type StackSpec struct {
	ID        string     `json:"id,omitempty"`
	RealmID   string     `json:"realmId"`
	SpaceID   string     `json:"spaceId"`
	Resources *Resources `json:"resources,omitempty"`
}

// Cell is a pod-like group of containers sharing the net, IPC and UTS
// namespaces of its root container.
type Cell struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     CellSpec   `json:"spec"`
}

// CellSpec is the desired state of a Cell.
type CellSpec struct {
	// ID is used in containerd IDs; empty means metadata.name.
	ID                  string      `json:"id,omitempty"`
	RealmID             string      `json:"realmId"`
	SpaceID             string      `json:"spaceId"`
	StackID             string      `json:"stackId"`
	RootContainerID     string      `json:"rootContainerId,omitempty"`
	Containers          []Container `json:"containers"`
	Resources           *Resources  `json:"resources,omitempty"`
	AutoDelete          bool        `json:"autoDelete,omitempty"`
	NestedCgroupRuntime bool        `json:"nestedCgroupRuntime,omitempty"`
}

// Restart policies of a container.
const (
	RestartNever     = "never"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// Image pull policies of a container.
const (
	PullIfNotPresent = "IfNotPresent"
	PullAlways       = "Always"
	PullNever        = "Never"
)

// Defaults of a container.
const (
	DefaultRestartBackoffSeconds  = 1
	DefaultRestartMaxRetries      = 5
	DefaultStopGracePeriodSeconds = 10
)

// Container is one container of a Cell.
type Container struct {
	ID   string `json:"id"`
	Root bool   `json:"root,omitempty"`
	// Image is an image reference, pulled (or imported) into the realm's namespace.
	Image string `json:"image"`
	// Command is argv[0]. With Command set argv is [Command]+Args; with only
	// Args set they replace the image's entrypoint and cmd; with neither the
	// image's ENTRYPOINT+CMD run.
	Command                string              `json:"command,omitempty"`
	Args                   []string            `json:"args,omitempty"`
	WorkingDir             string              `json:"workingDir,omitempty"`
	Env                    []string            `json:"env,omitempty"`
	User                   string              `json:"user,omitempty"`
	Privileged             bool                `json:"privileged,omitempty"`
	HostNetwork            bool                `json:"hostNetwork,omitempty"`
	HostPID                bool                `json:"hostPID,omitempty"`
	ReadOnlyRootFilesystem bool                `json:"readOnlyRootFilesystem,omitempty"`
	Capabilities           *Capabilities       `json:"capabilities,omitempty"`
	Volumes                []Volume            `json:"volumes,omitempty"`
	Tmpfs                  []Tmpfs             `json:"tmpfs,omitempty"`
	Devices                []string            `json:"devices,omitempty"`
	Resources              *ContainerResources `json:"resources,omitempty"`
	RestartPolicy          string              `json:"restartPolicy,omitempty"`
	RestartBackoffSeconds  *int64              `json:"restartBackoffSeconds,omitempty"`
	RestartMaxRetries      *int64              `json:"restartMaxRetries,omitempty"`
	ImagePullPolicy        string              `json:"imagePullPolicy,omitempty"`
	StopGracePeriodSeconds *int64              `json:"stopGracePeriodSeconds,omitempty"`
}

// Capabilities are deltas against the runtime's default capability set.
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Volume kinds.
const (
	VolumeBind  = "bind"
	VolumeTmpfs = "tmpfs"
)

// Volume is a bind or tmpfs mount into a container.
type Volume struct {
	Kind      string    `json:"kind,omitempty"` // bind (default) or tmpfs
	Source    string    `json:"source,omitempty"`
	Target    string    `json:"target"`
	ReadOnly  bool      `json:"readOnly,omitempty"`
	SizeBytes *Quantity `json:"sizeBytes,omitempty"`
}

// Tmpfs is kukeon's tmpfs entry.
type Tmpfs struct {
	Path      string    `json:"path"`
	SizeBytes *Quantity `json:"sizeBytes,omitempty"`
	Options   []string  `json:"options,omitempty"`
}

// ContainerResources are kukeon's three per-container knobs, written by the
// runtime into the container's own cgroup.
type ContainerResources struct {
	MemoryLimitBytes *Quantity `json:"memoryLimitBytes,omitempty"`
	CPUShares        *int64    `json:"cpuShares,omitempty"`
	PidsLimit        *int64    `json:"pidsLimit,omitempty"`
}

// Resources are the cgroup v2 limits of a level (realm, space, stack, cell).
type Resources struct {
	CPU    *CPUResources    `json:"cpu,omitempty"`
	Memory *MemoryResources `json:"memory,omitempty"`
	IO     *IOResources     `json:"io,omitempty"`
	Pids   *PidsResources   `json:"pids,omitempty"`
}

// CPUResources map to cpu.weight, cpu.max, cpuset.cpus and cpuset.mems.
type CPUResources struct {
	Weight *int64 `json:"weight,omitempty"`
	Max    string `json:"max,omitempty"` // "max" or "<quota> [<period>]"
	Cpus   string `json:"cpus,omitempty"`
	Mems   string `json:"mems,omitempty"`
}

// MemoryResources map to memory.min, memory.low, memory.high, memory.max and
// memory.swap.max.
type MemoryResources struct {
	Min     *Quantity `json:"min,omitempty"`
	Low     *Quantity `json:"low,omitempty"`
	High    *Quantity `json:"high,omitempty"`
	Max     *Quantity `json:"max,omitempty"`
	SwapMax *Quantity `json:"swapMax,omitempty"`
}

// IOResources map to io.weight and io.max.
type IOResources struct {
	Weight *int64    `json:"weight,omitempty"`
	Max    []IOLimit `json:"max,omitempty"`
}

// IOLimit is one io.max line. Zero means unlimited ("max").
type IOLimit struct {
	Device string    `json:"device"` // "major:minor"
	Rbps   *Quantity `json:"rbps,omitempty"`
	Wbps   *Quantity `json:"wbps,omitempty"`
	Riops  *int64    `json:"riops,omitempty"`
	Wiops  *int64    `json:"wiops,omitempty"`
}

// PidsResources map to pids.max.
type PidsResources struct {
	Max *int64 `json:"max,omitempty"`
}
