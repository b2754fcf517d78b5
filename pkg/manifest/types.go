// Package manifest finds manifest files in a directory tree and decodes them
// into v1beta1 objects, keeping the file, line and column of every object and
// field so that every problem can be reported where the operator wrote it.
package manifest

import (
	"fmt"
	"path/filepath"
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

// File is one manifest source the walk read, or failed to read.
type File struct {
	// Path is the file's path as the walk formed it (the path given, or
	// the path given joined with the names below it). For a failed File it
	// may be a directory's: see Dir.
	Path string `json:"path"`
	// Hash is the sha256 of the file's content, hex encoded; empty when the
	// file could not be read.
	Hash string `json:"hash"`
	// Failed is true when the source could not be read or parsed as a whole
	// (I/O error, dangling symlink, symlink loop, YAML syntax error, too
	// large) or one of its documents is invalid. Objects that earlier passes
	// took from a failed source must be kept, not pruned: see
	// Result.FailedSource. Every error diagnostic of the walk itself has a
	// failed File at its position's path.
	Failed bool `json:"failed,omitempty"`
	// Dir is true for a failed source that is, or may have been, a
	// directory: one that could not be listed, a symlink loop, or an entry
	// of unknown type (a dangling symlink, a path that could not be
	// stat'ed). Everything under Path failed with it.
	Dir bool `json:"dir,omitempty"`
	// Objects is the number of documents of known kinds decoded from it.
	// Zero for a file that is not Failed means the file holds no object
	// (empty, only "---" or comments).
	Objects int `json:"objects"`
}

// Result is everything Load found.
type Result struct {
	Files       []File
	Documents   []Document
	Diagnostics []Diagnostic
}

// FailedSource reports whether path, the source of an object recorded by an
// earlier pass, failed this Load: it is a failed File's Path, or lies under
// the Path of a failed File with Dir set. Paths are compared cleaned and as
// given (a relative path never matches an absolute one), so path must be
// formed as File.Path is, from the same arguments to Load.
func (r *Result) FailedSource(path string) bool {
	path = filepath.Clean(path)
	for _, f := range r.Files {
		if !f.Failed {
			continue
		}
		p := filepath.Clean(f.Path)
		if path == p || f.Dir && under(path, p) {
			return true
		}
	}
	return false
}

// under reports whether path lies strictly below dir; both are clean.
func under(path, dir string) bool {
	if dir == "/" {
		return path != "/" && strings.HasPrefix(path, "/")
	}
	if dir == "." {
		return path != "." && !filepath.IsAbs(path) && path != ".." && !strings.HasPrefix(path, "../")
	}
	return strings.HasPrefix(path, dir+"/")
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
