package fleet

// memberHash is FNV-1a 64 of "member\x00": the part of every score of
// member that does not depend on the account, computed once per member
// when a whole assignment is scored.
func memberHash(member string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(member); i++ {
		h = (h ^ uint64(member[i])) * prime
	}
	return h * prime // the 0x00 separator: h ^ 0 == h
}

// scoreFrom continues memberHash(m) over account and mixes the result:
// score(m, account).
func scoreFrom(h uint64, account string) uint64 {
	const prime = 1099511628211
	for i := 0; i < len(account); i++ {
		h = (h ^ uint64(account[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// score is the rendezvous weight of member for account: FNV-1a 64 of
// "member\x00account" through the splitmix64 finalizer (FNV alone mixes
// its last bytes poorly).
func score(member, account string) uint64 {
	return scoreFrom(memberHash(member), account)
}

// Preferred returns the member that should own account: the one with the
// highest rendezvous score (ties to the smaller name), or "" when members
// is empty. Adding a member moves only the accounts it now wins (about
// 1/n of them); removing one moves only its own.
func Preferred(account string, members []string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		s := score(m, account)
		if best == "" || beats(s, m, bestScore, best) {
			best, bestScore = m, s
		}
	}
	return best
}

// beats reports whether member m with score s ranks above member o with
// score so: a higher score, or an equal one and the smaller name.
func beats(s uint64, m string, so uint64, o string) bool {
	return s > so || s == so && m < o
}
