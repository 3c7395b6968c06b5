// Package connection is the actor that keeps one WhatsApp account connected:
// it dials, runs the Noise handshake, logs in or hands an unlinked account to
// a pairing child, keeps the socket alive with pings, and reconnects with
// exponential backoff and full jitter when the connection drops.
//
// The supervisor spawns one connection actor per account; nothing else should
// import this package.
package connection
