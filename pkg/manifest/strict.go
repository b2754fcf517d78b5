package manifest

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/kukeon/reconciler/pkg/apis/v1beta1"
)

// kukeonOnly lists, per struct type, the keys kukeon accepts that this
// project does not implement: they are warned about and not decoded.
var kukeonOnly = map[reflect.Type]map[string]bool{
	reflect.TypeOf(v1beta1.Container{}): set("attachable", "tty", "repos", "git", "secrets", "ports",
		"networks", "networksAliases", "securityOpts", "cniConfigPath", "containerdId", "hostCgroup",
		"kukeonGroupGID", "realmId", "spaceId", "stackId", "cellId"),
	reflect.TypeOf(v1beta1.SpaceSpec{}):  set("network", "defaults", "cniConfigPath"),
	reflect.TypeOf(v1beta1.CellSpec{}):   set("tty", "provenance"),
	reflect.TypeOf(v1beta1.ObjectMeta{}): set("generation"),
	reflect.TypeOf(v1beta1.Volume{}):     set("mode", "volumeRef", "ensure"),
}

// silent lists, per struct type, keys that are dropped without a word: a
// status written back by kukeon is not part of the desired state.
var silent = map[reflect.Type]map[string]bool{
	reflect.TypeOf(v1beta1.Realm{}): set("status"),
	reflect.TypeOf(v1beta1.Space{}): set("status"),
	reflect.TypeOf(v1beta1.Stack{}): set("status"),
	reflect.TypeOf(v1beta1.Cell{}):  set("status"),
}

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// structInfo is the json-tag view of a struct type.
type structInfo struct {
	fields map[string][]int // key → field index path (embedded structs are promoted)
	keys   []string         // sorted, for suggestions
}

var structInfos sync.Map // reflect.Type → *structInfo

func infoOf(t reflect.Type) *structInfo {
	if v, ok := structInfos.Load(t); ok {
		return v.(*structInfo)
	}
	si := &structInfo{fields: map[string][]int{}}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			idx := append(append([]int(nil), prefix...), i)
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if name == "" {
				name = f.Name
			}
			si.fields[name] = idx
			si.keys = append(si.keys, name)
		}
	}
	walk(t, nil)
	sort.Strings(si.keys)
	v, _ := structInfos.LoadOrStore(t, si)
	return v.(*structInfo)
}

var quantityType = reflect.TypeOf(v1beta1.Quantity{})

// nodeBudget bounds the nodes a document of a file of size bytes may expand
// to through aliases, so that an alias bomb costs an error, not the
// daemon's memory. Without aliases a node takes at least two bytes of
// source, so no document without aliases comes near it.
func nodeBudget(size int) int { return 1000 + 2*size }

// strict decodes a node tree into a typed value by the value's json tags,
// reporting every unknown key, wrong type and bad quantity with its position
// instead of stopping at the first.
type strict struct {
	file    string
	lineOff int
	fields  map[string]Position
	diags   []Diagnostic
	// errPaths are the field paths that had a decode error; validation
	// errors at or below them are noise and are dropped.
	errPaths []string
	nodes    int
	budget   int
	exceeded bool
}

func (s *strict) pos(n *yaml.Node) Position {
	return Position{File: s.file, Line: n.Line + s.lineOff, Column: n.Column}
}

func (s *strict) errorf(n *yaml.Node, path, format string, args ...any) {
	s.diags = append(s.diags, Diagnostic{Severity: SeverityError, Position: s.pos(n), Field: path, Message: fmt.Sprintf(format, args...)})
	s.errPaths = append(s.errPaths, path)
}

