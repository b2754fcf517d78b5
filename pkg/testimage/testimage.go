// Package testimage builds a small OCI image archive from the host's static
// busybox, with no network and no registry, for integration tests, benchmarks
// and the demo.
//
// The archive is an OCI image layout wrapped in a tar (oci-layout, index.json,
// blobs/sha256/...) that containerd's client.Import accepts. Building it twice
// from the same busybox binary and Options gives byte-identical archives, so
// the image digest is stable across runs.
package testimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultImageName is the reference the image is imported under when
// Options.ImageName is empty.
const DefaultImageName = "docker.io/library/busybox:latest"

// DefaultEnv is the image config Env when Options.Env is nil.
var DefaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// BusyboxCandidates are the paths searched, in order, when
// Options.BusyboxPath is empty. Debian's busybox-static installs /bin/busybox.
var BusyboxCandidates = []string{"/bin/busybox", "/usr/bin/busybox"}

// RequiredApplets are linked into /bin even when `busybox --list` cannot be
// run; when it can, every applet it lists is linked as well.
var RequiredApplets = []string{
	"cat", "dd", "echo", "env", "false", "grep", "head", "hostname", "httpd",
	"id", "kill", "ls", "mkdir", "ps", "readlink", "sh", "sleep", "true",
	"wget", "yes",
}

// AnnotationImageName is the index annotation containerd's importer reads the
// image name from.
const AnnotationImageName = "io.containerd.image.name"

// epoch is the mtime of every tar entry and the image creation time; a fixed
// value keeps the digests stable.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options shape the image. The zero value builds DefaultImageName from the
// first static busybox in BusyboxCandidates, running `sh`.
type Options struct {
	// ImageName is the full reference, e.g. docker.io/library/busybox:latest.
	ImageName string
	// BusyboxPath is a statically linked busybox binary.
	BusyboxPath string
	// Cmd is the image config Cmd; nil means ["sh"].
	Cmd []string
	// Entrypoint is the image config Entrypoint; nil means none.
	Entrypoint []string
	// Env is the image config Env; nil means DefaultEnv.
	Env []string
	// WorkingDir is the image config WorkingDir; empty means "/".
	WorkingDir string
}

func (o Options) withDefaults() (Options, error) {
	if o.ImageName == "" {
		o.ImageName = DefaultImageName
	}
	if o.Cmd == nil {
		o.Cmd = []string{"sh"}
	}
	if o.Env == nil {
		o.Env = DefaultEnv
	}
	if o.BusyboxPath == "" {
		p, err := FindBusybox()
		if err != nil {
			return o, err
		}
		o.BusyboxPath = p
	} else if err := checkStatic(o.BusyboxPath); err != nil {
		return o, err
	}
	return o, nil
}

// FindBusybox returns the first of BusyboxCandidates that is a statically
// linked executable. The error names every candidate and why it was refused.
func FindBusybox() (string, error) {
	var errs []error
	for _, p := range BusyboxCandidates {
		err := checkStatic(p)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no static busybox (install busybox-static): %w", errors.Join(errs...))
}

// checkStatic accepts an ELF executable without a PT_INTERP program header:
// a dynamically linked busybox would find no loader inside the image.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox %s: dynamically linked", path)
		}
	}
	return nil
}

// BuildFile writes the archive to path atomically (temp file + rename).
func BuildFile(path string, opts Options) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	w := bufio.NewWriter(f)
	if err := Build(w, opts); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write archive %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("chmod archive %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close archive %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename archive: %w", err)
	}
	return nil
}

