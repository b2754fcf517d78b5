package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A module tree shaped like Debian 6.1's for the boot modules.
const testModulesDep = `kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/overlayfs/overlay.ko.xz:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`

func TestModuleOrder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(testModulesDep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		modules []string
		want    []string
		wantErr bool
	}{
		{
			name:    "loads dependencies before dependents, each once",
			modules: []string{"9p", "9pnet_virtio"},
			want: []string{
				"kernel/net/9p/9pnet.ko", "kernel/fs/netfs/netfs.ko", "kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko",
				"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/net/9p/9pnet_virtio.ko",
			},
		},
		{
			name:    "resolves the boot modules of the VM in a loadable order",
			modules: bootModules,
			want: []string{
				"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
				"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko",
				"kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet_virtio.ko",
				"kernel/fs/netfs/netfs.ko", "kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko",
				"kernel/fs/overlayfs/overlay.ko.xz",
			},
		},
		{
			name:    "skips a module built into the kernel",
			modules: []string{"ext4", "virtio"},
			want:    []string{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"},
		},
		{
			name:    "rejects a module the kernel does not have",
			modules: []string{"nosuchfs"},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := moduleOrder(dir, tt.modules)
			if (err != nil) != tt.wantErr {
				t.Fatalf("moduleOrder() error = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("moduleOrder() (-want +got):\n%s", diff)
			}
		})
	}
}

// cpioEntry is one decoded newc entry.
type cpioEntry struct {
	Name string
	Mode int64
	Data string
}

// readCpio decodes a newc archive up to its trailer.
func readCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var es []cpioEntry
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("entry at %d: magic %q", off, h[:6])
		}
		field := func(i int) int64 {
			v, err := strconv.ParseInt(string(h[6+8*i:14+8*i]), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		data := align(off + 110 + namesize)
		off = align(data + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("trailer ends at %d, archive is %d bytes", off, len(b))
			}
			return es
		}
		es = append(es, cpioEntry{Name: name, Mode: mode, Data: string(b[data : data+size])})
	}
}

func TestCpioWriter(t *testing.T) {
	var buf bytes.Buffer
	a := &cpioWriter{w: &buf}
	a.dir("bin")
	a.file("init", 0o755, []byte("#!/bin/sh\n"))
	a.file("bin/odd", 0o644, []byte("12345"))
	a.symlink("bin/sh", "busybox")
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	want := []cpioEntry{
		{Name: "bin", Mode: 0o040755},
		{Name: "init", Mode: 0o100755, Data: "#!/bin/sh\n"},
		{Name: "bin/odd", Mode: 0o100644, Data: "12345"},
		{Name: "bin/sh", Mode: 0o120777, Data: "busybox"},
	}
	if diff := cmp.Diff(want, readCpio(t, buf.Bytes())); diff != "" {
		t.Errorf("archive entries (-want +got):\n%s", diff)
	}
}

func TestParseResults(t *testing.T) {
	got := parseResults([]byte("ok vm-boots\nFAIL level-limits: 2 cgroup files differ: a: b\n\nstray line\n"))
	want := []result{
		{name: "vm-boots", ok: true},
		{name: "level-limits", detail: "2 cgroup files differ: a: b"},
		{name: "malformed", detail: "results line: stray line"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(result{})); diff != "" {
		t.Errorf("parseResults() (-want +got):\n%s", diff)
	}
}
