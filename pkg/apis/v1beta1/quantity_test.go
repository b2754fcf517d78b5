package v1beta1

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Quantity
		wantErr string
	}{
		{name: "a plain integer is bytes", in: "1048576", want: Quantity{Bytes: 1048576}},
		{name: "zero is allowed", in: "0", want: Quantity{}},
		{name: "Ki is 1024", in: "1Ki", want: Quantity{Bytes: 1024}},
		{name: "Mi is 1024^2", in: "512Mi", want: Quantity{Bytes: 512 << 20}},
		{name: "Gi is 1024^3", in: "2Gi", want: Quantity{Bytes: 2 << 30}},
		{name: "Ti is 1024^4", in: "1Ti", want: Quantity{Bytes: 1 << 40}},
		{name: "K is 1000", in: "3K", want: Quantity{Bytes: 3000}},
		{name: "M is 1000^2", in: "10M", want: Quantity{Bytes: 10e6}},
		{name: "G is 1000^3", in: "1G", want: Quantity{Bytes: 1e9}},
		{name: "T is 1000^4", in: "1T", want: Quantity{Bytes: 1e12}},
		{name: "max is unlimited", in: "max", want: Quantity{Max: true}},
		{name: "surrounding spaces are ignored", in: " 64Mi ", want: Quantity{Bytes: 64 << 20}},
		{name: "a fraction that is whole bytes is allowed", in: "1.5Ki", want: Quantity{Bytes: 1536}},
		{name: "a decimal fraction of G", in: "0.5G", want: Quantity{Bytes: 5e8}},
		{name: "the largest int64 is allowed", in: "9223372036854775807", want: Quantity{Bytes: 9223372036854775807}},
		{name: "an unknown suffix is named", in: "12Qi", wantErr: `invalid quantity "12Qi": unknown suffix "Qi" (want Ki, Mi, Gi, Ti, K, M, G or T)`},
		{name: "a lower-case suffix is unknown", in: "1mi", wantErr: `invalid quantity "1mi": unknown suffix "mi" (want Ki, Mi, Gi, Ti, K, M, G or T)`},
		{name: "negative is rejected", in: "-1", wantErr: `invalid quantity "-1": must not be negative`},
		{name: "negative with suffix is rejected", in: "-5Mi", wantErr: `invalid quantity "-5Mi": must not be negative`},
		{name: "a fraction of a byte is rejected", in: "0.5", wantErr: `invalid quantity "0.5": not a whole number of bytes`},
		{name: "a fraction of Ki that is not whole bytes is rejected", in: "1.0001Ki", wantErr: `invalid quantity "1.0001Ki": not a whole number of bytes`},
		{name: "overflow is rejected", in: "9223372036854775808", wantErr: `invalid quantity "9223372036854775808": too large (at most 9223372036854775807 bytes)`},
		{name: "overflow through a suffix is rejected", in: "9000000Ti", wantErr: `invalid quantity "9000000Ti": too large (at most 9223372036854775807 bytes)`},
		{name: "overflow through a fraction is rejected", in: "8388608.5Ti", wantErr: `invalid quantity "8388608.5Ti": too large (at most 9223372036854775807 bytes)`},
		{name: "empty is rejected", in: "", wantErr: `invalid quantity "": empty`},
		{name: "words are rejected", in: "lots", wantErr: `invalid quantity "lots": want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or "max"`},
		{name: "a sign is rejected", in: "+5", wantErr: `invalid quantity "+5": want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or "max"`},
		{name: "a dangling dot is rejected", in: "5.Mi", wantErr: `invalid quantity "5.Mi": want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or "max"`},
		{name: "an exponent is rejected", in: "1e6", wantErr: `invalid quantity "1e6": want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or "max"`},
		{name: "two numbers are rejected", in: "1.2.3", wantErr: `invalid quantity "1.2.3": want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or "max"`},
		{name: "a space before the suffix is rejected", in: "5 Mi", wantErr: `invalid quantity "5 Mi": want an integer with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, or "max"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseQuantity(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseQuantity(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseQuantity(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseQuantity(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestQuantityString(t *testing.T) {
	tests := []struct {
		name string
		q    Quantity
		want string
	}{
		{name: "max", q: Quantity{Max: true}, want: "max"},
		{name: "zero", q: Quantity{}, want: "0"},
		{name: "the largest binary suffix that divides", q: Quantity{Bytes: 512 << 20}, want: "512Mi"},
		{name: "Gi", q: Quantity{Bytes: 3 << 30}, want: "3Gi"},
		{name: "bytes when nothing divides", q: Quantity{Bytes: 1000}, want: "1000"},
		{name: "Ki with a remainder of Mi", q: Quantity{Bytes: 1536}, want: "1536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.q.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuantityJSON(t *testing.T) {
	type doc struct {
		Q *Quantity `json:"q,omitempty"`
	}
	tests := []struct {
		name    string
		in      string
		want    doc
		wantOut string
		wantErr string
	}{
		{name: "a number", in: `{"q": 1024}`, want: doc{Q: &Quantity{Bytes: 1024}}, wantOut: `{"q":1024}`},
		{name: "a string with a suffix", in: `{"q": "64Mi"}`, want: doc{Q: &Quantity{Bytes: 64 << 20}}, wantOut: `{"q":67108864}`},
		{name: "max", in: `{"q": "max"}`, want: doc{Q: &Quantity{Max: true}}, wantOut: `{"q":"max"}`},
		{name: "null leaves it unset", in: `{"q": null}`, want: doc{}, wantOut: `{}`},
		{name: "a negative number", in: `{"q": -3}`, wantErr: `invalid quantity "-3": must not be negative`},
		{name: "a bad string", in: `{"q": "12Qi"}`, wantErr: `invalid quantity "12Qi": unknown suffix "Qi" (want Ki, Mi, Gi, Ti, K, M, G or T)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got doc
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Unmarshal error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Unmarshal (-want +got):\n%s", diff)
			}
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(out) != tt.wantOut {
				t.Errorf("Marshal = %s, want %s", out, tt.wantOut)
			}
		})
	}
}

func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"0", "1", "512Mi", "1.5Ki", "max", "12Qi", "-1", "9223372036854775807", "0.5G", "1e3", "", " 7T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuantity(s)
		if err != nil {
			return
		}
		if q.Bytes < 0 {
			t.Fatalf("ParseQuantity(%q) = %+v: negative", s, q)
		}
		back, err := ParseQuantity(q.String())
		if err != nil {
			t.Fatalf("ParseQuantity(%q) = %+v, but its String %q does not parse: %v", s, q, q.String(), err)
		}
		if back != q {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v", s, q, q.String(), back)
		}
		b, err := q.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var j Quantity
		if err := j.UnmarshalJSON(b); err != nil || j != q {
			t.Fatalf("JSON round trip of %+v: %s -> %+v, %v", q, b, j, err)
		}
	})
}
