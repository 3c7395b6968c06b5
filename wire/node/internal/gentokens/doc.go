// Command gentokens is the generator of wire/node/tokens_gen.go: it
// reads the token tables (testdata/protocol/tokens.json) and writes them as
// Go arrays. Run it through `go generate ./...`; nothing imports it.
package main
