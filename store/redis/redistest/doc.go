// Package redistest gives tests a real redis-server: the shared one on
// 127.0.0.1:6379 (or $WAFLEET_TEST_REDIS) with a unique key prefix per test,
// or a private server started in a temporary directory (for tests that
// restart, flush or reconfigure Redis). A test that can have neither fails
// with a clear message; it never skips.
//
// Test code of store/redis, fleet, app and cmd/manager
// imports it.
package redistest
