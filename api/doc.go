// Package api is the operators' HTTP view of the fleet: the account status
// JSON, QR codes as PNG, server-sent events, a self-contained HTML console
// (dashboard.go: paged, filtered, live, with the row actions and its login,
// session.go), health and readiness probes, and the Prometheus metrics
// endpoint.
//
// Its routes and JSON field names are a contract with tools outside this
// repository (see issue 4): GET /api/accounts, GET /api/accounts/{id},
// POST /api/accounts/{id}/pair, POST /api/accounts/{id}/restart,
// POST /api/accounts/{id}/logout,
// GET /api/accounts/{id}/qr.png, GET /api/events, GET /, GET /healthz,
// GET /readyz, GET /metrics and GET /api/openapi.json (GET /api/accounts
// also answers one page with counts per state, console_list.go); the
// console's POST /login and POST /logout; and, for devices a server-initiated wipe
// archived and wipes the mass-logout guard holds (archive.go, through the
// Archive the app implements), GET /api/archive,
// POST /api/archive/{id}/restore, GET /api/wipes and POST /api/wipes/confirm;
// and, for webhooks (webhooks.go, through the Webhooks the webhook engine
// implements), GET /api/webhooks, GET /api/webhooks/deadletters,
// POST /api/webhooks/deadletters/{id}/redrive and GET, PUT and DELETE
// /api/accounts/{id}/webhooks (never a secret in an answer);
// for accounts managed at runtime (accounts_admin.go, through the
// AccountAdmin the app implements), POST /api/accounts,
// PATCH /api/accounts/{id} and DELETE /api/accounts/{id}; and, in fleet
// mode (fleet.go, through the Fleet package fleet/view implements), GET
// /api/instances, while the account routes answer for every instance.
// openapi.json documents every route; openapi_test.go fails when a route
// registered in routes() is missing from it or a documented one is not
// registered, and when its schemas and the handlers' JSON differ, and the
// API tests check every answer they provoke against it (conform_test.go).
//
// The package reads account views from a status.Board (in fleet mode from
// a Fleet), streams events from the outbox through an EventLog (the
// journal: the history for a client that resumes with Last-Event-ID,
// then the live entries; sse.go), and acts on accounts through a
// Controller that the supervisor implements (in fleet mode wrapped by
// fleet/view's Router, which reaches the instance running the account);
// POST /api/accounts/{id}/pair with a phone number answers a link code
// through the Controller's LinkPairer (linkcode.go), and POST
// /api/accounts/{id}/messages sends through its Sender (messages.go; the
// Router reaches the owner for these too). Package app builds the Server
// and runs Serve.
//
// Every route except /healthz and /readyz refuses (guard.go) a Host that is
// not a loopback name or address, the listen host, a configured name or
// the address the connection arrived on (DNS rebinding), and a request a
// page of another site made in the operator's browser (Sec-Fetch-Site,
// Origin), whether or not a token is set; when a token is configured they
// also require "Authorization: Bearer TOKEN" or the console's session
// cookie, which needs the session's CSRF token on every change (session.go:
// sessions in memory, bounded, failed logins limited per address). QR
// contents are sent only to
// the operator, never logged. Event streams are bounded (slots.go): in
// total, per client address, with slots kept for the dashboard's own
// streams, and in lifetime.
package api
