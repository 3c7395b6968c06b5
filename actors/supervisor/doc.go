// Package supervisor is the root actor of a manager: it owns the list of
// accounts that run in this process, spawns one connection actor per
// account (named by the account id, so a second actor for the same account
// is refused), stops actors whose accounts leave the list, restarts a
// panicking connection actor after a delay and counts the restart, forwards
// operator commands to the right account, broadcasts process-wide news (a
// new client version) to every account, and logs a health summary.
//
// Package app builds it; the connection actor's package is not imported
// here: the caller supplies how an account's actor is made.
package supervisor
