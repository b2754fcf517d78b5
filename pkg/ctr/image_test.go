package ctr

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeTar(t *testing.T, path string, gz bool, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	if gz {
		zw := gzip.NewWriter(f)
		defer zw.Close()
		w = zw
	}
	tw := tar.NewWriter(w)
	defer tw.Close()
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestArchiveImageNames(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		file  string
		gz    bool
		files map[string]string
		want  []string
	}{
		{
			name: "an OCI archive names images by the containerd annotation",
			file: "oci.tar",
			files: map[string]string{"oci-layout": `{}`, "index.json": `{"manifests":[
				{"annotations":{"io.containerd.image.name":"docker.io/library/busybox:latest","org.opencontainers.image.ref.name":"latest"}},
				{"annotations":{"org.opencontainers.image.ref.name":"registry.local/app:1"}},
				{"annotations":{"org.opencontainers.image.ref.name":"bare-tag"}}]}`},
			want: []string{"docker.io/library/busybox:latest", "registry.local/app:1"},
		},
		{
			name:  "a gzipped docker archive names images by normalized RepoTags",
			file:  "docker.tar.gz",
			gz:    true,
			files: map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["alpine:3","me/tool"],"Layers":[]}]`},
			want:  []string{"docker.io/library/alpine:3", "docker.io/me/tool:latest"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			writeTar(t, path, tt.gz, tt.files)
			got, err := ArchiveImageNames(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArchiveIndexFollowsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	writeTar(t, filepath.Join(dir, "a.tar"), false, map[string]string{"manifest.json": `[{"RepoTags":["busybox:latest"]}]`})
	writeTar(t, filepath.Join(dir, "broken.tar"), false, map[string]string{"manifest.json": `not json`})
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	x := archiveIndex{dir: dir}
	got, err := x.lookup("docker.io/library/busybox:latest")
	if err != nil || got != filepath.Join(dir, "a.tar") {
		t.Fatalf("lookup = %q, %v; want a.tar despite a broken neighbour", got, err)
	}
	if got, err := x.lookup("docker.io/library/alpine:3"); err != nil || got != "" {
		t.Errorf("lookup(alpine) = %q, %v; want none", got, err)
	}
	writeTar(t, filepath.Join(dir, "b.tar"), false, map[string]string{"manifest.json": `[{"RepoTags":["alpine:3"]}]`})
	// Make sure the directory's mtime moves even on coarse clocks.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(dir, later, later); err != nil {
		t.Fatal(err)
	}
	if got, err := x.lookup("docker.io/library/alpine:3"); err != nil || got != filepath.Join(dir, "b.tar") {
		t.Errorf("lookup(alpine) after adding b.tar = %q, %v", got, err)
	}
}

func TestNormalizeAndRegistryHost(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                     "docker.io/library/busybox:latest",
		"me/tool:1":                   "docker.io/me/tool:1",
		"registry.local:5000/app":     "registry.local:5000/app:latest",
		"docker.io/library/debian:12": "docker.io/library/debian:12",
		"not a ref!":                  "not a ref!",
	} {
		if got := NormalizeImage(in); got != want {
			t.Errorf("NormalizeImage(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"https://index.docker.io/v1/": "docker.io",
		"registry-1.docker.io":        "docker.io",
		"docker.io":                   "docker.io",
		"ghcr.io":                     "ghcr.io",
		"https://registry.local:443":  "registry.local",
		"registry.local:5000":         "registry.local:5000",
	} {
		if got := registryHost(in); got != want {
			t.Errorf("registryHost(%q) = %q, want %q", in, got, want)
		}
	}
}
