package v1beta1

// NamespaceFor returns the containerd namespace of a realm: spec.namespace
// when set, else "<name>.<suffix>" (suffix "" means DefaultNamespaceSuffix).
func NamespaceFor(r *Realm, suffix string) string {
	if r.Spec.Namespace != "" {
		return r.Spec.Namespace
	}
	return DefaultNamespace(r.Metadata.Name, suffix)
}

// DefaultNamespace is "<realm>.<suffix>".
func DefaultNamespace(realm, suffix string) string {
	if suffix == "" {
		suffix = DefaultNamespaceSuffix
	}
	return realm + "." + suffix
}

// CellID returns spec.id, defaulted to metadata.name.
func CellID(c *Cell) string {
	if c.Spec.ID != "" {
		return c.Spec.ID
	}
	return c.Metadata.Name
}

// SetContainerDefaults fills the defaults of a container spec in place:
// restartPolicy never, restartBackoffSeconds 1, restartMaxRetries 5,
// imagePullPolicy IfNotPresent, stopGracePeriodSeconds 10, bind volume kind.
func SetContainerDefaults(c *Container) {
	if c.RestartPolicy == "" {
		c.RestartPolicy = RestartNever
	}
	if c.RestartBackoffSeconds == nil {
		c.RestartBackoffSeconds = ptr(int64(DefaultRestartBackoffSeconds))
	}
	if c.RestartMaxRetries == nil {
		c.RestartMaxRetries = ptr(int64(DefaultRestartMaxRetries))
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = PullIfNotPresent
	}
	if c.StopGracePeriodSeconds == nil {
		c.StopGracePeriodSeconds = ptr(int64(DefaultStopGracePeriodSeconds))
	}
	for i := range c.Volumes {
		if c.Volumes[i].Kind == "" {
			c.Volumes[i].Kind = VolumeBind
		}
	}
}

func ptr[T any](v T) *T { return &v }
