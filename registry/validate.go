package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a registration may carry. They keep one instance's etcd
// value small and the xDS resources built from it sane.
const (
	MinTTLSeconds     = 5
	MaxTTLSeconds     = 300
	DefaultTTLSeconds = 15
	MaxWeight         = 1000
	MaxPorts          = 64
	MaxMapEntries     = 64        // labels, and metadata, each
	MaxMapBytes       = 16 * 1024 // keys and values of labels and metadata together
	MaxLabelValue     = 256
	MaxMetadataValue  = 4096
	MaxMapKey         = 128
	MaxInstanceID     = 253
	MaxShortString    = 128 // version, locality parts
)

// FieldViolation is one problem with one field of a request. Field uses the
// gRPC API's field names and indexes, e.g. "ports[0].port".
type FieldViolation struct {
	Field       string
	Description string
}

// ValidationError lists every problem found with a request.
type ValidationError struct {
	Violations []FieldViolation
}

// Error lists every violation as "field: description", separated by "; ".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("registry: invalid request: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Description)
	}
	return b.String()
}

// Message is the violations alone, without the package prefix, as a status
// message for API callers.
func (e *ValidationError) Message() string {
	return strings.TrimPrefix(e.Error(), "registry: invalid request: ")
}

type violations []FieldViolation

func (vs *violations) add(field, format string, args ...any) {
	*vs = append(*vs, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (vs violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return &ValidationError{Violations: vs}
}

// AsValidationError reports whether err is (or wraps) a *ValidationError.
func AsValidationError(err error) (*ValidationError, bool) {
	var ve *ValidationError
	ok := errors.As(err, &ve)
	return ve, ok
}

// NormalizeInstance applies the registration defaults to in (namespace
// "default", weight 1, health SERVING, TTL 15 s, ports sorted, id derived from
// address and ports) and validates it. It returns a *ValidationError naming
// every offending field.
func NormalizeInstance(in *Instance) error {
	var vs violations
	if in.Namespace == "" {
		in.Namespace = DefaultNamespace
	}
	checkDNSLabel(&vs, "namespace", in.Namespace)
	checkDNSLabel(&vs, "service", in.Service)
	checkAddress(&vs, "address", in.Address)
	checkPorts(&vs, in.Ports)
	if in.ID != "" {
		checkInstanceID(&vs, "instance_id", in.ID)
	}
	checkShort(&vs, "locality.region", in.Locality.Region)
	checkShort(&vs, "locality.zone", in.Locality.Zone)
	checkShort(&vs, "locality.sub_zone", in.Locality.SubZone)
	checkShort(&vs, "version", in.Version)
	if in.Weight == 0 {
		in.Weight = 1
	}
	if in.Weight > MaxWeight {
		vs.add("weight", "must be 0..%d", MaxWeight)
	}
	if in.Health == "" {
		in.Health = HealthServing
	}
	checkHealth(&vs, "health", in.Health)
	if in.TTLSeconds == 0 {
		in.TTLSeconds = DefaultTTLSeconds
	}
	if in.TTLSeconds < MinTTLSeconds || in.TTLSeconds > MaxTTLSeconds {
		vs.add("ttl_seconds", "must be %d..%d (0 means %d)", MinTTLSeconds, MaxTTLSeconds, DefaultTTLSeconds)
	}
	total := checkMap(&vs, "labels", in.Labels, MaxLabelValue)
	total += checkMap(&vs, "metadata", in.Metadata, MaxMetadataValue)
	if total > MaxMapBytes {
		vs.add("metadata", "labels and metadata together must be at most %d bytes, got %d", MaxMapBytes, total)
	}
	if err := vs.err(); err != nil {
		return err
	}
	// Sort a copy: the caller's slice may be shared (Store.Register takes
	// its Instance by value).
	in.Ports = slices.Clone(in.Ports)
	slices.SortFunc(in.Ports, func(a, b Port) int { return int(a.Port) - int(b.Port) })
	if in.ID == "" {
		in.ID = deriveInstanceID(in.Address, in.Ports)
	}
	if len(in.Labels) == 0 {
		in.Labels = nil
	}
	if len(in.Metadata) == 0 {
		in.Metadata = nil
	}
	return nil
}

// ValidateRef checks the namespace, service and instance id that name an
// existing instance, defaulting the namespace. Field names are the API's.
func ValidateRef(ns, service, id string) (string, error) {
	var vs violations
	if ns == "" {
		ns = DefaultNamespace
	}
	checkDNSLabel(&vs, "namespace", ns)
	checkDNSLabel(&vs, "service", service)
	checkInstanceID(&vs, "instance_id", id)
	return ns, vs.err()
}

// ValidateHealth checks a health value given to SetHealth.
func ValidateHealth(h Health) error {
	var vs violations
	checkHealth(&vs, "health", h)
	return vs.err()
}

// ValidateScope checks an optional namespace and service that limit a list
// or watch; a service needs a namespace.
func ValidateScope(ns, service string) error {
	var vs violations
	if ns != "" {
		checkDNSLabel(&vs, "namespace", ns)
	}
	if service != "" {
		if ns == "" {
			vs.add("namespace", "required when service is set")
		}
		checkDNSLabel(&vs, "service", service)
	}
	return vs.err()
}

// deriveInstanceID names an instance by its address and target ports, so the
// same process registering again gets the same id.
func deriveInstanceID(address string, ports []Port) string {
	targets := make([]uint32, 0, len(ports))
	for _, p := range ports {
		targets = append(targets, p.EffectiveTargetPort())
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	var b strings.Builder
	b.WriteString(address)
	for _, t := range targets {
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(uint64(t), 10))
	}
	id := b.String()
	if len(id) > MaxInstanceID {
		sum := sha256.Sum256([]byte(id))
		id = hex.EncodeToString(sum[:16])
	}
	return id
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func checkDNSLabel(vs *violations, field, s string) {
	switch {
	case s == "":
		vs.add(field, "required")
	case !isDNSLabel(s):
		vs.add(field, "must be a DNS label: 1..63 lower-case letters, digits or '-', starting and ending with a letter or digit")
	}
}

// isHostname reports whether s is an RFC 1123 host name.
func isHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			case c == '-' && i > 0 && i < len(label)-1:
			default:
				return false
			}
		}
	}
	return true
}

