package harness

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshplane/meshplane/xds"
)

func TestSummarise(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := map[string]struct {
		in   []time.Duration
		want Latency
	}{
		"empty": {nil, Latency{}},
		"one":   {ms(7), Latency{Count: 1, P50: 7 * time.Millisecond, P99: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		"hundred": {ms(hundred...), Latency{Count: 100, P50: 50 * time.Millisecond, P99: 99 * time.Millisecond,
			Max: 100 * time.Millisecond}},
		"three": {ms(3, 1, 2), Latency{Count: 3, P50: 2 * time.Millisecond, P99: 3 * time.Millisecond, Max: 3 * time.Millisecond}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Summarise(tc.in); got != tc.want {
				t.Errorf("Summarise = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	r := &Result{
		Scoped: 1000, Wildcard: 100, Ready: 1100, ConnectTime: 2 * time.Second, HoldOff: 100 * time.Millisecond,
		Registrations: 10000, RegistrationTime: 2 * time.Second,
		Before: MemSample{HeapInuse: 100 << 20, RSS: 200 << 20},
		After:  MemSample{HeapInuse: 100<<20 + 1100*10240, RSS: 200<<20 + 1100*20480},
		Rounds: []Round{{ServerCPU: 110 * time.Millisecond, Scoped: []time.Duration{120 * time.Millisecond}}},
	}
	r.summarise()
	var b bytes.Buffer
	WriteTable(&b, []*Result{r})
	row := strings.Split(b.String(), "\n")[2]
	for _, want := range []string{"| 1000 + 100 |", "120 ms / 120 ms / 120 ms", "| 20 ms |", "10.0 KiB", "20.0 KiB", "110 ms (100 µs)", "| 5000 |"} {
		if !strings.Contains(row, want) {
			t.Errorf("table row %q lacks %q", row, want)
		}
	}
}

func TestClusterNames(t *testing.T) {
	names := clusterNames(3)
	if names[2] != xds.ClusterName("svc-0002.bench", 8080) || names[0] == names[1] {
		t.Errorf("clusterNames(3) = %v", names)
	}
	if got := instanceAddr(300, 9); got != "10.1.44.10" {
		t.Errorf("instanceAddr(300, 9) = %q, want 10.1.44.10", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		edit func(*Config)
		flag string // "" = valid
	}{
		"defaults":      {edit: func(*Config) {}},
		"no clients":    {edit: func(c *Config) { c.Clients = nil }, flag: "-clients"},
		"negative":      {edit: func(c *Config) { c.Clients = []int{-1} }, flag: "-clients"},
		"nobody":        {edit: func(c *Config) { c.Clients, c.Wildcard = []int{0}, 0 }, flag: "-clients"},
		"instances":     {edit: func(c *Config) { c.Instances = 251 }, flag: "-instances"},
		"per client":    {edit: func(c *Config) { c.PerClient = 1001 }, flag: "-per-client"},
		"rounds":        {edit: func(c *Config) { c.Rounds = 0 }, flag: "-rounds"},
		"hold-off":      {edit: func(c *Config) { c.HoldOff = 2 * time.Second }, flag: "-hold-off"},
		"ttl":           {edit: func(c *Config) { c.TTL = 301 }, flag: "-ttl"},
		"concurrency":   {edit: func(c *Config) { c.RegConcurrency = 0 }, flag: "-reg-concurrency"},
		"dial":          {edit: func(c *Config) { c.DialConcurrency = 0 }, flag: "-dial-concurrency"},
		"round timeout": {edit: func(c *Config) { c.RoundTimeout = 0 }, flag: "-round-timeout"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			tc.edit(&c)
			err := c.Validate()
			if tc.flag == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.flag)
			}
		})
	}
}
