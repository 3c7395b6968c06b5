package waproto

// buf compiles the .proto files (no protoc install needed); protoc-gen-go runs
// at the version that go.mod pins.
//go:generate go run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate
