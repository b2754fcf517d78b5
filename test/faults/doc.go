// Package faults is the fault suite of the issue "Nothing lost, ever": it
// runs the reconciler binary against a private containerd and the host's
// unified cgroup tree, breaks things in the middle of its work (SIGKILL of
// the daemon and of containerd, a full or read-only state dir, two
// reconcilers on one state dir, manifests and inventories that are empty,
// half written, dangling or corrupt), and then checks one invariant: every
// declared container runs exactly once, nothing else runs (but the foreign
// containers the test planted, untouched), and the inventory, the cgroup
// tree and the snapshots hold exactly what is declared.
//
// Everything is in the _test.go files; run it with
//
//	CI=true go test -count=1 -v ./test/faults/
package faults
