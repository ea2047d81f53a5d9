package telemetry

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// intakeMetrics count what the receivers did with each request.
type intakeMetrics struct {
	accepted        *prometheus.CounterVec
	refused         *prometheus.CounterVec
	refusedRequests *prometheus.CounterVec
	malformed       *prometheus.CounterVec
}

func newIntakeMetrics(reg prometheus.Registerer) (*intakeMetrics, error) {
	m := &intakeMetrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_telemetry_accepted_spans_total",
			Help: "Spans accepted by the OTLP receivers (queued for aggregation).",
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_telemetry_refused_spans_total",
			Help: "Spans refused by the OTLP receivers, by reason (queue_full, shutting_down, invalid_span).",
		}, []string{"transport", "reason"}),
		refusedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_telemetry_refused_requests_total",
			Help: "OTLP requests refused before decoding, by reason (too_large, too_many_inflight, unauthenticated, unsupported_media_type).",
		}, []string{"transport", "reason"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_telemetry_malformed_requests_total",
			Help: "OTLP requests refused as malformed (INVALID_ARGUMENT / 400).",
		}, []string{"transport"}),
	}
	for _, tr := range []string{transportGRPC, transportHTTP} {
		m.accepted.WithLabelValues(tr)
		m.malformed.WithLabelValues(tr)
		for _, r := range []string{"queue_full", "shutting_down", "invalid_span"} {
			m.refused.WithLabelValues(tr, r)
		}
	}
	for _, c := range []prometheus.Collector{m.accepted, m.refused, m.refusedRequests, m.malformed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register metrics: %w", err)
		}
	}
	return m, nil
}

// descs are the descriptors of the collector's metrics. The first six carry the OpenTelemetry Collector's
// connector names and labels.
type descs struct {
	sgTotal, sgFailed, sgServer, sgClient *prometheus.Desc
	smCalls, smDuration                   *prometheus.Desc

	queueSpans, queueBytes, aggregated, noService *prometheus.Desc
	overflow, completed, expired, droppedPairing  *prometheus.Desc
	pending                                       *prometheus.Desc
	storeSpans, storeTraces, storeBytes           *prometheus.Desc
	evictedSpans, evictedBytes, evictedTraces     *prometheus.Desc
	storeSkipped                                  *prometheus.Desc
}

func newDescs() *descs {
	edge := []string{"client", "server", "connection_type", "failed"}
	span := []string{"service_name", "span_name", "span_kind", "status_code"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &descs{
		sgTotal:    d("traces_service_graph_request_total", "Total count of requests between two nodes.", edge...),
		sgFailed:   d("traces_service_graph_request_failed_total", "Total count of failed requests between two nodes.", edge...),
		sgServer:   d("traces_service_graph_request_server_seconds", "Time for a request between two nodes as seen from the server.", edge...),
		sgClient:   d("traces_service_graph_request_client_seconds", "Time for a request between two nodes as seen from the client.", edge...),
		smCalls:    d("traces_span_metrics_calls_total", "Number of spans, per service, span name, kind and status.", span...),
		smDuration: d("traces_span_metrics_duration_milliseconds", "Span duration in milliseconds.", span...),

		queueSpans:     d("meshplane_telemetry_queue_spans", "Spans accepted and waiting for aggregation."),
		queueBytes:     d("meshplane_telemetry_queue_bytes", "Encoded bytes accepted and waiting for aggregation."),
		aggregated:     d("meshplane_telemetry_aggregated_spans_total", "Spans aggregated into span metrics and the service graph."),
		noService:      d("meshplane_telemetry_spans_without_service_total", "Spans whose resource has no service.name (stored and forwarded, not aggregated)."),
		overflow:       d("meshplane_telemetry_series_overflow_total", "Observations folded into the overflow series because a cardinality limit was reached.", "metric"),
		completed:      d("meshplane_telemetry_servicegraph_edges_total", "Service-graph edges completed (paired or virtual)."),
		expired:        d("meshplane_telemetry_servicegraph_expired_edges_total", "Unpaired edges that expired after PairingWait."),
		droppedPairing: d("meshplane_telemetry_servicegraph_dropped_spans_total", "Spans not paired because PairingMaxPending was reached."),
		pending:        d("meshplane_telemetry_servicegraph_pending_edges", "Unpaired edges waiting for their other half."),
		storeSpans:     d("meshplane_telemetry_trace_store_spans", "Spans held by the recent-trace store."),
		storeTraces:    d("meshplane_telemetry_trace_store_traces", "Traces held by the recent-trace store."),
		storeBytes:     d("meshplane_telemetry_trace_store_bytes", "Arena bytes used by the recent-trace store."),
		evictedSpans:   d("meshplane_telemetry_trace_store_evicted_spans_total", "Spans evicted from the trace store (oldest first)."),
		evictedBytes:   d("meshplane_telemetry_trace_store_evicted_bytes_total", "Bytes evicted from the trace store."),
		evictedTraces:  d("meshplane_telemetry_trace_store_evicted_traces_total", "Traces whose last span was evicted from the trace store."),
		storeSkipped:   d("meshplane_telemetry_trace_store_skipped_spans_total", "Spans too large for the trace store's arena chunk, never stored."),
	}
}

// collector exposes the aggregates straight from the aggregator's own structures: no CounterVec lookup per span,
// the cost is paid per scrape.
type collector struct {
	t *Telemetry
	d *descs
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, x := range []*prometheus.Desc{d.sgTotal, d.sgFailed, d.sgServer, d.sgClient, d.smCalls, d.smDuration,
		d.queueSpans, d.queueBytes, d.aggregated, d.noService, d.overflow, d.completed, d.expired, d.droppedPairing,
		d.pending, d.storeSpans, d.storeTraces, d.storeBytes, d.evictedSpans, d.evictedBytes, d.evictedTraces,
		d.storeSkipped} {
		ch <- x
	}
}

func constHist(desc *prometheus.Desc, bounds *[numBuckets]float64, h *histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, numBuckets)
	var cum uint64
	for i, b := range bounds {
		cum += h.counts[i]
		buckets[b] = cum
	}
	m, err := prometheus.NewConstHistogram(desc, h.count, h.sum, buckets, labels...)
	if err != nil {
		return nil
	}
	return m
}

