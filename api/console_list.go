package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// The console's paged list. GET /api/accounts without query parameters
// answers every account as an array (the shape tools rely on); with any of
// page, limit, state or q it answers one page of the accounts that match,
// in natural order of their ids ("acct-2" before "acct-10"), with the
// counts per state of the whole set, so a console of 10,000 accounts
// fetches and draws a page at a time.

// Paging bounds.
const (
	defaultPageLimit = 50
	maxPageLimit     = 500
	maxQueryLen      = 64
)

// accountPage is one page of GET /api/accounts?page=….
type accountPage struct {
	Accounts []status.Account `json:"accounts"`
	// Page is the page number (from 1), Limit the accounts per page.
	Page  int `json:"page"`
	Limit int `json:"limit"`
	// Matched is how many accounts match state and q (so pages =
	// ceil(Matched/Limit)); Total is how many there are.
	Matched int `json:"matched"`
	Total   int `json:"total"`
	// Counts is how many accounts are in each state, of all of them.
	Counts map[events.State]int `json:"counts"`
}

// pageQuery is what a paged list asks for.
type pageQuery struct {
	page, limit int
	state       events.State // "" for any
	q           string       // lower case; "" for any
}

// parsePageQuery reads page, limit, state and q; paged is false when none
// is given. It writes 400 naming the bad parameter and returns ok false.
func parsePageQuery(w http.ResponseWriter, r *http.Request) (pq pageQuery, paged, ok bool) {
	v := r.URL.Query()
	for _, k := range []string{"page", "limit", "state", "q"} {
		if v.Has(k) {
			paged = true
		}
	}
	pq = pageQuery{page: 1, limit: defaultPageLimit}
	if !paged {
		return pq, false, true
	}
	number := func(name string, max int, into *int) bool {
		s := v.Get(name)
		if s == "" {
			return true
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > max {
			writeError(w, http.StatusBadRequest, "bad "+name+": want a whole number from 1 to "+strconv.Itoa(max))
			return false
		}
		*into = n
		return true
	}
	if !number("page", 1<<20, &pq.page) || !number("limit", maxPageLimit, &pq.limit) {
		return pq, true, false
	}
	if st := v.Get("state"); st != "" {
		if !slices.Contains(events.States, events.State(st)) {
			writeError(w, http.StatusBadRequest, "bad state: want one of "+strings.Trim(string(statesJSON()), "[]"))
			return pq, true, false
		}
		pq.state = events.State(st)
	}
	q := v.Get("q")
	if len(q) > maxQueryLen {
		writeError(w, http.StatusBadRequest, "bad q: at most "+strconv.Itoa(maxQueryLen)+" bytes")
		return pq, true, false
	}
	pq.q = strings.ToLower(q)
	return pq, true, true
}

// pageOf filters, sorts and cuts list, reusing (overwriting) it.
func pageOf(list []status.Account, pq pageQuery) accountPage {
	out := accountPage{Page: pq.page, Limit: pq.limit, Total: len(list), Counts: make(map[events.State]int)}
	matched := list[:0] // filtered in place: list is ours
	for _, a := range list {
		out.Counts[a.State]++
		if pq.state != "" && a.State != pq.state {
			continue
		}
		if pq.q != "" && !strings.Contains(strings.ToLower(a.ID), pq.q) && !strings.Contains(strings.ToLower(a.JID), pq.q) {
			continue
		}
		matched = append(matched, a)
	}
	slices.SortFunc(matched, func(a, b status.Account) int { return naturalCompare(a.ID, b.ID) })
	out.Matched = len(matched)
	from := min((pq.page-1)*pq.limit, len(matched))
	to := min(from+pq.limit, len(matched))
	out.Accounts = matched[from:to:to]
	return out
}

// naturalCompare orders strings with their runs of digits compared as
// numbers: "acct-2" < "acct-10". Equal numbers with different leading
// zeros, and otherwise equal strings, fall back to byte order.
func naturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, cb := a[i], b[j]
		if isDigit(ca) && isDigit(cb) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na := strings.TrimLeft(a[si:i], "0")
			nb := strings.TrimLeft(b[sj:j], "0")
			if len(na) != len(nb) {
				return cmpInt(len(na), len(nb))
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			continue
		}
		if ca != cb {
			return cmpInt(int(ca), int(cb))
		}
		i++
		j++
	}
	if c := cmpInt(len(a)-i, len(b)-j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
