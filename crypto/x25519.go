package crypto

import "filippo.io/edwards25519/field"

// x25519 sets out to X25519(scalar, u) as RFC 7748 section 5 defines it:
// the scalar clamped, the top bit of u ignored and a non-canonical u
// reduced, then the Montgomery ladder in constant time (the two points are
// swapped by masks, never by branches on scalar bits). It is one ladder
// from the raw private bytes: unlike crypto/ecdh, it does not derive the
// private key's public key before it can multiply.
//
// The ladder step is the RFC's, with its temporaries folded into two
// (t0, t1) in the order Go's crypto/ecdh uses, which keeps it as fast as
// that ladder (named temporaries cost 10 % more). z2 uses the equivalent
// form E·(BB + 121666·E) of the RFC's E·(AA + 121665·E), as AA = BB + E.
func x25519(out, scalar, u *[32]byte) {
	k := *scalar
	defer clear(k[:])
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64

	var x1, x2, z2, x3, z3, t0, t1 field.Element
	if _, err := x1.SetBytes(u[:]); err != nil {
		panic("crypto: a 32-byte u-coordinate was refused: " + err.Error()) // cannot happen: the length is fixed
	}
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()

	swap := 0
	for t := 254; t >= 0; t-- {
		bit := int(k[t/8]>>(t%8)) & 1
		swap ^= bit
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = bit

		t0.Subtract(&x3, &z3)  // D
		t1.Subtract(&x2, &z2)  // B
		x2.Add(&x2, &z2)       // A
		z2.Add(&x3, &z3)       // C
		z3.Multiply(&t0, &x2)  // DA
		z2.Multiply(&z2, &t1)  // CB
		t0.Square(&t1)         // BB
		t1.Square(&x2)         // AA
		x3.Add(&z3, &z2)       // DA + CB
		z2.Subtract(&z3, &z2)  // DA - CB
		x2.Multiply(&t1, &t0)  // x2 = AA·BB
		t1.Subtract(&t1, &t0)  // E = AA - BB
		z2.Square(&z2)         // (DA - CB)²
		z3.Mult32(&t1, 121666) // 121666·E
		x3.Square(&x3)         // x3 = (DA + CB)²
		t0.Add(&t0, &z3)       // BB + 121666·E
		z3.Multiply(&x1, &z2)  // z3 = x1·(DA - CB)²
		z2.Multiply(&t1, &t0)  // z2 = E·(BB + 121666·E)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)

	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())
}
