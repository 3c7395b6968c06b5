// Package status keeps the current view of every account (state, JID, the
// QR code showing, restart and reconnect counts, last error) by folding the
// fleet's events, and summarises it for the health log and the HTTP API.
// An account leaves the board when this instance loses its lease (handed
// over in a fleet) or when it is no longer configured here (Forget).
//
// A Board is an events.Publisher: register it as a sink of the events.Bus.
package status
