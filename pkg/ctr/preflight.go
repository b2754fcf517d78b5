package ctr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// Preflight checks, without changing anything in containerd, what a
// CreateContainer and then a StartContainer of spec in ns need, so that a
// caller can refuse a recreate before it stops the old container:
//
//   - the image is present and unpacked in ns. Preflight never sources an
//     image: EnsureImage, called before, applies the pull policy, and after
//     it every policy needs the same, presence — Never because nothing may
//     be pulled, IfNotPresent and Always because EnsureImage has just made
//     the image present (Preflight does not ask a registry whether Always
//     would find a newer one);
//   - the ID is free, or held by our own container (which a recreate
//     deletes first) or by a leftover of ours (which CreateContainer
//     clears): a container or a snapshot under the ID without our label
//     fails;
//   - the log file can be created and written: a probe file of one byte is
//     written and removed in its directory, or in the nearest directory of
//     its path that exists when the rest is still to be made — a read-only,
//     full or missing state dir fails here;
//   - for a synthesized root (spec.Pause), the pause binary is an
//     executable regular file;
//   - the source of every bind mount exists, and every device is one.
//
// It returns every problem found, joined: a missing image matches
// ErrImageNotPresent, a foreign object under the ID ErrAlreadyExists and
// ErrNotOwned, and an unreachable containerd ErrUnavailable.
func (c *Client) Preflight(ctx context.Context, ns string, spec ContainerSpec) error {
	cc, err := c.conn()
	if err != nil {
		return err
	}
	nctx := nsCtx(ctx, ns)
	var errs []error
	if err := c.checkImage(nctx, cc, ns, spec.Image); err != nil {
		if isUnavailable(err) {
			return fmt.Errorf("preflight %s: %w", spec.ID, err)
		}
		errs = append(errs, err)
	}
	if err := c.checkID(nctx, cc, ns, spec.ID); err != nil {
		if isUnavailable(err) {
			return fmt.Errorf("preflight %s: %w", spec.ID, err)
		}
		errs = append(errs, err)
	}
	logPath := spec.LogPath
	if logPath == "" {
		logPath = c.logPath(ns, spec.ID)
	}
	if err := checkWritable(logPath); err != nil {
		errs = append(errs, fmt.Errorf("log file: %w", err))
	}
	if spec.Pause {
		if err := checkExecutable(c.cfg.PauseBinary); err != nil {
			errs = append(errs, fmt.Errorf("pause binary: %w", err))
		}
	}
	for _, m := range spec.Mounts {
		if m.Kind == "tmpfs" {
			continue
		}
		if _, err := os.Stat(m.Source); err != nil {
			errs = append(errs, fmt.Errorf("bind mount source for %s: %w", m.Target, err))
		}
	}
	for _, d := range spec.Devices {
		st, err := os.Stat(d)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("device: %w", err))
		case st.Mode()&fs.ModeDevice == 0:
			errs = append(errs, fmt.Errorf("device %s: not a device node", d))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("preflight %s in %s: %w", spec.ID, ns, errors.Join(errs...))
	}
	return nil
}

// checkImage fails unless image ref is present and unpacked for the default
// snapshotter in the namespace of nctx.
func (c *Client) checkImage(nctx context.Context, cc *client.Client, ns, ref string) error {
	name := NormalizeImage(ref)
	meta, err := cc.ImageService().Get(nctx, name)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s in namespace %s: %w", name, ns, ErrImageNotPresent)
	}
	if err != nil {
		return c.fail(cc, "image "+name+" in "+ns, err)
	}
	ok, err := client.NewImage(cc, meta).IsUnpacked(nctx, "")
	if err != nil {
		return c.fail(cc, "image "+name+" in "+ns, err)
	}
	if !ok {
		return fmt.Errorf("image %s in namespace %s is not unpacked (EnsureImage unpacks it): %w", name, ns, ErrImageNotPresent)
	}
	return nil
}

// checkID fails when something that is not ours holds id in the namespace
// of nctx: a container, or a snapshot with key id.
func (c *Client) checkID(nctx context.Context, cc *client.Client, ns, id string) error {
	info, err := cc.ContainerService().Get(nctx, id)
	switch {
	case err == nil && info.Labels[LabelManagedBy] != ManagedByValue:
		return errForeignContainer(ns, id)
	case err == nil:
		return nil
	case !errdefs.IsNotFound(err):
		return c.fail(cc, "container "+id+" in "+ns, err)
	}
	st, err := cc.SnapshotService("").Stat(nctx, id)
	switch {
	case errdefs.IsNotFound(err):
		return nil
	case err != nil:
		return c.fail(cc, "snapshot "+id+" in "+ns, err)
	case st.Labels[LabelManagedBy] != ManagedByValue:
		return errForeignSnapshot(ns, id)
	}
	return nil
}

// checkWritable fails unless file path can be created (with its missing
// parents) and written: it writes one byte to a probe file in the deepest
// existing directory of path and removes it. An existing path must be a
// regular file.
func checkWritable(path string) error {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	dir := filepath.Dir(path)
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s: %s is not a directory", path, dir)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return err
		}
		dir = parent
	}
	f, err := os.CreateTemp(dir, ".preflight-*")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	_, werr := f.Write([]byte{0})
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// checkExecutable fails unless path is a regular file with an execute bit.
func checkExecutable(path string) error {
	if path == "" {
		return errors.New("not configured, and the reconciler's own executable could not be found")
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file", path)
	case st.Mode()&0o111 == 0:
		return fmt.Errorf("%s: not executable", path)
	}
	return nil
}
