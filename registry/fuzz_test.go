package registry

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
)

// checkNormalized asserts what every accepted registration must satisfy: it
// makes a well-formed key that parses back, survives the JSON round trip
// through etcd, and normalising it again changes nothing.
func checkNormalized(t *testing.T, in Instance, err error) {
	t.Helper()
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Violations) == 0 {
			t.Fatalf("error %v is not a validation error with violations", err)
		}
		for _, v := range ve.Violations {
			if v.Field == "" || v.Description == "" {
				t.Fatalf("violation without field or description: %+v", v)
			}
		}
		return
	}
	k := newKeys("")
	key := k.instance(in.Namespace, in.Service, in.ID)
	ns, svc, id, perr := k.parse(key)
	if perr != nil || ns != in.Namespace || svc != in.Service || id != in.ID {
		t.Fatalf("key %q parses to %q %q %q %v", key, ns, svc, id, perr)
	}
	if _, rerr := ValidateRef(in.Namespace, in.Service, in.ID); rerr != nil {
		t.Fatalf("accepted instance has an invalid ref: %v", rerr)
	}
	b, merr := json.Marshal(in)
	if merr != nil {
		t.Fatal(merr)
	}
	var back Instance
	if uerr := json.Unmarshal(b, &back); uerr != nil {
		t.Fatal(uerr)
	}
	if d := cmp.Diff(in, back); d != "" {
		t.Fatalf("JSON round trip (-in +back):\n%s", d)
	}
	again := back
	if nerr := NormalizeInstance(&again); nerr != nil || !cmp.Equal(back, again) {
		t.Fatalf("normalising twice: %v %s", nerr, cmp.Diff(back, again))
	}
	if in.Weight < 1 || in.Weight > MaxWeight || in.TTLSeconds < MinTTLSeconds || in.TTLSeconds > MaxTTLSeconds {
		t.Fatalf("accepted out-of-range weight/ttl: %+v", in)
	}
	if InstanceToProto(in).GetId() != in.ID {
		t.Fatal("InstanceToProto lost the id")
	}
}

// FuzzRegisterRequest feeds arbitrary wire bytes through the gRPC request
// conversion and validation.
func FuzzRegisterRequest(f *testing.F) {
	seeds := []*registryv1.RegisterRequest{
		{Service: "api", Address: "10.0.0.1", Ports: []*registryv1.Port{{Name: "grpc", Port: 8080, Protocol: registryv1.Protocol_PROTOCOL_GRPC}}},
		{Service: "api", Namespace: "prod", Address: "2001:db8::1", InstanceId: "pod-1", Weight: 7, TtlSeconds: 30,
			Ports:    []*registryv1.Port{{Port: 80, TargetPort: 8080, Protocol: registryv1.Protocol_PROTOCOL_HTTP}, {Port: 443, Protocol: registryv1.Protocol_PROTOCOL_TCP}},
			Locality: &registryv1.Locality{Region: "eu", Zone: "a"}, Labels: map[string]string{"app": "api"}, Metadata: map[string]string{"k": "v"},
			Health: registryv1.Health_HEALTH_DRAINING, Version: "v1"},
		{Service: "API", Address: "0.0.0.0", Ports: []*registryv1.Port{{Port: 0, Protocol: 99}}, Health: 42, TtlSeconds: -5},
		{Service: "db", Address: "db-0.example.com", Ports: []*registryv1.Port{{Port: 5432, Protocol: registryv1.Protocol_PROTOCOL_TCP}, {Port: 5432}}},
		{},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req registryv1.RegisterRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		in := InstanceFromRegisterRequest(&req)
		err := NormalizeInstance(&in)
		checkNormalized(t, in, err)
	})
}

// FuzzNormalizeInstance explores the fields that validation inspects most.
func FuzzNormalizeInstance(f *testing.F) {
	f.Add("api", "default", "10.0.0.1", "", uint32(8080), uint32(0), "grpc", "GRPC", uint32(0), int64(0), "app", "api")
	f.Add("a-b", "", "::1", "id:1", uint32(1), uint32(65535), "", "TCP", uint32(1000), int64(300), "x.y/z", "")
	f.Add("x", "y", "host.example", "id", uint32(65536), uint32(70000), "N", "UDP", uint32(1001), int64(4), "", "v")
	f.Add("x", "y", "1.2.3", "a/b", uint32(80), uint32(0), "http", "HTTP", uint32(5), int64(15), "k", "\xff")
	f.Fuzz(func(t *testing.T, service, ns, address, id string, port, target uint32, pname, proto string, weight uint32, ttl int64, lk, lv string) {
		in := Instance{
			ID: id, Service: service, Namespace: ns, Address: address, Weight: weight, TTLSeconds: ttl,
			Ports:  []Port{{Name: pname, Port: port, TargetPort: target, Protocol: Protocol(proto)}},
			Labels: map[string]string{lk: lv},
		}
		err := NormalizeInstance(&in)
		checkNormalized(t, in, err)
	})
}
