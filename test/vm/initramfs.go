// Package vm is the pure cgroup v2 suite: it boots a Debian kernel under
// qemu (software emulation) with the host root shared read-only over 9p,
// runs job.sh inside the VM against a private containerd and the reconciler
// built on the host, and reports the job's checks as subtests.
//
// This file builds the VM's initramfs: a newc cpio archive holding a static
// busybox as /init's shell, the kernel modules the init script needs (9p
// over virtio, overlay) in load order, and init.sh itself.
package vm

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// initScript is /init of the initramfs: it mounts the shares, builds the
// overlay root, chroots into it to run the job and powers off.
//
//go:embed init.sh
var initScript []byte

// bootModules are the modules /init needs; their dependencies are added.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"}

// moduleOrder resolves names (as in bootModules) against modules.dep of the
// module tree dir and returns the module paths relative to dir, every
// dependency before its dependents, each once. Built-in modules (listed in
// modules.builtin) are left out. It returns an error naming a module that is
// neither a loadable nor a built-in module.
func moduleOrder(dir string, names []string) ([]string, error) {
	deps, err := readModulesDep(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	byName := make(map[string]string, len(deps))
	for path := range deps {
		byName[moduleName(path)] = path
	}
	var order []string
	seen := make(map[string]bool)
	var visit func(path string)
	visit = func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		for _, d := range deps[path] {
			visit(d)
		}
		order = append(order, path)
	}
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		path, ok := byName[n]
		switch {
		case ok:
			visit(path)
		case builtin[n]:
		default:
			return nil, fmt.Errorf("module %s: not in %s", n, dir)
		}
	}
	return order, nil
}

// moduleName is the canonical name of a module path:
// "kernel/net/9p/9pnet_virtio.ko.xz" → "9pnet_virtio".
func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

func readModulesDep(file string) (map[string][]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	deps := make(map[string][]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
	}
	return deps, sc.Err()
}

func readBuiltin(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	builtin := make(map[string]bool)
	for _, line := range strings.Fields(string(data)) {
		builtin[moduleName(line)] = true
	}
	return builtin, nil
}

// moduleBytes returns the uncompressed module at path. Debian 12 ships
// plain .ko files; .ko.xz and .ko.zst (newer kernels) are decompressed with
// the host's xz or zstd, because insmod in busybox may lack either.
func moduleBytes(path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(path, ".gz"):
		tool = "gzip"
	default:
		return nil, fmt.Errorf("module %s: unknown compression", path)
	}
	out, err := exec.Command(tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", path, err)
	}
	return out, nil
}

// writeInitramfs writes the initramfs to w: /init (init.sh), /bin/busybox
// (busybox must be a static binary), the modules of moduleDir needed by
// bootModules under /lib/modules/ and /modules.order naming them in load
// order.
func writeInitramfs(w io.Writer, busybox, moduleDir string) error {
	order, err := moduleOrder(moduleDir, bootModules)
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	a := &cpioWriter{w: w}
	for _, d := range []string{"bin", "dev", "proc", "sys", "lib", "lib/modules"} {
		a.dir(d)
	}
	a.file("init", 0o755, initScript)
	a.file("bin/busybox", 0o755, bb)
	a.symlink("bin/sh", "busybox")
	var names []string
	for _, rel := range order {
		data, err := moduleBytes(filepath.Join(moduleDir, rel))
		if err != nil {
			return err
		}
		name := moduleName(rel) + ".ko"
		a.file("lib/modules/"+name, 0o644, data)
		names = append(names, name)
	}
	a.file("modules.order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	return a.close()
}

// cpioWriter writes a newc ("070701") cpio archive, the format the kernel
// unpacks as an initramfs. The first error sticks and is returned by close.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func (a *cpioWriter) dir(name string)                      { a.entry(name, 0o040755, nil) }
func (a *cpioWriter) file(name string, perm int, b []byte) { a.entry(name, 0o100000|perm, b) }
func (a *cpioWriter) symlink(name, target string)          { a.entry(name, 0o120777, []byte(target)) }

func (a *cpioWriter) close() error {
	a.entry("TRAILER!!!", 0, nil)
	return a.err
}

func (a *cpioWriter) entry(name string, mode int, data []byte) {
	if a.err != nil {
		return
	}
	a.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		a.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf.WriteString(name)
	buf.WriteByte(0)
	pad(&buf)
	buf.Write(data)
	pad(&buf)
	_, a.err = a.w.Write(buf.Bytes())
}

// pad aligns the archive to 4 bytes, as newc requires after the name and
// after the data.
func pad(buf *bytes.Buffer) {
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
}
