package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRemoveEmptyDirsRemovesOnlyEmptyDirsOfTheSuffix(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a.run1.kukeon.io", "b.run1.kukeon.io/ctr", "c.run2.kukeon.io", "run1.kukeon.io.other"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "d.run1.kukeon.io"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeEmptyDirs(root, ".run1.kukeon.io"); err != nil {
		t.Fatalf("removeEmptyDirs: %v", err)
	}
	var got []string
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		got = append(got, e.Name())
	}
	// Kept: a non-empty directory, other suffixes, a file.
	want := []string{"b.run1.kukeon.io", "c.run2.kukeon.io", "d.run1.kukeon.io", "run1.kukeon.io.other"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries left (-want +got):\n%s", diff)
	}
}

func TestRemoveEmptyDirsRefusesAnEmptySuffix(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "x.kukeon.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeEmptyDirs(root, ""); err == nil {
		t.Error("removeEmptyDirs with an empty suffix: no error")
	}
	if _, err := os.Stat(filepath.Join(root, "x.kukeon.io")); err != nil {
		t.Errorf("directory removed despite the refusal: %v", err)
	}
}

func TestRemoveEmptyDirsOfAMissingRoot(t *testing.T) {
	if err := removeEmptyDirs(filepath.Join(t.TempDir(), "none"), ".x"); err != nil {
		t.Errorf("removeEmptyDirs of a missing root: %v, want nil", err)
	}
}
