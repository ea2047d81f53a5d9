package xds

import (
	"net/netip"
	"strings"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// onDemandListeners serves gRPC nodes' LDS: before a watch opens it adds,
// for every requested xDS-server Listener name
// ("grpc/server?xds.resource.listening_address=IP:PORT") that Translate did
// not produce, ServerListener(IP, PORT) to the cache's extra layer. A gRPC
// server listening on 0.0.0.0 (not a registered instance address) thus
// becomes SERVING. Extra listeners survive publishes and are bounded by
// ServerOptions.MaxOnDemandListeners.
type onDemandListeners struct {
	*typeCache
	s *Server
}

var _ cachev3.Cache = (*onDemandListeners)(nil)

func (o *onDemandListeners) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	o.s.ensureServerListeners(req.GetResourceNames())
	return o.typeCache.CreateWatch(req, sub, ch)
}

func (o *onDemandListeners) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	o.s.ensureServerListeners(req.GetResourceNamesSubscribe())
	return o.typeCache.CreateDeltaWatch(req, sub, ch)
}

// ensureServerListeners adds the on-demand xDS-server Listeners among names
// (gRPC nodes' LDS request) that do not exist yet. Call it without the LDS
// cache's lock.
func (s *Server) ensureServerListeners(names []string) {
	o := s.caches.listenersGRPC
	for _, name := range names {
		ip, port, ok := serverListenerAddr(name)
		if !ok || o.has(name) {
			continue
		}
		l := s.opts.ServerListener(ip, port)
		if l == nil || l.GetName() != name {
			continue
		}
		e, err := newEntry(resourcev3.ListenerType, name, l)
		if err != nil {
			s.log.Error("xds: on-demand server listener", "name", name, "err", err)
			continue
		}
		if err := o.addExtra(e, s.opts.MaxOnDemandListeners); err != nil {
			s.log.Warn("xds: on-demand server listener refused", "name", name, "err", err)
			continue
		}
		s.log.Debug("xds: added on-demand server listener", "name", name)
	}
}

// serverListenerAddr parses an xDS-server Listener name,
// ServerListenerPrefix + "IP:PORT", accepting only the canonical form
// ServerListenerName prints (gRPC asks for exactly that), so one listener
// cannot be created under several names.
func serverListenerAddr(name string) (ip string, port uint32, ok bool) {
	addr, ok := strings.CutPrefix(name, ServerListenerPrefix)
	if !ok {
		return "", 0, false
	}
	ap, err := netip.ParseAddrPort(addr)
	// Go prints an IPv4-mapped listener address as plain IPv4.
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
		return "", 0, false
	}
	ip, port = ap.Addr().String(), uint32(ap.Port())
	if ServerListenerName(ip, port) != name {
		return "", 0, false
	}
	return ip, port, true
}
