package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"addr":"127.0.0.1:1","clusters":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args []string
		code int
		want string
	}{
		"no plan":      {args: nil, code: 2, want: "usage"},
		"missing file": {args: []string{"-plan", filepath.Join(dir, "none.json")}, code: 1, want: "none.json"},
		"invalid plan": {args: []string{"-plan", bad}, code: 2, want: "clusters"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
			if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("run(%v) = %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
			}
		})
	}
}
