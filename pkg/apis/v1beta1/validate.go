package v1beta1

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// FieldError is one invalid field of an object. Field is the path from the
// object's root ("metadata.name", "spec.containers[1].restartPolicy");
// Message says what is wrong without repeating the path.
type FieldError struct {
	Field   string
	Message string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// maxNameLen is the length limit of a DNS label.
const maxNameLen = 63

// ValidateName checks that s is a DNS label: 1–63 characters of [a-z0-9-],
// starting and ending with a letter or digit. Names become cgroup directory
// names and parts of containerd IDs ('_' separates those parts), so nothing
// else is allowed.
func ValidateName(s string) error {
	if s == "" {
		return errors.New(`invalid name "": must not be empty`)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("invalid name %q: must be at most %d characters (has %d)", s, maxNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1
		if !ok {
			return fmt.Errorf("invalid name %q: must be a DNS label (lower-case letters, digits and '-', 1-63 characters, starting and ending with a letter or digit)", s)
		}
	}
	return nil
}

// namespaceRe is containerd's identifier grammar (namespaces and container
// IDs); identifiers are at most 76 characters.
var namespaceRe = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// MaxContainerdIDLen is containerd's limit on namespace and container IDs.
const MaxContainerdIDLen = 76

// errs collects FieldErrors.
type errs []FieldError

func (e *errs) add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// name checks a required name field.
func (e *errs) name(field, value string) {
	if value == "" {
		e.add(field, "is required")
		return
	}
	if err := ValidateName(value); err != nil {
		e.add(field, "%s", err.Error())
	}
}

func (e *errs) nonNegative(field string, v *int64) {
	if v != nil && *v < 0 {
		e.add(field, "must not be negative, got %d", *v)
	}
}

func (e *errs) meta(m *ObjectMeta) {
	e.name("metadata.name", m.Name)
	e.labels("metadata.labels", m.Labels)
}

// ValidateRealm checks the fields of a Realm on their own (cross-object
// rules such as duplicates and the reserved realm are the hierarchy's).
func ValidateRealm(r *Realm) []FieldError {
	var e errs
	e.meta(&r.Metadata)
	if ns := r.Spec.Namespace; ns != "" && (len(ns) > MaxContainerdIDLen || !namespaceRe.MatchString(ns)) {
		e.add("spec.namespace", "invalid containerd namespace %q: want letters and digits joined by single '.', '_' or '-', at most %d characters", ns, MaxContainerdIDLen)
	}
	for i, c := range r.Spec.RegistryCredentials {
		if c.ServerAddress == "" {
			e.add(fmt.Sprintf("spec.registryCredentials[%d].serverAddress", i), "is required")
		}
	}
	e.resources("spec.resources", r.Spec.Resources)
	return e
}

// ValidateSpace checks the fields of a Space on their own.
func ValidateSpace(s *Space) []FieldError {
	var e errs
	e.meta(&s.Metadata)
	e.name("spec.realmId", s.Spec.RealmID)
	e.resources("spec.resources", s.Spec.Resources)
	return e
}

// ValidateStack checks the fields of a Stack on their own. spec.id is
// cosmetic and not checked.
func ValidateStack(s *Stack) []FieldError {
	var e errs
	e.meta(&s.Metadata)
	e.name("spec.realmId", s.Spec.RealmID)
	e.name("spec.spaceId", s.Spec.SpaceID)
	e.resources("spec.resources", s.Spec.Resources)
	return e
}

// RootContainerID is the id of the container a synthesized root gets. A
// root container's containerd ID always ends in "_root", so no other
// container may use this id.
const RootContainerID = "root"

// ValidateCell checks the fields of a Cell and its containers on their own:
// names, required fields, enumerations, the root container rules, volumes,
// env and resources. The containerd ID length is the hierarchy's check.
func ValidateCell(c *Cell) []FieldError {
	var e errs
	e.meta(&c.Metadata)
	if c.Spec.ID != "" {
		e.name("spec.id", c.Spec.ID)
	}
	e.name("spec.realmId", c.Spec.RealmID)
	e.name("spec.spaceId", c.Spec.SpaceID)
	e.name("spec.stackId", c.Spec.StackID)
	switch {
	case c.Spec.Containers == nil:
		e.add("spec.containers", "is required")
	case len(c.Spec.Containers) == 0:
		e.add("spec.containers", "must list at least one container")
	}

	// Root rules: rootContainerId names a container; at most one root: true;
	// both agree when both are set.
	firstRoot := -1
	ids := make(map[string]int, len(c.Spec.Containers))
	for i := range c.Spec.Containers {
		ct := &c.Spec.Containers[i]
		p := fmt.Sprintf("spec.containers[%d]", i)
		if ct.ID != "" {
			if j, dup := ids[ct.ID]; dup {
				e.add(p+".id", "duplicate container id %q (also spec.containers[%d])", ct.ID, j)
			} else {
				ids[ct.ID] = i
			}
		}
		if ct.Root {
			if firstRoot >= 0 {
				e.add(p+".root", "only one container may have root: true (spec.containers[%d] has it too)", firstRoot)
			} else {
				firstRoot = i
			}
		}
	}
	rootID := c.Spec.RootContainerID
	if rootID != "" {
		if _, ok := ids[rootID]; !ok {
			e.add("spec.rootContainerId", "no container has id %q", rootID)
		}
		for i := range c.Spec.Containers {
			if ct := &c.Spec.Containers[i]; ct.Root && ct.ID != rootID {
				e.add(fmt.Sprintf("spec.containers[%d].root", i), "container %q has root: true but spec.rootContainerId is %q", ct.ID, rootID)
			}
		}
	} else if firstRoot >= 0 {
		rootID = c.Spec.Containers[firstRoot].ID
	}
	for i := range c.Spec.Containers {
		ct := &c.Spec.Containers[i]
		if ct.ID == RootContainerID && (rootID == "" || rootID != RootContainerID) {
			if rootID == "" {
				e.add(fmt.Sprintf("spec.containers[%d].id", i), "id %q is reserved for the synthesized root container: set root: true on it or choose another id", RootContainerID)
			} else {
				e.add(fmt.Sprintf("spec.containers[%d].id", i), "id %q is reserved for the root container (here %q): choose another id", RootContainerID, rootID)
			}
		}
		e.container(fmt.Sprintf("spec.containers[%d]", i), ct)
	}
	e.resources("spec.resources", c.Spec.Resources)
	return e
}

func (e *errs) container(p string, c *Container) {
	e.name(p+".id", c.ID)
	e.image(p+".image", c.Image)
	switch c.RestartPolicy {
	case "", RestartNever, RestartOnFailure, RestartAlways:
	default:
		e.add(p+".restartPolicy", "unsupported value %q (want never, on-failure or always)", c.RestartPolicy)
	}
	switch c.ImagePullPolicy {
	case "", PullIfNotPresent, PullAlways, PullNever:
	default:
		e.add(p+".imagePullPolicy", "unsupported value %q (want IfNotPresent, Always or Never)", c.ImagePullPolicy)
	}
	e.nonNegative(p+".restartBackoffSeconds", c.RestartBackoffSeconds)
	e.nonNegative(p+".restartMaxRetries", c.RestartMaxRetries)
	e.nonNegative(p+".stopGracePeriodSeconds", c.StopGracePeriodSeconds)
	if c.WorkingDir != "" && !path.IsAbs(c.WorkingDir) {
		e.add(p+".workingDir", "must be an absolute path, got %q", c.WorkingDir)
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			e.add(fmt.Sprintf("%s.env[%d]", p, i), "must be KEY=VALUE, got %q", kv)
		}
	}
	for i, v := range c.Volumes {
		vp := fmt.Sprintf("%s.volumes[%d]", p, i)
		switch v.Kind {
		case "", VolumeBind:
			if v.Source == "" {
				e.add(vp+".source", "is required for a bind mount")
			} else if !path.IsAbs(v.Source) {
				e.add(vp+".source", "must be an absolute path, got %q", v.Source)
			}
		case VolumeTmpfs:
		default:
			e.add(vp+".kind", "unsupported value %q (want bind or tmpfs)", v.Kind)
		}
		e.absPath(vp+".target", v.Target)
		e.bytes(vp+".sizeBytes", v.SizeBytes)
	}
	for i, t := range c.Tmpfs {
		tp := fmt.Sprintf("%s.tmpfs[%d]", p, i)
		e.absPath(tp+".path", t.Path)
		e.bytes(tp+".sizeBytes", t.SizeBytes)
	}
	for i, d := range c.Devices {
		e.absPath(fmt.Sprintf("%s.devices[%d]", p, i), d)
	}
	if r := c.Resources; r != nil {
		e.bytes(p+".resources.memoryLimitBytes", r.MemoryLimitBytes)
		e.nonNegative(p+".resources.cpuShares", r.CPUShares)
		e.nonNegative(p+".resources.pidsLimit", r.PidsLimit)
	}
}

func (e *errs) absPath(field, v string) {
	switch {
	case v == "":
		e.add(field, "is required")
	case !path.IsAbs(v):
		e.add(field, "must be an absolute path, got %q", v)
	}
}

// bytes checks a quantity that must be a number (no "max").
func (e *errs) bytes(field string, q *Quantity) {
	if q != nil && q.Max {
		e.add(field, `"max" is not allowed here: leave the field out for no limit`)
	}
}

// resources checks level resources against the ranges of the cgroup v2 files.
func (e *errs) resources(p string, r *Resources) {
	if r == nil {
		return
	}
	if c := r.CPU; c != nil {
		e.weight(p+".cpu.weight", c.Weight)
		if c.Max != "" {
			if _, _, err := parseCPUMax(c.Max); err != nil {
				e.add(p+".cpu.max", "%s", err.Error())
			}
		}
		if c.Cpus != "" {
			if _, err := parseCPUList(c.Cpus); err != nil {
				e.add(p+".cpu.cpus", "%s", err.Error())
			}
		}
		if c.Mems != "" {
			if _, err := parseCPUList(c.Mems); err != nil {
				e.add(p+".cpu.mems", "%s", err.Error())
			}
		}
	}
	if io := r.IO; io != nil {
		e.weight(p+".io.weight", io.Weight)
		seen := map[string]int{}
		for i, l := range io.Max {
			lp := fmt.Sprintf("%s.io.max[%d]", p, i)
			switch {
			case l.Device == "":
				e.add(lp+".device", "is required")
			case !validDevice(l.Device):
				e.add(lp+".device", "invalid device %q (want \"major:minor\", e.g. \"8:0\")", l.Device)
			default:
				if j, dup := seen[l.Device]; dup {
					e.add(lp+".device", "duplicate device %q (also %s.io.max[%d])", l.Device, p, j)
				} else {
					seen[l.Device] = i
				}
			}
			e.nonNegative(lp+".riops", l.Riops)
			e.nonNegative(lp+".wiops", l.Wiops)
		}
	}
	if r.Pids != nil {
		e.nonNegative(p+".pids.max", r.Pids.Max)
	}
}

func (e *errs) weight(field string, w *int64) {
	if w != nil && (*w < 1 || *w > 10000) {
		e.add(field, "must be between 1 and 10000, got %d", *w)
	}
}

// validDevice reports whether s is "major:minor" with decimal numbers.
func validDevice(s string) bool {
	maj, min, ok := strings.Cut(s, ":")
	return ok && isUint(maj) && isUint(min)
}

func isUint(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// defaultCPUPeriod is the kernel's cpu.max period when none is written.
const defaultCPUPeriod = 100000

// parseCPUMax parses "max", "<quota>" or "<quota> <period>" (either part may
// be "max" for the quota). quota is -1 for max.
func parseCPUMax(s string) (quota, period int64, err error) {
	bad := fmt.Errorf(`invalid cpu.max %q: want "max" or "<quota> [<period>]" in microseconds, e.g. "50000 100000"`, s)
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return 0, 0, bad
	}
	period = defaultCPUPeriod
	if len(f) == 2 {
		period, err = strconv.ParseInt(f[1], 10, 64)
		if err != nil || period < 1000 || period > 1000000 {
			return 0, 0, fmt.Errorf("invalid cpu.max %q: period must be between 1000 and 1000000 microseconds", s)
		}
	}
	if f[0] == "max" {
		return -1, period, nil
	}
	quota, err = strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, 0, bad
	}
	if quota < 1000 {
		return 0, 0, fmt.Errorf("invalid cpu.max %q: quota must be at least 1000 microseconds", s)
	}
	return quota, period, nil
}

// parseCPUList parses a cpuset list ("0-3,5") into the set of its numbers.
func parseCPUList(s string) (map[int]bool, error) {
	set := map[int]bool{}
	s = strings.TrimSpace(s)
	if s == "" {
		return set, nil
	}
	bad := fmt.Errorf(`invalid cpu list %q: want numbers and ranges, e.g. "0-1,3"`, s)
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || !isUint(lo) {
			return nil, bad
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || !isUint(hi) || b < a {
				return nil, bad
			}
		}
		if b-a > 65536 {
			return nil, bad
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	return set, nil
}
