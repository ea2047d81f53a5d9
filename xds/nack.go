package xds

import (
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// How the NACK guard works. go-control-plane records, when it sends a
// response, the versions it returned as what the stream holds; the next
// request (ACK or NACK) opens a watch against that record. typeCache answers
// a request that is not the stream's first only when a subscribed resource's
// content hash differs from the record (or the subscription changed), so a
// NACKed version is treated as held and is not resent: the stream gets no
// response for that type until the content changes. (LinearCache resends at
// once when the rejected response was the first, as its request carries an
// empty version_info.)

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
