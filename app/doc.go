// Package app assembles one manager process from its configuration: the
// device store, the event bus with the status board, metrics, logs (one JSON
// line per account event, logging.go), readiness (observe.go) and the
// journal that writes every event into the store's outbox (journal.go), the
// webhook engine that delivers the outbox to the webhook endpoints
// (webhooks.go; every instance of a fleet runs one), the actor system with the supervisor and one connection actor per account,
// and the HTTP API. The accounts it runs are the YAML file's and those
// created through the API, kept in the store's account registry
// (registry.go, which says which wins). In fleet mode (store.kind redis,
// fleet.go) it adds the leases and the coordinator that decide which
// accounts run here, and the fleet-wide view (fleetview.go): this
// instance's views published, the API answering for every instance, and
// actions and sends routed to the instance running the account. `manager run` and `manager demo` (cmd/manager) are thin
// wrappers around it; end-to-end tests start it in-process.
package app
