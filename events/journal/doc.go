// Package journal writes every account event into the store's outbox and
// follows the outbox for the readers that wait on it.
//
// Journal is an events.Publisher that never blocks: Publish puts the
// event in a bounded buffer, and one writer goroutine appends what has
// gathered there to the outbox in one batch (group commit: one
// transaction, or one round trip, for many events). When the buffer is
// full the event is dropped and counted (Stats.Dropped); an append that
// fails is retried with a growing pause, the buffer filling meanwhile.
// An abrupt kill loses the events published but not yet appended: those
// in the buffer and the batch in flight, usually the last few
// milliseconds' worth. Each entry's Body is events.Marshal of the event,
// without the QR content.
//
// The journal also follows the outbox: after each append of its own, when
// another instance announces an append to a shared outbox (fleet mode:
// Options.Watch), and every Options.Poll for what a lost announcement
// missed, it reads the new entries and hands them to its subscribers
// (Subscribe: the event streams of the API) and wakes those waiting on
// Changed (the webhook deliverers).
package journal
