package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
)

func TestParseCounts(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    []int
		wantErr bool
	}{
		"three":    {in: "100,1000,10000", want: []int{100, 1000, 10000}},
		"spaces":   {in: " 5 , 6,", want: []int{5, 6}},
		"empty":    {in: "", wantErr: true},
		"negative": {in: "-1", wantErr: true},
		"word":     {in: "ten", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseCounts(tc.in)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("parseCounts(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"bad count":  {"-clients", "x"},
		"bad ttl":    {"-ttl", "1"},
		"extra arg":  {"now"},
		"bad rounds": {"-rounds", "0"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%s: exit %d, want 2 (stderr %q)", name, code, errOut.String())
		}
		if !strings.Contains(errOut.String(), "xdsbench") {
			t.Errorf("%s: stderr %q lacks the command name", name, errOut.String())
		}
	}
}
