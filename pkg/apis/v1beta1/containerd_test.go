package v1beta1

import (
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/google/go-cmp/cmp"
)

// TestMaxLabelSizeIsContainerds pins MaxLabelSize to containerd's own check
// at the boundary, so that a label the validator accepts is one containerd
// accepts.
func TestMaxLabelSizeIsContainerds(t *testing.T) {
	for _, n := range []int{MaxLabelSize - 1, MaxLabelSize, MaxLabelSize + 1} {
		k, v := "app", strings.Repeat("v", n-3)
		ours := len(validCellLabels(map[string]string{k: v})) == 0
		theirs := labels.Validate(k, v) == nil
		if ours != theirs {
			t.Errorf("a label of %d bytes: valid here = %v, valid for containerd = %v", n, ours, theirs)
		}
	}
}

func validCellLabels(l map[string]string) []FieldError {
	c := validCell()
	c.Metadata.Labels = l
	return ValidateCell(c)
}

func TestValidateLabels(t *testing.T) {
	long := strings.Repeat("k", 100)
	tests := []struct {
		name   string
		labels map[string]string
		want   []FieldError
	}{
		{name: "labels of 4096 bytes, key and value together, are valid", labels: map[string]string{"app": strings.Repeat("v", 4093), "x": ""}},
		{
			name:   "a value that makes the label 4097 bytes is rejected at the label",
			labels: map[string]string{"ok": "1", "app": strings.Repeat("v", 4094)},
			want:   []FieldError{{"metadata.labels[app]", "key and value are 4097 bytes together (key 3, value 4094): containerd's limit is 4096 bytes per label"}},
		},
		{
			name:   "a long key is shown cut in the field path",
			labels: map[string]string{long: strings.Repeat("v", 4000)},
			want: []FieldError{{
				"metadata.labels[" + strings.Repeat("k", 64) + "…]",
				"key and value are 4100 bytes together (key 100, value 4000): containerd's limit is 4096 bytes per label",
			}},
		},
		{
			name:   "a key is cut on a rune boundary",
			labels: map[string]string{strings.Repeat("k", 63) + "é" + strings.Repeat("k", 4096): ""},
			want: []FieldError{{
				"metadata.labels[" + strings.Repeat("k", 63) + "…]",
				"key and value are 4161 bytes together (key 4161, value 0): containerd's limit is 4096 bytes per label",
			}},
		},
		{
			name:   "every label over the limit is reported, sorted by key",
			labels: map[string]string{"b": strings.Repeat("v", 5000), "a": strings.Repeat("v", 5000)},
			want: []FieldError{
				{"metadata.labels[a]", "key and value are 5001 bytes together (key 1, value 5000): containerd's limit is 4096 bytes per label"},
				{"metadata.labels[b]", "key and value are 5001 bytes together (key 1, value 5000): containerd's limit is 4096 bytes per label"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, validCellLabels(tt.labels)); diff != "" {
				t.Errorf("ValidateCell (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("every kind checks its labels", func(t *testing.T) {
		big := map[string]string{"app": strings.Repeat("v", 4094)}
		want := []FieldError{{"metadata.labels[app]", "key and value are 4097 bytes together (key 3, value 4094): containerd's limit is 4096 bytes per label"}}
		got := map[string][]FieldError{
			"Realm": ValidateRealm(&Realm{Metadata: ObjectMeta{Name: "lab", Labels: big}}),
			"Space": ValidateSpace(&Space{Metadata: ObjectMeta{Name: "web", Labels: big}, Spec: SpaceSpec{RealmID: "lab"}}),
			"Stack": ValidateStack(&Stack{Metadata: ObjectMeta{Name: "blog", Labels: big}, Spec: StackSpec{RealmID: "lab", SpaceID: "web"}}),
		}
		for kind, errs := range got {
			if diff := cmp.Diff(want, errs); diff != "" {
				t.Errorf("Validate%s (-want +got):\n%s", kind, diff)
			}
		}
	})
}

func TestValidateImage(t *testing.T) {
	hex := strings.Repeat("a", 64)
	const field = "spec.containers[0].image"
	tests := []struct {
		name  string
		image string
		want  string // the message; empty for a valid reference
	}{
		{name: "a familiar name is valid", image: "busybox"},
		{name: "a fully qualified tagged name is valid", image: "docker.io/library/busybox:1.36"},
		{name: "a registry with a port is valid", image: "localhost:5000/team/app:v1"},
		{name: "a digest is valid", image: "busybox@sha256:" + hex},
		{name: "a tag and a digest are valid", image: "ghcr.io/a/b:v1@sha256:" + hex},
		{name: "an empty image is required", image: "", want: "is required"},
		{
			name: "upper case is rejected", image: "Busybox:latest",
			want: `invalid image reference "Busybox:latest": invalid reference format: repository name (library/Busybox) must be lowercase`,
		},
		{name: "a malformed digest is rejected", image: "a@sha256:zz", want: `invalid image reference "a@sha256:zz": invalid reference format`},
		{name: "a leading blank is rejected", image: " busybox", want: `invalid image reference " busybox": invalid reference format`},
		{name: "a URL is rejected", image: "http://x/y", want: `invalid image reference "http://x/y": invalid reference format`},
		{
			name: "a bare 64-character hex string is rejected", image: hex,
			want: `invalid image reference "` + hex + `": invalid repository name (` + hex + `), cannot specify 64-byte hexadecimal strings`,
		},
		{
			name: "a 100 KB name is rejected, quoted cut", image: strings.Repeat("a", 100<<10),
			want: `invalid image reference "` + strings.Repeat("a", 128) + `…" (102400 bytes): repository name must not be more than 255 characters`,
		},
		{
			name: "a 100 KB tag is rejected, quoted cut", image: "busybox:" + strings.Repeat("t", 100<<10),
			want: `invalid image reference "busybox:` + strings.Repeat("t", 120) + `…" (102408 bytes): invalid reference format`,
		},
		{
			name: "a 100 KB upper-case name is rejected, the name in the message cut too", image: strings.Repeat("A", 100<<10),
			want: `invalid image reference "` + strings.Repeat("A", 128) + `…" (102400 bytes): invalid reference format: repository name (library/` + strings.Repeat("A", 120) + `…) must be lowercase`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validCell()
			c.Spec.Containers[0].Image = tt.image
			var want []FieldError
			if tt.want != "" {
				want = []FieldError{{field, tt.want}}
			}
			if diff := cmp.Diff(want, ValidateCell(c)); diff != "" {
				t.Errorf("ValidateCell (-want +got):\n%s", diff)
			}
		})
	}
}
