package testenv

import (
	"os"
	"strconv"
	"testing"
)

// InCI reports whether the CI environment variable holds a true value as
// strconv.ParseBool reads it (1, t, T, TRUE, true, True). Under CI a missing
// prerequisite fails a test instead of skipping it: CI must never pass by
// skipping. A value ParseBool rejects (a typo) counts as CI too, so it
// cannot turn failures into skips by accident; only an unset, empty or
// false value means a local run.
func InCI() bool {
	v, ok := os.LookupEnv("CI")
	if !ok || v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// SkipOrFail skips the test with msg, or fails it under CI (see InCI).
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatalf("testenv: %s (CI=%s: a missing prerequisite is a failure)", msg, os.Getenv("CI"))
	}
	t.Skipf("testenv: %s", msg)
}
