package store

// SetCompactStep sets the hook called after each step of a compaction.
func SetCompactStep(f func(step string)) { compactStep = f }
