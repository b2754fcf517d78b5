package manifest

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// decodeSource decodes a file's content. Content that stops in the middle
// of a line is what "cat > file" (or any writer not renaming into place)
// leaves while it writes, and YAML cannot tell most such cuts from a
// complete file: a document cut after "image: d" is a valid cell of image
// "d", one cut after a container is a valid cell with fewer containers. So
// the last document of such content (from the last "---" line) is ignored
// and the file fails with an error at the cut. A last document in flow
// style (JSON) is exempt: cut anywhere, it is a syntax error.
//
// Hazard: a cut exactly at the end of a line, in particular at a document
// boundary, still decodes to a valid, smaller set of objects.
func decodeSource(file string, data []byte) *decoded {
	if len(data) == 0 || data[len(data)-1] == '\n' || data[len(data)-1] == '\r' {
		return decodeFile(file, data)
	}
	chunks := splitDocuments(data)
	last := chunks[len(chunks)-1]
	if flowDocument(last.data) {
		return decodeFile(file, data)
	}
	d := decodeFile(file, data[:len(data)-len(last.data)])
	d.failed = true
	tail := data[bytes.LastIndexAny(data, "\r\n")+1:]
	d.diags = append(d.diags, Diagnostic{
		Severity: SeverityError,
		Position: Position{File: file, Line: lineBreaks(data) + 1, Column: utf8.RuneCount(tail) + 1},
		Message: fmt.Sprintf("the file does not end with a line break: it may be cut short while being written, "+
			"so its last document (from line %d) is ignored; end the file with a line break", last.lineOff+1),
	})
	return d
}

// flowDocument reports whether the document chunk (it may start with its
// "---" line) holds a flow-style root: its first character that is not a
// byte order mark, blank, comment or the "---" marker is '{' or '['.
func flowDocument(chunk []byte) bool {
	chunk = bytes.TrimPrefix(chunk, []byte("\xef\xbb\xbf"))
	if isDocStart(chunk) {
		chunk = chunk[3:]
	}
	for len(chunk) > 0 {
		switch chunk[0] {
		case ' ', '\t', '\n', '\r':
			chunk = chunk[1:]
		case '#':
			i := bytes.IndexAny(chunk, "\r\n")
			if i < 0 {
				return false
			}
			chunk = chunk[i:]
		case '{', '[':
			return true
		default:
			return false
		}
	}
	return false
}
