package registry

import (
	"strconv"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
)

// InstanceFromRegisterRequest converts a gRPC registration to an Instance,
// without defaults or validation (see NormalizeInstance). Unknown enum values
// become values that validation rejects.
func InstanceFromRegisterRequest(req *registryv1.RegisterRequest) Instance {
	in := Instance{
		ID:         req.GetInstanceId(),
		Service:    req.GetService(),
		Namespace:  req.GetNamespace(),
		Address:    req.GetAddress(),
		Weight:     req.GetWeight(),
		Version:    req.GetVersion(),
		Labels:     copyMap(req.GetLabels()),
		Metadata:   copyMap(req.GetMetadata()),
		TTLSeconds: req.GetTtlSeconds(),
	}
	if l := req.GetLocality(); l != nil {
		in.Locality = Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
	}
	if req.GetHealth() != registryv1.Health_HEALTH_UNSPECIFIED {
		in.Health = HealthFromProto(req.GetHealth())
	}
	if len(req.GetPorts()) > 0 {
		in.Ports = make([]Port, 0, len(req.GetPorts()))
	}
	for _, p := range req.GetPorts() {
		in.Ports = append(in.Ports, Port{
			Name:       p.GetName(),
			Port:       p.GetPort(),
			TargetPort: p.GetTargetPort(),
			Protocol:   ProtocolFromProto(p.GetProtocol()),
		})
	}
	return in
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ProtocolFromProto maps the API enum to the model; PROTOCOL_UNSPECIFIED and
// unknown numbers map to values that validation rejects.
func ProtocolFromProto(p registryv1.Protocol) Protocol {
	switch p {
	case registryv1.Protocol_PROTOCOL_GRPC:
		return ProtocolGRPC
	case registryv1.Protocol_PROTOCOL_HTTP:
		return ProtocolHTTP
	case registryv1.Protocol_PROTOCOL_HTTP2:
		return ProtocolHTTP2
	case registryv1.Protocol_PROTOCOL_TCP:
		return ProtocolTCP
	case registryv1.Protocol_PROTOCOL_UNSPECIFIED:
		return ""
	default:
		return Protocol("PROTOCOL(" + strconv.Itoa(int(p)) + ")")
	}
}

// ProtocolToProto maps the model's protocol to the API enum.
func ProtocolToProto(p Protocol) registryv1.Protocol {
	switch p {
	case ProtocolGRPC:
		return registryv1.Protocol_PROTOCOL_GRPC
	case ProtocolHTTP:
		return registryv1.Protocol_PROTOCOL_HTTP
	case ProtocolHTTP2:
		return registryv1.Protocol_PROTOCOL_HTTP2
	case ProtocolTCP:
		return registryv1.Protocol_PROTOCOL_TCP
	default:
		return registryv1.Protocol_PROTOCOL_UNSPECIFIED
	}
}

// HealthFromProto maps the API enum to the model; HEALTH_UNSPECIFIED and
// unknown numbers map to values that validation rejects.
func HealthFromProto(h registryv1.Health) Health {
	switch h {
	case registryv1.Health_HEALTH_SERVING:
		return HealthServing
	case registryv1.Health_HEALTH_NOT_SERVING:
		return HealthNotServing
	case registryv1.Health_HEALTH_DRAINING:
		return HealthDraining
	case registryv1.Health_HEALTH_UNSPECIFIED:
		return ""
	default:
		return Health("HEALTH(" + strconv.Itoa(int(h)) + ")")
	}
}

// HealthToProto maps the model's health to the API enum.
func HealthToProto(h Health) registryv1.Health {
	switch h {
	case HealthServing:
		return registryv1.Health_HEALTH_SERVING
	case HealthNotServing:
		return registryv1.Health_HEALTH_NOT_SERVING
	case HealthDraining:
		return registryv1.Health_HEALTH_DRAINING
	default:
		return registryv1.Health_HEALTH_UNSPECIFIED
	}
}

// PortToProto converts a model port to the API.
func PortToProto(p Port) *registryv1.Port {
	return &registryv1.Port{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort, Protocol: ProtocolToProto(p.Protocol)}
}

// InstanceToProto converts a model instance to the API.
func InstanceToProto(in Instance) *registryv1.Instance {
	out := &registryv1.Instance{
		Id:          in.ID,
		Service:     in.Service,
		Namespace:   in.Namespace,
		Address:     in.Address,
		Weight:      in.Weight,
		Version:     in.Version,
		Labels:      copyMap(in.Labels),
		Metadata:    copyMap(in.Metadata),
		Health:      HealthToProto(in.Health),
		TtlSeconds:  in.TTLSeconds,
		ModRevision: in.ModRevision,
	}
	if in.Locality != (Locality{}) {
		out.Locality = &registryv1.Locality{Region: in.Locality.Region, Zone: in.Locality.Zone, SubZone: in.Locality.SubZone}
	}
	for _, p := range in.Ports {
		out.Ports = append(out.Ports, PortToProto(p))
	}
	return out
}

// ServiceToProto converts a model service to the API.
func ServiceToProto(svc Service) *registryv1.Service {
	out := &registryv1.Service{Name: svc.Name, Namespace: svc.Namespace}
	for _, p := range svc.Ports {
		out.Ports = append(out.Ports, PortToProto(p))
	}
	for _, in := range svc.Instances {
		out.Instances = append(out.Instances, InstanceToProto(in))
	}
	return out
}
