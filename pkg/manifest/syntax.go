package manifest

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var yamlLineRe = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// maxSearch is the largest document whose syntax error is located by
// re-parsing prefixes; a larger one keeps the line the parser reported.
const maxSearch = 1 << 20

// syntaxPosition locates a YAML syntax error in data. The parser's message
// carries a line only, and often the line where the enclosing construct
// started rather than where parsing failed. So the line is the shortest
// prefix of data (in whole lines) that fails with the same message, and the
// column is guessed from the message and the text of that line.
func syntaxPosition(data []byte, err error) (line, col int, msg string) {
	text := err.Error()
	m := yamlLineRe.FindStringSubmatch(text)
	msg = text
	if m != nil {
		msg = text[len(m[0]):]
		line, _ = strconv.Atoi(m[1]) // no "line N:" (the group is optional) leaves 0: position unknown
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(data) <= maxSearch && len(lines) > 0 {
		failsAt := func(k int) bool {
			prefix := data[:prefixLen(lines, k)]
			perr := parseAll(prefix)
			if perr == nil {
				return false
			}
			pm := yamlLineRe.FindStringSubmatch(perr.Error())
			pmsg := perr.Error()
			if pm != nil {
				pmsg = pmsg[len(pm[0]):]
			}
			return pmsg == msg
		}
		lo, hi := 1, len(lines)
		if failsAt(hi) {
			for lo < hi {
				mid := (lo + hi) / 2
				if failsAt(mid) {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			line = lo
		}
	}
	if line < 1 {
		line = 1
	}
	if line > len(lines) {
		if len(lines) == 0 {
			return 1, 1, msg
		}
		line = len(lines)
	}
	return line, guessColumn(string(lines[line-1]), msg), msg
}

func prefixLen(lines [][]byte, k int) int {
	n := 0
	for _, l := range lines[:k] {
		n += len(l)
	}
	return n
}

// parseAll parses every document of data and returns the first error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := safeDecode(dec, &n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// guessColumn returns the 1-based column the message most likely points at
// in line.
func guessColumn(line, msg string) int {
	line = strings.TrimRight(line, "\r\n")
	first := strings.IndexFunc(line, func(r rune) bool { return r != ' ' && r != '\t' })
	if first < 0 {
		return 1
	}
	switch {
	case strings.Contains(msg, "mapping values are not allowed"):
		// The offending ':' is the second "key:" of a line ("a: b: c"),
		// or the first one of a line indented under a scalar.
		var colons []int
		for i := 0; i < len(line); i++ {
			if line[i] == ':' && (i+1 == len(line) || line[i+1] == ' ' || line[i+1] == '\t') {
				colons = append(colons, i)
			}
		}
		switch {
		case len(colons) >= 2:
			return colons[1] + 1
		case len(colons) == 1:
			return colons[0] + 1
		}
	case strings.Contains(msg, "cannot start any token"):
		if i := strings.IndexByte(line, '\t'); i >= 0 && i <= first {
			return i + 1
		}
		if i := strings.IndexAny(line[first:], "@`"); i >= 0 {
			return first + i + 1
		}
	case strings.Contains(msg, "end of stream") || strings.Contains(msg, "quoted scalar"):
		if i := strings.IndexAny(line, `"'`); i >= 0 {
			return i + 1
		}
	case strings.Contains(msg, "expected ',' or ']'"):
		if i := strings.LastIndexByte(line, '['); i >= 0 {
			return i + 1
		}
	case strings.Contains(msg, "expected ',' or '}'"):
		if i := strings.LastIndexByte(line, '{'); i >= 0 {
			return i + 1
		}
	}
	return first + 1
}
