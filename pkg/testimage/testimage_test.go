package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// requireBusybox skips without a static busybox, and fails under CI.
func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := FindBusybox(); err != nil {
		msg := "testimage: " + err.Error() + "; install with: apt-get install -y busybox-static"
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// inCI is testenv.InCI, which this package cannot import (testenv imports
// testimage): CI set to anything but empty or a false value of
// strconv.ParseBool.
func inCI() bool {
	b, err := strconv.ParseBool(os.Getenv("CI"))
	return os.Getenv("CI") != "" && (err != nil || b)
}

// layout is a parsed archive: every regular file by name.
type layout map[string][]byte

func readTar(t *testing.T, r io.Reader) (layout, map[string]*tar.Header) {
	t.Helper()
	files := layout{}
	headers := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, headers
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		headers[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read %s: %v", h.Name, err)
			}
			files[h.Name] = b
		}
	}
}

// blob returns the blob desc points at, checking its digest and size.
func (l layout) blob(t *testing.T, desc ocispec.Descriptor) []byte {
	t.Helper()
	b, ok := l["blobs/sha256/"+desc.Digest.Encoded()]
	if !ok {
		t.Fatalf("blob %s missing", desc.Digest)
	}
	if got := digest.FromBytes(b); got != desc.Digest {
		t.Fatalf("blob %s has digest %s", desc.Digest, got)
	}
	if int64(len(b)) != desc.Size {
		t.Fatalf("blob %s has size %d, descriptor says %d", desc.Digest, len(b), desc.Size)
	}
	return b
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
}

func build(t *testing.T, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Build(&buf, opts); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes()
}

func TestBuildIsAValidOCILayout(t *testing.T) {
	requireBusybox(t)
	archive := build(t, Options{})
	files, _ := readTar(t, bytes.NewReader(archive))

	var il ocispec.ImageLayout
	decode(t, files[ocispec.ImageLayoutFile], &il)
	if il.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version = %q, want %q", il.Version, ocispec.ImageLayoutVersion)
	}

	var index ocispec.Index
	decode(t, files[ocispec.ImageIndexFile], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(index.Manifests))
	}
	mdesc := index.Manifests[0]
	wantAnn := map[string]string{
		"io.containerd.image.name":          "docker.io/library/busybox:latest",
		"org.opencontainers.image.ref.name": "latest",
	}
	if diff := cmp.Diff(wantAnn, mdesc.Annotations); diff != "" {
		t.Errorf("manifest annotations (-want +got):\n%s", diff)
	}

	var manifest ocispec.Manifest
	decode(t, files.blob(t, mdesc), &manifest)
	if manifest.MediaType != ocispec.MediaTypeImageManifest || len(manifest.Layers) != 1 {
		t.Fatalf("manifest = %+v, want one layer of media type %s", manifest, ocispec.MediaTypeImageManifest)
	}

	var config ocispec.Image
	decode(t, files.blob(t, manifest.Config), &config)
	wantConfig := ocispec.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	}
	if diff := cmp.Diff(wantConfig, config.Config); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}
	if config.OS != "linux" || config.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", config.OS, config.Architecture, runtime.GOARCH)
	}

	gz := files.blob(t, manifest.Layers[0])
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("gunzip layer: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip layer: %v", err)
	}
	if diff := cmp.Diff([]digest.Digest{digest.FromBytes(raw)}, config.RootFS.DiffIDs); diff != "" {
		t.Errorf("diff IDs (-want +got):\n%s", diff)
	}

	rootfs, headers := readTar(t, bytes.NewReader(raw))
	if len(rootfs["bin/busybox"]) == 0 {
		t.Fatal("layer lacks bin/busybox")
	}
	for _, a := range RequiredApplets {
		h, ok := headers["bin/"+a]
		if !ok || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("bin/%s is not a symlink to busybox: %+v", a, h)
		}
	}
	for name, mode := range map[string]int64{
		"tmp/": 0o1777, "etc/": 0o755, "proc/": 0o755, "sys/": 0o755, "dev/": 0o755,
		"srv/": 0o755, "var/www/": 0o755,
	} {
		h, ok := headers[name]
		if !ok || h.Typeflag != tar.TypeDir || h.Mode != mode {
			t.Errorf("%s: want a directory with mode %o, got %+v", name, mode, h)
		}
	}
	for _, want := range []string{"root:x:0:0:", "nobody:x:65534:65534:"} {
		if !strings.Contains(string(rootfs["etc/passwd"]), want) {
			t.Errorf("etc/passwd lacks %q:\n%s", want, rootfs["etc/passwd"])
		}
	}
	for _, want := range []string{"root:x:0:", "nobody:x:65534:"} {
		if !strings.Contains(string(rootfs["etc/group"]), want) {
			t.Errorf("etc/group lacks %q:\n%s", want, rootfs["etc/group"])
		}
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	requireBusybox(t)
	first, second := build(t, Options{}), build(t, Options{})
	if a, b := digest.FromBytes(first), digest.FromBytes(second); a != b {
		t.Errorf("two builds differ: %s and %s", a, b)
	}
}

