package v1beta1

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/distribution/reference"
)

// The checks of this file are rules that containerd and the image resolver
// apply at create or pull time, made manifest errors so that they are
// reported where the operator wrote them instead of failing an apply.

// labels checks the labels of an object (field is their path) against
// containerd's limit.
func (e *errs) labels(field string, l map[string]string) {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if n := len(k) + len(l[k]); n > MaxLabelSize {
			e.add(field+"["+shorten(k, maxShownKey)+"]",
				"key and value are %d bytes together (key %d, value %d): containerd's limit is %d bytes per label",
				n, len(k), n-len(k), MaxLabelSize)
		}
	}
}

// MaxLabelSize is containerd's limit on a label: the bytes of its key and
// value together (labels.Validate of containerd 1.6 and 2.x). Cell labels
// become container labels, which containerd refuses at create time beyond it.
const MaxLabelSize = 4096

// maxShownKey is how much of a label key a field path shows (containerd's
// message shows as much); a longer one is cut with "…", and its position
// falls back to metadata.labels.
const maxShownKey = 64

// shorten returns s cut to at most n bytes (on a rune boundary) followed by
// "…" when it is longer.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// embeddedName is a parenthesized name inside a reference error, which
// repeats (part of) the reference.
var embeddedName = regexp.MustCompile(`\(([^()]*)\)`)

// image checks a container image reference the way the runtime parses it
// (distribution/reference, docker.io/library/ normalization), so that a
// reference that can never be pulled is a manifest error, not a failed
// apply.
func (e *errs) image(field, ref string) {
	if ref == "" {
		e.add(field, "is required")
		return
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		msg := embeddedName.ReplaceAllStringFunc(err.Error(), func(m string) string {
			return "(" + shorten(m[1:len(m)-1], maxShownRef) + ")"
		})
		shown := strconv.Quote(shorten(ref, maxShownRef))
		if len(ref) > maxShownRef {
			shown += fmt.Sprintf(" (%d bytes)", len(ref))
		}
		e.add(field, "invalid image reference %s: %s", shown, msg)
	}
}

// maxShownRef is how much of an image reference a message quotes.
const maxShownRef = 128
