// Package view gives every instance of a fleet one view of all of it: the
// accounts of every instance, the live members, and actions that reach
// the instance running an account wherever they are sent.
//
// Publisher publishes this instance's account views to Redis, batched (one
// script call per flush, at most every Interval) and only for views that
// changed. A published view never holds the QR code (it contains the ADV
// secret and Redis data lands on disk): qr_showing says one is showing.
// Each view carries the fencing token of the owner's lease, and Redis keeps
// a view only if its token is not older than the one stored, so an
// instance that lost an account can neither overwrite the new owner's view
// nor delete it. A view leaves Redis when its owner stops running the
// account (the board forgets it on lease_lost); views of an instance that
// died stay until the new owner publishes, shown as instance_alive false.
//
// Fleet answers the API's account routes for the whole fleet: the local
// board for the accounts this instance runs, the published views for the
// others (one HGETALL), and a row with no instance (state stopped) for a
// listed account nobody holds. Instances lists the live members.
//
// Router implements api.Controller, and routes any other action given to
// it by name: an action on an account this instance does not hold goes to
// the lease holder's inbox list in Redis (the lease key names it), the
// holder runs it as it would run its own and pushes the result to the
// sender's inbox; each instance reads its inbox with BLPOP on one
// connection. An owner that has not taken the request within Wait (3 s)
// yields 503 naming it, and the request is taken back out of its inbox,
// so it cannot run later; one that took it is waited for until the
// caller's deadline, and runs it within that time. The QR code of an account pairing elsewhere comes
// the same way, sealed for the requester (X25519 + AES-GCM), so Redis
// never holds it in the clear; so does the link code that pairing by phone
// number (Router.PairByPhone, api.LinkPairer) answers. Published views
// carry neither. A send (Router.SendText, api.Sender) travels the same way
// with its recipient, text and idempotency key, and its reply carries the
// message ID or the owner's typed refusal; the key is claimed by the
// owner in the shared store, so repeats through any instance are
// duplicates. Nothing here runs in the lease loop.
package view
