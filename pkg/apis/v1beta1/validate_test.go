package v1beta1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestValidateName(t *testing.T) {
	const dnsLabel = "must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)"
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "a lower-case word is valid", in: "frontend"},
		{name: "digits and inner dashes are valid", in: "web-2"},
		{name: "a single character is valid", in: "a"},
		{name: "63 characters are valid", in: strings.Repeat("a", 63)},
		{name: "an underscore is rejected", in: "bad_cell", wantErr: `invalid name "bad_cell": ` + dnsLabel},
		{name: "a slash is rejected", in: "bad/cell", wantErr: `invalid name "bad/cell": ` + dnsLabel},
		{name: "upper case is rejected", in: "Bad", wantErr: `invalid name "Bad": ` + dnsLabel},
		{name: "dot-dot is rejected", in: "..", wantErr: `invalid name "..": ` + dnsLabel},
		{name: "a space is rejected", in: "a b", wantErr: `invalid name "a b": ` + dnsLabel},
		{name: "a leading dash is rejected", in: "-a", wantErr: `invalid name "-a": ` + dnsLabel},
		{name: "a trailing dash is rejected", in: "a-", wantErr: `invalid name "a-": ` + dnsLabel},
		{name: "64 characters are rejected", in: strings.Repeat("a", 64), wantErr: `invalid name "` + strings.Repeat("a", 64) + `": must be at most 63 characters (has 64)`},
		{name: "empty is rejected", in: "", wantErr: `invalid name "": must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("ValidateName(%q) = %q, want %q", tt.in, got, tt.wantErr)
			}
		})
	}
}

func i64(v int64) *int64 { return &v }

func validCell() *Cell {
	return &Cell{
		Metadata: ObjectMeta{Name: "frontend"},
		Spec: CellSpec{
			RealmID: "lab", SpaceID: "web", StackID: "blog",
			Containers: []Container{{ID: "httpd", Image: "busybox"}},
		},
	}
}

func TestValidateCell(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Cell)
		want   []FieldError
	}{
		{name: "a minimal cell is valid", modify: func(*Cell) {}},
		{
			name:   "missing required fields are each reported",
			modify: func(c *Cell) { *c = Cell{} },
			want: []FieldError{
				{"metadata.name", "is required"},
				{"spec.realmId", "is required"},
				{"spec.spaceId", "is required"},
				{"spec.stackId", "is required"},
				{"spec.containers", "is required"},
			},
		},
		{
			name:   "an empty container list is rejected",
			modify: func(c *Cell) { c.Spec.Containers = []Container{} },
			want:   []FieldError{{"spec.containers", "must list at least one container"}},
		},
		{
			name:   "a container without id and image is rejected",
			modify: func(c *Cell) { c.Spec.Containers = []Container{{}} },
			want: []FieldError{
				{"spec.containers[0].id", "is required"},
				{"spec.containers[0].image", "is required"},
			},
		},
		{
			name: "invalid names of the cell, its parents, its id and a container are reported",
			modify: func(c *Cell) {
				c.Metadata.Name = "bad_cell"
				c.Spec.ID = "Bad"
				c.Spec.RealmID = ".."
				c.Spec.Containers[0].ID = "a/b"
			},
			want: []FieldError{
				{"metadata.name", `invalid name "bad_cell": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`},
				{"spec.id", `invalid name "Bad": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`},
				{"spec.realmId", `invalid name "..": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`},
				{"spec.containers[0].id", `invalid name "a/b": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`},
			},
		},
		{
			name:   "an unsupported restart policy is rejected",
			modify: func(c *Cell) { c.Spec.Containers[0].RestartPolicy = "sometimes" },
			want:   []FieldError{{"spec.containers[0].restartPolicy", `unsupported value "sometimes" (want never, on-failure or always)`}},
		},
		{
			name:   "an unsupported image pull policy is rejected",
			modify: func(c *Cell) { c.Spec.Containers[0].ImagePullPolicy = "IfNeeded" },
			want:   []FieldError{{"spec.containers[0].imagePullPolicy", `unsupported value "IfNeeded" (want IfNotPresent, Always or Never)`}},
		},
		{
			name: "negative counters are rejected",
			modify: func(c *Cell) {
				ct := &c.Spec.Containers[0]
				ct.RestartBackoffSeconds, ct.RestartMaxRetries, ct.StopGracePeriodSeconds = i64(-1), i64(-2), i64(-3)
				ct.Resources = &ContainerResources{CPUShares: i64(-4), PidsLimit: i64(-5)}
			},
			want: []FieldError{
				{"spec.containers[0].restartBackoffSeconds", "must not be negative, got -1"},
				{"spec.containers[0].restartMaxRetries", "must not be negative, got -2"},
				{"spec.containers[0].stopGracePeriodSeconds", "must not be negative, got -3"},
				{"spec.containers[0].resources.cpuShares", "must not be negative, got -4"},
				{"spec.containers[0].resources.pidsLimit", "must not be negative, got -5"},
			},
		},
		{
			name: "volumes need a known kind, an absolute target and an absolute bind source",
			modify: func(c *Cell) {
				c.Spec.Containers[0].Volumes = []Volume{
					{Source: "/srv", Target: "/data"},
					{Kind: "tmpfs", Target: "/scratch"},
					{Kind: "volume", Target: "/v"},
					{Source: "srv", Target: "data"},
					{Kind: "bind"},
				}
			},
			want: []FieldError{
				{"spec.containers[0].volumes[2].kind", `unsupported value "volume" (want bind or tmpfs)`},
				{"spec.containers[0].volumes[3].source", `must be an absolute path, got "srv"`},
				{"spec.containers[0].volumes[3].target", `must be an absolute path, got "data"`},
				{"spec.containers[0].volumes[4].source", "is required for a bind mount"},
				{"spec.containers[0].volumes[4].target", "is required"},
			},
		},
		{
			name:   "env entries need KEY=VALUE",
			modify: func(c *Cell) { c.Spec.Containers[0].Env = []string{"A=1", "B=", "FOO", "=x"} },
			want: []FieldError{
				{"spec.containers[0].env[2]", `must be KEY=VALUE, got "FOO"`},
				{"spec.containers[0].env[3]", `must be KEY=VALUE, got "=x"`},
			},
		},
		{
			name:   "rootContainerId must name a container",
			modify: func(c *Cell) { c.Spec.RootContainerID = "sandbox" },
			want:   []FieldError{{"spec.rootContainerId", `no container has id "sandbox"`}},
		},
		{
			name: "two root: true are rejected",
			modify: func(c *Cell) {
				c.Spec.Containers = []Container{{ID: "a", Image: "i", Root: true}, {ID: "b", Image: "i", Root: true}}
			},
			want: []FieldError{{"spec.containers[1].root", "only one container may have root: true (spec.containers[0] has it too)"}},
		},
		{
			name: "rootContainerId disagreeing with root: true is rejected",
			modify: func(c *Cell) {
				c.Spec.RootContainerID = "a"
				c.Spec.Containers = []Container{{ID: "a", Image: "i"}, {ID: "b", Image: "i", Root: true}}
			},
			want: []FieldError{{"spec.containers[1].root", `container "b" has root: true but spec.rootContainerId is "a"`}},
		},
		{
			name: "rootContainerId agreeing with root: true is valid",
			modify: func(c *Cell) {
				c.Spec.RootContainerID = "a"
				c.Spec.Containers = []Container{{ID: "a", Image: "i", Root: true}, {ID: "b", Image: "i"}}
			},
		},
		{
			name: "duplicate container ids are rejected",
			modify: func(c *Cell) {
				c.Spec.Containers = []Container{{ID: "a", Image: "i"}, {ID: "b", Image: "i"}, {ID: "a", Image: "i"}}
			},
			want: []FieldError{{"spec.containers[2].id", `duplicate container id "a" (also spec.containers[0])`}},
		},
		{
			name:   "a workload named root is rejected when the root is synthesized",
			modify: func(c *Cell) { c.Spec.Containers[0].ID = "root" },
			want:   []FieldError{{"spec.containers[0].id", `id "root" is reserved for the synthesized root container: set root: true on it or choose another id`}},
		},
		{
			name: "a workload named root is rejected next to an explicit root",
			modify: func(c *Cell) {
				c.Spec.Containers = []Container{{ID: "sandbox", Image: "i", Root: true}, {ID: "root", Image: "i"}}
			},
			want: []FieldError{{"spec.containers[1].id", `id "root" is reserved for the root container (here "sandbox"): choose another id`}},
		},
		{
			name:   "a root container may be named root",
			modify: func(c *Cell) { c.Spec.Containers[0].ID = "root"; c.Spec.Containers[0].Root = true },
		},
		{
			name: "level resources are checked",
			modify: func(c *Cell) {
				c.Spec.Resources = &Resources{
					CPU:  &CPUResources{Weight: i64(0), Max: "lots", Cpus: "0-", Mems: "x"},
					IO:   &IOResources{Weight: i64(10001), Max: []IOLimit{{Device: "sda"}, {Device: "8:0", Riops: i64(-1)}, {Device: "8:0"}, {}}},
					Pids: &PidsResources{Max: i64(-1)},
				}
			},
			want: []FieldError{
				{"spec.resources.cpu.weight", "must be between 1 and 10000, got 0"},
				{"spec.resources.cpu.max", `invalid cpu.max "lots": want "max" or "<quota> [<period>]" in microseconds, e.g. "50000 100000"`},
				{"spec.resources.cpu.cpus", `invalid cpu list "0-": want numbers and ranges, e.g. "0-1,3"`},
				{"spec.resources.cpu.mems", `invalid cpu list "x": want numbers and ranges, e.g. "0-1,3"`},
				{"spec.resources.io.weight", "must be between 1 and 10000, got 10001"},
				{"spec.resources.io.max[0].device", `invalid device "sda" (want "major:minor", e.g. "8:0")`},
				{"spec.resources.io.max[1].riops", "must not be negative, got -1"},
				{"spec.resources.io.max[2].device", `duplicate device "8:0" (also spec.resources.io.max[1])`},
				{"spec.resources.io.max[3].device", "is required"},
				{"spec.resources.pids.max", "must not be negative, got -1"},
			},
		},
		{
			name: "cpu.max quota and period ranges are checked",
			modify: func(c *Cell) {
				c.Spec.Resources = &Resources{CPU: &CPUResources{Max: "500 100000"}}
			},
			want: []FieldError{{"spec.resources.cpu.max", `invalid cpu.max "500 100000": quota must be at least 1000 microseconds`}},
		},
		{
			name: "valid level resources pass",
			modify: func(c *Cell) {
				c.Spec.Resources = &Resources{
					CPU:    &CPUResources{Weight: i64(100), Max: "50000 100000", Cpus: "0-1", Mems: "0"},
					Memory: &MemoryResources{Max: &Quantity{Bytes: 64 << 20}, SwapMax: &Quantity{Max: true}},
					IO:     &IOResources{Weight: i64(100), Max: []IOLimit{{Device: "8:0", Rbps: &Quantity{Bytes: 1 << 20}}}},
					Pids:   &PidsResources{Max: i64(0)},
				}
			},
		},
		{
			name: "max is not a container memory limit",
			modify: func(c *Cell) {
				c.Spec.Containers[0].Resources = &ContainerResources{MemoryLimitBytes: &Quantity{Max: true}}
			},
			want: []FieldError{{"spec.containers[0].resources.memoryLimitBytes", `"max" is not allowed here: leave the field out for no limit`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validCell()
			tt.modify(c)
			got := ValidateCell(c)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ValidateCell (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateRealmSpaceStack(t *testing.T) {
	tests := []struct {
		name string
		got  []FieldError
		want []FieldError
	}{
		{name: "a bare realm is valid", got: ValidateRealm(&Realm{Metadata: ObjectMeta{Name: "lab"}})},
		{
			name: "a realm needs a name, a valid namespace and credentials with a server",
			got: ValidateRealm(&Realm{Spec: RealmSpec{
				Namespace:           "bad ns",
				RegistryCredentials: []RegistryCredential{{Username: "u", Password: "p"}},
			}}),
			want: []FieldError{
				{"metadata.name", "is required"},
				{"spec.namespace", `invalid containerd namespace "bad ns": want letters and digits joined by single '.', '_' or '-', at most 76 characters`},
				{"spec.registryCredentials[0].serverAddress", "is required"},
			},
		},
		{name: "a realm namespace may contain dots", got: ValidateRealm(&Realm{Metadata: ObjectMeta{Name: "lab"}, Spec: RealmSpec{Namespace: "lab.kukeon.io"}})},
		{
			name: "a space needs its realm",
			got:  ValidateSpace(&Space{Metadata: ObjectMeta{Name: "web"}}),
			want: []FieldError{{"spec.realmId", "is required"}},
		},
		{
			name: "a space's resources are checked",
			got:  ValidateSpace(&Space{Metadata: ObjectMeta{Name: "web"}, Spec: SpaceSpec{RealmID: "lab", Resources: &Resources{CPU: &CPUResources{Weight: i64(-1)}}}}),
			want: []FieldError{{"spec.resources.cpu.weight", "must be between 1 and 10000, got -1"}},
		},
		{
			name: "a stack needs its realm and space",
			got:  ValidateStack(&Stack{Metadata: ObjectMeta{Name: "blog"}, Spec: StackSpec{RealmID: "Lab"}}),
			want: []FieldError{
				{"spec.realmId", `invalid name "Lab": must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)`},
				{"spec.spaceId", "is required"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
