package registry_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshplane/meshplane/registry"
)

func TestNormalizeInstanceRejects(t *testing.T) {
	manyPorts := make([]registry.Port, registry.MaxPorts+1)
	for i := range manyPorts {
		manyPorts[i] = registry.Port{Port: uint32(1000 + i), Protocol: registry.ProtocolTCP}
	}
	manyLabels := map[string]string{}
	for i := range registry.MaxMapEntries + 1 {
		manyLabels["k"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	big := map[string]string{}
	for i := range 5 {
		big["key"+string(rune('a'+i))] = strings.Repeat("v", registry.MaxMetadataValue)
	}
	tests := map[string]struct {
		mod   func(*registry.Instance)
		field string
		desc  string // substring of the description
	}{
		"service missing":        {func(in *registry.Instance) { in.Service = "" }, "service", "required"},
		"service upper case":     {func(in *registry.Instance) { in.Service = "Api" }, "service", "DNS label"},
		"service underscore":     {func(in *registry.Instance) { in.Service = "my_api" }, "service", "DNS label"},
		"service leading dash":   {func(in *registry.Instance) { in.Service = "-api" }, "service", "DNS label"},
		"service trailing dash":  {func(in *registry.Instance) { in.Service = "api-" }, "service", "DNS label"},
		"service too long":       {func(in *registry.Instance) { in.Service = strings.Repeat("a", 64) }, "service", "DNS label"},
		"service with dot":       {func(in *registry.Instance) { in.Service = "a.b" }, "service", "DNS label"},
		"namespace invalid":      {func(in *registry.Instance) { in.Namespace = "Prod" }, "namespace", "DNS label"},
		"namespace slash":        {func(in *registry.Instance) { in.Namespace = "a/b" }, "namespace", "DNS label"},
		"address missing":        {func(in *registry.Instance) { in.Address = "" }, "address", "required"},
		"address garbage":        {func(in *registry.Instance) { in.Address = "not an address" }, "address", "IPv4 or IPv6"},
		"address with port":      {func(in *registry.Instance) { in.Address = "10.0.0.1:80" }, "address", "IPv4 or IPv6"},
		"address bad ipv4":       {func(in *registry.Instance) { in.Address = "10.0.0.256" }, "address", "IPv4 or IPv6"},
		"address short ipv4":     {func(in *registry.Instance) { in.Address = "10.0.1" }, "address", "IPv4 or IPv6"},
		"address unspecified v4": {func(in *registry.Instance) { in.Address = "0.0.0.0" }, "address", "unspecified"},
		"address unspecified v6": {func(in *registry.Instance) { in.Address = "::" }, "address", "unspecified"},
		"address zone":           {func(in *registry.Instance) { in.Address = "fe80::1%eth0" }, "address", "zone"},
		"address 4in6":           {func(in *registry.Instance) { in.Address = "::ffff:10.0.0.1" }, "address", "IPv4-mapped"},
		"address label too long": {func(in *registry.Instance) { in.Address = strings.Repeat("a", 64) + ".com" }, "address", "IPv4 or IPv6"},
		"ports missing":          {func(in *registry.Instance) { in.Ports = nil }, "ports", "at least one"},
		"too many ports":         {func(in *registry.Instance) { in.Ports = manyPorts }, "ports", "at most"},
		"port zero":              {func(in *registry.Instance) { in.Ports[0].Port = 0 }, "ports[0].port", "must be 1..65535"},
		"port too big":           {func(in *registry.Instance) { in.Ports[0].Port = 65536 }, "ports[0].port", "must be 1..65535"},
		"port duplicate": {func(in *registry.Instance) {
			in.Ports = append(in.Ports, registry.Port{Port: 8080, Protocol: registry.ProtocolTCP})
		}, "ports[1].port", "duplicates ports[0].port"},
		"target port too big": {func(in *registry.Instance) { in.Ports[0].TargetPort = 70000 }, "ports[0].target_port", "1..65535"},
		"port name invalid":   {func(in *registry.Instance) { in.Ports[0].Name = "HTTP" }, "ports[0].name", "DNS label"},
		"port name duplicate": {func(in *registry.Instance) {
			in.Ports = append(in.Ports, registry.Port{Name: "grpc", Port: 9090, Protocol: registry.ProtocolTCP})
		}, "ports[1].name", "duplicates"},
		"protocol missing":        {func(in *registry.Instance) { in.Ports[0].Protocol = "" }, "ports[0].protocol", "GRPC, HTTP, HTTP2, TCP"},
		"protocol unknown":        {func(in *registry.Instance) { in.Ports[0].Protocol = "UDP" }, "ports[0].protocol", "GRPC, HTTP, HTTP2, TCP"},
		"instance id slash":       {func(in *registry.Instance) { in.ID = "a/b" }, "instance_id", "letters, digits"},
		"instance id leading dot": {func(in *registry.Instance) { in.ID = ".a" }, "instance_id", "starting with"},
		"instance id too long":    {func(in *registry.Instance) { in.ID = strings.Repeat("a", registry.MaxInstanceID+1) }, "instance_id", "at most"},
		"weight too big":          {func(in *registry.Instance) { in.Weight = registry.MaxWeight + 1 }, "weight", "0..1000"},
		"health unknown":          {func(in *registry.Instance) { in.Health = "SICK" }, "health", "SERVING"},
		"ttl too small":           {func(in *registry.Instance) { in.TTLSeconds = registry.MinTTLSeconds - 1 }, "ttl_seconds", "5..300"},
		"ttl too big":             {func(in *registry.Instance) { in.TTLSeconds = registry.MaxTTLSeconds + 1 }, "ttl_seconds", "5..300"},
		"ttl negative":            {func(in *registry.Instance) { in.TTLSeconds = -1 }, "ttl_seconds", "5..300"},
		"too many labels":         {func(in *registry.Instance) { in.Labels = manyLabels }, "labels", "at most 64 entries"},
		"label key invalid":       {func(in *registry.Instance) { in.Labels = map[string]string{"bad key": "v"} }, `labels["bad key"]`, "key must be"},
		"label key empty":         {func(in *registry.Instance) { in.Labels = map[string]string{"": "v"} }, `labels[""]`, "key must be"},
		"label value too long": {func(in *registry.Instance) {
			in.Labels = map[string]string{"k": strings.Repeat("v", registry.MaxLabelValue+1)}
		}, `labels["k"]`, "at most 256"},
		"metadata value too long": {func(in *registry.Instance) {
			in.Metadata = map[string]string{"k": strings.Repeat("v", registry.MaxMetadataValue+1)}
		}, `metadata["k"]`, "at most 4096"},
		"metadata bad utf8":     {func(in *registry.Instance) { in.Metadata = map[string]string{"k": "\xff"} }, `metadata["k"]`, "UTF-8"},
		"maps too big in total": {func(in *registry.Instance) { in.Metadata = big }, "metadata", "together must be at most 16384 bytes"},
		"region too long":       {func(in *registry.Instance) { in.Locality.Region = strings.Repeat("r", 129) }, "locality.region", "at most 128"},
		"zone control char":     {func(in *registry.Instance) { in.Locality.Zone = "a\nb" }, "locality.zone", "printable"},
		"sub zone bad utf8":     {func(in *registry.Instance) { in.Locality.SubZone = "\xc0" }, "locality.sub_zone", "printable"},
		"version control char":  {func(in *registry.Instance) { in.Version = "v1\x00" }, "version", "printable"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := inst("api", "10.0.0.1")
			tc.mod(&in)
			err := registry.NormalizeInstance(&in)
			ve, ok := registry.AsValidationError(err)
			if !ok {
				t.Fatalf("NormalizeInstance = %v, want a validation error", err)
			}
			for _, v := range ve.Violations {
				if v.Field == tc.field && strings.Contains(v.Description, tc.desc) {
					if !strings.Contains(ve.Error(), tc.field+": ") {
						t.Errorf("error %q does not name %s", ve.Error(), tc.field)
					}
					return
				}
			}
			t.Fatalf("violations %+v lack %s: ...%s...", ve.Violations, tc.field, tc.desc)
		})
	}
}

func TestNormalizeInstanceDefaultsAndAccepts(t *testing.T) {
	tests := map[string]struct {
		in   registry.Instance
		want registry.Instance
	}{
		"defaults": {
			in: registry.Instance{Service: "api", Address: "10.0.0.1", Ports: []registry.Port{
				{Port: 9090, Protocol: registry.ProtocolHTTP2}, {Port: 80, TargetPort: 8080, Protocol: registry.ProtocolHTTP},
			}, Labels: map[string]string{}},
			want: registry.Instance{ID: "10.0.0.1-8080-9090", Service: "api", Namespace: "default", Address: "10.0.0.1", Ports: []registry.Port{
				{Port: 80, TargetPort: 8080, Protocol: registry.ProtocolHTTP}, {Port: 9090, Protocol: registry.ProtocolHTTP2},
			}, Weight: 1, Health: registry.HealthServing, TTLSeconds: registry.DefaultTTLSeconds},
		},
		"ipv6 and explicit values": {
			in: registry.Instance{ID: "pod-1.a_b:c", Service: "a1", Namespace: "n-1", Address: "2001:db8::1", Weight: 1000, Health: registry.HealthDraining, TTLSeconds: 300,
				Ports:    []registry.Port{{Name: "p", Port: 65535, TargetPort: 1, Protocol: registry.ProtocolTCP}},
				Labels:   map[string]string{"app.kubernetes.io/name": "a1"},
				Locality: registry.Locality{Region: "eu", Zone: "eu-1a", SubZone: "rack 7"}},
			want: registry.Instance{ID: "pod-1.a_b:c", Service: "a1", Namespace: "n-1", Address: "2001:db8::1", Weight: 1000, Health: registry.HealthDraining, TTLSeconds: 300,
				Ports:    []registry.Port{{Name: "p", Port: 65535, TargetPort: 1, Protocol: registry.ProtocolTCP}},
				Labels:   map[string]string{"app.kubernetes.io/name": "a1"},
				Locality: registry.Locality{Region: "eu", Zone: "eu-1a", SubZone: "rack 7"}},
		},
		"hostname": {
			in:   registry.Instance{Service: "db", Address: "db-0.db.svc.cluster.local", Ports: []registry.Port{{Port: 5432, Protocol: registry.ProtocolTCP}}, TTLSeconds: 5},
			want: registry.Instance{ID: "db-0.db.svc.cluster.local-5432", Service: "db", Namespace: "default", Address: "db-0.db.svc.cluster.local", Ports: []registry.Port{{Port: 5432, Protocol: registry.ProtocolTCP}}, Weight: 1, Health: registry.HealthServing, TTLSeconds: 5},
		},
		"long derived id is hashed": {
			in: registry.Instance{Service: "db", Address: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61), Ports: []registry.Port{{Port: 5432, Protocol: registry.ProtocolTCP}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := tc.in
			if err := registry.NormalizeInstance(&in); err != nil {
				t.Fatal(err)
			}
			if tc.want.Service == "" {
				if len(in.ID) != 32 {
					t.Fatalf("derived id %q, want a 32-hex-digit hash", in.ID)
				}
				return
			}
			if d := cmp.Diff(tc.want, in); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
			again := in
			if err := registry.NormalizeInstance(&again); err != nil || !cmp.Equal(in, again) {
				t.Fatalf("NormalizeInstance not idempotent: %v %s", err, cmp.Diff(in, again))
			}
		})
	}
}

func TestValidateScopeAndRef(t *testing.T) {
	if err := registry.ValidateScope("", "svc"); err == nil || !strings.Contains(err.Error(), "namespace: required when service is set") {
		t.Errorf("ValidateScope(\"\", svc) = %v", err)
	}
	if err := registry.ValidateScope("", ""); err != nil {
		t.Errorf("ValidateScope(all) = %v", err)
	}
	ns, err := registry.ValidateRef("", "svc", "id-1")
	if err != nil || ns != "default" {
		t.Errorf("ValidateRef = %q, %v", ns, err)
	}
	if _, err := registry.ValidateRef("default", "svc", ""); err == nil || !strings.Contains(err.Error(), "instance_id: required") {
		t.Errorf("ValidateRef(no id) = %v", err)
	}
}
