// Package events defines the account events of the fleet (state changes, QR
// codes, pairings, disconnects, restarts, leases) and a Bus that fans them out.
//
// Connection, pairing and supervisor actors publish; the status board, the
// event log, metrics, the terminal QR, the fleet view's publisher (in fleet
// mode) and events/journal, which writes them to the store's outbox for the
// webhooks and GET /api/events, consume. Wire (wire.go) is the one JSON form
// of an event that leaves the process. Publishing never blocks the publisher.
package events
