package node

//go:generate go run ./internal/gentokens -in ../../testdata/protocol/tokens.json -out tokens_gen.go

// Tag bytes (PROTOCOL.md 6.3).
const (
	tagListEmpty  = 0x00
	tagDict0      = 0xEC // 236; DICTIONARY_0..3 are 236..239
	tagDict3      = 0xEF
	tagInteropJID = 0xF5
	tagFBJID      = 0xF6
	tagADJID      = 0xF7
	tagList8      = 0xF8
	tagList16     = 0xF9
	tagJIDPair    = 0xFA
	tagHex8       = 0xFB
	tagBinary8    = 0xFC
	tagBinary20   = 0xFD
	tagBinary32   = 0xFE
	tagNibble8    = 0xFF
)

// tokenCode says how a string is written as a token: single byte b
// (dict == 0) or the two bytes 236+dict-1, b.
type tokenCode struct {
	dict uint8 // 0: single byte; 1..4: DICTIONARY_0..3
	b    uint8
}

// The encoder looks tokens up in an open-addressing hash table built once
// at init: 4096 slots for ~1260 tokens, a cheap hash of the length and four
// bytes, linear probing. Slots hold 1 + an index into tokenList.
const tokenTableBits = 12

var (
	tokenList  []string
	tokenCodes []tokenCode
	tokenTable [1 << tokenTableBits]uint16
)

func init() {
	add := func(s string, c tokenCode) {
		tokenList = append(tokenList, s)
		tokenCodes = append(tokenCodes, c)
		h := tokenHash(s)
		for tokenTable[h] != 0 {
			h = (h + 1) & (1<<tokenTableBits - 1)
		}
		tokenTable[h] = uint16(len(tokenList))
	}
	for i, s := range singleByteTokens {
		if i > 0 && s != "" {
			add(s, tokenCode{0, uint8(i)})
		}
	}
	for d, dict := range doubleByteTokens {
		for j, s := range dict {
			add(s, tokenCode{uint8(d + 1), uint8(j)})
		}
	}
}

// tokenHash hashes a non-empty string to a table slot.
func tokenHash(s string) uint32 {
	n := len(s)
	x := uint32(s[0]) | uint32(s[n-1])<<8 | uint32(s[n/2])<<16 | uint32(s[(n-1)/3])<<24
	return ((x ^ uint32(n)*0x9E3779B1) * 0x85EBCA6B) >> (32 - tokenTableBits)
}

// lookupToken returns the token code of s, if s is a token.
func lookupToken(s string) (tokenCode, bool) {
	if len(s) == 0 || len(s) > maxTokenLen {
		return tokenCode{}, false
	}
	for h := tokenHash(s); ; h = (h + 1) & (1<<tokenTableBits - 1) {
		i := tokenTable[h]
		if i == 0 {
			return tokenCode{}, false
		}
		if tokenList[i-1] == s {
			return tokenCodes[i-1], true
		}
	}
}
