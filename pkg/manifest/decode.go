package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

// kukeonKinds are kinds kukeon knows that this reconciler does not manage.
var kukeonKinds = set("Container", "Secret", "Volume", "CellBlueprint", "CellConfig")

// decoded is what one file's content decodes to. It is cached per content
// hash, so it must not depend on anything but the path and the bytes.
type decoded struct {
	docs    []Document
	diags   []Diagnostic
	objects int
	failed  bool
	budget  int // see nodeBudget
}

// chunk is a piece of a stream between "---" lines, parsed on its own so
// that a syntax error in one document does not hide the others.
type chunk struct {
	data    []byte
	lineOff int // lines before the chunk in the file
}

// splitDocuments cuts data before every line that starts with "---"
// followed by a blank or the end of the line. In YAML such a line always
// starts a document (it may not occur inside a scalar), so each piece
// parses exactly as it would inside the whole stream.
func splitDocuments(data []byte) []chunk {
	var out []chunk
	start, startLine, line := 0, 0, 0
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if end >= 0 {
			next = i + end + 1
		}
		if i > start && isDocStart(data[i:next]) {
			out = append(out, chunk{data: data[start:i], lineOff: startLine})
			start, startLine = i, line
		}
		line += lineBreaks(data[i:next])
		i = next
	}
	return append(out, chunk{data: data[start:], lineOff: startLine})
}

// lineBreaks counts the line breaks of seg as the YAML parser does: "\n",
// "\r\n", a lone "\r", and the Unicode NEL, LS and PS.
func lineBreaks(seg []byte) int {
	n := 0
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '\n':
			n++
		case '\r':
			if i+1 == len(seg) || seg[i+1] != '\n' {
				n++
			}
		case 0xc2:
			if i+1 < len(seg) && seg[i+1] == 0x85 {
				n++
			}
		case 0xe2:
			if i+2 < len(seg) && seg[i+1] == 0x80 && (seg[i+2] == 0xa8 || seg[i+2] == 0xa9) {
				n++
			}
		}
	}
	return n
}

func isDocStart(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	return len(line) == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\n' || line[3] == '\r'
}

// decodeFile decodes every document of a file. It never panics on bad input.
func decodeFile(file string, data []byte) *decoded {
	d := &decoded{budget: nodeBudget(len(data))}
	// The common case, a file without syntax errors, is parsed as one
	// stream (one parser for all documents). Only a file with a syntax
	// error is parsed again piece by piece, to report what follows it.
	var roots []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		root := new(yaml.Node)
		err := safeDecode(dec, root)
		if errors.Is(err, io.EOF) {
			for _, root := range roots {
				d.decodeDocument(file, 0, root)
			}
			return d
		}
		if err != nil {
			break
		}
		roots = append(roots, root)
	}
	for _, c := range splitDocuments(data) {
		d.decodeChunk(file, c)
	}
	return d
}

func (d *decoded) decodeChunk(file string, c chunk) {
	dec := yaml.NewDecoder(bytes.NewReader(c.data))
	for {
		var root yaml.Node
		err := safeDecode(dec, &root)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			line, col, msg := syntaxPosition(c.data, err)
			d.failed = true
			d.diags = append(d.diags, Diagnostic{
				Severity: SeverityError,
				Position: Position{File: file, Line: line + c.lineOff, Column: col},
				Message:  "syntax error: " + msg,
			})
			return
		}
		d.decodeDocument(file, c.lineOff, &root)
	}
}

// safeDecode turns a panic inside the YAML parser into an error.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

// newObject returns a pointer to a new object of a managed kind.
func newObject(kind string) any {
	switch kind {
	case v1beta1.KindRealm:
		return &v1beta1.Realm{}
	case v1beta1.KindSpace:
		return &v1beta1.Space{}
	case v1beta1.KindStack:
		return &v1beta1.Stack{}
	case v1beta1.KindCell:
		return &v1beta1.Cell{}
	}
	return nil
}

