// Package webversion keeps the WhatsApp Web client version of the process
// current.
//
// Every payload a companion sends carries a WhatsApp Web version
// (userAgent.appVersion, 2.3000.N). The server refuses versions a few months
// old with <failure reason=405>; a version compiled into the binary would
// one day stop the whole fleet. The current N is published as
// "client_revision":N in WhatsApp Web's service-worker script
// (https://web.whatsapp.com/sw.js, PROTOCOL.md 9.8).
//
// [Fetch] reads that script once and returns 2.3000.N. A [Tracker] is the
// one owner of the version of a process: it implements the connection
// actor's VersionSource ([Tracker.Current] on every dial, [Tracker.Refused]
// after a 405), looks for a newer version when the current one is refused —
// first in the shared settings (another instance of the fleet may already
// have found one), then on the web — persists what it finds, and tells the
// accounts through its OnUpdated and OnUnavailable callbacks. While no newer
// version exists it retries every Options.RetryEvery.
//
// Package app builds one Tracker per process; nothing below app imports
// this package.
package webversion
