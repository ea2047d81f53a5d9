package loadgen

import (
	"fmt"
	"strings"
	"testing"
)

func testPlan(clusters int) Plan {
	p := Plan{Addr: "127.0.0.1:1", PerClient: 4, Scoped: 3, Wildcard: 1, MarkerAddress: "10.0.0.1", MarkerPort: 8080}
	for i := 0; i < clusters; i++ {
		p.Clusters = append(p.Clusters, fmt.Sprintf("outbound|8080||svc-%02d.bench", i))
	}
	return p
}

func TestPlanValidate(t *testing.T) {
	tests := map[string]struct {
		edit  func(*Plan)
		field string // "" = valid
	}{
		"valid":             {edit: func(*Plan) {}},
		"addr":              {edit: func(p *Plan) { p.Addr = "nohost" }, field: "addr"},
		"no clusters":       {edit: func(p *Plan) { p.Clusters = nil }, field: "clusters"},
		"duplicate cluster": {edit: func(p *Plan) { p.Clusters[1] = p.Clusters[0] }, field: "clusters[1]"},
		"empty cluster":     {edit: func(p *Plan) { p.Clusters[2] = "" }, field: "clusters[2]"},
		"shared":            {edit: func(p *Plan) { p.Shared = 10 }, field: "shared"},
		"perClient":         {edit: func(p *Plan) { p.PerClient = 0 }, field: "perClient"},
		"no clients":        {edit: func(p *Plan) { p.Scoped, p.Wildcard = 0, 0 }, field: "scoped"},
		"marker address":    {edit: func(p *Plan) { p.MarkerAddress = "" }, field: "markerAddress"},
		"marker port":       {edit: func(p *Plan) { p.MarkerPort = 70000 }, field: "markerPort"},
		"dial concurrency":  {edit: func(p *Plan) { p.DialConcurrency = -1 }, field: "dialConcurrency"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := testPlan(10)
			tc.edit(&p)
			err := p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

func TestSubscriptions(t *testing.T) {
	p := testPlan(10)
	p.Shared = 3
	counts := map[string]int{}
	for i := 0; i < 9; i++ {
		subs := p.Subscriptions(i)
		if len(subs) != p.PerClient || subs[0] != p.Clusters[p.Shared] {
			t.Fatalf("Subscriptions(%d) = %v: want %d names starting with the shared cluster", i, subs, p.PerClient)
		}
		seen := map[string]bool{}
		for _, s := range subs {
			if seen[s] {
				t.Fatalf("Subscriptions(%d) = %v: duplicate %q", i, subs, s)
			}
			seen[s] = true
			counts[s]++
		}
	}
	// 9 clients × 3 non-shared names over 9 other clusters: 3 each.
	for i, c := range p.Clusters {
		want := 3
		if i == p.Shared {
			want = 9
		}
		if counts[c] != want {
			t.Errorf("cluster %q subscribed by %d clients, want %d", c, counts[c], want)
		}
	}
}

func TestParsePlan(t *testing.T) {
	if _, err := ParsePlan([]byte(`{"addr":"127.0.0.1:1","clusters":["a"],"perClient":1,"scoped":1,"markerAddress":"10.0.0.1","markerPort":80}`)); err != nil {
		t.Errorf("ParsePlan(valid) = %v", err)
	}
	for name, in := range map[string]string{
		"unknown field": `{"addr":"127.0.0.1:1","clusters":["a"],"perClient":1,"scoped":1,"markerAddress":"10.0.0.1","markerPort":80,"typo":1}`,
		"trailing":      `{"addr":"127.0.0.1:1","clusters":["a"],"perClient":1,"scoped":1,"markerAddress":"10.0.0.1","markerPort":80} {}`,
		"invalid":       `{"addr":"127.0.0.1:1"}`,
		"not json":      `addr: x`,
	} {
		if _, err := ParsePlan([]byte(in)); err == nil {
			t.Errorf("ParsePlan(%s): want an error", name)
		}
	}
}

func TestParseCommand(t *testing.T) {
	tests := map[string]struct {
		line    string
		cmd     string
		marker  uint32
		wantErr bool
	}{
		"report":      {line: "report 12", cmd: "report", marker: 12},
		"quit":        {line: " quit ", cmd: "quit"},
		"bad marker":  {line: "report x", wantErr: true},
		"negative":    {line: "report -1", wantErr: true},
		"too big":     {line: "report 4294967296", wantErr: true},
		"unknown":     {line: "stop", wantErr: true},
		"empty":       {line: "", wantErr: true},
		"extra words": {line: "report 1 2", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cmd, marker, err := ParseCommand(tc.line)
			if (err != nil) != tc.wantErr || cmd != tc.cmd || marker != tc.marker {
				t.Errorf("ParseCommand(%q) = %q, %d, %v", tc.line, cmd, marker, err)
			}
		})
	}
}

func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(`{"addr":"127.0.0.1:1","clusters":["a"],"perClient":1,"scoped":1,"markerAddress":"10.0.0.1","markerPort":80}`))
	f.Add([]byte(`{"clusters":["a","a"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePlan(b)
		if err != nil {
			return
		}
		for i := 0; i < 3; i++ {
			if got := p.Subscriptions(i); len(got) != p.PerClient {
				t.Fatalf("Subscriptions(%d) has %d names, want %d", i, len(got), p.PerClient)
			}
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	f.Add("report 3")
	f.Add("quit")
	f.Fuzz(func(t *testing.T, line string) {
		cmd, _, err := ParseCommand(line)
		if err == nil && cmd != "report" && cmd != "quit" {
			t.Fatalf("ParseCommand(%q) = %q without an error", line, cmd)
		}
	})
}
