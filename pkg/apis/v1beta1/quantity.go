package v1beta1

// Quantity is a non-negative byte count. In a manifest it is written as an
// integer (1048576) or as a string with a binary suffix Ki, Mi, Gi, Ti
// (powers of 1024) or a decimal suffix K, M, G, T (powers of 1000), as in
// Kubernetes. The string "max" means no limit where the cgroup file allows it.
type Quantity struct {
	// Bytes is the value in bytes; meaningless when Max is true.
	Bytes int64
	// Max is true for the literal "max" (unlimited).
	Max bool
}
