package ctr

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// NormalizeImage returns the fully qualified form of an image reference
// ("busybox" → "docker.io/library/busybox:latest"). References that do
// not parse are returned unchanged.
func NormalizeImage(ref string) string {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return ref
	}
	return named.String()
}

// EnsureImage makes image ref present and unpacked in namespace ns
// according to pullPolicy (PullIfNotPresent when ""):
//   - IfNotPresent: present → nothing; else source it;
//   - Always: source it;
//   - Never: present → nothing; else import it from an archive that provides
//     it (that is not a pull); else an error matching ErrImageNotPresent
//     naming image and namespace.
//
// Sourcing imports the archive in Config.ImageArchives that provides ref,
// else pulls with the credential whose ServerAddress matches the registry.
// Concurrent calls for the same (ns, ref) source it once.
func (c *Client) EnsureImage(ctx context.Context, ns, ref, pullPolicy string, creds []Credential) error {
	name := NormalizeImage(ref)
	cc, err := c.conn()
	if err != nil {
		return err
	}
	nctx := nsCtx(ctx, ns)
	switch pullPolicy {
	case "", PullIfNotPresent, PullNever:
		present, err := c.ensureUnpacked(nctx, cc, ns, name)
		if err != nil || present {
			return err
		}
	case PullAlways:
	default:
		return fmt.Errorf("image %s: unsupported pull policy %q", name, pullPolicy)
	}
	return c.flights.do(ns+"\x00"+name, func() error {
		archive, err := c.archives.lookup(name)
		if err != nil {
			return err
		}
		if archive != "" {
			return c.importArchive(nctx, ns, name, archive)
		}
		if pullPolicy == PullNever {
			return fmt.Errorf("image %s in namespace %s (pull policy Never, no archive provides it): %w", name, ns, ErrImageNotPresent)
		}
		return c.pull(nctx, ns, name, creds)
	})
}

// ensureUnpacked reports whether image name exists in the namespace of
// nctx, unpacking it for the default snapshotter if it is not yet.
func (c *Client) ensureUnpacked(nctx context.Context, cc *client.Client, ns, name string) (bool, error) {
	meta, err := cc.ImageService().Get(nctx, name)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, c.fail(cc, "image "+name+" in "+ns, err)
	}
	img := client.NewImage(cc, meta)
	ok, err := img.IsUnpacked(nctx, "")
	if err != nil {
		return false, c.fail(cc, "image "+name+" in "+ns, err)
	}
	if !ok {
		if err := img.Unpack(nctx, ""); err != nil {
			return false, c.fail(cc, "unpack image "+name+" in "+ns, err)
		}
	}
	return true, nil
}

func (c *Client) importArchive(nctx context.Context, ns, name, path string) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	defer f.Close()
	var r io.Reader = f
	if isGzip(path) {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("import %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	imgs, err := cc.Import(nctx, r, client.WithImageRefTranslator(ociRefName))
	if err != nil {
		return c.fail(cc, "import "+path+" into "+ns, err)
	}
	for _, meta := range imgs {
		if meta.Name != name {
			continue
		}
		if err := client.NewImage(cc, meta).Unpack(nctx, ""); err != nil {
			return c.fail(cc, "unpack image "+name+" in "+ns, err)
		}
		return nil
	}
	return fmt.Errorf("import %s into %s: archive does not provide %s: %w", path, ns, name, ErrImageNotPresent)
}

func (c *Client) pull(nctx context.Context, ns, name string, creds []Credential) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	authorizer := docker.NewDockerAuthorizer(docker.WithAuthCreds(func(host string) (string, string, error) {
		for _, cr := range creds {
			if registryHost(cr.ServerAddress) == registryHost(host) {
				return cr.Username, cr.Password, nil
			}
		}
		return "", "", nil
	}))
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithAuthorizer(authorizer)),
	})
	if _, err := cc.Pull(nctx, name, client.WithResolver(resolver), client.WithPullUnpack); err != nil {
		return c.fail(cc, "pull "+name+" into "+ns, err)
	}
	return nil
}

// registryHost reduces a credential's server address or a registry host to
// a comparable host name; Docker Hub's aliases all become docker.io.
func registryHost(addr string) string {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	addr = strings.TrimSuffix(strings.SplitN(addr, "/", 2)[0], ":443")
	switch addr {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "":
		return "docker.io"
	}
	return addr
}

// ociRefName turns an OCI ref-name annotation into an image name; a bare
// tag ("latest") names nothing.
func ociRefName(n string) string {
	if !strings.ContainsAny(n, "/:") {
		return ""
	}
	return NormalizeImage(n)
}

func isGzip(path string) bool {
	return strings.HasSuffix(path, ".gz") || strings.HasSuffix(path, ".tgz")
}

func isArchive(name string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".oci"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// archiveIndex maps normalized image names to the archive providing them.
// It re-reads the directory only when the directory's mtime changes.
type archiveIndex struct {
	dir string

	mu     sync.Mutex
	mtime  time.Time
	byName map[string]string
}

// lookup returns the archive path providing name, or "".
func (x *archiveIndex) lookup(name string) (string, error) {
	if x.dir == "" {
		return "", nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	st, err := os.Stat(x.dir)
	if err != nil {
		return "", fmt.Errorf("image archives: %w", err)
	}
	if x.byName == nil || !st.ModTime().Equal(x.mtime) {
		byName, err := indexArchives(x.dir)
		if err != nil {
			return "", err
		}
		x.byName, x.mtime = byName, st.ModTime()
	}
	return x.byName[name], nil
}

// indexArchives reads the image names of every archive in dir. The first
// archive (in name order) providing a name wins. Unreadable archives are
// skipped: one bad file must not hide the others.
func indexArchives(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image archives: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !isArchive(e.Name()) {
			continue
		}
		// Stat follows symlinks: a link to an archive counts.
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && st.Mode().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	byName := map[string]string{}
	for _, n := range names {
		path := filepath.Join(dir, n)
		refs, err := ArchiveImageNames(path)
		if err != nil {
			continue
		}
		for _, r := range refs {
			if _, ok := byName[r]; !ok {
				byName[r] = path
			}
		}
	}
	return byName, nil
}

// ArchiveImageNames returns the normalized image names an OCI archive
// (index.json annotations) or docker archive (manifest.json RepoTags)
// provides, sorted.
func ArchiveImageNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if isGzip(path) {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("archive %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	seen := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive %s: %w", path, err)
		}
		switch filepath.Clean(h.Name) {
		case "index.json":
			var idx ocispec.Index
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&idx); err != nil {
				return nil, fmt.Errorf("archive %s: index.json: %w", path, err)
			}
			for _, m := range idx.Manifests {
				n := m.Annotations[images.AnnotationImageName]
				if n == "" {
					n = m.Annotations[ocispec.AnnotationRefName]
				}
				if n = ociRefName(n); n != "" {
					seen[n] = true
				}
			}
		case "manifest.json":
			var mf []struct{ RepoTags []string }
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&mf); err != nil {
				return nil, fmt.Errorf("archive %s: manifest.json: %w", path, err)
			}
			for _, m := range mf {
				for _, t := range m.RepoTags {
					seen[NormalizeImage(t)] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