// Build writes the OCI layout tar for opts to w.
func Build(w io.Writer, opts Options) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	tag, err := tagOf(opts.ImageName)
	if err != nil {
		return err
	}
	layer, diffID, err := buildLayer(opts.BusyboxPath)
	if err != nil {
		return err
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
	}

	created := epoch
	config, err := json.Marshal(ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        opts.Env,
			Entrypoint: opts.Entrypoint,
			Cmd:        opts.Cmd,
			WorkingDir: opts.WorkingDir,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History: []ocispec.History{{
			Created:   &created,
			CreatedBy: "kukeon testimage: busybox " + filepath.Base(opts.BusyboxPath),
		}},
	})
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	configDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(config),
		Size:      int64(len(config)),
	}

	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest,
			Digest:    digest.FromBytes(manifest),
			Size:      int64(len(manifest)),
			Platform:  &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				AnnotationImageName:       opts.ImageName,
				ocispec.AnnotationRefName: tag,
			},
		}},
	})
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("encode oci-layout: %w", err)
	}

	blobs := map[string][]byte{}
	for _, b := range [][]byte{layer, config, manifest} {
		blobs["blobs/sha256/"+digest.FromBytes(b).Encoded()] = b
	}
	files := map[string][]byte{
		ocispec.ImageLayoutFile: layout,
		ocispec.ImageIndexFile:  index,
	}
	for k, v := range blobs {
		files[k] = v
	}

	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(dirHeader(d, 0o755)); err != nil {
			return fmt.Errorf("write archive: %w", err)
		}
	}
	for _, name := range sortedKeys(files) {
		if err := writeFile(tw, name, 0o644, files[name]); err != nil {
			return fmt.Errorf("write archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// tagOf returns the tag of ref ("latest" when it has none), the value of the
// org.opencontainers.image.ref.name annotation.
func tagOf(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return "", fmt.Errorf("image name %q: invalid", ref)
	}
	name := ref
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	slash := strings.LastIndex(name, "/")
	if colon := strings.LastIndex(name, ":"); colon > slash {
		return name[colon+1:], nil
	}
	return "latest", nil
}

// buildLayer returns the gzip'd rootfs tar and the digest of the uncompressed
// tar (the config's diff ID).
func buildLayer(busybox string) ([]byte, digest.Digest, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, "", fmt.Errorf("read busybox: %w", err)
	}
	applets := appletsOf(busybox)

	type entry struct {
		hdr  *tar.Header
		body []byte
	}
	entries := map[string]entry{}
	dir := func(name string, mode int64) {
		entries[name] = entry{hdr: dirHeader(name+"/", mode)}
	}
	file := func(name string, mode int64, body []byte) {
		entries[name] = entry{hdr: fileHeader(name, mode, len(body)), body: body}
	}
	link := func(name, target string) {
		entries[name] = entry{hdr: &tar.Header{
			Typeflag: tar.TypeSymlink, Name: name, Linkname: target,
			Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX,
		}}
	}

	for _, d := range []string{"bin", "dev", "etc", "proc", "sbin", "srv", "sys",
		"usr", "usr/bin", "usr/sbin", "var", "var/www"} {
		dir(d, 0o755)
	}
	dir("root", 0o700)
	dir("tmp", 0o1777)
	dir("var/tmp", 0o1777)
	file("bin/busybox", 0o755, bin)
	for _, a := range applets {
		link("bin/"+a, "busybox")
	}
	// Shebangs name /usr/bin/env; keep it resolvable.
	link("usr/bin/env", "/bin/busybox")
	file("etc/passwd", 0o644, []byte(
		"root:x:0:0:root:/root:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n"))
	file("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))

	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, name := range sortedKeys(entries) {
		e := entries[name]
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, "", fmt.Errorf("write layer %s: %w", name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, "", fmt.Errorf("write layer %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", fmt.Errorf("write layer: %w", err)
	}
	diffID := digest.FromBytes(raw.Bytes())

	// gzip.Writer with a zero header (no name, no mtime) is deterministic for
	// a given input and level.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, "", fmt.Errorf("compress layer: %w", err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", fmt.Errorf("compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, "", fmt.Errorf("compress layer: %w", err)
	}
	return gz.Bytes(), diffID, nil
}

// appletsOf returns the sorted union of RequiredApplets and what
// `busybox --list` prints; if busybox cannot be run, RequiredApplets alone.
func appletsOf(busybox string) []string {
	set := map[string]bool{}
	for _, a := range RequiredApplets {
		set[a] = true
	}
	if out, err := exec.Command(busybox, "--list").Output(); err == nil {
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" && !strings.ContainsAny(a, "/.") {
				set[a] = true
			}
		}
	}
	return sortedKeys(set)
}

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
}

func fileHeader(name string, mode int64, size int) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(size), ModTime: epoch, Format: tar.FormatPAX}
}

func writeFile(tw *tar.Writer, name string, mode int64, body []byte) error {
	if err := tw.WriteHeader(fileHeader(name, mode, len(body))); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Digest returns the sha256 of an archive file, handy for comparing builds.
func Digest(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read archive: %w", err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}
