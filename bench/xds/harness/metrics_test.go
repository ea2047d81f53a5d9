package harness

import (
	"math"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 72
process_resident_memory_bytes 2.25e+08
meshplane_xds_pushes_total{type="cds"} 3
meshplane_xds_pushes_total{type="eds"} 200
meshplane_xds_pushes_total_other 9
weird{label="a b} c"} 1.5 1712345678000

`
	m, err := ParseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		got, want float64
	}{
		"plain":                 {m.Sum("go_goroutines"), 72},
		"exponent":              {m.Sum("process_resident_memory_bytes"), 2.25e8},
		"sum over labels":       {m.Sum("meshplane_xds_pushes_total"), 203},
		"one series":            {m[`meshplane_xds_pushes_total{type="eds"}`], 200},
		"label with space":      {m[`weird{label="a b} c"}`], 1.5},
		"missing":               {m.Sum("nope"), 0},
		"prefix is not a match": {m.Sum("meshplane_xds_pushes"), 0},
	}
	for name, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", name, tc.got, tc.want)
		}
	}
	if !m.Has("meshplane_xds_pushes_total") || m.Has("meshplane_xds") {
		t.Error("Has: wrong answer for a labelled metric or a bare prefix")
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for name, in := range map[string]string{
		"no value":    "go_goroutines\n",
		"bad value":   "go_goroutines many\n",
		"extra field": "go_goroutines 1 2 3\n",
	} {
		if _, err := ParseMetrics(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%s: ParseMetrics = %v, want an error naming line 1", name, err)
		}
	}
}

// FuzzParseMetrics: whatever the server sends, the parser returns an error or
// metrics, never panics.
func FuzzParseMetrics(f *testing.F) {
	f.Add("go_goroutines 72\n")
	f.Add("a{b=\"c\"} 1 2\n# comment\n")
	f.Add("}")
	f.Add("{ 1")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMetrics(strings.NewReader(in))
		if err != nil {
			return
		}
		for series := range m {
			_ = m.Sum(series)
			_ = m.Has(series)
		}
	})
}

func TestHistogram(t *testing.T) {
	before, err := ParseMetrics(strings.NewReader(`h_bucket{type="eds",le="0.01"} 1
h_bucket{type="eds",le="0.1"} 2
h_bucket{type="eds",le="+Inf"} 2
h_bucket{type="cds",le="0.01"} 50
`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := ParseMetrics(strings.NewReader(`h_bucket{type="eds",le="0.01"} 51
h_bucket{type="eds",le="0.1"} 101
h_bucket{type="eds",le="+Inf"} 102
h_bucket{type="cds",le="0.01"} 70
`))
	if err != nil {
		t.Fatal(err)
	}
	d := after.Histogram("h", `type="eds"`).Sub(before.Histogram("h", `type="eds"`))
	tests := map[string]struct {
		q, bound float64
	}{
		"p50 in the first bucket": {0.5, 0.01},
		"p90 in the second":       {0.9, 0.1},
		"p100 in +Inf":            {1, math.Inf(1)},
	}
	for name, tc := range tests {
		bound, total := d.Quantile(tc.q)
		if bound != tc.bound || total != 100 {
			t.Errorf("%s: Quantile(%v) = %v, %v; want %v, 100", name, tc.q, bound, total, tc.bound)
		}
	}
	if bound, total := (Buckets{}).Quantile(0.5); bound != 0 || total != 0 {
		t.Errorf("empty Quantile = %v, %v", bound, total)
	}
}
