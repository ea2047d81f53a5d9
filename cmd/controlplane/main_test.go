package main

import (
	"io"
	"strings"
	"testing"
)

func TestRunUnknownCommand(t *testing.T) {
	var stderr strings.Builder
	if code := run(t.Context(), []string{"frobnicate"}, func(string) string { return "" }, io.Discard, &stderr); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `unknown command "frobnicate"`) {
		t.Fatalf("stderr %q does not name the command", stderr.String())
	}
}

func TestRunBadFlagExitsTwo(t *testing.T) {
	var stderr strings.Builder
	if code := run(t.Context(), []string{"serve", "--log-level", "loud"}, func(string) string { return "" }, io.Discard, &stderr); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "--log-level") {
		t.Fatalf("stderr %q does not name the flag", stderr.String())
	}
}
