// Package testkit holds the helpers that tests across the module share
// instead of copying: a goroutine-safe log buffer (LogBuffer), a manual
// clock (Clock) and an events.Publisher that records events and lets a test
// wait for them (Recorder): for any one that matches (WaitFor), for n of them
// (WaitForN) or, in sequence, for the first one at or after an index (WaitFrom).
// A test that also needs a status board passes events.NewBus(board, rec)
// as its publisher. Waits have generous deadlines (WaitTimeout), so
// they bound a hang on a loaded machine and never measure a speed.
//
// Only tests import it; it imports events.
package testkit
