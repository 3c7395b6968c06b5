// Package webhook delivers account events to HTTP endpoints: signed JSON
// POSTs, at least once, in order per account, with retries and dead
// letters.
//
// The events come from the store's Outbox (store.Outbox), where the
// journal appends every bus event before anything is delivered. The
// Engine runs one queue per endpoint over it (OpenEndpoint, Next, Ack,
// Bury): the endpoints of the configuration (webhooks in the YAML file)
// and those the API stored for one account (SetAccountEndpoints). Each
// queue has its own goroutines; its entries go to a few lanes by account,
// so the entries of one account are delivered strictly in order while
// other accounts, and other endpoints, go on. An entry the endpoint's
// filter (kinds, accounts) does not want is acknowledged without a POST.
// At start the engine closes the queues of endpoints neither configured
// nor stored (Outbox.Queues), which nobody would ever empty.
//
// A delivery (Delivery) is retried on network errors, timeouts, 408, 429
// and 5xx with exponential backoff and full jitter (Backoff; a
// Retry-After is honoured up to its Max); any other answer that is not
// 2xx makes it a dead letter at once, as does the last of an endpoint's
// max_attempts. Dead letters stay in the outbox until Redrive queues them
// again. Every POST carries X-Wafleet-Signature, the HMAC-SHA256 of the
// timestamp and the body under the endpoint's secret; receivers check it
// with Verify.
//
// Secrets never appear in logs, errors or Status; URLs are logged with
// their scheme, host and path only (RedactURL). The metrics
// (wafleet_webhook_*) are registered on the Registerer the app passes.
package webhook
