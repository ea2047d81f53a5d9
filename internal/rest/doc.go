// Package rest holds the control plane's read-only REST handlers for the
// registry and the connected data planes, and the problem+json error shape
// (RFC 9457) every REST error uses.
package rest
