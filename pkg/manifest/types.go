// Package manifest finds manifest files in a directory tree and decodes them
// into v1beta1 objects, keeping the file, line and column of every object and
// field so that every problem can be reported where the operator wrote it.
package manifest

import (
	"fmt"
	"strings"
)

// Position is a place in a manifest file. Line and Column are 1-based; zero
// means unknown (for example a problem with the file as a whole).
type Position struct {
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// String renders file:line:col, dropping the parts that are unknown.
func (p Position) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	default:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	}
}

// Severity tells an error from a warning.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one problem found in the manifests.
type Diagnostic struct {
	Severity Severity `json:"severity"`
	Position Position `json:"position"`
	// Object names the object, e.g. "Cell lab/web/blog/frontend"; empty when
	// the problem is not inside an object (a syntax error, an unreadable file).
	Object string `json:"object,omitempty"`
	// Field is the field path, e.g. "spec.containers[1].restartPolicy".
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// String renders "file:line:col: Object: field: message" (empty parts are
// left out) and prefixes warnings with "warning: ".
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Position.String())
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if d.Object != "" {
		b.WriteString(d.Object)
		b.WriteString(": ")
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Error makes a Diagnostic usable as an error.
func (d Diagnostic) Error() string { return d.String() }

// Document is one decoded object of a known kind.
type Document struct {
	// Position is where the document's object starts (its first key).
	Position Position
	// Kind is one of v1beta1.KindRealm, KindSpace, KindStack, KindCell.
	Kind string
	// Object is *v1beta1.Realm, *v1beta1.Space, *v1beta1.Stack or *v1beta1.Cell,
	// with apiVersion defaulted but no other defaults applied.
	Object any
	// Fields maps a field path ("spec.containers[1].restartPolicy",
	// "metadata.name") to the position of its value, so that later checks
	// (hierarchy, runtime) can report problems where the operator wrote them.
	Fields map[string]Position
}

// FieldPosition returns the position of path, falling back to the closest
// enclosing field that has one, and finally to the document itself.
func (d *Document) FieldPosition(path string) Position {
	for p := path; p != ""; {
		if pos, ok := d.Fields[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return d.Position
}

// File is one manifest file that was read.
type File struct {
	Path string `json:"path"`
	// Hash is the sha256 of the file's content, hex encoded.
	Hash string `json:"hash"`
	// Failed is true when the file could not be read or parsed as a whole
	// (I/O error, YAML syntax error, too large). Objects that earlier passes
	// took from a failed file must be kept, not pruned.
	Failed bool `json:"failed,omitempty"`
	// Objects is the number of documents of known kinds decoded from it.
	Objects int `json:"objects"`
}

// Result is everything Load found.
type Result struct {
	Files       []File
	Documents   []Document
	Diagnostics []Diagnostic
}

// HasErrors reports whether any diagnostic is an error.
func (r *Result) HasErrors() bool {
	for _, d := range r.Diagnostics {
		if d.Severity == SeverityError {
			return true
		}
	}
	return false
}