func checkAddress(vs *violations, field, s string) {
	if s == "" {
		vs.add(field, "required")
		return
	}
	if a, err := netip.ParseAddr(s); err == nil {
		switch {
		case a.Zone() != "":
			vs.add(field, "must not carry an IPv6 zone")
		case a.IsUnspecified():
			vs.add(field, "must not be the unspecified address")
		case a.Is4In6():
			vs.add(field, "must be a plain IPv4 address, not IPv4-mapped IPv6")
		}
		return
	}
	if !isHostname(s) {
		vs.add(field, "must be an IPv4 or IPv6 address or a DNS host name")
		return
	}
	// A name made of digits and dots only is a malformed IPv4 address.
	if strings.Trim(s, "0123456789.") == "" {
		vs.add(field, "must be an IPv4 or IPv6 address or a DNS host name")
	}
}

func checkPorts(vs *violations, ports []Port) {
	if len(ports) == 0 {
		vs.add("ports", "at least one port is required")
		return
	}
	if len(ports) > MaxPorts {
		vs.add("ports", "at most %d ports", MaxPorts)
		return
	}
	numbers := map[uint32]int{}
	names := map[string]int{}
	for i, p := range ports {
		f := "ports[" + strconv.Itoa(i) + "]"
		if p.Port < 1 || p.Port > 65535 {
			vs.add(f+".port", "must be 1..65535")
		} else if j, dup := numbers[p.Port]; dup {
			vs.add(f+".port", "duplicates ports[%d].port %d", j, p.Port)
		} else {
			numbers[p.Port] = i
		}
		if p.TargetPort > 65535 {
			vs.add(f+".target_port", "must be 1..65535, or 0 for the same as port")
		}
		if p.Name != "" {
			if !isDNSLabel(p.Name) {
				vs.add(f+".name", "must be a DNS label: 1..63 lower-case letters, digits or '-', starting and ending with a letter or digit")
			} else if j, dup := names[p.Name]; dup {
				vs.add(f+".name", "duplicates ports[%d].name %q", j, p.Name)
			} else {
				names[p.Name] = i
			}
		}
		switch p.Protocol {
		case ProtocolGRPC, ProtocolHTTP, ProtocolHTTP2, ProtocolTCP:
		default:
			vs.add(f+".protocol", "must be one of GRPC, HTTP, HTTP2, TCP")
		}
	}
}

func checkInstanceID(vs *violations, field, s string) {
	if s == "" {
		vs.add(field, "required")
		return
	}
	if len(s) > MaxInstanceID {
		vs.add(field, "must be at most %d bytes", MaxInstanceID)
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == ':' || c == '-') && i > 0:
		default:
			vs.add(field, "must be letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
			return
		}
	}
}

func checkHealth(vs *violations, field string, h Health) {
	switch h {
	case HealthServing, HealthNotServing, HealthDraining:
	default:
		vs.add(field, "must be one of SERVING, NOT_SERVING, DRAINING")
	}
}

// isPrintable reports whether s is valid UTF-8 without control characters.
func isPrintable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func checkShort(vs *violations, field, s string) {
	switch {
	case len(s) > MaxShortString:
		vs.add(field, "must be at most %d bytes", MaxShortString)
	case !isPrintable(s):
		vs.add(field, "must be printable UTF-8")
	}
}

// checkMap validates labels or metadata and returns their size in bytes.
func checkMap(vs *violations, field string, m map[string]string, maxValue int) int {
	if len(m) > MaxMapEntries {
		vs.add(field, "at most %d entries, got %d", MaxMapEntries, len(m))
	}
	keys := make([]string, 0, len(m))
	size := 0
	for k, v := range m {
		keys = append(keys, k)
		size += len(k) + len(v)
	}
	slices.Sort(keys) // report violations in a stable order
	for _, k := range keys {
		f := field + "[" + quoteKey(k) + "]"
		if !isMapKey(k) {
			vs.add(f, "key must be 1..%d letters, digits, '-', '_', '.' or '/', starting and ending with a letter or digit", MaxMapKey)
		}
		v := m[k]
		switch {
		case len(v) > maxValue:
			vs.add(f, "value must be at most %d bytes", maxValue)
		case !utf8.ValidString(v):
			vs.add(f, "value must be valid UTF-8")
		}
	}
	return size
}

func quoteKey(k string) string {
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	return strconv.Quote(k)
}

func isMapKey(s string) bool {
	if len(s) == 0 || len(s) > MaxMapKey {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.' || c == '/') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
