package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Metrics is one scrape of a Prometheus text exposition: every sample by its
// series (name plus labels, as written), with Sum adding a name's series.
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text format (version 0.0.4): comment
// lines are skipped, every other line is "series value [timestamp]".
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		// The series may hold spaces inside quoted label values: the value
		// follows the closing brace when there is one.
		rest := text
		series := ""
		if i := strings.LastIndexByte(text, '}'); i >= 0 {
			series, rest = text[:i+1], strings.TrimSpace(text[i+1:])
		} else {
			f := strings.Fields(text)
			series, rest = f[0], strings.Join(f[1:], " ")
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 || len(fields) > 2 || series == "" {
			return nil, fmt.Errorf("harness: metrics line %d %q: want \"series value [timestamp]\"", line, text)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("harness: metrics line %d %q: value: %w", line, text, err)
		}
		m[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("harness: read metrics: %w", err)
	}
	return m, nil
}

// Sum adds every series of a metric name (any labels).
func (m Metrics) Sum(name string) float64 {
	var s float64
	for series, v := range m {
		if series == name || (strings.HasPrefix(series, name) && series[len(name)] == '{') {
			s += v
		}
	}
	return s
}

// Has reports whether any series of the name exists.
func (m Metrics) Has(name string) bool {
	for series := range m {
		if series == name || (strings.HasPrefix(series, name) && series[len(name)] == '{') {
			return true
		}
	}
	return false
}

// scrape fetches and parses url.
func scrape(ctx context.Context, client *http.Client, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("harness: scrape %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("harness: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("harness: scrape %s: status %s", url, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// Buckets is a cumulative histogram: upper bound → count of observations at
// or below it.
type Buckets map[float64]float64

// Histogram returns the buckets of a histogram's series whose labels contain
// every one of match (e.g. `type="eds"`).
func (m Metrics) Histogram(name string, match ...string) Buckets {
	prefix := name + "_bucket{"
	b := Buckets{}
series:
	for series, v := range m {
		if !strings.HasPrefix(series, prefix) {
			continue
		}
		for _, want := range match {
			if !strings.Contains(series, want) {
				continue series
			}
		}
		i := strings.Index(series, `le="`)
		if i < 0 {
			continue
		}
		rest := series[i+4:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			continue
		}
		le, err := strconv.ParseFloat(rest[:j], 64) // "+Inf" parses too
		if err != nil {
			continue
		}
		b[le] += v
	}
	return b
}

// Sub is b − before, bucket by bucket.
func (b Buckets) Sub(before Buckets) Buckets {
	out := Buckets{}
	for le, v := range b {
		out[le] = v - before[le]
	}
	return out
}

// Add adds other into b.
func (b Buckets) Add(other Buckets) {
	for le, v := range other {
		b[le] += v
	}
}

// Quantile is the upper bound of the first bucket holding at least q of the
// observations (q in 0..1), and the total count; 0, 0 when empty.
func (b Buckets) Quantile(q float64) (bound, total float64) {
	les := make([]float64, 0, len(b))
	for le := range b {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 {
		return 0, 0
	}
	total = b[les[len(les)-1]]
	if total <= 0 {
		return 0, 0
	}
	for _, le := range les {
		if b[le] >= q*total {
			return le, total
		}
	}
	return les[len(les)-1], total
}
