// Package events defines the account events of the fleet (state changes, QR
// codes, pairings, disconnects, restarts, leases) and a Bus that fans them out.
//
// Connection, pairing and supervisor actors publish; the status board, the
// health logger, metrics, the HTTP server-sent events and (in fleet mode) the
// Redis event stream consume. Publishing never blocks the publisher.
package events
