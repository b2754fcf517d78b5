package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// RemoveEmptyRuncDirs removes the runc state directories
// /run/containerd/runc/<namespace> of the namespaces whose name ends in
// suffix, each only if it is empty. The runc shim of containerd 1.6 leaves
// one per namespace it ran a container in, also after the namespace is
// deleted; Stop removes only those of the namespaces that still exist. A
// caller that deletes namespaces on the way gives them a suffix of its own
// (a random part in it) and calls this at the end. A directory that holds
// anything is kept: a container of another daemon may live there.
func RemoveEmptyRuncDirs(suffix string) error {
	return removeEmptyDirs(defaultRuncRoot, suffix)
}

// removeEmptyDirs rmdirs the subdirectories of root whose name ends in
// suffix; non-empty and vanished ones are no error.
func removeEmptyDirs(root, suffix string) error {
	if suffix == "" {
		return fmt.Errorf("remove empty dirs in %s: empty suffix would match every namespace", root)
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove empty dirs in %s: %w", root, err)
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		// rmdir, never RemoveAll: it refuses a directory with entries.
		err := syscall.Rmdir(filepath.Join(root, e.Name()))
		if err != nil && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(root, e.Name()), err))
		}
	}
	return errors.Join(errs...)
}