func (s *strict) warnf(n *yaml.Node, path, format string, args ...any) {
	s.diags = append(s.diags, Diagnostic{Severity: SeverityWarning, Position: s.pos(n), Field: path, Message: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a float"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a scalar"
	}
	return "nothing"
}

// expected names what a Go type wants.
func expected(t reflect.Type) string {
	if t == quantityType {
		return "a quantity (an integer or a string like 512Mi)"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Slice:
		return "a sequence"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Pointer:
		return expected(t.Elem())
	}
	return t.String()
}

// decode sets v from n. path is the field path of v ("" for the document).
func (s *strict) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	s.nodes++
	if s.nodes > s.budget {
		if !s.exceeded {
			s.exceeded = true
			s.errorf(n, path, "aliases expand the document to more than %d nodes", s.budget)
		}
		return
	}
	if path != "" {
		s.fields[path] = s.pos(n)
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		if isNull(n) {
			return
		}
		p := reflect.New(t.Elem())
		s.decode(n, p.Elem(), path)
		v.Set(p)
		return
	}
	if t == quantityType {
		s.quantity(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		s.object(n, v, path)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			s.errorf(n, path, "expected %s, got %s", expected(t), describe(n))
			return
		}
		sl := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			s.decode(c, sl.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(sl)
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			s.errorf(n, path, "expected %s, got %s", expected(t), describe(n))
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				s.errorf(k, path, "keys must be strings, got %s", describe(k))
				continue
			}
			kp := path + "[" + k.Value + "]"
			if line, dup := seen[k.Value]; dup {
				s.errorf(k, kp, "duplicate key %q (first at line %d)", k.Value, line)
				continue
			}
			seen[k.Value] = k.Line + s.lineOff
			ev := reflect.New(t.Elem()).Elem()
			s.decode(val, ev, kp)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode {
			s.errorf(n, path, "expected a string, got %s", describe(n))
			return
		}
		// Like yaml.v3, any scalar is text: `user: 1000` is "1000".
		v.SetString(n.Value)
	case reflect.Bool:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			s.errorf(n, path, "expected a boolean, got %s", describe(n))
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil {
			s.errorf(n, path, "expected a boolean, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int64, reflect.Int, reflect.Int32:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			s.errorf(n, path, "expected an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, t.Bits())
		if err != nil {
			s.errorf(n, path, "integer %s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	default:
		s.errorf(n, path, "cannot decode into %s", t)
	}
}

func (s *strict) quantity(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		s.errorf(n, path, "expected %s, got %s", expected(quantityType), describe(n))
		return
	}
	switch n.ShortTag() {
	case "!!int", "!!str", "!!float":
	default:
		s.errorf(n, path, "expected %s, got %s", expected(quantityType), describe(n))
		return
	}
	q, err := v1beta1.ParseQuantity(n.Value)
	if err != nil {
		s.errorf(n, path, "%s", err.Error())
		return
	}
	v.Set(reflect.ValueOf(q))
}

// object decodes a mapping into a struct: known keys by json tag, kukeon's
// unimplemented keys with a warning, anything else an error.
func (s *strict) object(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		s.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	info := infoOf(t)
	seen := make(map[string]int, len(n.Content)/2)
	// Merge keys (<<: *base) come first so that explicit keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			s.merge(n.Content[i+1], v, path, 0)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			s.errorf(k, path, "keys must be strings, got %s", describe(k))
			continue
		}
		key := k.Value
		if key == "<<" && k.ShortTag() == "!!merge" {
			continue
		}
		kp := join(path, key)
		if line, dup := seen[key]; dup {
			s.errorf(k, kp, "duplicate field %q (first at line %d)", key, line)
			continue
		}
		seen[key] = k.Line + s.lineOff
		if idx, ok := info.fields[key]; ok {
			s.decode(val, v.FieldByIndex(idx), kp)
			continue
		}
		if kukeonOnly[t][key] {
			s.fields[kp] = s.pos(val)
			s.warnf(k, kp, "field %q is accepted for kukeon compatibility and ignored", key)
			continue
		}
		if silent[t][key] {
			continue
		}
		msg := fmt.Sprintf("unknown field %q", key)
		sug := suggest(key, info.keys)
		if sug != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", sug)
		}
		s.errorf(k, kp, "%s", msg)
		if sug != "" {
			// "spec.containers is required" would only repeat the typo.
			s.errPaths = append(s.errPaths, join(path, sug))
		}
	}
}

// merge applies the mapping (or sequence of mappings) of a merge key.
func (s *strict) merge(n *yaml.Node, v reflect.Value, path string, depth int) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if depth > 8 {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		s.object(n, v, path)
	case yaml.SequenceNode:
		for _, c := range n.Content {
			s.merge(c, v, path, depth+1)
		}
	default:
		s.errorf(n, path, "a merge key wants a mapping, got %s", describe(n))
	}
}

// suggest returns the key closest to k within an edit distance of 2
// (ignoring case) and of a third of the key's length, or "".
func suggest(k string, keys []string) string {
	best, bestD := "", 3
	lk := strings.ToLower(k)
	for _, c := range keys {
		// A short key is not a typo of another short key ("x0", "id").
		if d := editDistance(lk, strings.ToLower(c)); d < bestD && 3*d <= len(c) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and adjacent transpositions cost 1.
func editDistance(a, b string) int {
	if abs(len(a)-len(b)) > 2 {
		return 3
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := 0; j <= len(b); j++ {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
