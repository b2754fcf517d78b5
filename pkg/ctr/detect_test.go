package ctr

import (
	"strings"
	"testing"
)

func TestDetectMountpoint(t *testing.T) {
	t.Run("a host without a cgroup2 mount is a clear error", func(t *testing.T) {
		dir := t.TempDir() // a tmpfs or disk dir, never cgroup2
		_, err := detectMountpoint([]string{dir})
		if err == nil || !strings.Contains(err.Error(), "cgroup v1 only") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("detectMountpoint = %v, want an error naming %s and cgroup v1", err, dir)
		}
	})
	t.Run("a --cgroup-mountpoint that is not cgroup2 is refused", func(t *testing.T) {
		dir := t.TempDir()
		_, err := NewCgroups(dir)
		if err == nil || !strings.Contains(err.Error(), "not a cgroup2 filesystem") {
			t.Fatalf("NewCgroups(%s) = %v, want not a cgroup2 filesystem", dir, err)
		}
	})
}
