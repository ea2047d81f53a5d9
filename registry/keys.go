package registry

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the etcd key prefix under which Meshplane keeps its data.
const DefaultPrefix = "/meshplane/"

// DefaultNamespace is the namespace of a registration that names none.
const DefaultNamespace = "default"

// keys builds and parses the registry's etcd keys:
//
//	<prefix>v1/instances/<namespace>/<service>/<instance id>  →  JSON Instance
//
// Namespace and service are DNS labels and instance ids exclude '/', so a key
// splits unambiguously.
type keys struct {
	instances string // <prefix>v1/instances/
}

func newKeys(prefix string) keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return keys{instances: prefix + "v1/instances/"}
}

// instance is the key of one instance.
func (k keys) instance(ns, service, id string) string {
	return k.instances + ns + "/" + service + "/" + id
}

// scope is the key prefix of every instance in a namespace (service empty)
// or of one service; with both empty, of the whole registry.
func (k keys) scope(ns, service string) string {
	switch {
	case ns == "":
		return k.instances
	case service == "":
		return k.instances + ns + "/"
	default:
		return k.instances + ns + "/" + service + "/"
	}
}

// parse splits an instance key into namespace, service and id.
func (k keys) parse(key string) (ns, service, id string, err error) {
	rest, ok := strings.CutPrefix(key, k.instances)
	if !ok {
		return "", "", "", fmt.Errorf("registry: key %q outside %q", key, k.instances)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("registry: malformed instance key %q", key)
	}
	return parts[0], parts[1], parts[2], nil
}