func (d *decoded) decodeDocument(file string, lineOff int, doc *yaml.Node) {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	pos := Position{File: file, Line: root.Line + lineOff, Column: root.Column}
	if isNull(root) {
		return // empty or comment-only document
	}
	fail := func(at Position, field, format string, args ...any) {
		d.failed = true
		d.diags = append(d.diags, Diagnostic{Severity: SeverityError, Position: at, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if root.Kind != yaml.MappingNode {
		fail(pos, "", "a document must be a mapping, got %s", describe(root))
		return
	}
	var apiVersion, kind *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "apiVersion":
			apiVersion = root.Content[i+1]
		case "kind":
			kind = root.Content[i+1]
		}
	}
	at := func(n *yaml.Node) Position { return Position{File: file, Line: n.Line + lineOff, Column: n.Column} }
	bad := false
	if apiVersion != nil && !isNull(apiVersion) && apiVersion.Value != v1beta1.APIVersion {
		fail(at(apiVersion), "apiVersion", "unsupported apiVersion %q (want %s)", apiVersion.Value, v1beta1.APIVersion)
		bad = true
	}
	kindName := ""
	if kind != nil && kind.Kind == yaml.ScalarNode && !isNull(kind) {
		kindName = kind.Value
	}
	obj := newObject(kindName)
	switch {
	case kind == nil || isNull(kind):
		fail(pos, "", "kind is required")
		return
	case kukeonKinds[kindName]:
		fail(at(kind), "kind", "unsupported kind %q: this reconciler manages Realm, Space, Stack and Cell", kindName)
		return
	case obj == nil:
		if kind.Kind != yaml.ScalarNode {
			fail(at(kind), "kind", "expected a string, got %s", describe(kind))
		} else {
			fail(at(kind), "kind", "unknown kind %q", kindName)
		}
		return
	}
	if bad {
		return
	}
	d.objects++
	s := &strict{file: file, lineOff: lineOff, fields: make(map[string]Position, 32), budget: d.budget}
	s.decode(root, reflect.ValueOf(obj).Elem(), "")
	document := Document{Position: pos, Kind: kindName, Object: obj, Fields: s.fields}
	var fieldErrs []v1beta1.FieldError
	var name string
	switch o := obj.(type) {
	case *v1beta1.Realm:
		o.APIVersion = v1beta1.APIVersion
		fieldErrs = v1beta1.ValidateRealm(o)
		name = "Realm " + orUnknown(o.Metadata.Name)
	case *v1beta1.Space:
		o.APIVersion = v1beta1.APIVersion
		fieldErrs = v1beta1.ValidateSpace(o)
		name = "Space " + pathName(o.Spec.RealmID, o.Metadata.Name)
	case *v1beta1.Stack:
		o.APIVersion = v1beta1.APIVersion
		fieldErrs = v1beta1.ValidateStack(o)
		name = "Stack " + pathName(o.Spec.RealmID, o.Spec.SpaceID, o.Metadata.Name)
	case *v1beta1.Cell:
		o.APIVersion = v1beta1.APIVersion
		fieldErrs = v1beta1.ValidateCell(o)
		name = "Cell " + pathName(o.Spec.RealmID, o.Spec.SpaceID, o.Spec.StackID, o.Metadata.Name)
	}
	hasErr := false
	for i := range s.diags {
		s.diags[i].Object = name
		hasErr = hasErr || s.diags[i].Severity == SeverityError
	}
	d.diags = append(d.diags, s.diags...)
	for _, fe := range fieldErrs {
		if covered(fe.Field, s.errPaths) {
			continue
		}
		hasErr = true
		d.diags = append(d.diags, Diagnostic{
			Severity: SeverityError,
			Position: document.FieldPosition(fe.Field),
			Object:   name,
			Field:    fe.Field,
			Message:  fe.Message,
		})
	}
	if hasErr {
		d.failed = true
		return
	}
	d.docs = append(d.docs, document)
}

// covered reports whether field is at or below one of paths.
func covered(field string, paths []string) bool {
	for _, p := range paths {
		if p == "" || field == p || strings.HasPrefix(field, p) && (field[len(p)] == '.' || field[len(p)] == '[') {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func pathName(parts ...string) string {
	for i := range parts {
		parts[i] = orUnknown(parts[i])
	}
	return strings.Join(parts, "/")
}
