package telemetry

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/meshplane/meshplane/internal/rest"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const (
	defaultGraphWindow = 5 * time.Minute
	defaultTraceLimit  = 20
	maxTraceLimit      = 1000
)

// RegisterRoutes adds GET /api/v1/graph, GET /api/v1/traces/{traceID} and GET /api/v1/traces to mux.
func (t *Telemetry) RegisterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/graph", t.handleGraph)
	mux.HandleFunc("GET /api/v1/traces/{traceID}", t.handleTrace)
	mux.HandleFunc("GET /api/v1/traces", t.handleTraces)
}

func (t *Telemetry) handleGraph(w http.ResponseWriter, r *http.Request) {
	window := min(defaultGraphWindow, t.cfg.GraphWindow)
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > t.cfg.GraphWindow {
			rest.WriteProblem(w, http.StatusBadRequest,
				fmt.Sprintf("window %q must be a duration between 1s and %s", v, t.cfg.GraphWindow), "window")
			return
		}
		window = d
	}
	rest.WriteJSON(w, t.agg.graph(t.now(), window))
}

// Span is one span of GET /api/v1/traces/{traceID}. Ids are hex, times unix nanoseconds as decimal strings (as in
// OTLP/JSON), attribute values JSON values (bytes as base64).
type Span struct {
	TraceID           string         `json:"traceId"`
	SpanID            string         `json:"spanId"`
	ParentSpanID      string         `json:"parentSpanId,omitempty"`
	Service           string         `json:"service"`
	Name              string         `json:"name"`
	Kind              string         `json:"kind"`
	StartTimeUnixNano string         `json:"startTimeUnixNano"`
	EndTimeUnixNano   string         `json:"endTimeUnixNano"`
	DurationMs        float64        `json:"durationMs"`
	StatusCode        string         `json:"statusCode"`
	StatusMessage     string         `json:"statusMessage,omitempty"`
	Attributes        map[string]any `json:"attributes,omitempty"`
	Events            int            `json:"events,omitempty"`
	Links             int            `json:"links,omitempty"`
}

// Trace is the answer of GET /api/v1/traces/{traceID}: every stored span of the trace, oldest received first.
type Trace struct {
	TraceID string `json:"traceId"`
	Spans   []Span `json:"spans"`
}

// TraceSummary is one entry of GET /api/v1/traces.
type TraceSummary struct {
	TraceID           string   `json:"traceId"`
	RootService       string   `json:"rootService,omitempty"`
	RootName          string   `json:"rootName,omitempty"`
	StartTimeUnixNano string   `json:"startTimeUnixNano"`
	DurationMs        float64  `json:"durationMs"`
	SpanCount         int      `json:"spanCount"`
	ErrorCount        int      `json:"errorCount"`
	Services          []string `json:"services"`
}

// TraceList is the answer of GET /api/v1/traces, newest first.
type TraceList struct {
	Traces []TraceSummary `json:"traces"`
}

func (t *Telemetry) handleTrace(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("traceID")
	id, err := hex.DecodeString(raw)
	if err != nil || len(id) != 16 || [16]byte(id) == [16]byte{} {
		rest.WriteProblem(w, http.StatusBadRequest, fmt.Sprintf("traceID %q must be 32 hex digits, not all zero", raw), "traceID")
		return
	}
	if t.store == nil {
		rest.WriteProblem(w, http.StatusNotFound, "the trace store is disabled", "traceID")
		return
	}
	tr, ok := t.store.trace([16]byte(id))
	if !ok {
		rest.WriteProblem(w, http.StatusNotFound, fmt.Sprintf("trace %s is not in the recent-trace store", raw), "traceID")
		return
	}
	rest.WriteJSON(w, tr)
}

// TraceQuery filters GET /api/v1/traces.
type TraceQuery struct {
	Service     string        // a span of this service is in the trace ("" = any)
	MinDuration time.Duration // trace duration (latest end - earliest start) at least this
	Error       *bool         // nil = any; true = has an error span; false = has none
	Limit       int
}

func (t *Telemetry) handleTraces(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tq := TraceQuery{Service: q.Get("service"), Limit: defaultTraceLimit}
	if v := q.Get("minDuration"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			rest.WriteProblem(w, http.StatusBadRequest, fmt.Sprintf("minDuration %q must be a non-negative duration such as 250ms", v), "minDuration")
			return
		}
		tq.MinDuration = d
	}
	if v := q.Get("error"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			rest.WriteProblem(w, http.StatusBadRequest, fmt.Sprintf("error %q must be true or false", v), "error")
			return
		}
		tq.Error = &b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTraceLimit {
			rest.WriteProblem(w, http.StatusBadRequest, fmt.Sprintf("limit %q must be an integer from 1 to %d", v, maxTraceLimit), "limit")
			return
		}
		tq.Limit = n
	}
	if len(tq.Service) > 253 {
		rest.WriteProblem(w, http.StatusBadRequest, "service must be at most 253 characters", "service")
		return
	}
	list := TraceList{Traces: []TraceSummary{}}
	if t.store != nil {
		list.Traces = t.store.list(tq)
	}
	rest.WriteJSON(w, list)
}

