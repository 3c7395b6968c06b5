// Package api is the operators' HTTP view of the fleet: the account status
// JSON, QR codes as PNG, server-sent events, a self-contained HTML dashboard,
// health and readiness probes, and the Prometheus metrics endpoint.
//
// Its routes and JSON field names are a contract with tools outside this
// repository (see issue 4): GET /api/accounts, GET /api/accounts/{id},
// POST /api/accounts/{id}/pair, POST /api/accounts/{id}/logout,
// GET /api/accounts/{id}/qr.png, GET /api/events, GET /, GET /healthz,
// GET /readyz and GET /metrics.
//
// The package reads account views from a status.Board, streams events from
// an events.Bus, and acts on accounts through a Controller that the
// supervisor implements; cmd/manager builds the Server and runs Serve. When
// a token is configured every route except /healthz and /readyz requires
// "Authorization: Bearer TOKEN". QR contents are sent only to the operator,
// never logged.
package api
