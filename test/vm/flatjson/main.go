// Command flatjson prints a JSON document as one "path=value" line per
// scalar, e.g. `realms[0].cells[1].containers[0].exitCode=137`, so the VM
// job (a POSIX shell script; jq is not part of the test image) can grep
// `reconciler status -o json` without knowing every key in advance.
//
// Usage: flatjson [FILE]   (stdin when FILE is absent)
//
// Object keys are printed in sorted order; strings are printed raw (no
// quotes), null as "null". Exit status 1 on unreadable or invalid input.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flatjson:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	in := stdin
	if len(args) > 0 {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	dec := json.NewDecoder(in)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	w := bufio.NewWriter(stdout)
	flatten(w, "", v)
	return w.Flush()
}

func flatten(w *bufio.Writer, path string, v any) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			flatten(w, p, v[k])
		}
	case []any:
		for i, e := range v {
			flatten(w, path+"["+strconv.Itoa(i)+"]", e)
		}
	case nil:
		fmt.Fprintf(w, "%s=null\n", path)
	default:
		fmt.Fprintf(w, "%s=%v\n", path, v)
	}
}