// trace returns every stored span of a trace.
func (t *traceStore) trace(id [16]byte) (Trace, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := Trace{TraceID: hex.EncodeToString(id[:]), Spans: []Span{}}
	ok := t.traceLocked(id, func(s *storedSpan) {
		svc, raw := t.recordLocked(s)
		tr.Spans = append(tr.Spans, spanJSON(string(svc), raw))
	})
	return tr, ok
}

func spanJSON(service string, raw []byte) Span {
	var sp tracepb.Span
	out := Span{Service: service}
	if err := proto.Unmarshal(raw, &sp); err != nil {
		out.StatusMessage = "span could not be decoded: " + err.Error()
		return out
	}
	out.TraceID = hex.EncodeToString(sp.TraceId)
	out.SpanID = hex.EncodeToString(sp.SpanId)
	if len(sp.ParentSpanId) > 0 {
		out.ParentSpanID = hex.EncodeToString(sp.ParentSpanId)
	}
	out.Name = sp.Name
	out.Kind = kindName(uint8(min(uint32(sp.Kind), numKinds)))
	out.StartTimeUnixNano = strconv.FormatUint(sp.StartTimeUnixNano, 10)
	out.EndTimeUnixNano = strconv.FormatUint(sp.EndTimeUnixNano, 10)
	if sp.EndTimeUnixNano > sp.StartTimeUnixNano {
		out.DurationMs = float64(sp.EndTimeUnixNano-sp.StartTimeUnixNano) / 1e6
	}
	out.StatusCode = statusName(uint8(min(uint32(sp.GetStatus().GetCode()), numStatuses)))
	out.StatusMessage = sp.GetStatus().GetMessage()
	if len(sp.Attributes) > 0 {
		out.Attributes = make(map[string]any, len(sp.Attributes))
		for _, kv := range sp.Attributes {
			out.Attributes[kv.Key] = anyJSON(kv.Value, 0)
		}
	}
	out.Events, out.Links = len(sp.Events), len(sp.Links)
	return out
}

func anyJSON(v *commonpb.AnyValue, depth int) any {
	if depth > 8 {
		return nil
	}
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, anyJSON(e, depth+1))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := map[string]any{}
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.Key] = anyJSON(kv.Value, depth+1)
		}
		return out
	}
	return nil
}

// list walks the store from the newest span back and summarises each trace once, until q.Limit traces match.
func (t *traceStore) list(q TraceQuery) []TraceSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []TraceSummary{}
	seen := map[[16]byte]struct{}{}
	for seq := t.nextSeq - 1; seq >= t.headSeq && len(out) < q.Limit; seq-- {
		s := t.at(seq)
		if _, ok := seen[s.traceID]; ok {
			continue
		}
		seen[s.traceID] = struct{}{}
		sum := TraceSummary{TraceID: hex.EncodeToString(s.traceID[:]), Services: []string{}}
		var start, end uint64
		match := q.Service == ""
		services := map[string]struct{}{}
		t.traceLocked(s.traceID, func(x *storedSpan) {
			svc, raw := t.recordLocked(x)
			if _, ok := services[string(svc)]; !ok {
				services[string(svc)] = struct{}{}
				sum.Services = append(sum.Services, string(svc))
			}
			if string(svc) == q.Service {
				match = true
			}
			sum.SpanCount++
			if x.status == statusError {
				sum.ErrorCount++
			}
			if start == 0 || x.start < start {
				start = x.start
			}
			end = max(end, x.end)
			if x.root && sum.RootName == "" {
				sum.RootService, sum.RootName = string(svc), spanName(raw)
			}
		})
		var dur time.Duration
		if end > start {
			dur = time.Duration(end - start)
		}
		if !match || dur < q.MinDuration || (q.Error != nil && *q.Error != (sum.ErrorCount > 0)) {
			continue
		}
		sum.StartTimeUnixNano = strconv.FormatUint(start, 10)
		sum.DurationMs = float64(dur) / 1e6
		out = append(out, sum)
	}
	return out
}

func spanName(raw []byte) string {
	var name string
	for len(raw) > 0 {
		num, typ, v, n, err := field(raw)
		if err != nil {
			break
		}
		raw = raw[n:]
		if num == 5 && typ == protowire.BytesType {
			name = string(v)
		}
	}
	return name
}
