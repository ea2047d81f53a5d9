package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestProfilerStartStop(t *testing.T) {
	srv := httptest.NewServer(newProfiler().mux())
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "cpu.pprof")
	post := func(path string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		path string
		want int
	}{
		{"/bench/cpu/stop", http.StatusConflict},
		{"/bench/cpu/start", http.StatusBadRequest},
		{"/bench/cpu/start?file=" + file, http.StatusOK},
		{"/bench/cpu/start?file=" + file, http.StatusConflict},
		{"/bench/gc", http.StatusOK},
		{"/bench/cpu/stop", http.StatusOK},
	}
	for _, s := range steps {
		if got := post(s.path); got != s.want {
			t.Fatalf("POST %s = %d, want %d", s.path, got, s.want)
		}
	}
	if st, err := os.Stat(file); err != nil || st.Size() == 0 {
		t.Fatalf("profile file: %v, %v; want a non-empty file", st, err)
	}
}