func TestBuildHonoursOptions(t *testing.T) {
	requireBusybox(t)
	tests := []struct {
		name    string
		opts    Options
		wantAnn map[string]string
		want    ocispec.ImageConfig
	}{
		{
			name: "a custom tagged name, entrypoint, env and working dir end up in index and config",
			opts: Options{
				ImageName:  "registry.local/kukeon/web:v2",
				Entrypoint: []string{"httpd", "-f"},
				Cmd:        []string{"-p", "8080"},
				Env:        []string{"A=1"},
				WorkingDir: "/srv",
			},
			wantAnn: map[string]string{
				"io.containerd.image.name":          "registry.local/kukeon/web:v2",
				"org.opencontainers.image.ref.name": "v2",
			},
			want: ocispec.ImageConfig{
				Entrypoint: []string{"httpd", "-f"},
				Cmd:        []string{"-p", "8080"},
				Env:        []string{"A=1"},
				WorkingDir: "/srv",
			},
		},
		{
			name: "a name with a registry port and no tag gets the tag latest",
			opts: Options{ImageName: "localhost:5000/busybox"},
			wantAnn: map[string]string{
				"io.containerd.image.name":          "localhost:5000/busybox",
				"org.opencontainers.image.ref.name": "latest",
			},
			want: ocispec.ImageConfig{Env: DefaultEnv, Cmd: []string{"sh"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, _ := readTar(t, bytes.NewReader(build(t, tt.opts)))
			var index ocispec.Index
			decode(t, files[ocispec.ImageIndexFile], &index)
			if diff := cmp.Diff(tt.wantAnn, index.Manifests[0].Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			var manifest ocispec.Manifest
			decode(t, files.blob(t, index.Manifests[0]), &manifest)
			var config ocispec.Image
			decode(t, files.blob(t, manifest.Config), &config)
			if diff := cmp.Diff(tt.want, config.Config); diff != "" {
				t.Errorf("image config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildRefusesADynamicBusybox(t *testing.T) {
	// The test binary itself is an ELF file; a cgo-free Go test binary is
	// static, so use a known dynamic executable instead when there is one.
	dynamic := ""
	for _, p := range []string{"/bin/ls", "/usr/bin/ls", "/bin/sh"} {
		if checkStatic(p) != nil {
			if _, err := os.Stat(p); err == nil {
				dynamic = p
				break
			}
		}
	}
	if dynamic == "" {
		t.Skip("no dynamically linked executable to try")
	}
	err := Build(io.Discard, Options{BusyboxPath: dynamic})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("Build with %s: got %v, want a dynamically linked error", dynamic, err)
	}
}

func TestBuildFileWritesTheSameBytesAsBuild(t *testing.T) {
	requireBusybox(t)
	path := filepath.Join(t.TempDir(), "busybox.tar")
	if err := BuildFile(path, Options{}); err != nil {
		t.Fatalf("BuildFile: %v", err)
	}
	got, err := Digest(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(build(t, Options{})); got != want {
		t.Errorf("file digest = %s, want %s", got, want)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("BuildFile left %d entries in its directory, want 1", len(entries))
	}
}

func TestTagOf(t *testing.T) {
	tests := []struct {
		name, ref, want string
	}{
		{"a tagged docker hub name gives its tag", "docker.io/library/busybox:1.36", "1.36"},
		{"an untagged name gives latest", "busybox", "latest"},
		{"a registry port is not a tag", "localhost:5000/a/b", "latest"},
		{"a digest reference keeps its tag", "busybox:1@sha256:abcd", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tagOf(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("tagOf(%q) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}
