package node

import "errors"

// Errors of the codec. Decoding errors are wrapped with the offset where
// they were found; test with errors.Is.
var (
	ErrInvalidNode      = errors.New("node: invalid node")
	ErrUnknownTag       = errors.New("node: unknown tag byte")
	ErrTokenIndex       = errors.New("node: token index out of range")
	ErrInvalidPacked    = errors.New("node: invalid packed string")
	ErrInvalidJID       = errors.New("node: invalid JID")
	ErrTruncated        = errors.New("node: truncated input")
	ErrLeftover         = errors.New("node: leftover bytes after node")
	ErrTooDeep          = errors.New("node: nesting too deep")
	ErrTooLarge         = errors.New("node: too large to encode")
	ErrEmptyPayload     = errors.New("node: empty payload")
	ErrInflate          = errors.New("node: bad zlib data")
	ErrInflatedTooLarge = errors.New("node: inflated payload too large")
)
