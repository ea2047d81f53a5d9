package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// client is one simulated data plane: one connection, one ADS stream, driven
// by a single goroutine that receives, ACKs and records.
type client struct {
	id       int
	wildcard bool
	node     []byte // encoded corev3.Node, sent on the first request only
	shared   string // the cluster whose marker endpoint changes
	markAddr string // the marker endpoint's address and port
	markPort uint32
	cds      requestTemplate
	eds      requestTemplate // nil until a wildcard client learns the clusters

	// names is the EDS subscription; index maps a name to its position when
	// the subscription is large (wildcard), else names is searched linearly.
	names []string
	index map[string]int
	seen  []bool
	nSeen int

	edsSent              bool
	edsVersion, edsNonce []byte // last EDS response, for resubscriptions
	marker               uint32
	haveMarker           bool
	ready                bool
}

// newClient builds scoped client i or, when wildcard, wildcard client i.
func newClient(p Plan, i int, wildcard bool) (*client, error) {
	c := &client{id: i, wildcard: wildcard, shared: p.Clusters[p.Shared], markAddr: p.MarkerAddress, markPort: p.MarkerPort}
	node := &corev3.Node{Cluster: p.nodePrefix()}
	if wildcard {
		node.Id = fmt.Sprintf("%s-wildcard-%d", p.nodePrefix(), i)
		node.UserAgentName = "envoy"
		node.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: "1.36.0"}
		c.cds = newRequestTemplate(typeCluster, nil)
	} else {
		node.Id = fmt.Sprintf("%s-scoped-%d", p.nodePrefix(), i)
		node.UserAgentName = "gRPC Go"
		node.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: grpc.Version}
		node.ClientFeatures = []string{"envoy.lb.does_not_support_overprovisioning", "xds.config.resource-in-sotw"}
		c.setNames(p.Subscriptions(i))
		c.cds = newRequestTemplate(typeCluster, c.names)
	}
	b, err := proto.Marshal(node)
	if err != nil {
		return nil, fmt.Errorf("loadgen: encode node: %w", err)
	}
	c.node = b
	return c, nil
}

// setNames replaces the EDS subscription and forgets what was seen.
func (c *client) setNames(names []string) {
	c.names = names
	c.index = nil
	if len(names) > 16 {
		c.index = make(map[string]int, len(names))
		for i, n := range names {
			c.index[n] = i
		}
	}
	c.seen = make([]bool, len(names))
	c.nSeen = 0
	c.eds = newRequestTemplate(typeEndpoint, names)
}

func (c *client) lookup(name []byte) int {
	if c.index != nil {
		if i, ok := c.index[string(name)]; ok {
			return i
		}
		return -1
	}
	for i, n := range c.names {
		if n == string(name) {
			return i
		}
	}
	return -1
}

// hooks is how a client reports to its generator.
type hooks struct {
	// ready is called once, when the client holds every subscribed cluster's
	// endpoints.
	ready func()
	// changed is called after the client ACKed a response in which the
	// marker endpoint's weight differs from the one it saw before.
	changed func(marker uint32, ackUnixNano int64)
}

// dialOptions keep ten thousand client connections cheap: small buffers, no
// name resolution.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithReadBufferSize(16 << 10),
		grpc.WithWriteBufferSize(8 << 10),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
	}
}

// run connects and serves the stream until ctx ends or the stream fails.
func (c *client) run(ctx context.Context, addr string, h hooks) error {
	conn, err := grpc.NewClient("passthrough:///"+addr, dialOptions()...)
	if err != nil {
		return fmt.Errorf("loadgen: dial: %w", err)
	}
	defer conn.Close()
	stream, err := conn.NewStream(ctx, &adsDesc, adsMethod, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return fmt.Errorf("loadgen: open ADS stream: %w", err)
	}
	if err := stream.SendMsg(c.cds.request(c.node, nil, nil)); err != nil {
		return fmt.Errorf("loadgen: send CDS request: %w", err)
	}
	var (
		buf  []byte
		resp response
	)
	for {
		if err := stream.RecvMsg(&buf); err != nil {
			return fmt.Errorf("loadgen: receive: %w", err)
		}
		if err := parseResponse(buf, &resp); err != nil {
			return err
		}
		switch string(resp.typeURL) {
		case typeCluster:
			if err := c.onClusters(stream, &resp); err != nil {
				return err
			}
		case typeEndpoint:
			if err := c.onEndpoints(stream, &resp, h); err != nil {
				return err
			}
		default:
			return fmt.Errorf("loadgen: unexpected response type %q", resp.typeURL)
		}
	}
}

// onClusters ACKs a CDS response and, the first time (or, for a wildcard
// client, whenever the set of clusters changes), subscribes to EDS.
func (c *client) onClusters(stream grpc.ClientStream, r *response) error {
	if err := stream.SendMsg(c.cds.request(nil, r.version, r.nonce)); err != nil {
		return fmt.Errorf("loadgen: ACK CDS: %w", err)
	}
	if !c.wildcard {
		if c.edsSent {
			return nil
		}
		return c.sendEDS(stream)
	}
	names := make([]string, 0, len(r.resources))
	for _, res := range r.resources {
		name, eds, err := clusterEDS(res)
		if err != nil {
			return err
		}
		if eds {
			names = append(names, string(name))
		}
	}
	slices.Sort(names)
	if c.edsSent && slices.Equal(names, c.names) {
		return nil
	}
	c.setNames(names)
	return c.sendEDS(stream)
}

// sendEDS asks for the EDS subscription: once after the first CDS response,
// as gRPC and Envoy do, and again when a wildcard client's clusters change.
func (c *client) sendEDS(stream grpc.ClientStream) error {
	c.edsSent = true
	if err := stream.SendMsg(c.eds.request(nil, c.edsVersion, c.edsNonce)); err != nil {
		return fmt.Errorf("loadgen: send EDS request: %w", err)
	}
	return nil
}

// onEndpoints ACKs an EDS response, then notes which clusters arrived and
// whether the marker endpoint changed.
func (c *client) onEndpoints(stream grpc.ClientStream, r *response, h hooks) error {
	if !c.edsSent {
		return errors.New("loadgen: EDS response before any EDS request")
	}
	if err := stream.SendMsg(c.eds.request(nil, r.version, r.nonce)); err != nil {
		return fmt.Errorf("loadgen: ACK EDS: %w", err)
	}
	ackAt := time.Now().UnixNano()
	c.edsVersion = append(c.edsVersion[:0], r.version...)
	c.edsNonce = append(c.edsNonce[:0], r.nonce...)
	marker, sawShared := uint32(0), false
	for _, res := range r.resources {
		name, err := resourceName(res)
		if err != nil {
			return err
		}
		if i := c.lookup(name); i >= 0 && !c.seen[i] {
			c.seen[i] = true
			c.nSeen++
		}
		if string(name) == c.shared {
			w, err := endpointWeight(res, c.markAddr, c.markPort)
			if err != nil {
				return err
			}
			marker, sawShared = w, true
		}
	}
	if sawShared {
		if c.ready && marker != c.marker {
			h.changed(marker, ackAt)
		}
		c.marker, c.haveMarker = marker, true
	}
	if !c.ready && c.haveMarker && c.nSeen == len(c.names) {
		c.ready = true
		h.ready()
	}
	return nil
}
