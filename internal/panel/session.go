package panel

import (
	"crypto/subtle"
	"net/http"
	"sync"
	"time"
)

// Session lifetimes.
const (
	SessionTTL  = 12 * time.Hour   // absolute: log in again after this
	SessionIdle = 30 * time.Minute // ended when unused this long
	maxSessions = 10000
)

// Cookie names. The pre-session cookie carries the CSRF token of the login
// and setup forms (double submit), before there is a session.
const (
	sessionCookie = "burrow_session"
	preCookie     = "burrow_pre"
	langCookie    = "burrow_lang"
)

// session is one logged-in browser. It holds the admin's name only: the
// role is read from the store on every request, so a demotion or removal
// acts at once.
type session struct {
	admin   string
	csrf    string
	created time.Time
	seen    time.Time
}

// sessions are kept in memory: a restart logs everyone out.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session // by token; guarded by mu
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

// create starts a session for admin and returns its token.
func (s *sessions) create(admin string, now time.Time) (string, *session) {
	tok := NewToken()
	se := &session{admin: admin, csrf: NewToken(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.expireLocked(now)
	}
	s.m[tok] = se
	return tok, se
}

// get returns the live session for tok and marks it used.
func (s *sessions) get(tok string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[tok]
	if !ok {
		return nil, false
	}
	if now.Sub(se.created) > SessionTTL || now.Sub(se.seen) > SessionIdle {
		delete(s.m, tok)
		return nil, false
	}
	se.seen = now
	c := *se
	return &c, true
}

func (s *sessions) end(tok string) {
	s.mu.Lock()
	delete(s.m, tok)
	s.mu.Unlock()
}

// endAdmin ends every session of admin (removed, or password changed).
func (s *sessions) endAdmin(admin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, se := range s.m {
		if se.admin == admin {
			delete(s.m, tok)
		}
	}
}

// endAdminExcept ends admin's sessions but keep (a password change ends
// the others).
func (s *sessions) endAdminExcept(admin, keep string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, se := range s.m {
		if se.admin == admin && tok != keep {
			delete(s.m, tok)
		}
	}
}

func (s *sessions) expireLocked(now time.Time) {
	for tok, se := range s.m {
		if now.Sub(se.created) > SessionTTL || now.Sub(se.seen) > SessionIdle {
			delete(s.m, tok)
		}
	}
	if len(s.m) >= maxSessions { // still full: drop the oldest-used
		var oldest string
		var at time.Time
		for tok, se := range s.m {
			if oldest == "" || se.seen.Before(at) {
				oldest, at = tok, se.seen
			}
		}
		delete(s.m, oldest)
	}
}

// setCookie sets an HttpOnly, SameSite=Strict cookie, Secure when the
// request came over TLS; maxAge 0 makes a browser-session cookie, -1 deletes.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// sameToken compares two tokens in constant time; empty never matches.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
