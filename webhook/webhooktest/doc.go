// Package webhooktest is a webhook receiver for tests: an httptest server
// that checks every delivery's signature and headers, records what it
// accepted, and answers as the test tells it (fail, be slow, go away).
package webhooktest
