package v1beta1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Quantity is a non-negative byte count. In a manifest it is written as an
// integer (1048576) or as a string with a binary suffix Ki, Mi, Gi, Ti
// (powers of 1024) or a decimal suffix K, M, G, T (powers of 1000), as in
// Kubernetes. The string "max" means no limit where the cgroup file allows it.
type Quantity struct {
	// Bytes is the value in bytes; meaningless when Max is true.
	Bytes int64
	// Max is true for the literal "max" (unlimited).
	Max bool
}

// suffixes in the order they are tried by String (largest binary first).
var suffixes = []struct {
	name string
	mult int64
}{
	{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10},
	{"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"K", 1e3},
}

func suffixMultiplier(s string) (int64, bool) {
	if s == "" {
		return 1, true
	}
	for _, x := range suffixes {
		if x.name == s {
			return x.mult, true
		}
	}
	return 0, false
}

// ParseQuantity parses an integer byte count with an optional suffix, or
// "max". A fraction is allowed only when it comes to a whole number of bytes
// ("1.5Ki" is 1536, "0.5" is an error). Negative values, overflow past
// int64 and anything else are errors naming the input.
func ParseQuantity(s string) (Quantity, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "max" {
		return Quantity{Max: true}, nil
	}
	if s == "" {
		return Quantity{}, fmt.Errorf("invalid quantity %q: empty", orig)
	}
	if s[0] == '-' {
		return Quantity{}, fmt.Errorf("invalid quantity %q: must not be negative", orig)
	}
	// The number is [0-9]+ optionally followed by .[0-9]+; the rest is the suffix.
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intPart := s[:i]
	fracPart := ""
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		fracPart = s[i+1 : j]
		if fracPart == "" {
			return Quantity{}, garbage(orig)
		}
		i = j
	}
	if intPart == "" {
		return Quantity{}, garbage(orig)
	}
	suffix := s[i:]
	mult, ok := suffixMultiplier(suffix)
	if !ok {
		if strings.ContainsAny(suffix, "0123456789.+-") || strings.ContainsAny(suffix, " \t") {
			return Quantity{}, garbage(orig)
		}
		return Quantity{}, fmt.Errorf("invalid quantity %q: unknown suffix %q (want Ki, Mi, Gi, Ti, K, M, G or T)", orig, suffix)
	}
	if fracPart == "" {
		n, err := strconv.ParseInt(intPart, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return Quantity{}, tooLarge(orig)
		}
		return Quantity{Bytes: n * mult}, nil
	}
	// value = (int.frac) * mult, which must be an integer.
	num, _ := new(big.Int).SetString(intPart+fracPart, 10)
	num.Mul(num, big.NewInt(mult))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(fracPart))), nil)
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Sign() != 0 {
		return Quantity{}, fmt.Errorf("invalid quantity %q: not a whole number of bytes", orig)
	}
	if !q.IsInt64() {
		return Quantity{}, tooLarge(orig)
	}
	return Quantity{Bytes: q.Int64()}, nil
}

func garbage(s string) error {
	return fmt.Errorf("invalid quantity %q: want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or \"max\"", s)
}

func tooLarge(s string) error {
	return fmt.Errorf("invalid quantity %q: too large (at most %d bytes)", s, int64(math.MaxInt64))
}

// String renders "max", or the value with the largest binary suffix that
// divides it exactly ("512Mi"), or plain bytes. ParseQuantity(q.String())
// gives q back.
func (q Quantity) String() string {
	if q.Max {
		return "max"
	}
	if q.Bytes > 0 {
		for _, x := range suffixes[:4] {
			if q.Bytes%x.mult == 0 {
				return strconv.FormatInt(q.Bytes/x.mult, 10) + x.name
			}
		}
	}
	return strconv.FormatInt(q.Bytes, 10)
}

// CgroupValue renders the value as a cgroup file wants it: "max" or bytes.
func (q Quantity) CgroupValue() string {
	if q.Max {
		return "max"
	}
	return strconv.FormatInt(q.Bytes, 10)
}

// MarshalJSON renders a JSON number of bytes, or the string "max".
func (q Quantity) MarshalJSON() ([]byte, error) {
	if q.Max {
		return []byte(`"max"`), nil
	}
	return []byte(strconv.FormatInt(q.Bytes, 10)), nil
}

// UnmarshalJSON accepts a JSON number or a string in ParseQuantity's syntax.
// null leaves q unchanged.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("invalid quantity: %w", err)
		}
	} else {
		s = string(b)
	}
	v, err := ParseQuantity(s)
	if err != nil {
		return err
	}
	*q = v
	return nil
}
