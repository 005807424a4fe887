package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// MaxBody is the largest request body the API reads.
const MaxBody = 64 << 10

// Handler serves api over HTTP (routes in the package doc). With a
// non-empty token every request must carry "Authorization: Bearer TOKEN";
// use that on TCP listeners. On the unix socket pass "".
func Handler(api API, token string) http.Handler {
	mux := http.NewServeMux()
	h := &handler{api: api}
	mux.HandleFunc("GET /v1/health", h.health)
	mux.HandleFunc("GET /v1/stats", h.stats)
	mux.HandleFunc("GET /v1/users", h.list)
	mux.HandleFunc("POST /v1/users", h.add)
	mux.HandleFunc("GET /v1/users/{name}", h.user(api.User))
	mux.HandleFunc("PATCH /v1/users/{name}", h.set)
	mux.HandleFunc("POST /v1/users/{name}/revoke", h.user(api.Revoke))
	mux.HandleFunc("POST /v1/users/{name}/enable", h.user(api.Enable))
	mux.HandleFunc("POST /v1/users/{name}/rotate", h.user(api.Rotate))
	mux.HandleFunc("POST /v1/users/{name}/reset-traffic", h.user(api.ResetTraffic))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errors.New("no such route; see GET /v1/users, /v1/stats, /v1/health"))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && !authorized(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="burrow"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		mux.ServeHTTP(w, r)
	})
}

func authorized(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

type handler struct{ api API }

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.Health(r.Context())
	reply(w, http.StatusOK, v, err)
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.Stats(r.Context())
	reply(w, http.StatusOK, v, err)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	v, err := h.api.ListUsers(r.Context())
	reply(w, http.StatusOK, v, err)
}

func (h *handler) add(w http.ResponseWriter, r *http.Request) {
	var req AddRequest
	if err := decode(r.Body, &req); err != nil {
		replyDecodeError(w, err)
		return
	}
	v, err := h.api.AddUser(r.Context(), req)
	reply(w, http.StatusCreated, v, err)
}

func (h *handler) set(w http.ResponseWriter, r *http.Request) {
	var req SetRequest
	if err := decode(r.Body, &req); err != nil {
		replyDecodeError(w, err)
		return
	}
	v, err := h.api.SetUser(r.Context(), r.PathValue("name"), req)
	reply(w, http.StatusOK, v, err)
}

func (h *handler) user(f func(context.Context, string) (*UserInfo, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r.Context(), r.PathValue("name"))
		reply(w, http.StatusOK, v, err)
	}
}

// decode reads exactly one JSON object with no unknown fields.
func decode(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value in the body")
	}
	return nil
}

func replyDecodeError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", MaxBody))
		return
	}
	writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
}

func reply(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, access.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, access.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, access.ErrExists):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	b, _ := json.Marshal(errorBody{Error: err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// ListenUnix listens on the unix socket at path with mode 0600. A stale
// socket file left by a crashed server is removed; if another process
// answers on it, ListenUnix refuses (two servers on one data dir).
func ListenUnix(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin: %s: another burrow server is running with this data dir", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("admin: %s exists and is not a socket; remove it", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) && len(path) > 100 {
			return nil, fmt.Errorf("admin: listen %s: path too long for a unix socket (pass --admin-socket with a shorter path): %w", path, err)
		}
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("admin: listen %s: directory %s does not exist", path, filepath.Dir(path))
		}
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: chmod %s: %w", path, err)
	}
	return ln, nil
}

// LoadOrCreateToken returns the bearer token stored at path, creating a
// random one (32 bytes, base64url; file mode 0600) if the file is missing.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := string(bytes.TrimSpace(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("admin: token file %s holds fewer than 32 characters; delete it to make a new one", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin: read token: %w", err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("admin: create token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("admin: write token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("admin: write token: %w", err)
	}
	return tok, nil
}
