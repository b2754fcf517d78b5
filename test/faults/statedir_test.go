package faults

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kukeon/reconciler/pkg/testenv"
)

// TestStateDirUnwritable: with the state dir full, then read-only, a pass
// that would create a cell, recreate a running container (env change) and
// prune a cell changes nothing: it fails with exit 1 naming the state dir,
// the container being recreated keeps running, nothing is deleted that the
// inventory cannot record; the daemon's /readyz is 503 with the reason.
// Once the disk is fixed, one pass converges.
func TestStateDirUnwritable(t *testing.T) {
	h := newHost(t, testenv.HostOptions{StateTmpfsSize: "16m"})
	keep, rec := newCell("lab", "keep"), newCell("lab", "rec")
	rec.env = "REV=1"
	h.declareCells(keep, rec, newCell("lab", "prune1"), newCell("lab", "prune2"))
	converge(t, h)

	faults := []struct {
		name           string
		inject, repair func(t *testing.T)
		prune, add     string
	}{
		{
			name: "full", prune: "prune1", add: "new1",
			inject: func(t *testing.T) { fillDir(t, h.State) },
			repair: func(t *testing.T) {
				if err := os.Remove(filepath.Join(h.State, "filler")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "read-only", prune: "prune2", add: "new2",
			inject: func(t *testing.T) {
				if err := h.SetStateReadOnly(true); err != nil {
					t.Fatal(err)
				}
			},
			repair: func(t *testing.T) {
				if err := h.SetStateReadOnly(false); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for i, f := range faults {
		t.Run("state dir "+f.name, func(t *testing.T) {
			h := h.in(t)
			before := h.tasks()
			f.inject(t)
			fixed := false
			defer func() {
				if !fixed {
					f.repair(t)
				}
			}()
			rec.env = fmt.Sprintf("REV=%d", i+2)
			h.declareCells(rec, newCell("lab", f.add))
			h.undeclare(f.prune + ".yaml")

			// rec's app must keep running: its recreate cannot be recorded.
			failingPass(t, h, before, "the state dir "+f.name, h.State)

			d := h.StartDaemon("--resync", "5s")
			ok, why := testenv.Eventually(30*time.Second, 100*time.Millisecond, func() (bool, string) {
				code, body := d.Get("/readyz")
				return code == 503 && strings.Contains(body, h.State), fmt.Sprintf("%d %q", code, body)
			})
			if !ok {
				t.Errorf("daemon with the state dir %s: /readyz is not 503 naming %s: last answer %s", f.name, h.State, why)
			}
			// Give the daemon a pass or two at the broken state dir.
			testenv.Eventually(10*time.Second, 100*time.Millisecond, func() (bool, string) {
				return strings.Contains(d.Output(), h.State), "no log line names the state dir"
			})
			expectUnchanged(t, h, before, "the daemon at the state dir "+f.name)

			f.repair(t)
			fixed = true
			if ok, why := testenv.Eventually(deadline, 100*time.Millisecond, func() (bool, string) {
				code, body := d.Get("/readyz")
				return code == 200, fmt.Sprintf("%d %q", code, body)
			}); !ok {
				t.Errorf("daemon after the state dir was fixed: /readyz is not 200: %s", why)
			}
			if _, err := d.Stop(); err != nil {
				t.Errorf("stop daemon: %v", err)
			}
			converge(t, h)
		})
	}
}

// fillDir fills the file system of dir with dir/filler until it has no
// space left, and checks that a new file cannot get a byte.
func fillDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					f.Close()
					t.Fatalf("fill %s: %v", dir, err)
				}
				break
			}
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill %s: %v", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".probe"), []byte("x"), 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%s is not full: writing a byte gave %v", dir, err)
	}
	if err := os.Remove(filepath.Join(dir, ".probe")); err != nil {
		t.Fatal(err)
	}
}