// constMetric never panics and returns nil for a label set Prometheus refuses: the scanner only lets valid
// UTF-8 through, but a bad label value must cost that series only, not fail the whole scrape. Collect drops nils.
func constMetric(desc *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, vt, v, labels...)
	if err != nil {
		return nil
	}
	return m
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d, a := c.d, c.t.agg
	qs, qb := c.t.queueLen()
	ch <- constMetric(d.queueSpans, prometheus.GaugeValue, float64(qs))
	ch <- constMetric(d.queueBytes, prometheus.GaugeValue, float64(qb))

	var out []prometheus.Metric
	a.mu.Lock()
	emitEdge := func(s *edgeSeries) {
		conn := connName(s.key.conn)
		if s.key.conn == numConns {
			conn = OverflowLabel
		}
		failed := strconv.FormatBool(s.key.failed)
		client, server := s.key.client, s.key.server
		if s == a.edgeOverflow {
			failed = OverflowLabel
		}
		out = append(out,
			constMetric(d.sgTotal, prometheus.CounterValue, float64(s.total), client, server, conn, failed),
			constHist(d.sgServer, &a.secBounds, &s.server, client, server, conn, failed),
			constHist(d.sgClient, &a.secBounds, &s.client, client, server, conn, failed))
		if s.failed > 0 {
			out = append(out, constMetric(d.sgFailed, prometheus.CounterValue, float64(s.failed), client, server, conn, failed))
		}
	}
	for _, s := range a.edges {
		emitEdge(s)
	}
	if a.edgeOverflow != nil {
		emitEdge(a.edgeOverflow)
	}
	for svc, sr := range a.services {
		for name, tab := range sr.names {
			for k := range tab {
				for st, s := range tab[k] {
					if s == nil {
						continue
					}
					kn, sn := kindName(uint8(k)), statusName(uint8(st))
					out = append(out,
						constMetric(d.smCalls, prometheus.CounterValue, float64(s.hist.count), svc, name, kn, sn),
						constHist(d.smDuration, &a.msBounds, &s.hist, svc, name, kn, sn))
				}
			}
		}
	}
	if s := a.spanOverflow; s != nil {
		o := OverflowLabel
		out = append(out,
			constMetric(d.smCalls, prometheus.CounterValue, float64(s.hist.count), o, o, o, o),
			constHist(d.smDuration, &a.msBounds, &s.hist, o, o, o, o))
	}
	st := a.stats
	pending := a.pending.len()
	a.mu.Unlock()
	for _, m := range out {
		if m != nil {
			ch <- m
		}
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- constMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	counter(d.aggregated, st.spans)
	counter(d.noService, st.noService)
	counter(d.overflow, st.spanOverflowSpans, "traces_span_metrics")
	counter(d.overflow, st.edgeOverflow, "traces_service_graph")
	counter(d.completed, st.completedEdges)
	counter(d.expired, st.expiredEdges)
	counter(d.droppedPairing, st.droppedPairing)
	ch <- constMetric(d.pending, prometheus.GaugeValue, float64(pending))

	var ss storeStats
	if c.t.store != nil {
		ss = c.t.store.snapshotStats()
	}
	ch <- constMetric(d.storeSpans, prometheus.GaugeValue, float64(ss.spans))
	ch <- constMetric(d.storeTraces, prometheus.GaugeValue, float64(ss.traces))
	ch <- constMetric(d.storeBytes, prometheus.GaugeValue, float64(ss.bytes))
	counter(d.evictedSpans, ss.evictedSpans)
	counter(d.evictedBytes, ss.evictedBytes)
	counter(d.evictedTraces, ss.evictedTraces)
	counter(d.storeSkipped, ss.skippedSpans)
}
