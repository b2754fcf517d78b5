package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestContainerdState(t *testing.T) {
	type step struct {
		stream bool // a connection event, else a pass
		up     bool
	}
	conn := func(up bool) step { return step{stream: true, up: up} }
	pass := func(up bool) step { return step{up: up} }
	tests := []struct {
		name  string
		steps []step
		want  []bool // what is reported after each step
	}{
		{
			name:  "passes alone decide while the stream says nothing",
			steps: []step{pass(true), pass(false), pass(true)},
			want:  []bool{true, false, true},
		},
		{
			name:  "a lost connection is down at once, and a pass that began before cannot undo it",
			steps: []step{pass(true), conn(false), pass(true)},
			want:  []bool{true, false, false},
		},
		{
			name:  "a regained connection is up at once, until a pass finds containerd unavailable",
			steps: []step{conn(false), pass(false), conn(true), pass(false), pass(true)},
			want:  []bool{false, false, true, false, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []bool
			s := &containerdState{connected: true, passUp: true, report: func(up bool) { got = append(got, up) }}
			for _, st := range tt.steps {
				if st.stream {
					s.connection(st.up)
				} else {
					s.pass(st.up)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reported (-want +got):\n%s", diff)
			}
		})
	}
}
