// Package redisstream is the events.Publisher that, in fleet mode, appends
// every account event to a Redis stream (PREFIX:events, the key that
// store/redis names), so that tools outside the process can follow the
// fleet. Publishing never blocks: events wait in a buffer for one writer.
//
// Package app imports it; it imports events and store/redis (for the key
// layout and the configuration error).
package redisstream
