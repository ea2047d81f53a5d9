// Package etcdtest starts a real embedded etcd for tests: one member on free
// loopback ports in a temporary directory, which a test can stop, restart on
// the same ports and data (clients reconnect by themselves) and compact.
package etcdtest
