// Package supervisor is the root actor of a manager and the one owner of
// which accounts run in this process. It merges the configured accounts
// (SetAccounts) with, in fleet mode (Deps.Leased), the accounts whose lease
// this instance holds (Own and Disown, sent in batches by the fleet
// coordinator without waiting). It spawns one connection actor per account
// that should run, one at a time (a changed account's actor starts once the
// old one has terminated), each under a fresh name "ACCOUNT#N" so that a
// stopped actor's PID never resolves to its successor; it stops the actors
// of accounts that should not run, restarts a panicking connection actor
// after a delay and counts the restart, forwards operator commands to the
// right account, broadcasts process-wide news (a new client version) to
// every account, and logs a health summary.
//
// Package app builds it; the connection actor's package is not imported
// here: the caller supplies how an account's actor is made.
package supervisor
