package xds

import (
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// How the NACK guard works. A response's versions count as what the stream
// holds as soon as it is sent, whether the client then ACKs or NACKs it.
// SotW (ads.go): the subscription records the version sent of each name and
// a response carries only what differs (LDS, CDS: is built only when
// something differs), so a NACKed version is not resent and the stream gets
// no response for that type until the content changes, the first response
// included. Delta (go-control-plane): it records the returned versions the
// same way, and typeCache answers a request that is not the stream's first
// only when a subscribed resource's content hash differs from the record
// (or the subscription changed).

// nackLocked records a NACK of the response with this nonce, once per
// response: a client may repeat the error detail on later requests.
func (s *Server) nackLocked(st *streamState, ts *typeState, typeURL, nonce string, detail *rpcstatus.Status, now time.Time) {
	if ts.nackNonce == nonce {
		return
	}
	ts.nackNonce = nonce
	version := ""
	if nonce == ts.sentNonce {
		version = ts.sentVersion
		ts.pushedAt = 0
	}
	st.nack = &NACKStatus{TypeURL: typeURL, Version: version, Nonce: nonce, ErrorDetail: detail.GetMessage(), Time: now}
	s.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
	s.log.Warn("xds: proxy rejected a response", "node", st.info.ID, "kind", st.info.Kind, "address", st.address,
		"type", typeURL, "version", version, "nonce", nonce, "error_detail", detail.GetMessage())
}
