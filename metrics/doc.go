// Package metrics holds the fleet's Prometheus metrics in a registry of its
// own (never the global default): accounts by state, handshakes and their
// duration, reconnects, pairings, restarts, events by kind, acks sent,
// undecodable stanzas, streams ended for unacked stanzas, prekeys uploaded,
// disconnects by reason (events.Reason), the build info (ExportBuild) and,
// opt-in, one info series per account (ExportAccountInfo), the events the
// bus dropped (CountDropped), plus the Go runtime and process collectors.
// Other packages register theirs in the same Registry: package app the
// lease, journal, paused-wipe and Redis round-trip metrics, package webhook
// its delivery metrics. Every metric of ours starts with
// "wafleet_"; the runtime and process series keep their standard go_* and
// process_* names so stock dashboards work.
//
// A *Metrics is an events.Publisher: register it as a sink of the
// events.Bus and it counts the fleet's events without ever blocking the
// publisher. Connection actors report each Noise handshake to it (it is a
// HandshakeObserver) and count their acks and prekeys through it (it is
// the connection package's Observer). The api package serves Handler at
// GET /metrics; package app builds one Metrics per process and wires both
// ends.
package metrics
